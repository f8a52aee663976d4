// The controller's networks over the FakeAgentApi: network.create makes the network on
// every host that is up and records each host's result; GET shows per host whether it
// is usable from what the host reports; records survive a controller restart.
#include "kvmfleet/network/network_service.hpp"
#include "kvmfleet/network/vm_nics.hpp"

#include <set>
#include "tests/unit/controller_fixture.hpp"

using namespace kvmfleet;
using nlohmann::json;

namespace {

class NetworkControllerTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    for (const char* h : {"node1", "node2"})
      agents_.set_links(h, {{"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""}});
    start_with_two_hosts();
  }

  static Network vlan_net(const std::string& name = "lab", int vlan = 42) {
    Network n;
    n.name = name;
    n.bridge = "br-" + name;
    n.vlan = vlan;
    n.uplink = "eth1";
    return n;
  }

  Operation run(Result<Submitted> s) {
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    if (!s.ok()) return Operation{};
    return wait_done(s->operation.id);
  }

  // A heartbeat carrying the links the double's host has now.
  void report_links(const std::string& host) {
    HostInventory inv = state_->host(host)->inventory;
    inv.links = agents_.links_of(host);
    Principal agent{"a", "host:" + host, Role::agent, host};
    ASSERT_TRUE(ctl_->hosts().heartbeat(agent, host, "", inv).ok());
  }

  json view(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) {
      const Network* n = d.find_network(name);
      return n ? network_view(*n, d) : json();
    });
  }
};

TEST_F(NetworkControllerTest, CreateMakesTheNetworkOnEveryUpHostAndRecordsEachResult) {
  auto op = run(ctl_->networks().create(admin(), vlan_net(), {}));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.kind, "network.create");
  EXPECT_EQ(op.result["hosts_ready"], 2);
  EXPECT_EQ(op.result["hosts"]["node1"], "ready");
  const auto n = state_->network("lab");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->hosts.at("node1").ready);
  EXPECT_TRUE(n->hosts.at("node2").ready);
  // Usable once the hosts report the links they now have.
  EXPECT_EQ(view("lab")["hosts"]["node1"]["usable"], false);
  report_links("node1");
  report_links("node2");
  EXPECT_EQ(view("lab")["hosts"]["node1"]["usable"], true);
  EXPECT_EQ(view("lab")["hosts"]["node2"]["usable"], true);
  EXPECT_EQ(view("lab")["vlan"], 42);
}

TEST_F(NetworkControllerTest, AHostThatFailsKeepsItsErrorAndTheOthersAreReady) {
  agents_.set_links("node2", {});  // no uplink there
  auto op = run(ctl_->networks().create(admin(), vlan_net(), {}));
  ASSERT_EQ(op.state, OpState::succeeded);
  EXPECT_EQ(op.result["hosts_ready"], 1);
  EXPECT_EQ(op.result["hosts_total"], 2);
  EXPECT_NE(op.result["hosts"]["node2"].get<std::string>().find("eth1"), std::string::npos);
  report_links("node1");
  report_links("node2");
  const auto v = view("lab");
  EXPECT_EQ(v["hosts"]["node1"]["usable"], true);
  EXPECT_EQ(v["hosts"]["node2"]["usable"], false);
  EXPECT_EQ(v["hosts"]["node2"]["setup"], "failed");
  EXPECT_EQ(v["hosts"]["node2"]["reason"], "no link br-lab");
}

TEST_F(NetworkControllerTest, AHostThatIsNotUpIsShownUnusable) {
  ASSERT_EQ(run(ctl_->networks().create(admin(), vlan_net(), {})).state, OpState::succeeded);
  report_links("node1");
  record_host_state("node1", HostState::unreachable);
  EXPECT_EQ(view("lab")["hosts"]["node1"]["usable"], false);
  EXPECT_EQ(view("lab")["hosts"]["node1"]["reason"], "host is unreachable");
}

