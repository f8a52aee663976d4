// HA through kvmfleet's API on two real libvirtd hosts (tests/e2e/two_host_lab.hpp):
// a host that loses power has its HA VMs restarted on the other host only once it is
// proven down, never because it stopped heartbeating; a killed agent is no failure; a
// QEMU that dies on a healthy host is started again there. Every step is checked with
// virsh on every host: no VM ever runs twice.
#include "tests/e2e/two_host_lab.hpp"
#include "tests/lab/ipmi_bmc.hpp"

#include <atomic>
#include <csignal>
#include <set>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

class HaE2E : public e2e::TwoHostLab {
 protected:
  // Heartbeats every second (the agents'), a host unreachable after 3 s of silence and
  // down after 6 s: the tuning docs/ha.md gives for fast failover.
  static void SetUpTestSuite() {
    controller_config_ = {{"unreachable_after_ms", 3000}, {"down_after_ms", 6000}};
    TwoHostLab::SetUpTestSuite();
  }

  // mig-a's power, as its BMC sees it. The BMC's thread asks for a power-off; the test's
  // thread carries it out (the lab is not thread-safe) in its wait loops.
  inline static std::atomic<bool> a_powered_{true};
  inline static std::atomic<bool> a_off_requested_{false};
  static lab::BmcPower a_power() {
    return {[] { return a_powered_.load(); },
            [] {
              a_off_requested_ = true;
              for (int i = 0; i < 600 && a_powered_; ++i) std::this_thread::sleep_for(100ms);
            },
            {}};
  }
  static void serve_power() {
    if (a_off_requested_ && a_powered_) {
      EXPECT_TRUE(lab_->kill_host(hosts_["mig-a"]).ok());
      a_powered_ = false;
    }
  }
  // What each host's own libvirtd says, asked inside the host (a partition does not stop
  // the question): the number of hosts running `vm`.
  static int copies_inside(const std::string& vm) {
    int n = 0;
    for (auto& [name, h] : hosts_) {
      auto r = lab_->exec_in_host(h, {"virsh", "-q", "-c", "qemu:///system", "domstate", vm});
      n += r && r->success() && r->out.substr(0, r->out.find('\n')) == "running";
    }
    return n;
  }

