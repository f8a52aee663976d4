#include "kvmfleet/agent/domain_xml.hpp"

#include <charconv>

#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/validate.hpp"
#include "xml_doc.hpp"

namespace kvmfleet::agent {
namespace {

const char* bus_name(DiskBus bus) {
  switch (bus) {
    case DiskBus::virtio:
      return "virtio";
    case DiskBus::sata:
      return "sata";
    case DiskBus::scsi:
      return "scsi";
  }
  return "virtio";
}

bool is_safe_path(std::string_view p) {
  if (p.empty() || p.front() != '/') return false;
  for (unsigned char c : p) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// <interface type='bridge'>: the NIC's MAC, bridge, model and MTU.
void write_interface(xml::Writer& w, const DomainNic& n) {
  w.start("interface");
  w.attr("type", "bridge");
  w.start("mac");
  w.attr("address", n.mac);
  w.end();
  w.start("source");
  w.attr("bridge", n.bridge);
  w.end();
  w.start("model");
  w.attr("type", std::string(to_string(n.model)));
  w.end();
  if (n.mtu > 0) {
    w.start("mtu");
    w.attr("size", std::int64_t{n.mtu});
    w.end();
  }
  w.end();
}

}  // namespace

Result<std::string> write_interface_xml(const DomainNic& nic) {
  if (auto st = validate_domain_nic(nic, "nic"); !st) return st.take_error();
  xml::Writer w;
  write_interface(w, nic);
  return w.finish();
}

Result<std::optional<std::string>> interface_xml_of(std::string_view text, std::string_view mac) {
  auto doc = xml::parse(text, "domain");
  if (!doc) return doc.take_error();
  xml::XPath xp(doc->get());
  for (xmlNode* iface : xp.nodes("/domain/devices/interface")) {
    for (xmlNode* m : xp.nodes("mac", iface)) {
      if (xml::attribute(m, "address") != mac) continue;
      // Its own document, so that it is written without the domain around it.
      xml::DocPtr one(xmlNewDoc(reinterpret_cast<const xmlChar*>("1.0")));
      if (!one) return internal_error("out of memory copying an interface");
      xmlNode* copy = xmlDocCopyNode(iface, one.get(), 1);
      if (!copy) return internal_error("out of memory copying an interface");
      xmlDocSetRootElement(one.get(), copy);
      auto out = xml::serialize(one.get());
      if (!out) return out.take_error();
      return std::optional<std::string>(std::move(*out));
    }
  }
  return std::optional<std::string>();
}

Result<std::string> write_metadata_xml(const std::string& uuid, std::int64_t generation) {
  if (!is_valid_uuid(uuid) || generation < 1)
    return internal_error("metadata needs a uuid and a generation of at least 1");
  // Without a namespace: libvirt puts the element in the one virDomainSetMetadata names.
  xml::Writer w;
  w.start("vm");
  w.attr("id", uuid);
  w.attr("generation", generation);
  w.end();
  return w.finish();
}

Result<std::string> write_domain_xml(const DomainSpec& spec,
                                     const std::vector<std::string>& disk_sources,
                                     const BootMediaPaths& media, const std::string& console_log) {
  if (!console_log.empty() && !is_safe_path(console_log))
    return internal_error("console log path must be absolute and printable");
  if (auto st = validate_domain_spec(spec); !st) return st.take_error();
  if (disk_sources.size() != spec.disks.size())
    return internal_error("one source path per disk is required");
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    if (!spec.disks[i].block_device.empty()) continue;  // its source is the device
    if (!is_safe_path(disk_sources[i]))
      return internal_error("disk source path must be absolute and printable");
  }
  if (spec.cdrom && !is_safe_path(media.cdrom))
    return internal_error("the CD-ROM's path must be absolute and printable");
  if (spec.cloud_init && !is_safe_path(media.seed))
    return internal_error("the seed's path must be absolute and printable");
  std::vector<BootDevice> boot = spec.boot;
  if (boot.empty() && spec.cdrom) boot = {BootDevice::disk, BootDevice::cdrom};

