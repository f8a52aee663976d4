// Hosts that join a storage pool after it was made (storage_pool.connect, by the API or
// by the storage monitor), and volumes left active by a guest that powered itself off,
// over the FakeAgentApi, whose in-memory LVM keeps lvmlockd's rules.
#include "kvmfleet/shared_storage/storage_monitor.hpp"
#include "tests/unit/controller_fixture.hpp"

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

class PoolHostsTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    start_with_two_hosts();
  }

  static StoragePool iscsi_pool(const std::string& name) {
    StoragePool p;
    p.name = name;
    p.type = PoolType::iscsi;
    p.targets.push_back(
        IscsiPoolTarget{"10.77.0.1:3260", "iqn.2026-01.io.kvmfleet:lun1", 1, "", ""});
    return p;
  }

  Operation run(Result<Submitted> s) {
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    if (!s.ok()) return Operation{};
    return wait_done(s->operation.id);
  }

  void make_pool(std::vector<std::string> hosts = {}, StoragePool p = iscsi_pool("pool1")) {
    auto op = run(ctl_->storage().create_pool(admin(), p, std::move(hosts), {}));
    ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  }
  StoragePool pool(const std::string& name = "pool1") {
    return state_->read([&](const ClusterState::Data& d) {
      const StoragePool* p = d.find_pool(name);
      return p ? *p : StoragePool{};
    });
  }
  // Operations of one kind, oldest first.
  std::vector<Operation> ops_of(std::string_view kind) {
    auto out = state_->read([&](const ClusterState::Data& d) {
      std::vector<Operation> v;
      for (const auto& [_, op] : d.operations)
        if (op.kind == kind) v.push_back(op);
      return v;
    });
    std::sort(out.begin(), out.end(),
              [](const Operation& a, const Operation& b) { return a.created_at < b.created_at; });
    return out;
  }
  // Why the scheduler would not put a VM on `vol` on `host` ("" when it would).
  std::string filtered_by(const std::string& host, const std::string& vol) {
    VmSpec s = spec("probe");
    DiskSpec d;
    d.volume = vol;
    s.disks.push_back(d);
    auto placed = ctl_->vms().place(s);
    if (!placed) return "refused: " + placed.error().message;
    for (const auto& v : placed->verdicts)
      if (v.host == host) return v.filter;
    return "no verdict";
  }
  std::string make_volume(const std::string& name) {
    auto op = run(ctl_->storage().create_volume(admin(), name, "pool1", kGiB, {}));
    EXPECT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
    return op.result.value("volume_id", "");
  }
  // VM `name` on volume `vol`, pinned to `host`, started.
  void running_vm(const std::string& name, const std::string& vol, const std::string& host) {
    VmSpec s = spec(name);
    DiskSpec d;
    d.volume = vol;
    s.disks.push_back(d);
    s.pinned_host = host;
    auto op = run(ctl_->vms().create_vm(admin(), s, true, {}));
    ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  }
  // The guest shut itself down: libvirt reports it, and the reconciler records it stopped.
  void guest_powers_off(const std::string& name, const std::string& state = "stopped") {
    const Vm v = vm(name);
    agents_.set_state(v.host, v.id, state);
    Principal agent{"a", "host:" + v.host, Role::agent, v.host};
    ASSERT_TRUE(ctl_->hosts().domain_events(agent, v.host, {{v.id, name, state, "shutdown"}}).ok());
  }
  std::map<std::string, LvMode> holders(const std::string& lv) {
    return agents_.holders("pool1", lv);
  }
  int calls_on(const std::string& host, const std::string& name) {
    int n = 0;
    for (const auto& c : agents_.calls()) n += c.host == host && c.name == name;
    return n;
  }
  static bool has_metric(const StorageMonitor& m, const std::string& line) {
    return m.metrics().find(line + "\n") != std::string::npos;
  }
};

