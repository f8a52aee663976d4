// Live migration through kvmfleet's API between two real libvirtd hosts, each in its
// own network namespace on the lab bridge with its own kvmfleet-agent; the controller
// listens on the lab bridge. Outcomes are checked with virsh on both hosts.
#include "tests/lab/lab.hpp"

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/http/client.hpp"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr std::uint16_t kAgentPort = 8401;

class MigrationE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { setup_error_ = setup(); }
  static void TearDownTestSuite() {
    if (controller_ > 0) (void)runner_.terminate(controller_, 10s);
    if (lab_) (void)lab_->teardown();
    lab_.reset();
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  static std::string setup() {
    auto lab = lab::Lab::create(runner_, {});
    if (!lab) return "lab: " + lab.error().message;
    lab_ = std::move(*lab);
    {
      boost::asio::io_context io;
      boost::asio::ip::tcp::acceptor a(io,
                                       {boost::asio::ip::make_address(lab_->bridge_address()), 0});
      port_ = a.local_endpoint().port();
    }
    url_ = "http://" + lab_->bridge_address() + ":" + std::to_string(port_);
    if (auto st = start_controller(); !st) return st.error().message;
    std::ifstream tok(lab_->work_dir() / "admin.token");
    std::getline(tok, token_);
    for (const char* name : {"mig-a", "mig-b"}) {
      auto h = lab_->add_host(name);
      if (!h) return std::string("host ") + name + ": " + h.error().message;
      const std::string agent_url = "http://" + h->address + ":" + std::to_string(kAgentPort);
      auto reg = api("POST", "/v1/hosts", json{{"name", name}, {"agent_url", agent_url}}.dump());
      if (!reg) return "register: " + reg.error().message;
      hosts_[name] = *h;
      const auto dir = lab_->work_dir() / name;
      std::filesystem::create_directories(dir / "images");
      std::ofstream(dir / "agent.token") << (*reg)["agent_token"].get<std::string>() << "\n";
      std::filesystem::permissions(dir / "agent.token", std::filesystem::perms::owner_read |
                                                            std::filesystem::perms::owner_write);
      if (auto st = start_agent(name); !st) return "agent: " + st.error().message;
    }
    for (int i = 0; i < 300; ++i) {
      auto hs = api("GET", "/v1/hosts");
      int up = 0;
      if (hs)
        for (auto& h : (*hs)["items"]) up += h["state"] == "up";
      if (up == 2) return {};
      std::this_thread::sleep_for(200ms);
    }
    std::string logs;
    for (const char* name : {"mig-a", "mig-b"}) {
      std::ifstream in(lab_->work_dir() / name / "agent.log");
      logs += std::string("\n--- ") + name + " agent log\n" +
              std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    std::ifstream cl(lab_->work_dir() / "controller.log");
    logs += "\n--- controller log\n" +
            std::string((std::istreambuf_iterator<char>(cl)), std::istreambuf_iterator<char>());
    auto hs = api("GET", "/v1/hosts");
    logs += "\n--- hosts\n" + (hs ? hs->dump() : hs.error().message);
    return "hosts did not report in" + logs;
  }

  // The host's kvmfleet-agent, inside its namespaces, heartbeating every second.
  static Status start_agent(const std::string& name) {
    const lab::Host& h = hosts_[name];
    const auto dir = lab_->work_dir() / name;
    std::ofstream(dir / "agent.json") << json{
        {"host", name},
        {"listen_address", h.address},
        {"listen_port", kAgentPort},
        {"controller_url", url_},
        {"token_file", (dir / "agent.token").string()},
        {"libvirt_uri", "qemu:///system"},
        {"image_pool_path", (dir / "images").string()},
        {"migration_address", h.address},
        {"heartbeat_interval_ms", 1000}}.dump();
    SpawnOptions so;
    so.stdout_path = so.stderr_path = (dir / "agent.log").string();
    auto pid =
        lab_->run_in_host(h, {KVMFLEET_AGENT_BIN, "--config", (dir / "agent.json").string()}, so);
    if (!pid) return pid.take_error();
    agents_[name] = *pid;
    return {};
  }

  static Status wait_host_up(const std::string& name) {
    for (int i = 0; i < 600; ++i) {
      auto h = api("GET", "/v1/hosts/" + name);
      if (h && (*h)["state"] == "up") return {};
      std::this_thread::sleep_for(100ms);
    }
    return unavailable("host " + name + " did not come up");
  }

  // Starts migrating `vm` from mig-a to mig-b over a throttled link into mig-b and
  // returns the operation's id once libvirt reports the migration under way.
  static Result<std::string> start_slow_migration(const std::string& vm) {
    if (auto st = lab_->limit_bandwidth(hosts_["mig-b"], 2000); !st) return st.take_error();
    auto m = api("POST", "/v1/vms/" + vm + "/migrate", R"({"target_host":"mig-b"})");
    if (!m) return m.take_error();
    const std::string op = (*m)["id"];
    for (int i = 0; i < 600; ++i) {
      auto o = api("GET", "/v1/operations/" + op);
      if (o) {
        const std::string state = (*o)["state"];
        if (state != "pending" && state != "running")
          return internal_error("the migration ended before the fault: " + o->dump());
        const auto& r = (*o)["result"];
        if (r.contains("migration") && r["migration"]["state"] == "running") return op;
      }
      std::this_thread::sleep_for(50ms);
    }
    return unavailable("the migration never got under way");
  }

  // A 64 MiB VM running on mig-a, made through the API.
  static ::testing::AssertionResult create_running_on_a(const std::string& vm) {
    auto c =
        api("POST", "/v1/vms?wait=120",
            json{{"name", vm}, {"memory_mib", 64}, {"host", "mig-a"}, {"start", true}}.dump(), 150);
    if (!c) return ::testing::AssertionFailure() << "create " << vm << ": " << c.error().message;
    if ((*c)["state"] != "succeeded") return ::testing::AssertionFailure() << c->dump();
    return ::testing::AssertionSuccess();
  }
  static ::testing::AssertionResult remove_vm(const std::string& vm) {
    auto del = api("DELETE", "/v1/vms/" + vm + "?force=true&wait=60", {}, 90);
    if (!del)
      return ::testing::AssertionFailure() << "delete " << vm << ": " << del.error().message;
    return ::testing::AssertionSuccess();
  }

  // After a fault: the operation ends, the VM runs on exactly one host and the
  // controller's record names that host. Returns the final operation.
  static json settle(const std::string& op, const std::string& vm) {
    auto done = api("GET", "/v1/operations/" + op + "?wait=240", {}, 270);
    EXPECT_TRUE(done.ok()) << done.error().message;
    if (!done) return json::object();
    const std::string state = (*done)["state"];
    EXPECT_TRUE(state == "succeeded" || state == "failed") << done->dump();
    EXPECT_EQ(running_copies(vm), 1) << "a VM must run on exactly one host" << hosts_report(vm);
    auto rec = api("GET", "/v1/vms/" + vm);
    EXPECT_TRUE(rec.ok());
    if (rec) {
      const std::string host = (*rec)["host"];
      EXPECT_EQ(domstate(host, vm), "running") << "the record names " << host;
    }
    std::printf(
        "[   INFO   ] %s: operation %s%s\n", vm.c_str(), state.c_str(),
        state == "failed" ? (": " + (*done)["error"]["message"].get<std::string>()).c_str() : "");
    return *done;
  }

  // Two heartbeats newer than the call: the host's agent reaches its libvirtd again
  // (a heartbeat carries the inventory it reads from libvirt).
  static Status wait_fresh_heartbeats(const std::string& name) {
    auto last = [&]() -> std::string {
      auto h = api("GET", "/v1/hosts/" + name);
      return h && (*h)["last_heartbeat"].is_string() ? (*h)["last_heartbeat"].get<std::string>()
                                                     : "";
    };
    std::string seen = last();
    for (int fresh = 0, i = 0; fresh < 2 && i < 600; ++i) {
      std::this_thread::sleep_for(100ms);
      const std::string now = last();
      if (!now.empty() && now != seen) {
        seen = now;
        ++fresh;
      }
      if (fresh == 2) return {};
    }
    return unavailable("host " + name + " sent no fresh heartbeat");
  }

  static Status start_controller() {
    SpawnOptions so;
    so.stdout_path = so.stderr_path = (lab_->work_dir() / "controller.log").string();
    auto pid = runner_.spawn(
        {KVMFLEET_CONTROLLER_BIN, "--database", (lab_->work_dir() / "controller.db").string(),
         "--bootstrap-token-file", (lab_->work_dir() / "admin.token").string(), "--listen-address",
         lab_->bridge_address(), "--listen-port", std::to_string(port_)},
        so);
    if (!pid) return pid.take_error();
    controller_ = *pid;
    http::BeastClient c;
    for (int i = 0; i < 150; ++i) {
      auto r = c.request("GET", url_ + "/v1/healthz", "", "", 1s);
      if (r && r->status == 200) return {};
      std::this_thread::sleep_for(200ms);
    }
    return unavailable("controller did not come up");
  }

  static Result<json> api(const std::string& method, const std::string& path,
                          const std::string& body = {}, int timeout_s = 30) {
    http::BeastClient c;
    auto r = c.request(method, url_ + path, token_, body, std::chrono::seconds(timeout_s));
    if (!r) return r.take_error();
    auto j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) return internal_error("not JSON: " + r->body);
    if (r->status >= 400) return Error::from_json(j);
    return j;
  }

  // libvirt's own view on one host: "running", "shut off", or "absent".
  static std::string domstate(const std::string& host, const std::string& vm) {
    auto r = lab_->virsh(hosts_[host], {"domstate", vm});
    if (!r || !r->success()) return "absent";
    std::string s = r->out;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }
  static bool persistent(const std::string& host, const std::string& vm) {
    auto r = lab_->virsh(hosts_[host], {"dominfo", vm});
    return r && r->success() && r->out.find("Persistent:     yes") != std::string::npos;
  }
  // What each host's libvirt says, for failure messages.
  static std::string hosts_report(const std::string& vm) {
    std::string out;
    for (auto& [name, h] : hosts_) {
      auto r = lab_->virsh(h, {"domstate", "--reason", vm});
      out += "\n--- " + name + ": domstate: " + (r ? r->out + r->err : r.error().message);
      std::ifstream log(h.dir / "log" / "libvirtd.log");
      std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
      if (text.size() > 3000) text = text.substr(text.size() - 3000);
      out += "\n--- " + name + " libvirtd.log (end)\n" + text;
      std::ifstream alog(lab_->work_dir() / name / "agent.log");
      std::string atext((std::istreambuf_iterator<char>(alog)), std::istreambuf_iterator<char>());
      if (atext.size() > 2000) atext = atext.substr(atext.size() - 2000);
      out += "\n--- " + name + " agent.log (end)\n" + atext;
    }
    return out;
  }

  static int running_copies(const std::string& vm) {
    int n = 0;
    for (auto& [name, _] : hosts_) n += domstate(name, vm) == "running";
    return n;
  }

  static SystemProcessRunner runner_;
  static std::unique_ptr<lab::Lab> lab_;
  static std::map<std::string, lab::Host> hosts_;
  static std::map<std::string, pid_t> agents_;
  static std::string url_, token_, setup_error_;
  static std::uint16_t port_;
  static pid_t controller_;
};

