#include "kvmfleet/agent/domain_xml.hpp"

#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <memory>
#include <string>

#include "kvmfleet/agent/capabilities_xml.hpp"
#include "kvmfleet/agent/storage_xml.hpp"

namespace kvmfleet::agent {
namespace {

constexpr const char* kUuid = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

DomainSpec sample_spec() {
  DomainSpec s;
  s.uuid = kUuid;
  s.name = "web1";
  s.vcpus = 2;
  s.memory_mib = 64;
  s.domain_type = "kvm";
  s.generation = 7;
  s.disks.push_back({std::string(kUuid) + "-disk0.qcow2", "", 10, DiskBus::virtio, "vda"});
  s.disks.push_back({std::string(kUuid) + "-disk1.qcow2", "", 5, DiskBus::sata, "sda"});
  return s;
}

std::vector<std::string> sample_sources() {
  return {std::string("/var/lib/kvmfleet/images/") + kUuid + "-disk0.qcow2",
          std::string("/var/lib/kvmfleet/images/") + kUuid + "-disk1.qcow2"};
}

// Checks structure the way libvirt would read it: by XPath over a parsed tree.
class Doc {
 public:
  explicit Doc(const std::string& xml)
      : doc_(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), nullptr, "UTF-8",
                           XML_PARSE_NONET),
             &xmlFreeDoc) {
    if (doc_) {
      ctx_.reset(xmlXPathNewContext(doc_.get()));
      xmlXPathRegisterNs(ctx_.get(), BAD_CAST "kf", BAD_CAST kMetadataNamespace);
    }
  }
  bool ok() const { return doc_ != nullptr; }
  int count(const char* expr) {
    std::unique_ptr<xmlXPathObject, decltype(&xmlXPathFreeObject)> o(
        xmlXPathEvalExpression(BAD_CAST expr, ctx_.get()), &xmlXPathFreeObject);
    if (!o || o->type != XPATH_NODESET || !o->nodesetval) return 0;
    return o->nodesetval->nodeNr;
  }
  std::string str(const char* expr) {
    std::unique_ptr<xmlXPathObject, decltype(&xmlXPathFreeObject)> o(
        xmlXPathEvalExpression(BAD_CAST expr, ctx_.get()), &xmlXPathFreeObject);
    if (!o) return "<xpath error>";
    xmlChar* s = xmlXPathCastToString(o.get());
    std::string out(reinterpret_cast<const char*>(s));
    xmlFree(s);
    return out;
  }
  xmlNode* first(const char* expr) {
    std::unique_ptr<xmlXPathObject, decltype(&xmlXPathFreeObject)> o(
        xmlXPathEvalExpression(BAD_CAST expr, ctx_.get()), &xmlXPathFreeObject);
    if (!o || !o->nodesetval || o->nodesetval->nodeNr == 0) return nullptr;
    return o->nodesetval->nodeTab[0];
  }

 private:
  struct CtxFree {
    void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
  };
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc_;
  std::unique_ptr<xmlXPathContext, CtxFree> ctx_;
};