TEST_F(PoolHostsTest, HostRegisteredAfterAPoolForEveryHostIsConnectedByTheMonitor) {
  make_pool();
  EXPECT_TRUE(pool().all_hosts);
  make_volume("disk1");
  host_up("node3");
  EXPECT_EQ(pool().hosts.count("node3"), 0u);
  EXPECT_EQ(filtered_by("node3", "disk1"), "storage");

  StorageMonitor monitor(*state_, agents_, config_, clock_, &ctl_->storage());
  monitor.refresh();
  auto connects = ops_of(op_kind::pool_connect);
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0].target_id, "pool1");
  EXPECT_EQ(connects[0].params["hosts"], nlohmann::json({"node3"}));
  EXPECT_EQ(connects[0].requested_by, "storage-monitor");
  const auto op = wait_done(connects[0].id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result["hosts"]["node3"], "usable");
  EXPECT_EQ(op.result.value("hosts_usable", 0), 1);
  EXPECT_TRUE(has_metric(monitor, "kvmfleet_storage_pool_connects_total 1"));

  // Discovery, login, lockstart on node3; the VG was made once, by the pool's creation.
  const auto p = pool();
  ASSERT_TRUE(p.hosts.count("node3"));
  EXPECT_TRUE(p.usable_on("node3"));
  EXPECT_EQ(p.hosts.at("node3").devices.size(), 1u);
  EXPECT_TRUE(agents_.discovered["node3"].count("10.77.0.1:3260"));
  EXPECT_EQ(agents_.sessions["node3"].size(), 1u);
  EXPECT_TRUE(agents_.vgs["pool1"].lockstarted.count("node3"));
  EXPECT_EQ(agents_.count("vg_create"), 1);
  EXPECT_TRUE(p.usable_on("node1"));
  EXPECT_TRUE(p.usable_on("node2"));
  EXPECT_EQ(filtered_by("node3", "disk1"), "");

  // Listed now: the next pass submits nothing.
  monitor.refresh();
  EXPECT_EQ(ops_of(op_kind::pool_connect).size(), 1u);
}

TEST_F(PoolHostsTest, PoolForNamedHostsIsExtendedOnlyThroughTheApi) {
  make_pool({"node1"});
  EXPECT_FALSE(pool().all_hosts);
  StorageMonitor monitor(*state_, agents_, config_, clock_, &ctl_->storage());
  monitor.refresh();
  EXPECT_TRUE(ops_of(op_kind::pool_connect).empty());
  EXPECT_EQ(pool().hosts.count("node2"), 0u);

  auto op = run(ctl_->storage().connect_pool(admin(), "pool1", {"node2"}, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.kind, op_kind::pool_connect);
  EXPECT_TRUE(pool().usable_on("node2"));
  EXPECT_TRUE(pool().usable_on("node1"));
  EXPECT_EQ(agents_.count("vg_create"), 1);
  // The field survives a restart.
  shutdown();
  boot();
  EXPECT_FALSE(pool().all_hosts);
  EXPECT_TRUE(pool().usable_on("node2"));
}

TEST_F(PoolHostsTest, ConnectIsRefusedAtTheDoorWhenTheClusterForbidsIt) {
  auto code = [&](Result<Submitted> r) {
    return r.ok() ? std::string("accepted") : std::string(to_string(r.error().code));
  };
  EXPECT_EQ(code(ctl_->storage().connect_pool(admin(), "pool1", {"node2"}, {})), "not_found");
  make_pool({"node1"});
  EXPECT_EQ(code(ctl_->storage().connect_pool(admin(), "pool1", {"ghost"}, {})), "not_found");
  ASSERT_TRUE(
      ctl_->hosts().register_host("node3", "http://127.0.0.1:1").ok());  // down: no heartbeat
  auto down = ctl_->storage().connect_pool(admin(), "pool1", {"node2", "node3"}, {});
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, ErrorCode::conflict);
  EXPECT_EQ(down.error().details.value("host", ""), "node3");
  // A pool that is not ready.
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    StoragePool p = *d.find_pool("pool1");
                    p.state = PoolState::creating;
                    b.put_pools.push_back(p);
                    return {};
                  })
                  .ok());
  EXPECT_EQ(code(ctl_->storage().connect_pool(admin(), "pool1", {"node2"}, {})), "conflict");
  EXPECT_TRUE(ops_of(op_kind::pool_connect).empty());
}

