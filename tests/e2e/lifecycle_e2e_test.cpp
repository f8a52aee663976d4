// End to end on real KVM: controller + agent + a private libvirtd. Every claim is
// checked with libvirt's own tools (virsh, QEMU's pid file), not only our API.
#include "e2e_cluster.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

class LifecycleE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new e2e::Cluster();
    auto st = cluster_->start();
    if (!st) {
      start_error_ = st.error().message;
    }
    std::printf("kvmfleet e2e: guests run with %s\n",
                cluster_->kvm() ? "KVM (/dev/kvm present)" : "TCG (no /dev/kvm)");
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << start_error_; }

  e2e::Cluster& c() { return *cluster_; }

  json op_wait(const json& op, int seconds = 120) {
    auto r = c().api_json(
        "GET", "/v1/operations/" + op["id"].get<std::string>() + "?wait=" + std::to_string(seconds),
        {}, seconds + 30);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : json{};
  }

  static std::string cmdline(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (auto& ch : s)
      if (ch == '\0') ch = ' ';
    return s;
  }

  static e2e::Cluster* cluster_;
  static std::string start_error_;
};

e2e::Cluster* LifecycleE2E::cluster_ = nullptr;
std::string LifecycleE2E::start_error_;

TEST_F(LifecycleE2E, CreateStartStopDeleteAsSeenByVirsh) {
  auto created =
      c().api_json("POST", "/v1/vms?wait=120",
                   R"({"name":"life1","vcpus":1,"memory_mib":64,"disks":[{"size_gib":1}]})", 150);
  ASSERT_TRUE(created.ok()) << created.error().message;
  ASSERT_EQ((*created)["state"], "succeeded") << created->dump();
  EXPECT_EQ(c().domstate("life1"), "shut off");

  auto started = c().api_json("POST", "/v1/vms/life1/start?wait=120", {}, 150);
  ASSERT_TRUE(started.ok());
  ASSERT_EQ((*started)["state"], "succeeded") << started->dump();
  EXPECT_EQ(c().domstate("life1"), "running");
  const pid_t qemu = c().qemu_pid("life1");
  ASSERT_GT(qemu, 0);
  const std::string cmd = cmdline(qemu);
  EXPECT_NE(cmd.find("qemu-system-x86_64"), std::string::npos) << cmd;
  if (c().kvm()) {
    EXPECT_NE(cmd.find("-accel kvm"), std::string::npos) << cmd;
  }
  // Its disk is a qcow2 volume the agent made through libvirt's storage API.
  auto xml = c().in_host({"virsh", "-c", "qemu:///system", "dumpxml", "life1"});
  ASSERT_TRUE(xml.ok() && xml->success());
  EXPECT_NE(xml->out.find("-disk0.qcow2"), std::string::npos);
  EXPECT_NE(xml->out.find("kvmfleet"), std::string::npos);

  auto vm = c().api_json("GET", "/v1/vms/life1");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)["state"], "running");
  EXPECT_EQ((*vm)["host"], c().host());

  // A BIOS-only guest ignores ACPI, so a graceful stop must time out...
  auto stop = c().api_json("POST", "/v1/vms/life1/stop?wait=60", R"({"timeout_s":2})", 90);
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ((*stop)["state"], "failed");
  EXPECT_EQ((*stop)["error"]["code"], "timeout");
  EXPECT_EQ(c().domstate("life1"), "running");
  // ...and a forced one powers it off.
  auto forced =
      c().api_json("POST", "/v1/vms/life1/stop?wait=60", R"({"timeout_s":2,"force":true})", 90);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ((*forced)["state"], "succeeded") << forced->dump();
  EXPECT_EQ(c().domstate("life1"), "shut off");

  auto del = c().api_json("DELETE", "/v1/vms/life1?wait=60", {}, 90);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ((*del)["state"], "succeeded") << del->dump();
  EXPECT_EQ(c().domstate("life1"), "absent");
  auto gone = c().api("GET", "/v1/vms/life1");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->status, 404u);
}