TEST_F(NetworkControllerTest, NamesBridgesAndVlansBelongToOneNetwork) {
  ASSERT_EQ(run(ctl_->networks().create(admin(), vlan_net(), {})).state, OpState::succeeded);
  auto reason = [&](Network n) {
    auto s = ctl_->networks().create(admin(), std::move(n), {});
    EXPECT_FALSE(s.ok());
    if (s.ok()) return std::string();
    EXPECT_EQ(s.error().code, ErrorCode::conflict);
    return s.error().details.value("reason", "");
  };
  EXPECT_EQ(reason(vlan_net("lab", 43)), "network_exists");
  Network same_bridge = vlan_net("other", 43);
  same_bridge.bridge = "br-lab";
  EXPECT_EQ(reason(same_bridge), "bridge_in_use");
  EXPECT_EQ(reason(vlan_net("other", 42)), "vlan_in_use");
  Network bad = vlan_net("bad", 5000);
  auto s = ctl_->networks().create(admin(), bad, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(s.error().details["reason"], "vlan_out_of_range");
  EXPECT_FALSE(state_->network("bad"));
}

TEST_F(NetworkControllerTest, DeleteForgetsTheNetwork) {
  ASSERT_EQ(run(ctl_->networks().create(admin(), vlan_net(), {})).state, OpState::succeeded);
  ASSERT_TRUE(ctl_->networks().remove("lab").ok());
  EXPECT_FALSE(state_->network("lab"));
  auto again = ctl_->networks().remove("lab");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::not_found);
}

TEST_F(NetworkControllerTest, NetworksSurviveAControllerRestart) {
  ASSERT_EQ(run(ctl_->networks().create(admin(), vlan_net(), {})).state, OpState::succeeded);
  shutdown();
  boot();
  const auto n = state_->network("lab");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->vlan, 42);
  EXPECT_TRUE(n->hosts.at("node2").ready);
}

// --- VM NICs

class VmNicTest : public NetworkControllerTest {
 protected:
  void SetUp() override {
    NetworkControllerTest::SetUp();
    // "lab" is usable on node1 only: node2 has no uplink for its VLAN.
    agents_.set_links("node2", {});
    ASSERT_EQ(run(ctl_->networks().create(admin(), vlan_net(), {})).state, OpState::succeeded);
    report_links("node1");
    report_links("node2");
  }

  VmSpec with_nics(const std::string& name, std::vector<NicSpec> nics) {
    VmSpec s = spec(name);
    s.nics = std::move(nics);
    return s;
  }
  static NicSpec nic(const std::string& network, const std::string& mac = "",
                     NicModel model = NicModel::virtio) {
    NicSpec n;
    n.network = network;
    n.mac = mac;
    n.model = model;
    return n;
  }
  Result<Submitted> create(const VmSpec& s, bool start = false) {
    return ctl_->vms().create_vm(admin(), s, start, {});
  }
};

TEST_F(VmNicTest, MacsAreAllocatedUniqueUnderThePrefixAndReachTheAgent) {
  auto c = create(with_nics("web1", {nic("lab"), nic("lab", "", NicModel::e1000)}), true);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  const Vm v = vm("web1");
  EXPECT_EQ(v.host, "node1");  // the only host where "lab" is usable
  ASSERT_EQ(v.spec.nics.size(), 2u);
  for (const auto& n : v.spec.nics) {
    EXPECT_EQ(n.mac.substr(0, 9), "52:54:00:") << n.mac;
    EXPECT_TRUE(check_mac("mac", n.mac)) << n.mac;
    EXPECT_EQ(n.bridge, "br-lab");
    EXPECT_EQ(n.mtu, 1500);
  }
  EXPECT_NE(v.spec.nics[0].mac, v.spec.nics[1].mac);
  const auto domain = agents_.spec_of(v.id);
  ASSERT_EQ(domain.nics.size(), 2u);
  EXPECT_EQ(domain.nics[0], (DomainNic{v.spec.nics[0].mac, "br-lab", NicModel::virtio, 1500}));
  EXPECT_EQ(domain.nics[1].model, NicModel::e1000);

  std::set<std::string> seen{v.spec.nics[0].mac, v.spec.nics[1].mac};
  for (int i = 0; i < 10; ++i) {
    auto more = create(with_nics("vm" + std::to_string(i), {nic("lab")}));
    ASSERT_TRUE(more.ok()) << more.error().message;
    const auto mac = vm("vm" + std::to_string(i)).spec.nics.at(0).mac;
    EXPECT_TRUE(seen.insert(mac).second) << mac << " given twice";
  }
}