TEST(DomainXml, WritesTheExpectedStructure) {
  auto xml = write_domain_xml(sample_spec(), sample_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.str("/domain/@type"), "kvm");
  EXPECT_EQ(d.str("/domain/name"), "web1");
  EXPECT_EQ(d.str("/domain/uuid"), kUuid);
  EXPECT_EQ(d.str("/domain/memory/@unit"), "MiB");
  EXPECT_EQ(d.str("/domain/memory"), "64");
  EXPECT_EQ(d.str("/domain/vcpu"), "2");
  EXPECT_EQ(d.str("/domain/os/type"), "hvm");
  EXPECT_EQ(d.str("/domain/os/type/@arch"), "x86_64");
  EXPECT_EQ(d.str("/domain/os/type/@machine"), "pc");
  EXPECT_EQ(d.count("/domain/features/acpi"), 1);
  EXPECT_EQ(d.str("/domain/on_poweroff"), "destroy");
  EXPECT_EQ(d.str("/domain/on_reboot"), "restart");
  EXPECT_EQ(d.str("/domain/on_crash"), "destroy");
  EXPECT_EQ(d.count("/domain/devices/disk"), 2);
  EXPECT_EQ(d.str("/domain/devices/disk[1]/@type"), "file");
  EXPECT_EQ(d.str("/domain/devices/disk[1]/@device"), "disk");
  EXPECT_EQ(d.str("/domain/devices/disk[1]/driver/@type"), "qcow2");
  EXPECT_EQ(d.str("/domain/devices/disk[1]/source/@file"), sample_sources()[0]);
  EXPECT_EQ(d.str("/domain/devices/disk[1]/target/@dev"), "vda");
  EXPECT_EQ(d.str("/domain/devices/disk[1]/target/@bus"), "virtio");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/target/@dev"), "sda");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/target/@bus"), "sata");
  // Headless, and no emulator path baked in.
  EXPECT_EQ(d.count("//graphics"), 0);
  EXPECT_EQ(d.count("//video"), 0);
  EXPECT_EQ(d.count("//emulator"), 0);
  EXPECT_EQ(d.count("/domain/devices/controller"), 0);
  // Metadata: in kvmfleet's namespace, with kvmfleet's prefix.
  EXPECT_EQ(d.count("/domain/metadata/kf:vm"), 1);
  EXPECT_EQ(d.str("/domain/metadata/kf:vm/@id"), kUuid);
  EXPECT_EQ(d.str("/domain/metadata/kf:vm/@generation"), "7");
  xmlNode* meta = d.first("/domain/metadata/kf:vm");
  ASSERT_NE(meta, nullptr);
  ASSERT_NE(meta->ns, nullptr);
  EXPECT_STREQ(reinterpret_cast<const char*>(meta->ns->prefix), kMetadataPrefix);
}

TEST(DomainXml, StandardTestVmHasNoDevicesButTheGuestAgentChannelAndTheConsole) {
  DomainSpec s;
  s.uuid = kUuid;
  s.name = "tiny";
  s.memory_mib = 64;
  s.domain_type = "qemu";
  auto xml = write_domain_xml(s, {});
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  EXPECT_EQ(d.str("/domain/@type"), "qemu");
  EXPECT_EQ(d.count("/domain/devices/*"), 3);
  EXPECT_EQ(d.count("/domain/devices/channel"), 1);
  EXPECT_EQ(d.count("/domain/devices/serial"), 1);
  EXPECT_EQ(d.count("/domain/devices/console"), 1);
  // Without a log path, no log.
  EXPECT_EQ(d.count("/domain/devices/serial/log"), 0);
}

TEST(DomainXml, TheSerialConsoleIsAPtyWithVirtlogdsLog) {
  auto xml =
      write_domain_xml(sample_spec(), sample_sources(), {}, "/var/lib/kvmfleet/console/x.log");
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  EXPECT_EQ(d.str("/domain/devices/serial/@type"), "pty");
  EXPECT_EQ(d.str("/domain/devices/serial/log/@file"), "/var/lib/kvmfleet/console/x.log");
  EXPECT_EQ(d.str("/domain/devices/serial/log/@append"), "on");
  EXPECT_EQ(d.str("/domain/devices/console/target/@type"), "serial");
  EXPECT_EQ(d.str("/domain/os/bios/@useserial"), "yes");
  EXPECT_FALSE(write_domain_xml(sample_spec(), sample_sources(), {}, "relative.log").ok());
}

