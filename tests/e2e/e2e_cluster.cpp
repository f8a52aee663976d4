#include "e2e_cluster.hpp"

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/ids.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace kvmfleet::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::uint16_t free_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

template <typename F>
bool poll_until(std::chrono::seconds limit, F&& f) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return f();
}

}  // namespace

Cluster::Cluster(std::string guest_accelerator) : guest_accelerator_(std::move(guest_accelerator)) {
  char tmpl[] = "/tmp/kvmfleet-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl);
  port_ = free_port();
  agent_port_ = free_port();
  url_ = "http://127.0.0.1:" + std::to_string(port_);
}

Cluster::~Cluster() {
  stop_all();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

bool Cluster::kvm() const {
  return guest_accelerator_ != "tcg" && fs::exists("/dev/kvm");
}

Status Cluster::start() {
  fs::create_directories(dir_ + "/host");
  fs::create_directories(dir_ + "/images");
  // The init script moves itself into a new mount + UTS namespace (same pid).
  auto ns = runner_.spawn({KVMFLEET_SOURCE_DIR "/scripts/lab-host-init.sh", "--name", host_,
                           "--dir", dir_ + "/host", "--uuid", new_uuid()},
                          {dir_ + "/host-init.log", dir_ + "/host-init.log", {}, {}});
  if (!ns) return ns.take_error();
  ns_pid_ = *ns;
  if (!poll_until(90s, [&] { return fs::exists(dir_ + "/host/ready"); }))
    return unavailable("private libvirtd did not start: " + read_file(dir_ + "/host-init.log"));
  if (auto st = start_controller(); !st) return st;
  std::ifstream tok(dir_ + "/admin.token");
  std::getline(tok, admin_token_);
  auto reg =
      api_json("POST", "/v1/hosts",
               nlohmann::json{{"name", host_},
                              {"agent_url", "http://127.0.0.1:" + std::to_string(agent_port_)}}
                   .dump());
  if (!reg) return reg.take_error();
  {
    std::ofstream t(dir_ + "/agent.token");
    t << (*reg)["agent_token"].get<std::string>() << "\n";
    std::ofstream c(dir_ + "/agent.json");
    c << nlohmann::json{{"host", host_},
                        {"listen_address", "127.0.0.1"},
                        {"listen_port", agent_port_},
                        {"controller_url", url_},
                        {"token_file", dir_ + "/agent.token"},
                        {"libvirt_uri", "qemu:///system"},
                        {"image_pool_path", dir_ + "/images"},
                        {"heartbeat_interval_ms", 1000},
                        {"guest_accelerator", guest_accelerator_}}
             .dump();
  }
  if (auto st = start_agent(); !st) return st;
  return wait_host_heartbeat(60);
}

Status Cluster::start_controller() {
  auto pid = runner_.spawn({KVMFLEET_CONTROLLER_BIN, "--database", dir_ + "/controller.db",
                            "--bootstrap-token-file", dir_ + "/admin.token", "--listen-address",
                            "127.0.0.1", "--listen-port", std::to_string(port_)},
                           {dir_ + "/controller.log", dir_ + "/controller.log", {}, {}});
  if (!pid) return pid.take_error();
  controller_pid_ = *pid;
  if (!poll_until(30s, [&] {
        auto r = client_.request("GET", url_ + "/v1/healthz", "", "", 1s);
        return r.ok() && r->status == 200;
      }))
    return unavailable("controller did not come up: " + read_file(dir_ + "/controller.log"));
  return {};
}

void Cluster::kill_controller(int signal) {
  if (!controller_pid_) return;
  (void)runner_.kill(controller_pid_, signal);
  (void)runner_.wait(controller_pid_, 30s);
  controller_pid_ = 0;
}

Status Cluster::start_agent() {
  auto pid = runner_.spawn({"nsenter", "-t", std::to_string(ns_pid_), "-m", "-u",
                            KVMFLEET_AGENT_BIN, "--config", dir_ + "/agent.json"},
                           {dir_ + "/agent.log", dir_ + "/agent.log", {}, {}});
  if (!pid) return pid.take_error();
  agent_pid_ = *pid;
  return {};
}

void Cluster::kill_agent(int signal) {
  if (!agent_pid_) return;
  (void)runner_.kill(agent_pid_, signal);
  (void)runner_.wait(agent_pid_, 30s);
  agent_pid_ = 0;
}

Status Cluster::wait_host_heartbeat(int timeout_s) {
  const auto since = std::chrono::system_clock::now();
  const bool ok = poll_until(std::chrono::seconds(timeout_s), [&] {
    auto h = api_json("GET", "/v1/hosts/" + host_);
    if (!h || (*h)["state"] != "up" || (*h)["last_heartbeat"].is_null()) return false;
    auto t = parse_time((*h)["last_heartbeat"].get<std::string>());
    return t && *t >= since;
  });
  if (!ok) return unavailable("host did not report in: " + read_file(dir_ + "/agent.log"));
  return {};
}

Result<http::ClientResponse> Cluster::api(const std::string& method, const std::string& path,
                                          const std::string& body, int timeout_s) {
  return client_.request(method, url_ + path, admin_token_, body, std::chrono::seconds(timeout_s));
}

Result<nlohmann::json> Cluster::api_json(const std::string& method, const std::string& path,
                                         const std::string& body, int timeout_s) {
  auto r = api(method, path, body, timeout_s);
  if (!r) return r.take_error();
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return internal_error("not JSON: " + r->body);
  if (r->status >= 400) return Error::from_json(j);
  return j;
}

Result<ProcessOutput> Cluster::in_host(std::vector<std::string> argv) {
  std::vector<std::string> full = {"nsenter", "-t", std::to_string(ns_pid_), "-m", "-u"};
  full.insert(full.end(), argv.begin(), argv.end());
  RunOptions o;
  o.timeout = 60s;
  return runner_.run(full, o);
}

std::string Cluster::domstate(const std::string& name) {
  auto r = in_host({"virsh", "-c", "qemu:///system", "domstate", name});
  if (!r || !r->success()) return "absent";
  std::string s = r->out;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

pid_t Cluster::qemu_pid(const std::string& name) {
  auto r = in_host({"cat", "/run/libvirt/qemu/" + name + ".pid"});
  if (!r || !r->success()) return 0;
  try {
    return static_cast<pid_t>(std::stol(r->out));
  } catch (...) {
    return 0;
  }
}

void Cluster::stop_all() {
  if (ns_pid_) {
    // Guests first: QEMU outlives libvirtd otherwise.
    auto names = in_host({"virsh", "-c", "qemu:///system", "list", "--name"});
    if (names && names->success()) {
      std::istringstream in(names->out);
      for (std::string n; std::getline(in, n);)
        if (!n.empty()) (void)in_host({"virsh", "-c", "qemu:///system", "destroy", n});
    }
  }
  kill_agent(SIGTERM);
  kill_controller(SIGTERM);
  for (const char* f : {"/host/pids/libvirtd.pid", "/host/pids/virtlogd.pid"}) {
    const std::string s = read_file(dir_ + f);
    if (s.empty()) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(s));
    if (pid > 1 && ::kill(pid, SIGTERM) == 0) {
      poll_until(10s, [&] { return ::kill(pid, 0) != 0; });
      ::kill(pid, SIGKILL);
    }
  }
  if (ns_pid_) {
    (void)runner_.terminate(ns_pid_, 5s);
    ns_pid_ = 0;
  }
}

}  // namespace kvmfleet::e2e