TEST_F(VmNicTest, AGivenMacIsKeptAndATakenOneIsRefused) {
  auto c = create(with_nics("web1", {nic("lab", "52:54:00:AB:CD:EF")}));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(vm("web1").spec.nics.at(0).mac, "52:54:00:ab:cd:ef");
  auto taken = create(with_nics("web2", {nic("lab", "52:54:00:ab:cd:ef")}));
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, ErrorCode::conflict);
  EXPECT_EQ(taken.error().details["reason"], "mac_in_use");
  EXPECT_EQ(taken.error().details["vm"], "web1");
  EXPECT_FALSE(state_->vm("web2"));
  // The service checks MACs itself, whoever built the spec.
  auto multicast = create(with_nics("web3", {nic("lab", "01:00:5e:00:00:01")}));
  ASSERT_FALSE(multicast.ok());
  EXPECT_EQ(multicast.error().details["reason"], "invalid_mac");
  auto twice =
      create(with_nics("web3", {nic("lab", "52:54:00:00:00:01"), nic("lab", "52:54:00:00:00:01")}));
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().details["reason"], "duplicate_mac");
  EXPECT_FALSE(state_->vm("web3"));
}

TEST_F(VmNicTest, AnUnknownNetworkIsNotFoundAndNothingIsMade) {
  auto c = create(with_nics("web1", {nic("nowhere")}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::not_found);
  EXPECT_EQ(c.error().details["reason"], "unknown_network");
  EXPECT_FALSE(state_->vm("web1"));
}

TEST_F(VmNicTest, MacsSurviveARestartAndStayTaken) {
  auto c = create(with_nics("web1", {nic("lab")}));
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  const std::string mac = vm("web1").spec.nics.at(0).mac;
  shutdown();
  boot();
  runner_->start();
  EXPECT_EQ(vm("web1").spec.nics.at(0).mac, mac);
  auto again = create(with_nics("web2", {nic("lab", mac)}));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().details["reason"], "mac_in_use");
}

TEST_F(VmNicTest, ANetworkInUseCannotBeDeleted) {
  auto c = create(with_nics("web1", {nic("lab")}));
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  auto del = ctl_->networks().remove("lab");
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, ErrorCode::conflict);
  EXPECT_EQ(del.error().details["reason"], "network_in_use");
  EXPECT_EQ(del.error().details["vms"], json::array({"web1"}));
}

TEST_F(VmNicTest, TheDryRunSaysWhichHostsLackTheNetwork) {
  auto p = ctl_->vms().place(with_nics("web1", {nic("lab")}));
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->host, "node1");
  bool judged = false;
  for (const auto& v : p->verdicts) {
    if (v.host != "node2") continue;
    judged = true;
    EXPECT_FALSE(v.feasible);
    EXPECT_EQ(v.filter, "networks");
    EXPECT_EQ(v.reason, "network 'lab' is not usable on this host");
  }
  EXPECT_TRUE(judged);
  // Pinned where the network is not: nothing fits, and the error says why.
  VmSpec pinned = with_nics("web2", {nic("lab")});
  pinned.pinned_host = "node2";
  auto c = create(pinned);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::insufficient_capacity);
  EXPECT_EQ(c.error().details["hosts"]["node2"], "network 'lab' is not usable on this host");
}

