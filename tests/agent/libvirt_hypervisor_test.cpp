// LibvirtHypervisor against libvirt's built-in test driver (test:///default): a real
// libvirt connection with an in-memory fake hypervisor, no daemon. Its state is shared
// by every connection in this process, so each test uses fresh uuids and names and
// removes what it defined, even when it fails.

#include "kvmfleet/agent/libvirt_hypervisor.hpp"
#include "tests/doubles/agent/fake_boot_media.hpp"
#include "tests/doubles/common/manual_clock.hpp"

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/common/ids.hpp"

namespace kvmfleet::agent {
namespace {

constexpr const char* kUri = "test:///default";

class EventRecorder {
 public:
  void add(const LifecycleEvent& e) {
    std::lock_guard lk(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }
  // Waits until an event for `uuid` with `reason` has arrived. The deadline only keeps a
  // broken build from hanging.
  bool wait(const std::string& uuid, const std::string& reason) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(60), [&] { return find(uuid, reason) >= 0; });
  }
  std::vector<LifecycleEvent> for_uuid(const std::string& uuid) {
    std::lock_guard lk(mu_);
    std::vector<LifecycleEvent> out;
    for (const auto& e : events_)
      if (e.uuid == uuid) out.push_back(e);
    return out;
  }

 private:
  int find(const std::string& uuid, const std::string& reason) const {
    for (std::size_t i = 0; i < events_.size(); ++i)
      if (events_[i].uuid == uuid && events_[i].reason == reason) return static_cast<int>(i);
    return -1;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<LifecycleEvent> events_;
};

// A second, raw connection to look behind the wrapper's back.
struct RawConn {
  RawConn() : c(virConnectOpen(kUri)) {}
  ~RawConn() {
    if (c) virConnectClose(c);
  }
  virConnectPtr c;
};

class LibvirtHypervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LibvirtOptions o;
    o.uri = kUri;
    o.pool_path = "/var/lib/kvmfleet-test/images";  // the test driver keeps pools in memory
    hv_ = std::make_unique<LibvirtHypervisor>(o, clock_);
    ASSERT_TRUE(hv_->connected());
    sub_ = hv_->subscribe([this](const LifecycleEvent& e) { events_.add(e); });
  }

  void TearDown() override {
    for (const auto& uuid : made_) {
      (void)hv_->destroy(uuid);
      (void)hv_->undefine(uuid, true);
    }
    hv_->unsubscribe(sub_);
    hv_.reset();
  }

  DomainSpec spec(int disks = 0) {
    DomainSpec s;
    s.uuid = new_uuid();
    s.name = "t-" + s.uuid.substr(0, 8);
    s.memory_mib = 64;
    s.domain_type = "qemu";
    s.generation = 1;
    for (int i = 0; i < disks; ++i)
      s.disks.push_back({s.uuid + "-disk" + std::to_string(i) + ".qcow2", "", 1 + i,
                         DiskBus::virtio, std::string("vd") + static_cast<char>('a' + i)});
    made_.push_back(s.uuid);
    return s;
  }
  // A spec whose disk is the block device `device` (a shared volume), as `target`.
  DomainSpec block_spec(const std::string& device, const std::string& target) {
    DomainSpec s = spec();
    DomainDisk shared;
    shared.block_device = device;
    shared.target_dev = target;
    s.disks.push_back(shared);
    return s;
  }

  std::string unmanaged_uuid() {
    auto all = hv_->list_domains();
    if (!all) return {};
    for (const auto& d : *all)
      if (d.name == "test") return d.uuid;
    return {};
  }

  ManualClock clock_;
  std::unique_ptr<LibvirtHypervisor> hv_;
  EventRecorder events_;
  std::uint64_t sub_ = 0;
  std::vector<std::string> made_;
};

TEST_F(LibvirtHypervisorTest, Inventory) {
  auto inv = hv_->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_GT(inv->cpus, 0);
  EXPECT_GT(inv->memory_total_mib, 0);
  EXPECT_FALSE(inv->hostname.empty());
  EXPECT_NE(inv->libvirt_version.find('.'), std::string::npos);
  EXPECT_NE(inv->qemu_version.find('.'), std::string::npos);
  // The test driver offers no x86_64 kvm guests.
  EXPECT_EQ(inv->domain_type, "qemu");
  // Its built-in domain is not ours.
  auto it = std::find_if(inv->domains.begin(), inv->domains.end(),
                         [](const DomainStatus& d) { return d.name == "test"; });
  ASSERT_NE(it, inv->domains.end());
  EXPECT_FALSE(it->managed);
  EXPECT_EQ(it->generation, 0);
}

