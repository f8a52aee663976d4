#pragma once

// Two real libvirtd hosts, mig-a and mig-b, each in its own network namespace on a lab
// bridge with its own kvmfleet-agent, and a kvmfleet-controller listening on the bridge:
// the fixture of the end-to-end tests that need more than one host (live migration,
// HA). A suite derived from it sets the lab up once and tears down exactly what it made.
// Outcomes are checked with virsh on each host.
#include "tests/lab/lab.hpp"

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/http/client.hpp"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>

namespace kvmfleet::e2e {

using namespace std::chrono_literals;
using nlohmann::json;

inline constexpr std::uint16_t kAgentPort = 8401;

class TwoHostLab : public ::testing::Test {
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
    std::vector<std::string> argv = {KVMFLEET_CONTROLLER_BIN,
                                     "--database",
                                     (lab_->work_dir() / "controller.db").string(),
                                     "--bootstrap-token-file",
                                     (lab_->work_dir() / "admin.token").string(),
                                     "--listen-address",
                                     lab_->bridge_address(),
                                     "--listen-port",
                                     std::to_string(port_)};
    if (!controller_config_.empty()) {
      const auto file = lab_->work_dir() / "controller.json";
      std::ofstream(file) << controller_config_.dump();
      argv.insert(argv.end(), {"--config", file.string()});
    }
    auto pid = runner_.spawn(argv, so);
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

  inline static SystemProcessRunner runner_;
  inline static std::unique_ptr<lab::Lab> lab_;
  inline static std::map<std::string, lab::Host> hosts_;
  inline static std::map<std::string, pid_t> agents_;
  inline static std::string url_, token_, setup_error_;
  inline static std::uint16_t port_ = 0;
  inline static pid_t controller_ = 0;
  // The controller's configuration file, when a suite sets one before its setup (the
  // command line's database, token file and listen address still apply).
  inline static json controller_config_;
};

}  // namespace kvmfleet::e2e