TEST_F(VmNicTest, AMigrationToAHostWithoutTheNetworkIsRefusedBeforeAnythingMoves) {
  auto c = create(with_nics("web1", {nic("lab")}), true);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  ASSERT_EQ(vm("web1").state, VmState::running);
  auto live = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_FALSE(live.ok());
  EXPECT_EQ(live.error().code, ErrorCode::insufficient_capacity);
  EXPECT_EQ(live.error().details["hosts"]["node2"], "network 'lab' is not usable on this host");
  auto anywhere = ctl_->migration().migrate_vm(admin(), "web1", "", {}, {});
  ASSERT_FALSE(anywhere.ok());
  EXPECT_EQ(agents_.count("migrate"), 0);
  EXPECT_EQ(vm("web1").host, "node1");

  // Stopped, it would move cold: refused the same way.
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_destroy, std::monostate{}, {});
  ASSERT_TRUE(stop.ok()) << stop.error().message;
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  auto cold = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_FALSE(cold.ok());
  EXPECT_EQ(cold.error().details["hosts"]["node2"], "network 'lab' is not usable on this host");
  EXPECT_EQ(vm("web1").host, "node1");

  // Once node2 has the network, the same move goes.
  agents_.set_links("node2", {{"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""}});
  Host node2 = *state_->host("node2");
  ASSERT_TRUE(agents_.network_ensure(node2, "x", vlan_net()).ok());
  report_links("node2");
  auto moved = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(moved.ok()) << moved.error().message;
  ASSERT_EQ(wait_done(moved->operation.id).state, OpState::succeeded);
  EXPECT_EQ(vm("web1").host, "node2");
}

// ---- NIC hot plug -------------------------------------------------------------

class NicHotplugTest : public VmNicTest {
 protected:
  void make(const std::string& name, bool start, const std::string& host = "node1") {
    VmSpec s = spec(name);
    s.pinned_host = host;
    auto c = create(s, start);
    ASSERT_TRUE(c.ok()) << c.error().message;
    ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  }
  Result<Submitted> add(const std::string& vm, const NicSpec& n) {
    return ctl_->networks().add_nic(admin(), vm, n, {});
  }
  Result<Submitted> remove(const std::string& vm, const std::string& mac) {
    return ctl_->networks().remove_nic(admin(), vm, mac, {});
  }
};

TEST_F(NicHotplugTest, ARunningVmGetsAndLosesANicAndTheSpecFollowsTheAgent) {
  make("web1", true);
  const Vm before = vm("web1");
  auto op = run(add("web1", nic("lab", "", NicModel::e1000)));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.kind, "vm.nic_add");
  EXPECT_EQ(op.result["live"], true);
  EXPECT_EQ(op.result["host"], "node1");
  const Vm with = vm("web1");
  ASSERT_EQ(with.spec.nics.size(), 1u);
  const NicSpec n = with.spec.nics[0];
  EXPECT_EQ(op.result["mac"], n.mac);
  EXPECT_EQ(n.mac.substr(0, 9), "52:54:00:");
  EXPECT_EQ(n.bridge, "br-lab");
  EXPECT_EQ(n.mtu, 1500);
  EXPECT_EQ(n.model, NicModel::e1000);
  EXPECT_GT(with.generation, before.generation);
  // The agent attached it with the generation the record now has.
  EXPECT_EQ(agents_.spec_of(with.id).nics,
            (std::vector<DomainNic>{{n.mac, "br-lab", NicModel::e1000, 1500}}));
  EXPECT_EQ(agents_.get_domain(*state_->host("node1"), with.id)->generation, with.generation);
  // The MAC is taken now, for any VM.
  make("web2", false);
  auto taken = add("web2", nic("lab", n.mac));
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().details["reason"], "mac_in_use");

  // Upper case in the path is the same MAC.
  std::string upper = n.mac;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto gone = run(remove("web1", upper));
  ASSERT_EQ(gone.state, OpState::succeeded) << (gone.error ? gone.error->message : "");
  EXPECT_EQ(gone.kind, "vm.nic_remove");
  EXPECT_EQ(gone.result["live"], true);
  EXPECT_TRUE(vm("web1").spec.nics.empty());
  EXPECT_TRUE(agents_.spec_of(with.id).nics.empty());
  EXPECT_EQ(agents_.count("attach_nic"), 1);
  EXPECT_EQ(agents_.count("detach_nic"), 1);
}