TEST_F(LibvirtHypervisorTest, LifecycleWithEvents) {
  auto s = spec();
  auto defined = hv_->define(s);
  ASSERT_TRUE(defined.ok()) << defined.error().message;
  EXPECT_EQ(defined->uuid, s.uuid);
  EXPECT_EQ(defined->name, s.name);
  EXPECT_EQ(defined->state, "stopped");
  EXPECT_TRUE(defined->managed);
  EXPECT_EQ(defined->generation, 1);
  EXPECT_TRUE(defined->persistent);
  ASSERT_TRUE(events_.wait(s.uuid, "defined:added"));

  auto started = hv_->start(s.uuid);
  ASSERT_TRUE(started.ok()) << started.error().message;
  EXPECT_EQ(started->state, "running");
  ASSERT_TRUE(events_.wait(s.uuid, "started:booted"));
  auto got = hv_->get_domain(s.uuid);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state, "running");

  // The test driver's guest obeys ACPI at once.
  auto down = hv_->shutdown(s.uuid);
  ASSERT_TRUE(down.ok()) << down.error().message;
  ASSERT_TRUE(events_.wait(s.uuid, "stopped:shutdown"));
  EXPECT_EQ(hv_->get_domain(s.uuid)->state, "stopped");

  ASSERT_TRUE(hv_->start(s.uuid).ok());
  auto rebooted = hv_->reboot(s.uuid);
  ASSERT_TRUE(rebooted.ok()) << rebooted.error().message;
  EXPECT_EQ(rebooted->state, "running");

  auto destroyed = hv_->destroy(s.uuid);
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  EXPECT_EQ(destroyed->state, "stopped");
  ASSERT_TRUE(events_.wait(s.uuid, "stopped:destroyed"));

  {
    auto u = hv_->undefine(s.uuid, false);
    ASSERT_TRUE(u.ok()) << u.error().message;
  }
  ASSERT_TRUE(events_.wait(s.uuid, "undefined:removed"));
  auto gone = hv_->get_domain(s.uuid);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::not_found);

  for (const auto& e : events_.for_uuid(s.uuid)) {
    EXPECT_EQ(e.name, s.name);
    EXPECT_EQ(e.at, clock_.now());
    if (e.reason == "started:booted") {
      EXPECT_EQ(e.state, "running");
    }
    if (e.reason == "stopped:destroyed" || e.reason == "undefined:removed") {
      EXPECT_EQ(e.state, "stopped");
    }
  }
}

TEST_F(LibvirtHypervisorTest, EverythingIsIdempotent) {
  auto s = spec();
  auto first = hv_->define(s);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto again = hv_->define(s);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*first, *again);

  ASSERT_TRUE(hv_->start(s.uuid).ok());
  auto second_start = hv_->start(s.uuid);
  ASSERT_TRUE(second_start.ok()) << second_start.error().message;
  EXPECT_EQ(second_start->state, "running");
  // Events arrive in order: had the repeated define or start acted, its event would
  // show before the destroy's.
  ASSERT_TRUE(hv_->destroy(s.uuid).ok());
  auto second_destroy = hv_->destroy(s.uuid);
  ASSERT_TRUE(second_destroy.ok()) << second_destroy.error().message;
  EXPECT_EQ(second_destroy->state, "stopped");
  ASSERT_TRUE(hv_->shutdown(s.uuid).ok());  // stopped already: no-op
  ASSERT_TRUE(events_.wait(s.uuid, "stopped:destroyed"));
  std::vector<std::string> reasons;
  for (const auto& e : events_.for_uuid(s.uuid)) reasons.push_back(e.reason);
  EXPECT_EQ(reasons,
            (std::vector<std::string>{"defined:added", "started:booted", "stopped:destroyed"}));

  ASSERT_TRUE(hv_->undefine(s.uuid, true).ok());
  EXPECT_TRUE(hv_->undefine(s.uuid, true).ok());  // absent: ok
}

TEST_F(LibvirtHypervisorTest, NewGenerationRedefines) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  s.generation = 2;
  s.memory_mib = 128;
  auto r = hv_->define(s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->generation, 2);
  ASSERT_TRUE(events_.wait(s.uuid, "defined:updated"));
  RawConn raw;
  ASSERT_NE(raw.c, nullptr);
  virDomainPtr d = virDomainLookupByUUIDString(raw.c, s.uuid.c_str());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(virDomainGetMaxMemory(d), 128ul * 1024);
  virDomainFree(d);
}

TEST_F(LibvirtHypervisorTest, UndefineRunningIsAConflict) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  auto r = hv_->undefine(s.uuid, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  EXPECT_EQ(hv_->get_domain(s.uuid)->state, "running");
}

TEST_F(LibvirtHypervisorTest, RebootOfAStoppedDomainIsAConflict) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  auto r = hv_->reboot(s.uuid);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
}