TEST_F(LifecycleE2E, ControllerKilledMidOperationFinishesItAfterRestart) {
  auto created = c().api_json("POST", "/v1/vms?wait=120",
                              R"({"name":"crash1","memory_mib":64,"start":true})", 150);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ((*created)["state"], "succeeded") << created->dump();
  ASSERT_EQ(c().domstate("crash1"), "running");

  // The guest ignores ACPI: this stop waits 6 s and then forces, so it is in flight
  // when the controller dies.
  auto stop = c().api_json("POST", "/v1/vms/crash1/stop", R"({"timeout_s":6,"force":true})");
  ASSERT_TRUE(stop.ok());
  const std::string op_id = (*stop)["id"];
  for (int i = 0; i < 50; ++i) {
    auto op = c().api_json("GET", "/v1/operations/" + op_id);
    if (op.ok() && (*op)["state"] == "running") break;
    std::this_thread::sleep_for(100ms);
  }
  c().kill_controller(SIGKILL);
  EXPECT_EQ(c().domstate("crash1"), "running");  // nothing finished it behind our back

  ASSERT_TRUE(c().start_controller().ok());
  auto done = op_wait(*stop);
  EXPECT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_GE(done["attempts"].get<int>(), 2);
  EXPECT_TRUE(done["result"].value("forced", false));
  EXPECT_EQ(c().domstate("crash1"), "shut off");
  ASSERT_TRUE(c().wait_host_heartbeat().ok());
  auto vm = c().api_json("GET", "/v1/vms/crash1");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)["state"], "stopped");
  auto del = c().api_json("DELETE", "/v1/vms/crash1?wait=60", {}, 90);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ((*del)["state"], "succeeded");
}

TEST_F(LifecycleE2E, AgentRestartLeavesTheGuestUntouched) {
  auto created = c().api_json("POST", "/v1/vms?wait=120",
                              R"({"name":"steady1","memory_mib":64,"start":true})", 150);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ((*created)["state"], "succeeded") << created->dump();
  const pid_t before = c().qemu_pid("steady1");
  ASSERT_GT(before, 0);

  for (int sig : {SIGTERM, SIGKILL}) {
    c().kill_agent(sig);
    EXPECT_EQ(c().domstate("steady1"), "running");
    ASSERT_TRUE(c().start_agent().ok());
    ASSERT_TRUE(c().wait_host_heartbeat().ok());
    EXPECT_EQ(c().qemu_pid("steady1"), before) << "the guest was restarted (signal " << sig << ")";
    EXPECT_EQ(c().domstate("steady1"), "running");
    auto vm = c().api_json("GET", "/v1/vms/steady1");
    ASSERT_TRUE(vm.ok());
    EXPECT_EQ((*vm)["state"], "running");
  }
  auto del = c().api_json("DELETE", "/v1/vms/steady1?force=true&wait=60", {}, 90);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ((*del)["state"], "succeeded") << del->dump();
  EXPECT_EQ(c().domstate("steady1"), "absent");
}

TEST_F(LifecycleE2E, AVmStoppedOutsideKvmfleetIsReflectedNotRestarted) {
  auto created = c().api_json("POST", "/v1/vms?wait=120",
                              R"({"name":"outside1","memory_mib":64,"start":true})", 150);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ((*created)["state"], "succeeded");
  auto r = c().in_host({"virsh", "-c", "qemu:///system", "destroy", "outside1"});
  ASSERT_TRUE(r.ok() && r->success());
  json vm;
  for (int i = 0; i < 100; ++i) {
    auto v = c().api_json("GET", "/v1/vms/outside1");
    if (v.ok() && (*v)["state"] == "stopped") {
      vm = *v;
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(vm.value("state", ""), "stopped");
  EXPECT_EQ(vm.value("desired_state", ""), "stopped");
  ASSERT_TRUE(c().wait_host_heartbeat().ok());
  EXPECT_EQ(c().domstate("outside1"), "shut off");  // not fought back to running
  auto del = c().api_json("DELETE", "/v1/vms/outside1?wait=60", {}, 90);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ((*del)["state"], "succeeded");
}

}  // namespace