  xml::Writer w;
  w.start("domain");
  w.attr("type", spec.domain_type);
  w.element("name", spec.name);
  w.element("uuid", spec.uuid);

  w.start("metadata");
  w.start_ns(kMetadataPrefix, "vm", kMetadataNamespace);
  w.attr("id", spec.uuid);
  w.attr("generation", spec.generation);
  w.end();
  w.end();

  w.start("memory");
  w.attr("unit", "MiB");
  w.text(std::to_string(spec.memory_mib));
  w.end();
  w.element("vcpu", std::to_string(spec.vcpus));

  w.start("os");
  w.start("type");
  w.attr("arch", "x86_64");
  w.attr("machine", "pc");
  w.text("hvm");
  w.end();
  for (BootDevice b : boot) {
    w.start("boot");
    w.attr("dev", b == BootDevice::disk ? "hd" : b == BootDevice::cdrom ? "cdrom" : "network");
    w.end();
  }
  // SeaBIOS's own messages on the serial console too (a headless guest has no other
  // screen): "No bootable device." is then readable in the console and its log.
  w.start("bios");
  w.attr("useserial", "yes");
  w.end();
  w.end();

  w.start("features");
  w.empty("acpi");
  w.end();

  // A guest that powers off stays off: whether it should run again is the
  // controller's decision, not libvirt's.
  w.element("on_poweroff", "destroy");
  w.element("on_reboot", "restart");
  w.element("on_crash", "destroy");

  w.start("devices");
  bool has_scsi = false;
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = spec.disks[i];
    has_scsi = has_scsi || d.bus == DiskBus::scsi;
    w.start("disk");
    if (!d.block_device.empty()) {
      // A raw LV of a shared VG. cache='none' is what makes libvirt call a live
      // migration with this disk safe (no host page cache to go stale on the source),
      // and io='native' goes with it.
      w.attr("type", "block");
      w.attr("device", "disk");
      w.start("driver");
      w.attr("name", "qemu");
      w.attr("type", "raw");
      w.attr("cache", "none");
      w.attr("io", "native");
      w.end();
      w.start("source");
      w.attr("dev", d.block_device);
      w.end();
    } else {
      w.attr("type", "file");
      w.attr("device", "disk");
      w.start("driver");
      w.attr("name", "qemu");
      w.attr("type", "qcow2");
      w.end();
      w.start("source");
      w.attr("file", disk_sources[i]);
      w.end();
    }
    w.start("target");
    w.attr("dev", d.target_dev);
    w.attr("bus", bus_name(d.bus));
    w.end();
    w.end();
  }
  // CD-ROMs: read-only raw files on the second IDE channel.
  std::vector<std::string> cdroms;
  if (spec.cdrom) cdroms.push_back(media.cdrom);
  if (spec.cloud_init) cdroms.push_back(media.seed);
  for (std::size_t i = 0; i < cdroms.size(); ++i) {
    w.start("disk");
    w.attr("type", "file");
    w.attr("device", "cdrom");
    w.start("driver");
    w.attr("name", "qemu");
    w.attr("type", "raw");
    w.end();
    w.start("source");
    w.attr("file", cdroms[i]);
    w.end();
    w.start("target");
    w.attr("dev", i == 0 ? "hdc" : "hdd");
    w.attr("bus", "ide");
    w.end();
    w.empty("readonly");
    w.end();
  }
  if (has_scsi) {
    // Without this libvirt picks an emulated LSI controller.
    w.start("controller");
    w.attr("type", "scsi");
    w.attr("index", std::int64_t{0});
    w.attr("model", "virtio-scsi");
    w.end();
  }
  // NICs on host bridges, in the order given (the guest names them in PCI order).
  for (const auto& n : spec.nics) write_interface(w, n);
  // The QEMU guest agent's virtio-serial port (fsfreeze/fsthaw). libvirt picks the
  // host socket's path when it starts the domain; mode='bind' makes QEMU listen on it.
  w.start("channel");
  w.attr("type", "unix");
  w.start("source");
  w.attr("mode", "bind");
  w.end();
  w.start("target");
  w.attr("type", "virtio");
  w.attr("name", kGuestAgentChannel);
  w.end();
  w.end();
  // The serial console: a pty that libvirt's console stream opens (the agent's
  // console call), and virtlogd's log of everything it shows.
  w.start("serial");
  w.attr("type", "pty");
  if (!console_log.empty()) {
    w.start("log");
    w.attr("file", console_log);
    w.attr("append", "on");
    w.end();
  }
  w.start("target");
  w.attr("port", std::int64_t{0});
  w.end();
  w.end();
  w.start("console");
  w.attr("type", "pty");
  w.start("target");
  w.attr("type", "serial");
  w.attr("port", std::int64_t{0});
  w.end();
  w.end();
  // No <graphics> and no <video>: guests are headless.
  w.end();  // devices