SystemProcessRunner MigrationE2E::runner_;
std::unique_ptr<lab::Lab> MigrationE2E::lab_;
std::map<std::string, lab::Host> MigrationE2E::hosts_;
std::map<std::string, pid_t> MigrationE2E::agents_;
std::string MigrationE2E::url_, MigrationE2E::token_, MigrationE2E::setup_error_;
std::uint16_t MigrationE2E::port_ = 0;
pid_t MigrationE2E::controller_ = 0;

TEST_F(MigrationE2E, MigratesARunningVmAndBackAsSeenByVirshOnBothHosts) {
  auto c = api("POST", "/v1/vms?wait=120",
               R"({"name":"mv1","memory_mib":64,"host":"mig-a","start":true})", 150);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ((*c)["state"], "succeeded") << c->dump();
  ASSERT_EQ(domstate("mig-a", "mv1"), "running");

  auto m = api("POST", "/v1/vms/mv1/migrate?wait=120",
               R"({"target_host":"mig-b","max_downtime_ms":500})", 150);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ((*m)["state"], "succeeded") << m->dump();
  EXPECT_EQ((*m)["result"]["migration"]["state"], "completed");
  EXPECT_GT((*m)["result"]["migration"]["elapsed_ms"].get<std::int64_t>(), 0);
  EXPECT_EQ(domstate("mig-b", "mv1"), "running");
  EXPECT_TRUE(persistent("mig-b", "mv1"));
  EXPECT_EQ(domstate("mig-a", "mv1"), "absent");  // undefined on the source
  auto vm = api("GET", "/v1/vms/mv1");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)["host"], "mig-b");
  EXPECT_EQ((*vm)["state"], "running");

  // Without a target the scheduler picks the only other host.
  auto back = api("POST", "/v1/vms/mv1/migrate?wait=120", "{}", 150);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ((*back)["state"], "succeeded") << back->dump();
  EXPECT_EQ((*back)["params"]["target_host"], "mig-a");
  EXPECT_EQ(running_copies("mv1"), 1);
  EXPECT_EQ(domstate("mig-a", "mv1"), "running");

  auto del = api("DELETE", "/v1/vms/mv1?force=true&wait=60", {}, 90);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ((*del)["state"], "succeeded");
}