TEST_F(LibvirtHypervisorTest, UnknownUuidIsNotFound) {
  const auto uuid = new_uuid();
  for (auto r : {hv_->get_domain(uuid), hv_->start(uuid), hv_->shutdown(uuid), hv_->reboot(uuid),
                 hv_->destroy(uuid)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::not_found);
    EXPECT_NE(r.error().message.find(uuid), std::string::npos);
  }
  EXPECT_TRUE(hv_->undefine(uuid, false).ok());
}

TEST_F(LibvirtHypervisorTest, DefineRefusesBadNamesAndUuids) {
  auto good = spec();
  for (auto bad :
       {std::string("x'/><disk"), std::string("Upper"), std::string("a b"), std::string("-lead")}) {
    auto s = good;
    s.name = bad;
    auto r = hv_->define(s);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << bad;
  }
  auto s = good;
  s.uuid = "ABCDEF00-0000-4000-8000-000000000000";
  EXPECT_EQ(hv_->define(s).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(hv_->start("../../x").error().code, ErrorCode::invalid_argument);
  // Nothing reached libvirt.
  EXPECT_EQ(hv_->get_domain(good.uuid).error().code, ErrorCode::not_found);
}

TEST_F(LibvirtHypervisorTest, UnmanagedDomainsAreLeftAlone) {
  const auto uuid = unmanaged_uuid();
  ASSERT_FALSE(uuid.empty());
  auto d = hv_->get_domain(uuid);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->managed);
  EXPECT_EQ(hv_->destroy(uuid).error().code, ErrorCode::conflict);
  EXPECT_EQ(hv_->undefine(uuid, true).error().code, ErrorCode::conflict);
  EXPECT_EQ(hv_->get_domain(uuid)->state, "running");
  // Nor may a define take over its uuid or its name.
  auto s = spec();
  s.uuid = uuid;
  s.name = "test";
  EXPECT_EQ(hv_->define(s).error().code, ErrorCode::conflict);
  auto s2 = spec();
  s2.name = "test";
  EXPECT_EQ(hv_->define(s2).error().code, ErrorCode::conflict);
}

TEST_F(LibvirtHypervisorTest, DisksLiveInTheImagePool) {
  auto s = spec(2);
  auto r = hv_->define(s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  RawConn raw;
  ASSERT_NE(raw.c, nullptr);
  virStoragePoolPtr pool = virStoragePoolLookupByName(raw.c, "kvmfleet");
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(virStoragePoolIsActive(pool), 1);
  for (std::size_t i = 0; i < s.disks.size(); ++i) {
    virStorageVolPtr vol = virStorageVolLookupByName(pool, s.disks[i].volume.c_str());
    ASSERT_NE(vol, nullptr) << s.disks[i].volume;
    virStorageVolInfo info{};
    ASSERT_EQ(virStorageVolGetInfo(vol, &info), 0);
    EXPECT_EQ(info.capacity, static_cast<unsigned long long>(s.disks[i].size_gib) << 30);
    virStorageVolFree(vol);
  }
  // The domain points at them.
  virDomainPtr dom = virDomainLookupByUUIDString(raw.c, s.uuid.c_str());
  ASSERT_NE(dom, nullptr);
  char* xml = virDomainGetXMLDesc(dom, 0);
  ASSERT_NE(xml, nullptr);
  auto info = read_domain_xml(xml);
  free(xml);
  virDomainFree(dom);
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->disk_sources.size(), 2u);
  EXPECT_EQ(info->disk_sources[0], "/var/lib/kvmfleet-test/images/" + s.disks[0].volume);

  // Redefining the same generation keeps the volumes; undefine removes them.
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->undefine(s.uuid, true).ok());
  for (const auto& d : s.disks) {
    virStorageVolPtr vol = virStorageVolLookupByName(pool, d.volume.c_str());
    EXPECT_EQ(vol, nullptr) << d.volume;
    if (vol) virStorageVolFree(vol);
  }
  virStoragePoolFree(pool);
}

TEST_F(LibvirtHypervisorTest, UndefineKeepsVolumesWhenAsked) {
  auto s = spec(1);
  ASSERT_TRUE(hv_->define(s).ok());
  {
    auto u = hv_->undefine(s.uuid, false);
    ASSERT_TRUE(u.ok()) << u.error().message;
  }
  RawConn raw;
  virStoragePoolPtr pool = virStoragePoolLookupByName(raw.c, "kvmfleet");
  ASSERT_NE(pool, nullptr);
  virStorageVolPtr vol = virStorageVolLookupByName(pool, s.disks[0].volume.c_str());
  EXPECT_NE(vol, nullptr);
  if (vol) virStorageVolFree(vol);
  // A later undefine of the now absent domain still cleans up by the uuid prefix.
  ASSERT_TRUE(hv_->undefine(s.uuid, true).ok());
  vol = virStorageVolLookupByName(pool, s.disks[0].volume.c_str());
  EXPECT_EQ(vol, nullptr);
  if (vol) virStorageVolFree(vol);
  virStoragePoolFree(pool);
}