  w.end();  // domain
  return w.finish();
}

Result<std::string> rewrite_cdrom_sources(
    std::string_view text, const std::vector<std::pair<std::string, std::string>>& moves) {
  auto doc = xml::parse(text, "domain");
  if (!doc) return doc.take_error();
  xml::XPath xp(doc->get());
  const auto sources = xp.nodes("/domain/devices/disk[@type='file' and @device='cdrom']/source");
  for (const auto& [here, there] : moves) {
    if (!is_safe_path(there)) return internal_error("a CD-ROM's new path must be absolute");
    bool found = false;
    for (xmlNode* src : sources) {
      if (xml::attribute(src, "file") != here) continue;
      if (auto st = xml::set_attribute(src, "file", there); !st) return st.take_error();
      found = true;
    }
    if (!found) return internal_error("the domain has no CD-ROM on " + here);
  }
  return xml::serialize(doc->get());
}

Result<DomainXmlInfo> read_domain_xml(std::string_view text) {
  auto doc = xml::parse(text, "domain");
  if (!doc) return doc.take_error();
  xmlNode* root = xmlDocGetRootElement(doc->get());
  if (std::string_view(reinterpret_cast<const char*>(root->name)) != "domain" || root->ns)
    return invalid("not a libvirt domain XML document");

  xml::XPath xp(doc->get());
  xp.register_ns("kf", kMetadataNamespace);
  DomainXmlInfo info;
  info.type = xml::attribute(root, "type").value_or("");
  info.name = xp.string("/domain/name").value_or("");
  info.uuid = xp.string("/domain/uuid").value_or("");
  for (xmlNode* src : xp.nodes("/domain/devices/disk[@type='file']/source")) {
    if (auto f = xml::attribute(src, "file")) info.disk_sources.push_back(*f);
  }
  for (xmlNode* src : xp.nodes("/domain/devices/disk[@type='file' and @device='cdrom']/source")) {
    if (auto f = xml::attribute(src, "file")) info.cdrom_sources.push_back(*f);
  }
  for (xmlNode* mac : xp.nodes("/domain/devices/interface/mac")) {
    if (auto a = xml::attribute(mac, "address")) info.nic_macs.push_back(*a);
  }
  for (xmlNode* src : xp.nodes("/domain/devices/disk[@type='block']/source")) {
    if (auto dev = xml::attribute(src, "dev")) info.block_sources.push_back(*dev);
  }

  const auto meta = xp.nodes("/domain/metadata/kf:vm");
  if (meta.empty()) return info;
  if (meta.size() > 1) return invalid("more than one kvmfleet metadata element");
  auto id = xml::attribute(meta.front(), "id");
  auto gen = xml::attribute(meta.front(), "generation");
  if (!id || !is_valid_uuid(*id)) return invalid("kvmfleet metadata has no valid id");
  std::int64_t generation = 0;
  if (!gen || gen->empty()) return invalid("kvmfleet metadata has no generation");
  const auto* first = gen->data();
  const auto* last = gen->data() + gen->size();
  auto [ptr, ec] = std::from_chars(first, last, generation);
  if (ec != std::errc{} || ptr != last || generation < 1)
    return invalid("kvmfleet metadata has an invalid generation");
  info.managed = true;
  info.vm_id = *id;
  info.generation = generation;
  return info;
}

}  // namespace kvmfleet::agent