TEST_F(MigrationE2E, ControllerKilledDuringAMigrationResolvesToExactlyOneRunningCopy) {
  auto c = api("POST", "/v1/vms?wait=120",
               R"({"name":"mv2","memory_mib":64,"host":"mig-a","start":true})", 150);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ((*c)["state"], "succeeded");
  auto m = api("POST", "/v1/vms/mv2/migrate", R"({"target_host":"mig-b"})");
  ASSERT_TRUE(m.ok()) << m.error().message;
  const std::string op = (*m)["id"];
  for (int i = 0; i < 100; ++i) {
    auto o = api("GET", "/v1/operations/" + op);
    if (o && (*o)["state"] != "pending") break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(runner_.kill(controller_, SIGKILL).ok());
  (void)runner_.wait(controller_, 10s);
  controller_ = 0;
  ASSERT_TRUE(start_controller().ok());
  auto done = api("GET", "/v1/operations/" + op + "?wait=120", {}, 150);
  // A restarted controller trusts a host again only once it heartbeats.
  for (const char* h : {"mig-a", "mig-b"}) ASSERT_TRUE(wait_host_up(h).ok()) << h;
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ((*done)["state"], "succeeded") << done->dump();
  EXPECT_EQ(running_copies("mv2"), 1) << "a VM must run on exactly one host";
  auto vm = api("GET", "/v1/vms/mv2");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ(domstate((*vm)["host"].get<std::string>(), "mv2"), "running");
  auto del = api("DELETE", "/v1/vms/mv2?force=true&wait=60", {}, 90);
  ASSERT_TRUE(del.ok());
}

TEST_F(MigrationE2E, MaintenanceDrainsEveryRunningVmToTheOtherHost) {
  const std::vector<std::string> names = {"dv1", "dv2", "dv3"};
  for (const auto& n : names) {
    auto c =
        api("POST", "/v1/vms?wait=120",
            json{{"name", n}, {"memory_mib", 64}, {"host", "mig-a"}, {"start", true}}.dump(), 150);
    ASSERT_TRUE(c.ok()) << c.error().message;
    ASSERT_EQ((*c)["state"], "succeeded") << c->dump();
  }
  auto d = api("POST", "/v1/hosts/mig-a/maintenance?wait=240", R"({"enabled":true})", 270);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ((*d)["state"], "succeeded") << d->dump();
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    EXPECT_EQ((*d)["result"]["vms"][n]["state"], "moved");
    EXPECT_EQ(domstate("mig-b", n), "running");
    EXPECT_EQ(domstate("mig-a", n), "absent");
    EXPECT_EQ(running_copies(n), 1);
  }
  auto host = api("GET", "/v1/hosts/mig-a");
  ASSERT_TRUE(host.ok());
  EXPECT_FALSE((*host)["schedulable"].get<bool>());
  // Nothing lands on a host in maintenance, by placement or by migration.
  auto back = api("POST", "/v1/vms/dv1/migrate", R"({"target_host":"mig-a"})");
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.error().code, ErrorCode::conflict);
  auto undo = api("POST", "/v1/hosts/mig-a/maintenance?wait=60", R"({"enabled":false})", 90);
  ASSERT_TRUE(undo.ok()) << undo.error().message;
  EXPECT_EQ((*undo)["state"], "succeeded");
  for (const auto& n : names) {
    auto del = api("DELETE", "/v1/vms/" + n + "?force=true&wait=60", {}, 90);
    ASSERT_TRUE(del.ok()) << del.error().message;
  }
}