TEST(DomainXml, EveryDomainHasTheGuestAgentChannel) {
  auto xml = write_domain_xml(sample_spec(), sample_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  ASSERT_EQ(d.count("/domain/devices/channel"), 1);
  EXPECT_EQ(d.str("/domain/devices/channel/@type"), "unix");
  EXPECT_EQ(d.str("/domain/devices/channel/target/@type"), "virtio");
  EXPECT_EQ(d.str("/domain/devices/channel/target/@name"), "org.qemu.guest_agent.0");
  // libvirt picks the socket's path; QEMU listens on it.
  EXPECT_EQ(d.str("/domain/devices/channel/source/@mode"), "bind");
  EXPECT_EQ(d.count("/domain/devices/channel/source/@path"), 0);
}

DomainSpec block_spec() {
  auto s = sample_spec();
  DomainDisk shared;
  shared.block_device = "/dev/pool1/db-data";
  shared.size_gib = 0;
  shared.bus = DiskBus::virtio;
  shared.target_dev = "vdb";
  s.disks.insert(s.disks.begin() + 1, shared);
  return s;
}

std::vector<std::string> block_sources() {
  auto sources = sample_sources();
  // A block disk's entry is not used: the spec's device is its source.
  sources.insert(sources.begin() + 1, "/var/lib/kvmfleet/images/");
  return sources;
}

TEST(DomainXml, BlockDeviceDisksAreRawWithoutHostCache) {
  auto xml = write_domain_xml(block_spec(), block_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  ASSERT_EQ(d.count("/domain/devices/disk"), 3);
  EXPECT_EQ(d.str("/domain/devices/disk[2]/@type"), "block");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/@device"), "disk");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/driver/@name"), "qemu");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/driver/@type"), "raw");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/driver/@cache"), "none");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/driver/@io"), "native");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/source/@dev"), "/dev/pool1/db-data");
  EXPECT_EQ(d.count("/domain/devices/disk[2]/source/@file"), 0);
  EXPECT_EQ(d.str("/domain/devices/disk[2]/target/@dev"), "vdb");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/target/@bus"), "virtio");
  // The image-pool disks around it are unchanged.
  EXPECT_EQ(d.str("/domain/devices/disk[1]/@type"), "file");
  EXPECT_EQ(d.str("/domain/devices/disk[1]/driver/@type"), "qcow2");
  EXPECT_EQ(d.count("/domain/devices/disk[1]/driver/@cache"), 0);
  EXPECT_EQ(d.str("/domain/devices/disk[3]/source/@file"), sample_sources()[1]);
  EXPECT_EQ(d.str("/domain/devices/disk[3]/target/@dev"), "sda");
}

TEST(DomainXml, ReaderKeepsBlockSourcesApartFromPoolFiles) {
  auto xml = write_domain_xml(block_spec(), block_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  auto info = read_domain_xml(*xml);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->disk_sources, sample_sources());
  EXPECT_EQ(info->block_sources, std::vector<std::string>{"/dev/pool1/db-data"});
  // Any domain's block disks, however libvirt wrote them.
  auto other = read_domain_xml(
      "<domain type='kvm'><name>a</name><devices>"
      "<disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vda'/></disk>"
      "<disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/></disk>"
      "</devices></domain>");
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_EQ(other->block_sources, std::vector<std::string>{"/dev/sdz"});
  EXPECT_EQ(other->disk_sources, std::vector<std::string>{"/iso/x.iso"});
}

TEST(DomainXml, WriterRefusesBadBlockDevices) {
  for (const char* device :
       {"dev/sdb", "/etc/shadow", "/dev/../etc/shadow", "/dev/sd\nb", "/dev/a'b", "/dev/a\"b"}) {
    auto s = block_spec();
    s.disks[1].block_device = device;
    auto xml = write_domain_xml(s, block_sources());
    ASSERT_FALSE(xml.ok()) << device;
    EXPECT_EQ(xml.error().code, ErrorCode::invalid_argument) << device;
  }
  auto s = block_spec();
  s.disks[1].volume = "x.qcow2";  // both
  EXPECT_FALSE(write_domain_xml(s, block_sources()).ok());
}

TEST(DomainXml, NicsAreBridgeInterfacesWithMacModelAndMtu) {
  auto s = sample_spec();
  s.nics.push_back({"52:54:00:aa:bb:01", "br-lab", NicModel::virtio, 9000});
  s.nics.push_back({"52:54:00:aa:bb:02", "br0", NicModel::e1000, 0});
  auto xml = write_domain_xml(s, sample_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.count("/domain/devices/interface[@type='bridge']"), 2);
  EXPECT_EQ(d.str("/domain/devices/interface[1]/mac/@address"), "52:54:00:aa:bb:01");
  EXPECT_EQ(d.str("/domain/devices/interface[1]/source/@bridge"), "br-lab");
  EXPECT_EQ(d.str("/domain/devices/interface[1]/model/@type"), "virtio");
  EXPECT_EQ(d.str("/domain/devices/interface[1]/mtu/@size"), "9000");
  EXPECT_EQ(d.str("/domain/devices/interface[2]/model/@type"), "e1000");
  EXPECT_EQ(d.count("/domain/devices/interface[2]/mtu"), 0);
}