TEST_F(PoolHostsTest, HostThatCannotConnectIsRecordedAndThePoolStays) {
  make_pool();
  host_up("node3");
  agents_.fail_next("iscsi_login:node3", Error(ErrorCode::unavailable, "no route to host"), 3);
  StorageMonitor monitor(*state_, agents_, config_, clock_, &ctl_->storage());
  monitor.refresh();
  auto connects = ops_of(op_kind::pool_connect);
  ASSERT_EQ(connects.size(), 1u);
  const auto op = wait_done(connects[0].id);
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_EQ(op.error->code, ErrorCode::unavailable);
  EXPECT_NE(op.error->details["hosts"].value("node3", "").find("no route to host"),
            std::string::npos)
      << op.error->details.dump();
  // The pool is untouched but for node3's record, which keeps the error.
  const auto p = pool();
  EXPECT_EQ(p.state, PoolState::ready);
  EXPECT_TRUE(p.usable_on("node1"));
  EXPECT_TRUE(p.usable_on("node2"));
  ASSERT_TRUE(p.hosts.count("node3"));
  EXPECT_FALSE(p.usable_on("node3"));
  EXPECT_NE(p.hosts.at("node3").error.find("no route to host"), std::string::npos);
  EXPECT_EQ(agents_.count("iscsi_logout"), 0);
  // The monitor tries a listed host again only after storage_reconnect_interval; that
  // connect succeeds once the path is back.
  monitor.refresh();
  EXPECT_EQ(ops_of(op_kind::pool_connect).size(), 1u);
  clock_.advance(config_.storage_reconnect_interval);
  monitor.refresh();
  connects = ops_of(op_kind::pool_connect);
  ASSERT_EQ(connects.size(), 2u);
  for (const auto& c : connects) {
    const auto again = wait_done(c.id);
    if (c.id != op.id) {
      ASSERT_EQ(again.state, OpState::succeeded) << (again.error ? again.error->message : "");
    }
  }
  EXPECT_TRUE(pool().usable_on("node3"));
  EXPECT_TRUE(pool().hosts.at("node3").error.empty());
  EXPECT_NE(monitor.metrics().find("kvmfleet_storage_pool_reconnects_total 1"), std::string::npos);
  // The API connects a listed host at once, too.
  auto by_hand = run(ctl_->storage().connect_pool(admin(), "pool1", {"node3"}, {}));
  EXPECT_EQ(by_hand.state, OpState::succeeded) << (by_hand.error ? by_hand.error->message : "");
}

// A host whose iSCSI session to the pool's target fails is no longer usable for the
// pool (the scheduler stops placing its VMs there) until open-iscsi recovers it; no
// reconnect runs meanwhile, since a login would only find the session there.
TEST_F(PoolHostsTest, FailingIscsiSessionMakesTheHostUnusableUntilItRecovers) {
  make_pool();
  StorageMonitor monitor(*state_, agents_, config_, clock_, &ctl_->storage());
  agents_.failed_sessions["node2"].insert("iqn.2026-01.io.kvmfleet:lun1");
  monitor.refresh();
  auto p = pool();
  EXPECT_TRUE(p.usable_on("node1"));
  EXPECT_FALSE(p.usable_on("node2"));
  EXPECT_FALSE(p.hosts.at("node2").connected);
  EXPECT_NE(p.hosts.at("node2").error.find("is FAILED"), std::string::npos)
      << p.hosts.at("node2").error;
  EXPECT_NE(monitor.metrics().find("kvmfleet_storage_sessions_lost_total 1"), std::string::npos);
  clock_.advance(config_.storage_reconnect_interval);
  monitor.refresh();
  EXPECT_TRUE(ops_of(op_kind::pool_connect).empty());
  EXPECT_FALSE(pool().usable_on("node2"));
  // open-iscsi recovers the session: the next pass sees it, the host is usable again.
  agents_.failed_sessions["node2"].clear();
  monitor.refresh();
  EXPECT_TRUE(pool().usable_on("node2"));
  EXPECT_TRUE(pool().hosts.at("node2").error.empty());
}