TEST_F(NicHotplugTest, AStoppedVmGetsTheChangeInItsDefinitionOnly) {
  make("web1", false);
  auto op = run(add("web1", nic("lab", "52:54:00:00:00:42")));
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(op.result["live"], false);
  EXPECT_EQ(vm("web1").spec.nics.at(0).mac, "52:54:00:00:00:42");
  EXPECT_EQ(vm("web1").state, VmState::stopped);
  // It starts with it: the next definition has it too.
  auto start = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_start, std::monostate{}, {});
  ASSERT_EQ(wait_done(start->operation.id).state, OpState::succeeded);
  EXPECT_EQ(agents_.spec_of(vm("web1").id).nics.size(), 1u);
}

TEST_F(NicHotplugTest, RefusalsComeBeforeAnyAgentCallWithStableReasons) {
  make("web1", true);
  make("far", true, "node2");
  auto unknown = add("web1", nic("nowhere"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::not_found);
  EXPECT_EQ(unknown.error().details["reason"], "unknown_network");
  // node2 has no uplink for the VLAN: the scheduler's rule says the network is unusable.
  auto unusable = add("far", nic("lab"));
  ASSERT_FALSE(unusable.ok());
  EXPECT_EQ(unusable.error().code, ErrorCode::conflict);
  EXPECT_EQ(unusable.error().details["reason"], "network_unusable_on_host");
  auto bad_mac = add("web1", nic("lab", "01:00:5e:00:00:01"));
  ASSERT_FALSE(bad_mac.ok());
  EXPECT_EQ(bad_mac.error().details["reason"], "invalid_mac");
  auto no_vm = add("ghost", nic("lab"));
  ASSERT_FALSE(no_vm.ok());
  EXPECT_EQ(no_vm.error().code, ErrorCode::not_found);
  auto no_nic = remove("web1", "52:54:00:00:00:01");
  ASSERT_FALSE(no_nic.ok());
  EXPECT_EQ(no_nic.error().code, ErrorCode::not_found);
  EXPECT_EQ(no_nic.error().details["reason"], "unknown_nic");
  auto garbage = remove("web1", "not-a-mac");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, ErrorCode::invalid_argument);
  // A VM in another state (here: paused) keeps its NICs as they are.
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                    Vm v = *d.find_vm("web1");
                    v.state = VmState::paused;
                    b.put_vms.push_back(v);
                    return {};
                  })
                  .ok());
  auto paused = add("web1", nic("lab"));
  ASSERT_FALSE(paused.ok());
  EXPECT_EQ(paused.error().code, ErrorCode::conflict);
  EXPECT_EQ(agents_.count("attach_nic"), 0);
  EXPECT_EQ(agents_.count("detach_nic"), 0);
}

TEST_F(NicHotplugTest, WhatTheAgentRefusesLeavesTheSpecAsItWas) {
  make("web1", true);
  agents_.fail_next("attach_nic", Error(ErrorCode::conflict, "domain is migrating"));
  auto op = run(add("web1", nic("lab")));
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_TRUE(vm("web1").spec.nics.empty());

  auto added = run(add("web1", nic("lab", "52:54:00:00:00:07")));
  ASSERT_EQ(added.state, OpState::succeeded);
  const auto generation = vm("web1").generation;
  // The guest does not let it go: the NIC stays in the spec, and the error says why.
  agents_.detach_pending = true;
  auto pending = run(remove("web1", "52:54:00:00:00:07"));
  ASSERT_EQ(pending.state, OpState::failed);
  EXPECT_EQ(pending.error->details["reason"], "detach_pending");
  EXPECT_EQ(vm("web1").spec.nics.size(), 1u);
  EXPECT_EQ(vm("web1").generation, generation);
  // Once it does, a repeat finishes.
  agents_.detach_pending = false;
  auto done = run(remove("web1", "52:54:00:00:00:07"));
  ASSERT_EQ(done.state, OpState::succeeded);
  EXPECT_TRUE(vm("web1").spec.nics.empty());
}

}  // namespace