// The faults below land while libvirt migrates (the link into mig-b is throttled
// until the fault has happened). Either outcome may be right; what may never happen
// is a VM running twice, nowhere, or elsewhere than the record says.
TEST_F(MigrationE2E, SourceAgentKilledAndRestartedMidMigration) {
  ASSERT_TRUE(create_running_on_a("ca1"));
  auto op = start_slow_migration("ca1");
  ASSERT_TRUE(op.ok()) << op.error().message;
  ASSERT_TRUE(runner_.kill(agents_["mig-a"], SIGKILL).ok());
  (void)runner_.wait(agents_["mig-a"], 10s);
  ASSERT_TRUE(start_agent("mig-a").ok());
  ASSERT_TRUE(lab_->limit_bandwidth(hosts_["mig-b"], 0).ok());
  settle(*op, "ca1");
  EXPECT_TRUE(remove_vm("ca1"));
}

TEST_F(MigrationE2E, SourceLibvirtdRestartedMidMigration) {
  ASSERT_TRUE(create_running_on_a("cl1"));
  auto op = start_slow_migration("cl1");
  ASSERT_TRUE(op.ok()) << op.error().message;
  ASSERT_TRUE(lab_->restart_libvirtd(hosts_["mig-a"]).ok());
  ASSERT_TRUE(lab_->limit_bandwidth(hosts_["mig-b"], 0).ok());
  auto done = settle(*op, "cl1");
  if (done.value("state", "") == "failed") {
    EXPECT_NE(done["error"]["message"].get<std::string>().find("keeps running on mig-a"),
              std::string::npos)
        << done.dump();
  }
  // mig-a's agent heartbeats again only once it reaches the new libvirtd.
  ASSERT_TRUE(wait_fresh_heartbeats("mig-a").ok());
  EXPECT_TRUE(remove_vm("cl1"));
}