  // A 64 MiB VM made on mig-a (mig-b cordoned meanwhile, so that it is not pinned there).
  static ::testing::AssertionResult create_on_a(const std::string& vm, bool ha) {
    if (!api("PATCH", "/v1/hosts/mig-b", R"({"schedulable":false})"))
      return ::testing::AssertionFailure() << "cordon mig-b";
    auto c = api("POST", "/v1/vms?wait=120",
                 json{{"name", vm}, {"memory_mib", 64}, {"ha", ha}, {"start", true}}.dump(), 150);
    (void)api("PATCH", "/v1/hosts/mig-b", R"({"schedulable":true})");
    if (!c) return ::testing::AssertionFailure() << "create " << vm << ": " << c.error().message;
    if ((*c)["state"] != "succeeded") return ::testing::AssertionFailure() << c->dump();
    auto rec = api("GET", "/v1/vms/" + vm);
    if (!rec || (*rec)["host"] != "mig-a")
      return ::testing::AssertionFailure() << vm << " is not on mig-a";
    return ::testing::AssertionSuccess();
  }
  static std::string host_state(const std::string& name) {
    auto h = api("GET", "/v1/hosts/" + name);
    return h ? (*h)["state"].get<std::string>() : "";
  }
  static json vm_record(const std::string& vm) {
    auto r = api("GET", "/v1/vms/" + vm);
    return r ? *r : json::object();
  }
  // The vm.ha_restart operations of `vm`.
  static std::vector<json> ha_restarts(const std::string& vm) {
    std::vector<json> out;
    const json id = vm_record(vm).value("id", json());
    auto ops = api("GET", "/v1/operations?limit=200");
    if (ops)
      for (const auto& op : (*ops)["items"])
        if (op["kind"] == "vm.ha_restart" && op["target"]["id"] == id) out.push_back(op);
    return out;
  }
  // Polls `done` every 200 ms for up to `seconds`, checking on each pass that `vm`
  // runs on at most one host.
  template <typename F>
  static bool wait_for(F&& done, int seconds, const std::string& vm) {
    for (int i = 0; i < seconds * 5; ++i) {
      serve_power();
      EXPECT_LE(copies_inside(vm), 1) << "a VM must never run twice" << hosts_report(vm);
      if (done()) return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }
  // mig-a powered on again: its libvirtd and agent back, heard by the controller.
  static void bring_back_a() {
    auto back = lab_->restart_host(hosts_["mig-a"]);
    ASSERT_TRUE(back.ok()) << back.error().message;
    hosts_["mig-a"] = *back;
    a_powered_ = true;
    a_off_requested_ = false;
    ASSERT_TRUE(start_agent("mig-a").ok());
    ASSERT_TRUE(wait_host_up("mig-a").ok());
    ASSERT_TRUE(wait_fresh_heartbeats("mig-a").ok());
  }
};

TEST_F(HaE2E, AHostThatLostPowerHasItsHaVmRestartedElsewhereOnlyOnceConfirmedDown) {
  ASSERT_TRUE(create_on_a("ha1", true));
  ASSERT_TRUE(create_on_a("plain1", false));
  ASSERT_EQ(domstate("mig-a", "ha1"), "running");

  // Power loss: every process of mig-a's namespaces, its guests' QEMUs too.
  ASSERT_TRUE(lab_->kill_host(hosts_["mig-a"]).ok());
  // Silent is not dead: through unreachable to down, and for a while after, nothing
  // restarts.
  ASSERT_TRUE(wait_for([] { return host_state("mig-a") == "down"; }, 90, "ha1"));
  std::this_thread::sleep_for(5s);
  EXPECT_EQ(domstate("mig-b", "ha1"), "absent");
  EXPECT_TRUE(ha_restarts("ha1").empty());
  EXPECT_EQ(vm_record("ha1")["state"], "unknown");

  // An admin confirms it is off.
  auto confirmed = api("POST", "/v1/hosts/mig-a/confirm-down", R"({"reason":"PDU shows it off"})");
  ASSERT_TRUE(confirmed.ok()) << confirmed.error().message;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for(
      [] {
        const json r = vm_record("ha1");
        return r["host"] == "mig-b" && r["state"] == "running";
      },
      120, "ha1"))
      << vm_record("ha1").dump() << hosts_report("ha1");
  std::printf("[   INFO   ] ha1 ran on mig-b %.1f s after the confirm-down\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_EQ(domstate("mig-b", "ha1"), "running");
  EXPECT_EQ(running_copies("ha1"), 1);
  const auto restarts = ha_restarts("ha1");
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(restarts[0]["params"]["evidence"]["kind"], "confirm_down");
  EXPECT_EQ(restarts[0]["params"]["from_host"], "mig-a");
  // Without HA it stays, recorded stopped: it runs nowhere.
  EXPECT_EQ(vm_record("plain1")["host"], "mig-a");
  EXPECT_TRUE(wait_for([] { return vm_record("plain1")["state"] == "stopped"; }, 10, "plain1"));
  EXPECT_EQ(running_copies("plain1"), 0);

  // mig-a comes back: its stale definition of ha1 is not started.
  bring_back_a();
  EXPECT_EQ(domstate("mig-a", "ha1"), "shut off");
  EXPECT_EQ(running_copies("ha1"), 1);
  EXPECT_EQ(vm_record("ha1")["host"], "mig-b");
  EXPECT_EQ(vm_record("ha1")["state"], "running");
  EXPECT_TRUE(remove_vm("ha1"));
  EXPECT_TRUE(remove_vm("plain1"));
}

TEST_F(HaE2E, AKilledAgentIsNoReasonToRestartItsVms) {
  ASSERT_TRUE(create_on_a("ha2", true));
  ASSERT_TRUE(runner_.kill(agents_["mig-a"], SIGKILL).ok());
  (void)runner_.wait(agents_["mig-a"], 10s);
  ASSERT_TRUE(wait_for([] { return host_state("mig-a") == "down"; }, 90, "ha2"));
  std::this_thread::sleep_for(5s);
  EXPECT_EQ(domstate("mig-a", "ha2"), "running");
  EXPECT_EQ(domstate("mig-b", "ha2"), "absent");
  EXPECT_TRUE(ha_restarts("ha2").empty());
  ASSERT_TRUE(start_agent("mig-a").ok());
  ASSERT_TRUE(wait_host_up("mig-a").ok());
  ASSERT_TRUE(wait_fresh_heartbeats("mig-a").ok());
  EXPECT_TRUE(wait_for([] { return vm_record("ha2")["state"] == "running"; }, 30, "ha2"));
  EXPECT_EQ(vm_record("ha2")["host"], "mig-a");
  EXPECT_EQ(running_copies("ha2"), 1);
  EXPECT_TRUE(remove_vm("ha2"));
}

TEST_F(HaE2E, AnHaVmWhoseQemuDiesStartsAgainOnItsHost) {
  ASSERT_TRUE(create_on_a("ha3", true));
  auto pid_of = []() -> pid_t {
    auto r = lab_->exec_in_host(hosts_["mig-a"], {"cat", "/run/libvirt/qemu/ha3.pid"});
    if (!r || !r->success()) return 0;
    try {
      return static_cast<pid_t>(std::stol(r->out));
    } catch (...) {
      return 0;
    }
  };
  const pid_t qemu = pid_of();
  ASSERT_GT(qemu, 0);
  // The guest's QEMU dies (the pid libvirt recorded for this one domain).
  ASSERT_EQ(::kill(qemu, SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] {
        const pid_t now = pid_of();
        return now > 0 && now != qemu && domstate("mig-a", "ha3") == "running";
      },
      90, "ha3"))
      << vm_record("ha3").dump() << hosts_report("ha3");
  const auto restarts = ha_restarts("ha3");
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(restarts[0]["params"]["reason"], "crashed");
  EXPECT_TRUE(wait_for([] { return vm_record("ha3")["state"] == "running"; }, 30, "ha3"));
  EXPECT_EQ(vm_record("ha3")["host"], "mig-a");
  EXPECT_EQ(vm_record("ha3")["desired_state"], "running");
  EXPECT_EQ(vm_record("ha3")["ha"]["restarts"], 1);
  EXPECT_TRUE(remove_vm("ha3"));
}