TEST(DomainXml, NicsWithBadMacsOrBridgesAreRefused) {
  auto with_nic = [](DomainNic n) {
    auto s = sample_spec();
    s.nics.push_back(std::move(n));
    return write_domain_xml(s, sample_sources());
  };
  EXPECT_FALSE(with_nic({"01:00:5e:00:00:01", "br0", NicModel::virtio, 0}).ok());  // multicast
  EXPECT_FALSE(with_nic({"52:54:00:AA:BB:01", "br0", NicModel::virtio, 0}).ok());  // not canonical
  EXPECT_FALSE(with_nic({"52-54-00-aa-bb-01", "br0", NicModel::virtio, 0}).ok());
  EXPECT_FALSE(with_nic({"52:54:00:aa:bb:01", "br0'/><x", NicModel::virtio, 0}).ok());
  EXPECT_FALSE(with_nic({"52:54:00:aa:bb:01", "-br0", NicModel::virtio, 0}).ok());
  EXPECT_FALSE(with_nic({"52:54:00:aa:bb:01", "br0", NicModel::virtio, 100}).ok());
  auto s = sample_spec();
  s.nics.push_back({"52:54:00:aa:bb:01", "br0", NicModel::virtio, 0});
  s.nics.push_back({"52:54:00:aa:bb:01", "br1", NicModel::virtio, 0});
  auto dup = write_domain_xml(s, sample_sources());
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().details["reason"], "duplicate_mac");
}

TEST(DomainXml, ScsiDisksGetAVirtioScsiController) {
  auto s = sample_spec();
  s.disks[1].bus = DiskBus::scsi;
  auto xml = write_domain_xml(s, sample_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  EXPECT_EQ(d.str("/domain/devices/controller[@type='scsi']/@model"), "virtio-scsi");
  EXPECT_EQ(d.str("/domain/devices/disk[2]/target/@bus"), "scsi");
}

TEST(DomainXml, RoundTripReadsTheMetadataBack) {
  auto xml = write_domain_xml(sample_spec(), sample_sources());
  ASSERT_TRUE(xml.ok());
  auto info = read_domain_xml(*xml);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_TRUE(info->managed);
  EXPECT_EQ(info->vm_id, kUuid);
  EXPECT_EQ(info->generation, 7);
  EXPECT_EQ(info->name, "web1");
  EXPECT_EQ(info->uuid, kUuid);
  EXPECT_EQ(info->type, "kvm");
  EXPECT_EQ(info->disk_sources, sample_sources());
}

TEST(DomainXml, ReaderTellsUnmanagedDomains) {
  auto info = read_domain_xml(
      "<domain type='kvm'><name>other</name><uuid>" + std::string(kUuid) +
      "</uuid><metadata><app:vm xmlns:app='https://example.org/app' id='x' generation='1'/>"
      "</metadata><memory unit='KiB'>65536</memory></domain>");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_FALSE(info->managed);
  EXPECT_EQ(info->name, "other");
  EXPECT_EQ(info->generation, 0);
}

TEST(DomainXml, ReaderGoesByNamespaceNotPrefix) {
  auto info = read_domain_xml("<domain type='kvm'><name>a</name><metadata><k:vm xmlns:k='" +
                              std::string(kMetadataNamespace) + "' id='" + kUuid +
                              "' generation='3'/></metadata></domain>");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_TRUE(info->managed);
  EXPECT_EQ(info->generation, 3);
  // The right local name in the wrong namespace is not ours.
  auto other = read_domain_xml(
      "<domain type='kvm'><name>a</name><metadata><kvmfleet:vm xmlns:kvmfleet='https://evil/' "
      "id='" +
      std::string(kUuid) + "' generation='3'/></metadata></domain>");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->managed);
}

TEST(DomainXml, MalformedMetadataIsAnError) {
  for (const std::string& attrs : std::vector<std::string>{
           "id='nope' generation='1'", "generation='1'", "id='" + std::string(kUuid) + "'",
           "id='" + std::string(kUuid) + "' generation='0'",
           "id='" + std::string(kUuid) + "' generation='12x'"}) {
    auto info =
        read_domain_xml("<domain><metadata><kvmfleet:vm xmlns:kvmfleet='" +
                        std::string(kMetadataNamespace) + "' " + attrs + "/></metadata></domain>");
    ASSERT_FALSE(info.ok()) << attrs;
    EXPECT_EQ(info.error().code, ErrorCode::invalid_argument);
  }
}