// The convergence ladder on a real migration that cannot finish in time (the link
// into mig-b is throttled): downtime raised twice, then the abort; the VM stays.
TEST_F(MigrationE2E, ALadderThatRunsOutOfTimeAbortsAndTheVmStays) {
  ASSERT_TRUE(create_running_on_a("cv1"));
  ASSERT_TRUE(lab_->limit_bandwidth(hosts_["mig-b"], 200).ok());
  auto m = api(
      "POST", "/v1/vms/cv1/migrate?wait=120",
      R"({"target_host":"mig-b","converge_timeout_s":2,"max_downtime_ms":100,"downtime_ceiling_ms":300})",
      150);
  ASSERT_TRUE(lab_->limit_bandwidth(hosts_["mig-b"], 0).ok());
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ((*m)["state"], "failed") << m->dump();
  EXPECT_EQ((*m)["error"]["code"], "timeout") << m->dump();
  EXPECT_NE((*m)["error"]["message"].get<std::string>().find("did not converge within 2 s"),
            std::string::npos);
  EXPECT_NE((*m)["error"]["message"].get<std::string>().find("keeps running on mig-a"),
            std::string::npos);
  EXPECT_EQ((*m)["result"]["migration"]["ladder_step"], 4) << m->dump();
  EXPECT_EQ((*m)["result"]["migration"]["downtime_limit_ms"], 300) << m->dump();
  EXPECT_EQ(domstate("mig-a", "cv1"), "running");
  EXPECT_EQ(running_copies("cv1"), 1);
  EXPECT_TRUE(remove_vm("cv1"));
}

// Last: it powers mig-b off, then boots it again for whatever runs after.
TEST_F(MigrationE2E, DestinationKilledMidMigration) {
  ASSERT_TRUE(create_running_on_a("cd1"));
  auto op = start_slow_migration("cd1");
  ASSERT_TRUE(op.ok()) << op.error().message;
  ASSERT_TRUE(lab_->kill_host(hosts_["mig-b"]).ok());
  auto done = api("GET", "/v1/operations/" + *op + "?wait=240", {}, 270);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ((*done)["state"], "failed") << done->dump();
  EXPECT_NE((*done)["error"]["message"].get<std::string>().find("keeps running on mig-a"),
            std::string::npos)
      << done->dump();
  EXPECT_EQ(domstate("mig-a", "cd1"), "running");
  auto rec = api("GET", "/v1/vms/cd1");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ((*rec)["host"], "mig-a");
  EXPECT_EQ((*rec)["state"], "running");

  auto back = lab_->restart_host(hosts_["mig-b"]);
  ASSERT_TRUE(back.ok()) << back.error().message;
  hosts_["mig-b"] = *back;
  ASSERT_TRUE(start_agent("mig-b").ok());
  ASSERT_TRUE(wait_host_up("mig-b").ok());
  EXPECT_EQ(domstate("mig-b", "cd1"), "absent") << "the half-arrived copy must not survive";
  EXPECT_EQ(running_copies("cd1"), 1);
  EXPECT_TRUE(remove_vm("cd1"));
}