std::string domain_xml_of(const std::string& uuid) {
  RawConn raw;
  virDomainPtr dom = virDomainLookupByUUIDString(raw.c, uuid.c_str());
  if (!dom) return {};
  char* xml = virDomainGetXMLDesc(dom, 0);
  std::string out = xml ? xml : "";
  free(xml);
  virDomainFree(dom);
  return out;
}

TEST_F(LibvirtHypervisorTest, BlockDeviceDisksAreReferencedNotCreated) {
  auto s = spec(1);
  DomainDisk shared;
  // Does not exist: the controller activates the LV only before the domain starts.
  shared.block_device = "/dev/kvmfleet-test-vg/" + s.uuid.substr(0, 8);
  shared.target_dev = "vdb";
  s.disks.push_back(shared);
  auto r = hv_->define(s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto info = read_domain_xml(domain_xml_of(s.uuid));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->disk_sources,
            std::vector<std::string>{"/var/lib/kvmfleet-test/images/" + s.disks[0].volume});
  EXPECT_EQ(info->block_sources, std::vector<std::string>{shared.block_device});
  // libvirt kept the driver settings that make the disk safe to share.
  EXPECT_NE(domain_xml_of(s.uuid).find("cache='none'"), std::string::npos);

  RawConn raw;
  virStoragePoolPtr pool = virStoragePoolLookupByName(raw.c, "kvmfleet");
  ASSERT_NE(pool, nullptr);
  // Only the image-pool disk became a volume.
  virStorageVolPtr* vols = nullptr;
  const int n = virStoragePoolListAllVolumes(pool, &vols, 0);
  ASSERT_GE(n, 0);
  int ours = 0;
  for (int i = 0; i < n; ++i) {
    if (std::string_view(virStorageVolGetName(vols[i])).starts_with(s.uuid)) ++ours;
    virStorageVolFree(vols[i]);
  }
  free(vols);
  EXPECT_EQ(ours, 1);
  // A volume of someone else in the pool survives the undefine.
  const std::string keep = new_uuid() + "-keep.qcow2";
  virStorageVolPtr kept = virStorageVolCreateXML(
      pool, ("<volume><name>" + keep + "</name><capacity>1048576</capacity></volume>").c_str(), 0);
  ASSERT_NE(kept, nullptr);

  ASSERT_TRUE(hv_->start(s.uuid).ok());
  ASSERT_TRUE(hv_->destroy(s.uuid).ok());
  auto u = hv_->undefine(s.uuid, true);
  ASSERT_TRUE(u.ok()) << u.error().message;
  virStorageVolPtr gone = virStorageVolLookupByName(pool, s.disks[0].volume.c_str());
  EXPECT_EQ(gone, nullptr);
  if (gone) virStorageVolFree(gone);
  virStorageVolPtr still = virStorageVolLookupByName(pool, keep.c_str());
  EXPECT_NE(still, nullptr);
  if (still) {
    virStorageVolDelete(still, 0);
    virStorageVolFree(still);
  }
  virStorageVolFree(kept);
  virStoragePoolFree(pool);
}

TEST_F(LibvirtHypervisorTest, ADomainWithOnlyBlockDisksNeedsNoPoolWork) {
  auto s = block_spec("/dev/kvmfleet-test-vg/only", "vda");
  ASSERT_TRUE(hv_->define(s).ok());
  // Redefining with a new generation keeps it a block disk.
  s.generation = 2;
  ASSERT_TRUE(hv_->define(s).ok());
  auto info = read_domain_xml(domain_xml_of(s.uuid));
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->disk_sources.empty());
  EXPECT_EQ(info->block_sources, std::vector<std::string>{"/dev/kvmfleet-test-vg/only"});
  auto u = hv_->undefine(s.uuid, true);
  ASSERT_TRUE(u.ok()) << u.error().message;
}

TEST_F(LibvirtHypervisorTest, DomainsGetTheGuestAgentChannel) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  const auto xml = domain_xml_of(s.uuid);
  EXPECT_NE(xml.find("org.qemu.guest_agent.0"), std::string::npos) << xml;
}

TEST_F(LibvirtHypervisorTest, FsFreezeAndThaw) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  // Stopped: nothing to freeze, and not the guest agent's fault.
  auto stopped = hv_->fs_freeze(s.uuid);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().code, ErrorCode::conflict);
  EXPECT_FALSE(stopped.error().details.contains("reason"));
  EXPECT_EQ(hv_->fs_thaw(s.uuid).error().code, ErrorCode::conflict);

  ASSERT_TRUE(hv_->start(s.uuid).ok());
  // The test driver plays a guest agent with two filesystems.
  auto frozen = hv_->fs_freeze(s.uuid);
  ASSERT_TRUE(frozen.ok()) << frozen.error().message;
  EXPECT_EQ(*frozen, 2);
  auto thawed = hv_->fs_thaw(s.uuid);
  ASSERT_TRUE(thawed.ok()) << thawed.error().message;
  EXPECT_EQ(*thawed, 2);
  auto again = hv_->fs_thaw(s.uuid);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*again, 0);

  EXPECT_EQ(hv_->fs_freeze(new_uuid()).error().code, ErrorCode::not_found);
  EXPECT_EQ(hv_->fs_freeze("nope").error().code, ErrorCode::invalid_argument);
  const auto other = unmanaged_uuid();
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(hv_->fs_freeze(other).error().code, ErrorCode::conflict);
}