TEST(DomainXml, ReaderRefusesDoctypesAndGarbage) {
  const std::string laughs =
      "<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>"
      "<domain><name>&b;</name></domain>";
  auto r = read_domain_xml(laughs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  const std::string external =
      "<?xml version='1.0'?><!DOCTYPE d SYSTEM 'http://127.0.0.1:1/x.dtd'><domain/>";
  EXPECT_FALSE(read_domain_xml(external).ok());
  EXPECT_FALSE(read_domain_xml("<domain><name>unclosed</domain>").ok());
  EXPECT_FALSE(read_domain_xml("").ok());
  EXPECT_FALSE(read_domain_xml("<network/>").ok());
}

TEST(DomainXml, WriterRefusesInvalidSpecsInsteadOfEscapingThem) {
  const std::vector<std::pair<std::string, DomainSpec>> cases = [] {
    std::vector<std::pair<std::string, DomainSpec>> v;
    auto base = sample_spec();
    auto s = base;
    s.name = "web1'/><devices><disk";
    v.emplace_back("hostile name", s);
    s = base;
    s.name = "Web1";
    v.emplace_back("uppercase name", s);
    s = base;
    s.name = "";
    v.emplace_back("empty name", s);
    s = base;
    s.name = std::string(64, 'a');
    v.emplace_back("long name", s);
    s = base;
    s.uuid = "6F1C2A8E-3B4D-4E5F-8A9B-0C1D2E3F4A5B";
    v.emplace_back("uppercase uuid", s);
    s = base;
    s.uuid = "not-a-uuid";
    v.emplace_back("garbage uuid", s);
    s = base;
    s.domain_type = "xen";
    v.emplace_back("domain type", s);
    s = base;
    s.memory_mib = 1;
    v.emplace_back("memory", s);
    s = base;
    s.vcpus = 0;
    v.emplace_back("vcpus", s);
    s = base;
    s.disks[0].volume = "../../etc/passwd.qcow2";
    v.emplace_back("volume path", s);
    s = base;
    s.disks[0].target_dev = "sda";
    v.emplace_back("dev/bus mismatch", s);
    return v;
  }();
  for (const auto& [what, spec] : cases) {
    auto xml = write_domain_xml(spec, sample_sources());
    ASSERT_FALSE(xml.ok()) << what;
    EXPECT_EQ(xml.error().code, ErrorCode::invalid_argument) << what;
  }
  // Sources must line up with disks.
  EXPECT_FALSE(write_domain_xml(sample_spec(), {}).ok());
}

TEST(CapabilitiesXml, DetectsKvmAndHostFacts) {
  const char* caps = R"(<capabilities><host><uuid>0a0b0c0d-0000-4000-8000-000000000001</uuid>
    <cpu><arch>x86_64</arch><model>Skylake-Client-IBRS</model></cpu></host>
    <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/><domain type='kvm'/></arch></guest>
    <guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>
      <domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>)";
  auto c = read_capabilities_xml(caps);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->host_uuid, "0a0b0c0d-0000-4000-8000-000000000001");
  EXPECT_EQ(c->cpu_model, "Skylake-Client-IBRS");
  EXPECT_EQ(c->domain_type, "kvm");
}

TEST(CapabilitiesXml, FallsBackToQemuWithoutKvmForX86_64) {
  const char* caps = R"(<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
    <guest><os_type>hvm</os_type><arch name='i686'><domain type='kvm'/></arch></guest>
    <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/></arch></guest>
    </capabilities>)";
  auto c = read_capabilities_xml(caps);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->domain_type, "qemu");
  EXPECT_EQ(c->host_uuid, "");
  EXPECT_FALSE(read_capabilities_xml("<domain/>").ok());
}

TEST(StorageXml, VolumeAndPool) {
  auto vol = write_qcow2_volume_xml("abc-disk0.qcow2", 10ull << 30);
  ASSERT_TRUE(vol.ok());
  Doc v(*vol);
  EXPECT_EQ(v.str("/volume/name"), "abc-disk0.qcow2");
  EXPECT_EQ(v.str("/volume/capacity"), std::to_string(10ull << 30));
  EXPECT_EQ(v.str("/volume/capacity/@unit"), "bytes");
  EXPECT_EQ(v.str("/volume/target/format/@type"), "qcow2");
  EXPECT_FALSE(write_qcow2_volume_xml("../x.qcow2", 1).ok());
  EXPECT_FALSE(write_qcow2_volume_xml("x.raw", 1).ok());

  auto pool = write_dir_pool_xml("kvmfleet", "/var/lib/kvmfleet/images");
  ASSERT_TRUE(pool.ok());
  Doc p(*pool);
  EXPECT_EQ(p.str("/pool/@type"), "dir");
  EXPECT_EQ(p.str("/pool/name"), "kvmfleet");
  auto path = read_pool_target_path(*pool);
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(*path, "/var/lib/kvmfleet/images");
  EXPECT_FALSE(write_dir_pool_xml("kvmfleet", "relative/path").ok());
}

}  // namespace
}  // namespace kvmfleet::agent