// A VM recorded on mig-a keeps running there while mig-a is cut off from the controller;
// a copy of the same domain is then started on mig-b by hand. The API must not hide the
// double run by adopting mig-b's copy: the VM is a suspected double run until mig-a
// reports again, and nothing acts on it meanwhile.
TEST_F(MigrationE2E, ACopyStartedElsewhereWhileTheRecordedHostIsCutOffIsASuspectedDoubleRun) {
  ASSERT_TRUE(create_running_on_a("dr1"));
  auto xml = lab_->virsh(hosts_["mig-a"], {"dumpxml", "dr1"});
  ASSERT_TRUE(xml && xml->success());
  const auto file = lab_->work_dir() / "dr1-copy.xml";
  std::ofstream(file) << xml->out;

  ASSERT_TRUE(lab_->partition_host(hosts_["mig-a"]).ok());
  auto host_state = [](const std::string& name) -> std::string {
    auto h = api("GET", "/v1/hosts/" + name);
    return h ? (*h)["state"].get<std::string>() : "";
  };
  for (int i = 0; i < 600 && host_state("mig-a") == "up"; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_NE(host_state("mig-a"), "up");
  // Cut off, not stopped: asked inside mig-a, whose libvirtd the partition does not reach.
  auto inside = lab_->exec_in_host(hosts_["mig-a"],
                                   {"virsh", "-q", "-c", "qemu:///system", "domstate", "dr1"});
  ASSERT_TRUE(inside && inside->success()) << (inside ? inside->err : inside.error().message);
  EXPECT_EQ(inside->out.substr(0, inside->out.find('\n')), "running");

  auto defined = lab_->virsh(hosts_["mig-b"], {"define", file.string()});
  ASSERT_TRUE(defined && defined->success()) << (defined ? defined->err : "");
  auto started = lab_->virsh(hosts_["mig-b"], {"start", "dr1"});
  ASSERT_TRUE(started && started->success()) << (started ? started->err : "");

  auto suspicion = []() -> json {
    auto vm = api("GET", "/v1/vms/dr1");
    return vm ? (*vm)["suspected_double_run"] : json(nullptr);
  };
  for (int i = 0; i < 300 && suspicion().is_null(); ++i) std::this_thread::sleep_for(100ms);
  ASSERT_FALSE(suspicion().is_null()) << "mig-b's copy was adopted or ignored";
  EXPECT_EQ(suspicion()["hosts"], json({"mig-a", "mig-b"}));
  auto vm = api("GET", "/v1/vms/dr1");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)["host"], "mig-a");
  EXPECT_EQ((*vm)["state"], "unknown");
  auto stop = api("POST", "/v1/vms/dr1/stop", R"({"force":true})");
  ASSERT_FALSE(stop.ok());
  EXPECT_EQ(stop.error().code, ErrorCode::conflict);
  EXPECT_EQ(stop.error().details.value("reason", ""), "suspected_double_run");
  auto list = api("GET", "/v1/vms");
  ASSERT_TRUE(list.ok());
  for (const auto& item : (*list)["items"]) {
    if (item["name"] == "dr1") {
      EXPECT_FALSE(item["suspected_double_run"].is_null());
    }
  }

  // The link heals: mig-a reports it running too. Still two copies: still suspected.
  ASSERT_TRUE(lab_->heal_host(hosts_["mig-a"]).ok());
  ASSERT_TRUE(wait_host_up("mig-a").ok());
  ASSERT_TRUE(wait_fresh_heartbeats("mig-a").ok());
  EXPECT_FALSE(suspicion().is_null());
  EXPECT_EQ(running_copies("dr1"), 2);

  // The copy on mig-b goes (by hand): one copy, where it is recorded.
  auto destroyed = lab_->virsh(hosts_["mig-b"], {"destroy", "dr1"});
  ASSERT_TRUE(destroyed && destroyed->success());
  auto undefined = lab_->virsh(hosts_["mig-b"], {"undefine", "dr1"});
  ASSERT_TRUE(undefined && undefined->success());
  for (int i = 0; i < 300 && !suspicion().is_null(); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(suspicion().is_null());
  vm = api("GET", "/v1/vms/dr1");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)["host"], "mig-a");
  EXPECT_EQ((*vm)["state"], "running");
  EXPECT_EQ(running_copies("dr1"), 1);
  EXPECT_TRUE(remove_vm("dr1"));
}

}  // namespace