TEST_F(LibvirtHypervisorTest, BlockResizeChecksItsArgumentsAndTheDomain) {
  const std::string dev = "/dev/kvmfleet-test-vg/grow";
  auto s = block_spec(dev, "vdb");
  ASSERT_TRUE(hv_->define(s).ok());
  EXPECT_EQ(hv_->block_resize("nope", dev, 4096).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(hv_->block_resize(s.uuid, "/etc/shadow", 4096).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(hv_->block_resize(s.uuid, dev, 0).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(hv_->block_resize(s.uuid, dev, 1000).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(hv_->block_resize(new_uuid(), dev, 4096).error().code, ErrorCode::not_found);
  // Only a disk of the domain, and only while it runs.
  EXPECT_EQ(hv_->block_resize(s.uuid, "/dev/kvmfleet-test-vg/other", 4096).error().code,
            ErrorCode::not_found);
  EXPECT_EQ(hv_->block_resize(s.uuid, dev, 4096).error().code, ErrorCode::conflict);
  const auto other = unmanaged_uuid();
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(hv_->block_resize(other, dev, 4096).error().code, ErrorCode::conflict);
  // Running: the call reaches libvirt, whose test driver has no block resize (the
  // kernel lab resizes a real QEMU's disk); its refusal comes back as an error.
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  auto r = hv_->block_resize(s.uuid, dev, 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("virDomainBlockResize"), std::string::npos) << r.error().message;
  ASSERT_TRUE(hv_->destroy(s.uuid).ok());
}

TEST_F(LibvirtHypervisorTest, UnsubscribedCallbacksStop) {
  EventRecorder late;
  const auto id = hv_->subscribe([&](const LifecycleEvent& e) { late.add(e); });
  hv_->unsubscribe(id);
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(events_.wait(s.uuid, "defined:added"));
  EXPECT_TRUE(late.for_uuid(s.uuid).empty());
}

// The test driver cannot migrate, so the migration itself is tested in the lab
// (agent_migration_lab_test); here: validation, states and the busy marking.

// How far the tests move the hypervisor's clock between two status polls, instead of
// sleeping: a status call waits on that clock (up to 200 ms) for the outcome of a
// migration that libvirt already calls ended.
constexpr std::chrono::milliseconds kStatusPoll{200};
MigrationRequest migration_request(const std::string& op_id = "op-m1") {
  MigrationRequest r;
  r.op_id = op_id;
  r.destination_uri = "qemu+tcp://127.0.0.1/system";
  r.migrate_uri = "tcp://127.0.0.1";
  return r;
}

TEST_F(LibvirtHypervisorTest, MigrationValidatesBeforeLibvirt) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  auto r = migration_request();
  r.destination_uri = "qemu+ssh://127.0.0.1/system";
  auto bad = hv_->migrate(s.uuid, r);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
  r = migration_request();
  r.policy.max_downtime_ms = 0;
  EXPECT_EQ(hv_->migrate(s.uuid, r).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(hv_->migrate("nope", migration_request()).error().code, ErrorCode::invalid_argument);
  auto none = hv_->migration_status(s.uuid);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_EQ(none->state, MigrationState::none);
}

TEST_F(LibvirtHypervisorTest, MigrationStatusAndAbortWithoutAMigration) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  auto none = hv_->migration_status(s.uuid);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_EQ(none->state, MigrationState::none);
  EXPECT_EQ(none->op_id, "");
  auto abort = hv_->abort_migration(s.uuid);
  ASSERT_FALSE(abort.ok());
  EXPECT_EQ(abort.error().code, ErrorCode::conflict);

  const std::string unknown = new_uuid();
  EXPECT_EQ(hv_->migration_status(unknown).error().code, ErrorCode::not_found);
  EXPECT_EQ(hv_->abort_migration(unknown).error().code, ErrorCode::not_found);
  EXPECT_EQ(hv_->migrate(unknown, migration_request()).error().code, ErrorCode::not_found);
  // Stopped: nothing to migrate live.
  EXPECT_EQ(hv_->migrate(s.uuid, migration_request()).error().code, ErrorCode::conflict);

  const auto other = unmanaged_uuid();
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(hv_->migration_status(other).error().code, ErrorCode::conflict);
  EXPECT_EQ(hv_->migrate(other, migration_request()).error().code, ErrorCode::conflict);
}

TEST_F(LibvirtHypervisorTest, AMigrationThatCannotStartLeavesTheDomainUsable) {
  auto s = spec();
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  // The test driver has no migration support: the start fails, or the migration
  // fails at once; either way the domain is not left busy.
  auto started = hv_->migrate(s.uuid, migration_request());
  if (started.ok()) {
    MigrationStatus st;
    for (;;) {
      auto now = hv_->migration_status(s.uuid);
      ASSERT_TRUE(now.ok()) << now.error().message;
      st = *now;
      if (st.state != MigrationState::running) break;
      clock_.advance(kStatusPoll);
    }
    EXPECT_EQ(st.state, MigrationState::failed);
    EXPECT_TRUE(st.error.has_value());
  } else {
    EXPECT_NE(started.error().code, ErrorCode::invalid_argument) << started.error().message;
    auto none = hv_->migration_status(s.uuid);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none->state, MigrationState::none);
  }
  auto destroyed = hv_->destroy(s.uuid);
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  EXPECT_EQ(destroyed->state, "stopped");
}

TEST_F(LibvirtHypervisorTest, ImagePoolDisksDoNotMigrateLive) {
  auto s = spec(1);
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  auto refused = hv_->migrate(s.uuid, migration_request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_NE(refused.error().message.find("image pool"), std::string::npos)
      << refused.error().message;
  ASSERT_EQ(refused.error().details["disks"].size(), 1u);
  // Nothing was started.
  auto none = hv_->migration_status(s.uuid);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->state, MigrationState::none);
}

TEST_F(LibvirtHypervisorTest, BlockDeviceDisksPassTheMigrationCheck) {
  auto s = block_spec("/dev/kvmfleet-test-vg/mig", "vda");
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  // Not refused for its disk: libvirt gets the migration (and the test driver, which
  // cannot migrate, fails it).
  auto started = hv_->migrate(s.uuid, migration_request());
  if (!started.ok()) {
    EXPECT_FALSE(started.error().details.contains("disks")) << started.error().message;
  } else {
    for (;;) {
      auto now = hv_->migration_status(s.uuid);
      ASSERT_TRUE(now.ok());
      if (now->state != MigrationState::running) break;
      clock_.advance(kStatusPoll);
    }
  }
}

TEST(LibvirtHypervisorOptions, InventoryReportsTheMigrationAddress) {
  LibvirtOptions o;
  o.uri = kUri;
  o.migration_address = "10.77.0.11";
  LibvirtHypervisor hv(o);
  auto inv = hv.inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->migration_address, "10.77.0.11");
}

TEST(LibvirtHypervisorOptions, TcgOnlyReportsQemuGuestsAndRefusesKvmDomains) {
  LibvirtOptions o;
  o.uri = kUri;
  o.tcg_only = true;
  LibvirtHypervisor hv(o);
  auto inv = hv.inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->domain_type, "qemu");
  DomainSpec s;
  s.uuid = new_uuid();
  s.name = "t-" + s.uuid.substr(0, 8);
  s.memory_mib = 64;
  s.domain_type = "kvm";
  s.generation = 1;
  auto r = hv.define(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(r.error().details.value("field", ""), "spec.domain_type");
  EXPECT_EQ(hv.get_domain(s.uuid).error().code, ErrorCode::not_found);  // nothing defined
}

TEST(LibvirtHypervisorOffline, UnreachableLibvirtIsUnavailable) {
  LibvirtOptions o;
  o.uri = "test:///nonexistent/kvmfleet-no-such-file.xml";
  LibvirtHypervisor hv(o);
  EXPECT_FALSE(hv.connected());
  auto r = hv.inventory();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_NE(r.error().message.find("nonexistent"), std::string::npos);
}

// Waits in real time until another thread has got somewhere. The deadline only keeps a
// broken build from hanging.
bool eventually(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The monitor backs off on the injected clock: a libvirt that comes up while it backs
// off for an hour is connected once an hour has passed on the clock, at once in real
// time.
TEST(LibvirtHypervisorOffline, ReconnectBackoffRunsOnTheClock) {
  // The test driver reads its host from this file: absent, libvirt cannot be reached.
  const std::string file = ::testing::TempDir() + "kvmfleet-reconnect-" + new_uuid() + ".xml";
  struct RemoveAtEnd {
    ~RemoveAtEnd() { std::remove(path.c_str()); }
    const std::string& path;
  } remove_at_end{file};
  LibvirtOptions o;
  o.uri = "test://" + file;
  o.reconnect_min = std::chrono::hours(1);
  o.reconnect_max = std::chrono::hours(2);
  ManualClock clock;
  LibvirtHypervisor hv(o, clock);
  EXPECT_FALSE(hv.connected());
  // The monitor has tried again and backs off.
  ASSERT_TRUE(eventually([&] { return clock.sleepers() == 1; }));
  {
    std::ofstream out(file);
    out << "<node/>\n";  // a host with the driver's defaults and no domains
  }
  clock.advance(o.reconnect_min - std::chrono::minutes(1));
  EXPECT_FALSE(hv.connected());
  clock.advance(std::chrono::minutes(1));
  ASSERT_TRUE(eventually([&] { return hv.connected(); }));
  auto domains = hv.list_domains();
  ASSERT_TRUE(domains.ok()) << domains.error().message;
  EXPECT_TRUE(domains->empty());
}

TEST_F(LibvirtHypervisorTest, NicsReachLibvirtAsBridgeInterfaces) {
  auto s = spec();
  s.nics.push_back({"52:54:00:10:20:30", "br-lab", NicModel::virtio, 1500});
  s.nics.push_back({"52:54:00:10:20:31", "br-lab", NicModel::rtl8139, 0});
  ASSERT_TRUE(hv_->define(s).ok());
  const auto xml = domain_xml_of(s.uuid);
  // libvirt parsed the interfaces and writes them back as its own.
  EXPECT_NE(xml.find("<interface type='bridge'>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<mac address='52:54:00:10:20:30'/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<source bridge='br-lab'/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<model type='virtio'/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<model type='rtl8139'/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<mtu size='1500'/>"), std::string::npos) << xml;
  auto started = hv_->start(s.uuid);
  ASSERT_TRUE(started.ok()) << started.error().message;
}

}  // namespace
}  // namespace kvmfleet::agent