// A session that is gone (logged out by hand, a reboot without node.startup) is logged
// in again by a reconnect, and the host is usable again.
TEST_F(PoolHostsTest, MissingIscsiSessionIsLoggedInAgain) {
  make_pool();
  StorageMonitor monitor(*state_, agents_, config_, clock_, &ctl_->storage());
  agents_.sessions["node2"].clear();
  const int logins = agents_.count("iscsi_login");
  monitor.refresh();
  // (The reconnect may already have run, so the pool's error is not looked at here.)
  EXPECT_NE(monitor.metrics().find("kvmfleet_storage_sessions_lost_total 1"), std::string::npos);
  auto connects = ops_of(op_kind::pool_connect);
  ASSERT_EQ(connects.size(), 1u);
  const auto op = wait_done(connects[0].id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(agents_.count("iscsi_login"), logins + 1);
  EXPECT_TRUE(pool().usable_on("node2"));
  monitor.refresh();
  EXPECT_TRUE(pool().usable_on("node2"));
  EXPECT_EQ(ops_of(op_kind::pool_connect).size(), 1u);
}

TEST_F(PoolHostsTest, LockspaceThatCannotStartLeavesTheHostConnectedButNotUsable) {
  make_pool();
  host_up("node3");
  agents_.lock_daemons_down["node3"] = true;
  auto op = run(ctl_->storage().connect_pool(admin(), "pool1", {"node3"}, {}));
  ASSERT_EQ(op.state, OpState::failed);
  const auto s = pool().hosts.at("node3");
  EXPECT_TRUE(s.connected);
  EXPECT_FALSE(s.lockspace_started);
  EXPECT_NE(s.error.find("lockstart"), std::string::npos) << s.error;
}

TEST_F(PoolHostsTest, FcHostIsConnectedOnceItSeesEveryWwid) {
  StoragePool fc;
  fc.name = "pool1";
  fc.type = PoolType::fc;
  fc.wwids = {"3600a0b80000f1e2d"};
  agents_.fc["node1"] = {{"3600a0b80000f1e2d", "/dev/sdb"}};
  agents_.fc["node2"] = {{"3600a0b80000f1e2d", "/dev/sdc"}};
  make_pool({}, fc);
  host_up("node3");
  agents_.fc["node3"] = {{"3600a0b8ffffffff", "/dev/sdb"}};
  auto missing = run(ctl_->storage().connect_pool(admin(), "pool1", {"node3"}, {}));
  ASSERT_EQ(missing.state, OpState::failed);
  EXPECT_NE(pool().hosts.at("node3").error.find("no FC LUN with WWID 3600a0b80000f1e2d"),
            std::string::npos);
  agents_.fc["node3"].push_back({"3600a0b80000f1e2d", "/dev/sdd"});
  auto op = run(ctl_->storage().connect_pool(admin(), "pool1", {"node3"}, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(pool().hosts.at("node3").devices, std::vector<std::string>{"/dev/sdd"});
  EXPECT_TRUE(pool().usable_on("node3"));
  EXPECT_EQ(agents_.count("iscsi_login"), 0);
}

TEST_F(PoolHostsTest, ConnectingAHostAgainIsHarmless) {
  make_pool();
  auto op = run(ctl_->storage().connect_pool(admin(), "pool1", {"node2", "node2"}, {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.params["hosts"], nlohmann::json({"node2"}));
  EXPECT_TRUE(pool().usable_on("node2"));
  EXPECT_EQ(agents_.sessions["node2"].size(), 1u);
  EXPECT_EQ(agents_.count("vg_create"), 1);
}

TEST_F(PoolHostsTest, VolumeLeftActiveByAGuestThatPoweredOffIsDeactivatedOnItsHostOnly) {
  make_pool();
  make_volume("disk1");
  make_volume("disk2");
  make_volume("disk3");
  running_vm("vm1", "disk1", "node1");
  running_vm("vm2", "disk2", "node1");
  running_vm("vm3", "disk3", "node2");
  guest_powers_off("vm1");
  guest_powers_off("vm3", "crashed");
  ASSERT_EQ(vm("vm1").state, VmState::stopped);
  ASSERT_EQ(vm("vm3").state, VmState::crashed);
  // No vm.stop ran: the LVs are still held where the guests ran.
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node1", LvMode::exclusive}}));
  EXPECT_EQ(holders("disk3"), (std::map<std::string, LvMode>{{"node2", LvMode::exclusive}}));

  const int node1_before = calls_on("node1", "lv_activate:inactive");
  const int node2_before = calls_on("node2", "lv_activate:inactive");
  StorageMonitor monitor(*state_, agents_, config_, clock_);
  monitor.refresh();
  EXPECT_TRUE(holders("disk1").empty());
  EXPECT_TRUE(holders("disk3").empty());
  // vm2 runs: its volume stays where it is.
  EXPECT_EQ(holders("disk2"), (std::map<std::string, LvMode>{{"node1", LvMode::exclusive}}));
  EXPECT_TRUE(has_metric(monitor, "kvmfleet_volume_deactivations_total 2"));
  EXPECT_EQ(calls_on("node1", "lv_activate:inactive"), node1_before + 1);
  EXPECT_EQ(calls_on("node2", "lv_activate:inactive"), node2_before + 1);

  // Inactive now: the next pass calls nothing, and the VM starts again as usual.
  monitor.refresh();
  EXPECT_EQ(calls_on("node1", "lv_activate:inactive"), node1_before + 1);
  EXPECT_EQ(calls_on("node2", "lv_activate:inactive"), node2_before + 1);
  auto start = run(ctl_->vms().vm_action(admin(), "vm1", op_kind::vm_start, {}, {}));
  ASSERT_EQ(start.state, OpState::succeeded) << (start.error ? start.error->message : "");
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node1", LvMode::exclusive}}));
}

TEST_F(PoolHostsTest, StoppedVmWithAnOperationOrAnLvHeldElsewhereIsLeftAlone) {
  make_pool();
  make_volume("disk1");
  running_vm("vm1", "disk1", "node1");
  guest_powers_off("vm1");
  const Vm v = vm("vm1");
  // An operation on the VM is under way (recorded, not run here): it owns the volume.
  Operation busy;
  busy.id = "00000000-0000-4000-8000-000000000001";
  busy.kind = std::string(op_kind::vm_start);
  busy.target_type = "vm";
  busy.target_id = v.id;
  busy.state = OpState::running;
  busy.created_at = clock_.now();
  record_operation(busy);
  const int before = agents_.count("lv_activate:inactive");
  StorageMonitor monitor(*state_, agents_, config_, clock_);
  monitor.refresh();
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node1", LvMode::exclusive}}));
  EXPECT_EQ(agents_.count("lv_activate:inactive"), before);

  // The operation ended: the volume is let go of on node1.
  busy.state = OpState::failed;
  busy.finished_at = clock_.now();
  record_operation(busy);
  monitor.refresh();
  EXPECT_TRUE(holders("disk1").empty());

  // The LV held on another host than the VM's (not kvmfleet's doing) is not touched.
  Host node2 = state_->read([](const ClusterState::Data& d) { return *d.find_host("node2"); });
  ASSERT_TRUE(agents_.lv_activate(node2, "x", "pool1", "disk1", LvMode::exclusive).ok());
  monitor.refresh();
  EXPECT_EQ(holders("disk1"), (std::map<std::string, LvMode>{{"node2", LvMode::exclusive}}));
  EXPECT_EQ(calls_on("node2", "lv_activate:inactive"), 0);
  EXPECT_TRUE(has_metric(monitor, "kvmfleet_volume_deactivations_total 1"));
  EXPECT_TRUE(has_metric(monitor, "kvmfleet_volume_deactivation_failures_total 0"));
}

}  // namespace