TEST_F(HaE2E, ACutOffHostIsFencedThroughItsBmcBeforeItsHaVmRunsElsewhere) {
  ASSERT_TRUE(create_on_a("ha4", true));
  const std::string password = "bmc-lab-secret";
  auto bmc = lab::IpmiBmc::start(runner_, lab_->work_dir() / "bmc-mig-a", password, a_power());
  ASSERT_TRUE(bmc.ok()) << bmc.error().message;
  json options = json::object();
  for (const auto& [k, v] : (*bmc)->fence_options(password)) options[k] = v;
  auto set = api("PUT", "/v1/hosts/mig-a/fencing",
                 json{{"devices", {{{"agent", "fence_ipmilan"}, {"options", options}}}}}.dump());
  ASSERT_TRUE(set.ok()) << set.error().message;

  // mig-a is cut off; its guest keeps running there. It must be powered off before its
  // VM runs anywhere else.
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(lab_->partition_host(hosts_["mig-a"]).ok());
  ASSERT_TRUE(wait_for(
      [] {
        const json r = vm_record("ha4");
        return r["host"] == "mig-b" && r["state"] == "running";
      },
      120, "ha4"))
      << vm_record("ha4").dump() << "\nBMC:\n"
      << (*bmc)->requests() << hosts_report("ha4");
  std::printf("[   INFO   ] ha4 ran on mig-b %.1f s after mig-a was cut off\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_FALSE(a_powered_) << "the VM runs elsewhere while mig-a was never powered off";
  EXPECT_NE((*bmc)->requests().find("set power 0"), std::string::npos) << (*bmc)->requests();
  auto host = api("GET", "/v1/hosts/mig-a");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ((*host)["state"], "fenced");
  const auto restarts = ha_restarts("ha4");
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(restarts[0]["params"]["evidence"]["kind"], "fence");
  EXPECT_EQ(copies_inside("ha4"), 1);

  ASSERT_TRUE(lab_->heal_host(hosts_["mig-a"]).ok());
  bring_back_a();
  EXPECT_EQ(domstate("mig-a", "ha4"), "shut off");
  EXPECT_EQ(copies_inside("ha4"), 1);
  EXPECT_TRUE(api("PUT", "/v1/hosts/mig-a/fencing", R"({"devices":[]})").ok());
  EXPECT_TRUE(remove_vm("ha4"));
}

}  // namespace