// Boot media through the real wrapper: the CD-ROMs and the seed reach libvirt's domain,
// and a define that fails part-way leaves no volume behind. (The test driver keeps its
// pools in memory, so disks made from images, which are real files, are the lab's.)
namespace kvmfleet::agent {
namespace {

class LibvirtBootMediaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvmfleet-lvboot-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    cache_ = std::make_unique<ImageCache>(dir_ + "/cache", source_);
    media_ = std::make_unique<BootMedia>(dir_, *cache_, tool_);
    LibvirtOptions o;
    o.uri = kUri;
    o.pool_name = "kvmfleet-boot";
    o.pool_path = dir_;
    o.boot_media = media_.get();
    hv_ = std::make_unique<LibvirtHypervisor>(o, clock_);
    ASSERT_TRUE(hv_->connected());
  }
  void TearDown() override {
    for (const auto& uuid : made_) (void)hv_->undefine(uuid, true);
    hv_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  DomainSpec spec() {
    DomainSpec s;
    s.uuid = new_uuid();
    s.name = "b-" + s.uuid.substr(0, 8);
    s.memory_mib = 64;
    s.domain_type = "qemu";
    made_.push_back(s.uuid);
    return s;
  }

  std::string dir_;
  FakeImageSource source_;
  FakeDiskTool tool_;
  std::unique_ptr<ImageCache> cache_;
  std::unique_ptr<BootMedia> media_;
  ManualClock clock_;
  std::unique_ptr<LibvirtHypervisor> hv_;
  std::vector<std::string> made_;
};

TEST_F(LibvirtBootMediaTest, CdromAndSeedReachTheDomain) {
  const std::string iso(5000, 'i');
  source_.put("installer", iso);
  auto s = spec();
  s.cdrom = CdromSpec{"installer", sha256_hex(iso), iso.size()};
  s.cloud_init = CloudInit{"#cloud-config\n{}\n", "", "web1", "", {}};
  s.boot = {BootDevice::cdrom};
  auto r = hv_->define(s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto info = read_domain_xml(domain_xml_of(s.uuid));
  ASSERT_TRUE(info.ok());
  const std::string seed = dir_ + "/" + s.uuid + "-seed.iso";
  EXPECT_EQ(info->cdrom_sources,
            (std::vector<std::string>{dir_ + "/cache/" + sha256_hex(iso) + ".img", seed}));
  EXPECT_TRUE(std::filesystem::exists(seed));
  EXPECT_NE(domain_xml_of(s.uuid).find("<boot dev='cdrom'/>"), std::string::npos);
  // A redefine (another host, or a new generation) writes the seed again.
  s.generation = 2;
  ASSERT_TRUE(hv_->define(s).ok());
  EXPECT_EQ(tool_.isos.size(), 2u);
}

TEST_F(LibvirtBootMediaTest, AFailedDefineLeavesNoVolumeAndNoDomain) {
  auto s = spec();
  s.disks.push_back({s.uuid + "-disk0.qcow2", "", 1, DiskBus::virtio, "vda"});
  s.cdrom = CdromSpec{"missing", std::string(64, 'a'), 10};  // the controller has none
  auto r = hv_->define(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::not_found);
  RawConn raw;
  virStoragePoolPtr pool = virStoragePoolLookupByName(raw.c, "kvmfleet-boot");
  ASSERT_NE(pool, nullptr);
  virStorageVolPtr vol = virStorageVolLookupByName(pool, s.disks[0].volume.c_str());
  EXPECT_EQ(vol, nullptr) << "the blank disk made before the failure is still there";
  if (vol) virStorageVolFree(vol);
  virStoragePoolFree(pool);
  EXPECT_TRUE(domain_xml_of(s.uuid).empty());
}

// A migration's destination makes a domain's CD-ROM files before the domain arrives,
// exactly as define would, and gives them up when it does not come (or left).
TEST_F(LibvirtBootMediaTest, PreparedMediaAreTheFilesADefineWouldUseAndGoAgain) {
  const std::string iso(3000, 'j');
  source_.put("installer", iso);
  const std::string sha = sha256_hex(iso);
  auto s = spec();
  s.cdrom = CdromSpec{"installer", sha, iso.size()};
  s.cloud_init = CloudInit{"#cloud-config\n{}\n", "", "web1", "", {}};
  auto prepared = hv_->prepare_media(s);
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  EXPECT_EQ(prepared->cdrom, dir_ + "/cache/" + sha + ".img");
  EXPECT_EQ(prepared->seed, dir_ + "/" + s.uuid + "-seed.iso");
  EXPECT_TRUE(std::filesystem::exists(prepared->cdrom));
  EXPECT_TRUE(std::filesystem::exists(prepared->seed));
  ASSERT_EQ(tool_.isos.size(), 1u);
  EXPECT_EQ(tool_.isos[0].label, "cidata");
  EXPECT_TRUE(domain_xml_of(s.uuid).empty()) << "preparing defines nothing";

  // Another domain from the same image defined here keeps the cached ISO.
  auto other = spec();
  other.cdrom = s.cdrom;
  ASSERT_TRUE(hv_->define(other).ok());
  auto removed = hv_->remove_media(s.uuid, sha);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(*removed, (std::vector<std::string>{prepared->seed}));
  EXPECT_FALSE(std::filesystem::exists(prepared->seed));
  EXPECT_TRUE(std::filesystem::exists(prepared->cdrom));
  // A domain defined here keeps its media.
  auto refused = hv_->remove_media(other.uuid, sha);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_EQ(refused.error().details.value("reason", ""), "domain_defined");
  // Once no domain uses it, the ISO goes too; a repeat removes nothing.
  ASSERT_TRUE(hv_->undefine(other.uuid, false).ok());
  removed = hv_->remove_media(s.uuid, sha);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_EQ(*removed, (std::vector<std::string>{prepared->cdrom}));
  removed = hv_->remove_media(s.uuid, sha);
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(removed->empty());

  // A spec without CD-ROMs needs nothing; an invalid one is refused.
  auto plain = spec();
  auto nothing = hv_->prepare_media(plain);
  ASSERT_TRUE(nothing.ok());
  EXPECT_TRUE(nothing->empty());
  auto bad = s;
  bad.cdrom->image_sha256 = "nope";
  EXPECT_EQ(hv_->prepare_media(bad).error().code, ErrorCode::invalid_argument);
}

// A running domain with CD-ROMs migrates only when the request names the destination's
// files for them.
TEST_F(LibvirtBootMediaTest, CdromsMigrateOnlyWhenTheDestinationPreparedThem) {
  const std::string iso(1000, 'k');
  source_.put("installer", iso);
  auto s = spec();
  s.cdrom = CdromSpec{"installer", sha256_hex(iso), iso.size()};
  s.cloud_init = CloudInit{"#cloud-config\n{}\n", "", "web1", "", {}};
  ASSERT_TRUE(hv_->define(s).ok());
  ASSERT_TRUE(hv_->start(s.uuid).ok());
  MigrationRequest req = migration_request();
  req.media.cdrom = "/elsewhere/cache/x.img";  // the seed is missing
  auto refused = hv_->migrate(s.uuid, req);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  EXPECT_EQ(refused.error().details.value("reason", ""), "boot_media_not_prepared");
  ASSERT_EQ(refused.error().details["cdroms"].size(), 1u);
  EXPECT_EQ(hv_->migration_status(s.uuid)->state, MigrationState::none);

  // Named: libvirt gets the migration (the test driver cannot migrate and fails it).
  req.media.seed = "/elsewhere/" + s.uuid + "-seed.iso";
  auto started = hv_->migrate(s.uuid, req);
  if (!started.ok()) {
    EXPECT_FALSE(started.error().details.contains("reason")) << started.error().message;
  } else {
    for (;;) {
      auto now = hv_->migration_status(s.uuid);
      ASSERT_TRUE(now.ok());
      if (now->state != MigrationState::running) break;
      clock_.advance(kStatusPoll);
    }
  }
  ASSERT_TRUE(hv_->destroy(s.uuid).ok());
}

}  // namespace
}  // namespace kvmfleet::agent