namespace kvmfleet::agent {
namespace {

TEST(DomainXmlBootMedia, CdromSeedAndBootOrder) {
  DomainSpec s = sample_spec();
  s.cdrom = CdromSpec{"installer", std::string(64, 'a'), 100};
  s.cloud_init = CloudInit{"#cloud-config\n{}\n", "", "web1", "", {}};
  s.boot = {BootDevice::cdrom, BootDevice::disk, BootDevice::network};
  BootMediaPaths media{"/var/lib/kvmfleet/images/cache/aa.img",
                       std::string("/var/lib/kvmfleet/images/") + kUuid + "-seed.iso"};
  auto xml = write_domain_xml(s, sample_sources(), media);
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.count("/domain/devices/disk[@device='cdrom']"), 2);
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom'][1]/source/@file"), media.cdrom);
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom'][1]/target/@dev"), "hdc");
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom'][2]/source/@file"), media.seed);
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom'][2]/target/@dev"), "hdd");
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom'][2]/target/@bus"), "ide");
  EXPECT_EQ(d.count("/domain/devices/disk[@device='cdrom']/readonly"), 2);
  EXPECT_EQ(d.count("/domain/os/boot"), 3);
  EXPECT_EQ(d.str("/domain/os/boot[1]/@dev"), "cdrom");
  EXPECT_EQ(d.str("/domain/os/boot[2]/@dev"), "hd");
  EXPECT_EQ(d.str("/domain/os/boot[3]/@dev"), "network");
  auto info = read_domain_xml(*xml);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->cdrom_sources, (std::vector<std::string>{media.cdrom, media.seed}));
  // Nothing of the cloud-init content is in the domain.
  EXPECT_EQ(xml->find("cloud-config"), std::string::npos);
}

TEST(DomainXmlBootMedia, ASeedAloneIsHdcAndADefaultOrderComesWithACdrom) {
  DomainSpec s = sample_spec();
  s.cloud_init = CloudInit{"", "", "web1", "", {}};
  auto xml = write_domain_xml(s, sample_sources(), {"", "/p/seed.iso"});
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  Doc d(*xml);
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom']/target/@dev"), "hdc");
  EXPECT_EQ(d.count("/domain/os/boot"), 0);  // libvirt's default: the disk
  s.cdrom = CdromSpec{"installer", std::string(64, 'a'), 100};
  auto with_cd = write_domain_xml(s, sample_sources(), {"/p/cd.iso", "/p/seed.iso"});
  ASSERT_TRUE(with_cd.ok());
  Doc c(*with_cd);
  EXPECT_EQ(c.str("/domain/os/boot[1]/@dev"), "hd");
  EXPECT_EQ(c.str("/domain/os/boot[2]/@dev"), "cdrom");
  // A medium without its file is a bug, not a domain without it.
  EXPECT_FALSE(write_domain_xml(s, sample_sources(), {"", "/p/seed.iso"}).ok());
  EXPECT_FALSE(write_domain_xml(s, sample_sources(), {"relative.iso", "/p/seed.iso"}).ok());
}

// The definition a migration's destination gets: the same domain, each CD-ROM on the
// destination's file, everything else as it was.
TEST(DomainXmlBootMedia, CdromSourcesAreRewrittenForTheDestination) {
  DomainSpec s = sample_spec();
  s.cdrom = CdromSpec{"installer", std::string(64, 'a'), 100};
  s.cloud_init = CloudInit{"", "", "web1", "", {}};
  const BootMediaPaths media{"/here/cache/aa.img", "/here/seed.iso"};
  auto xml = write_domain_xml(s, sample_sources(), media);
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  auto moved = rewrite_cdrom_sources(
      *xml, {{media.cdrom, "/there/cache/aa.img"}, {media.seed, "/there/seed.iso"}});
  ASSERT_TRUE(moved.ok()) << moved.error().message;
  auto before = read_domain_xml(*xml);
  auto after = read_domain_xml(*moved);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(after->cdrom_sources,
            (std::vector<std::string>{"/there/cache/aa.img", "/there/seed.iso"}));
  EXPECT_EQ(after->uuid, before->uuid);
  EXPECT_EQ(after->generation, before->generation);
  EXPECT_TRUE(after->managed);
  EXPECT_EQ(after->block_sources, before->block_sources);
  Doc d(*moved);
  EXPECT_EQ(d.str("/domain/devices/disk[@device='cdrom'][2]/target/@dev"), "hdd");
  // A path that is not one of its CD-ROMs, or a new one that is not absolute: refused.
  EXPECT_FALSE(rewrite_cdrom_sources(*xml, {{"/elsewhere.iso", "/there/x.iso"}}).ok());
  EXPECT_FALSE(rewrite_cdrom_sources(*xml, {{media.seed, "seed.iso"}}).ok());
  // A hostile name is escaped by libxml2, never pasted.
  auto odd = rewrite_cdrom_sources(*xml, {{media.seed, "/there/a'b\"<c>&.iso"}});
  ASSERT_TRUE(odd.ok());
  auto odd_info = read_domain_xml(*odd);
  ASSERT_TRUE(odd_info.ok());
  EXPECT_EQ(odd_info->cdrom_sources[1], "/there/a'b\"<c>&.iso");
}

// A hot-plugged NIC is the same <interface> a domain has, written on its own; the one
// to detach is copied out of the domain's XML by its MAC.
TEST(DomainXmlNics, HotPlugDevicesAreTheDomainsOwnInterfaces) {
  const DomainNic nic{"52:54:00:aa:bb:cc", "br-lab", NicModel::e1000, 9000};
  auto device = write_interface_xml(nic);
  ASSERT_TRUE(device.ok()) << device.error().message;
  Doc d(*device);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.str("/interface/@type"), "bridge");
  EXPECT_EQ(d.str("/interface/mac/@address"), nic.mac);
  EXPECT_EQ(d.str("/interface/source/@bridge"), "br-lab");
  EXPECT_EQ(d.str("/interface/model/@type"), "e1000");
  EXPECT_EQ(d.str("/interface/mtu/@size"), "9000");
  // Checked, never escaped into something else.
  EXPECT_FALSE(write_interface_xml({"52:54:00:AA:BB:CC", "br-lab", NicModel::virtio, 0}).ok());
  EXPECT_FALSE(write_interface_xml({"52:54:00:aa:bb:cc", "br'><x", NicModel::virtio, 0}).ok());
  EXPECT_FALSE(write_interface_xml({"52:54:00:aa:bb:cc", "br0", NicModel::virtio, 70000}).ok());

  DomainSpec s = sample_spec();
  s.nics = {{"52:54:00:00:00:01", "br0", NicModel::virtio, 0}, nic};
  auto xml = write_domain_xml(s, sample_sources());
  ASSERT_TRUE(xml.ok()) << xml.error().message;
  auto info = read_domain_xml(*xml);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->nic_macs, (std::vector<std::string>{"52:54:00:00:00:01", nic.mac}));
  auto one = interface_xml_of(*xml, nic.mac);
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(one->has_value());
  Doc o(**one);
  EXPECT_EQ(o.str("/interface/mac/@address"), nic.mac);
  EXPECT_EQ(o.str("/interface/source/@bridge"), "br-lab");
  EXPECT_EQ(o.count("/interface"), 1);
  auto none = interface_xml_of(*xml, "52:54:00:00:00:77");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(DomainXmlNics, TheMetadataElementCarriesTheNewGeneration) {
  auto meta = write_metadata_xml(kUuid, 7);
  ASSERT_TRUE(meta.ok()) << meta.error().message;
  // libvirt applies the namespace; the element must not declare it again.
  EXPECT_EQ(meta->find("xmlns"), std::string::npos) << *meta;
  Doc d(*meta);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.str("/vm/@id"), kUuid);
  EXPECT_EQ(d.str("/vm/@generation"), "7");
  EXPECT_FALSE(write_metadata_xml(kUuid, 0).ok());
  EXPECT_FALSE(write_metadata_xml("nope", 2).ok());
}

}  // namespace
}  // namespace kvmfleet::agent
