#include "lab_cluster.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/storage/lock_daemons.hpp"

namespace kvmfleet::klab {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Runs argv in the guest; any failure (also a non-zero exit) is an error naming the
// guest, the program and what it printed.
Result<ProcessOutput> in_guest(KernelLab& lab, int guest, const std::vector<std::string>& argv,
                               std::chrono::seconds timeout = 120s,
                               std::optional<std::string> input = std::nullopt) {
  RunOptions o;
  o.timeout = timeout;
  o.input = std::move(input);
  auto r = lab.exec(guest, argv, o);
  if (!r.ok()) return r.take_error();
  if (r->exit_code != 0) {
    std::string what;
    for (const auto& a : argv) what += (what.empty() ? "" : " ") + a;
    return internal_error("node" + std::to_string(guest) + ": " + what + " exited " +
                          std::to_string(r->exit_code) + ": " + r->err + r->out);
  }
  return r;
}

}  // namespace

Result<http::ClientResponse> NetnsHttpClient::request(std::string_view method,
                                                      const std::string& url,
                                                      const std::string& bearer,
                                                      const std::string& body,
                                                      std::chrono::milliseconds timeout) {
  std::optional<Result<http::ClientResponse>> out;
  std::thread worker([&] {
    const std::string path = "/run/netns/" + netns_;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      out = unavailable("open " + path + ": " + std::strerror(errno));
      return;
    }
    // Only this thread moves: the namespace of a thread, not of the process.
    const int rc = ::setns(fd, CLONE_NEWNET);
    const int err = errno;
    ::close(fd);
    if (rc != 0) {
      out = internal_error("setns " + path + ": " + std::strerror(err));
      return;
    }
    out = inner_.request(method, url, bearer, body, timeout);
  });
  worker.join();
  return std::move(*out);
}

Status write_guest_file(KernelLab& lab, int guest, const std::string& path,
                        const std::string& content, const std::string& mode) {
  if (auto r = in_guest(lab, guest, {"dd", "of=" + path, "status=none"}, 60s, content); !r.ok())
    return r.take_error();
  if (auto r = in_guest(lab, guest, {"chmod", mode, path}, 60s); !r.ok()) return r.take_error();
  return ok_status();
}

Result<int> start_guest_background(KernelLab& lab, int guest, const std::vector<std::string>& argv,
                                   const std::string& log_path) {
  if (argv.empty()) return invalid("empty argv");
  // The guest's agent runs each command to its end; a shell forks this one off. The
  // program and its arguments are positional parameters, never pasted into the script.
  std::vector<std::string> full{"sh", "-c",
                                "log=$1; shift; setsid \"$@\" >\"$log\" 2>&1 </dev/null & echo $!",
                                "sh", log_path};
  full.insert(full.end(), argv.begin(), argv.end());
  auto r = in_guest(lab, guest, full, 60s);
  if (!r.ok()) return r.take_error();
  try {
    return std::stoi(r->out);
  } catch (const std::exception&) {
    return internal_error("no pid from the guest: " + r->out);
  }
}

Status start_storage_daemons(KernelLab& lab, int guest) {
  for (const std::vector<std::string>& argv : {
           std::vector<std::string>{"modprobe", "-a", "dm_snapshot", "softdog", "iscsi_tcp",
                                    "sd_mod"},
           {"iscsid"},
           {"wdmd"},
           {"sanlock", "daemon", "-U", "root", "-G", "root"},
           {"lvmlockd", "-g", "sanlock"},
       }) {
    if (auto r = in_guest(lab, guest, argv); !r.ok()) return r.take_error();
  }
  // The daemons fork before they listen.
  storage::LockDaemons daemons(lab.runner(guest));
  const auto deadline = steady::now() + 60s;
  while (true) {
    auto st = daemons.check();
    if (!st.ok()) return st.take_error();
    if (st->all_running()) return ok_status();
    if (steady::now() > deadline)
      return unavailable("node" + std::to_string(guest) +
                         ": lock daemons not running: " + st->to_json().dump());
    std::this_thread::sleep_for(300ms);
  }
}

Status start_libvirtd(KernelLab& lab, int guest) {
  const auto& g = lab.guest(guest);
  if (auto r = in_guest(lab, guest,
                        {"mkdir", "-p", "/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
                         "/var/cache/libvirt", "/run/libvirt"});
      !r.ok())
    return r.take_error();
  // libvirt refuses to migrate to "the same host": every guest gets its own UUID.
  const std::string libvirtd_conf =
      "# Written by kvmfleet's kernel lab for " + g.hostname +
      ". Tests only: TCP without authentication, reachable only on the lab's network.\n"
      "host_uuid = \"" +
      new_uuid() +
      "\"\n"
      "listen_tcp = 1\nlisten_tls = 0\nlisten_addr = \"" +
      g.address +
      "\"\n"
      "auth_tcp = \"none\"\nauth_unix_ro = \"none\"\nauth_unix_rw = \"none\"\n"
      "unix_sock_group = \"root\"\n"
      "log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n";
  const std::string qemu_conf =
      "# Written by kvmfleet's kernel lab for " + g.hostname +
      ".\n"
      "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nremember_owner = 0\n"
      "security_driver = \"none\"\nnamespaces = [ ]\ncgroup_controllers = [ ]\n";
  if (auto s = write_guest_file(lab, guest, "/etc/libvirt/libvirtd.conf", libvirtd_conf); !s.ok())
    return s;
  if (auto s = write_guest_file(lab, guest, "/etc/libvirt/qemu.conf", qemu_conf); !s.ok()) return s;
  if (auto r = in_guest(lab, guest, {"virtlogd", "-d"}); !r.ok()) return r.take_error();
  if (auto r = in_guest(lab, guest, {"libvirtd", "-d", "--listen"}); !r.ok()) return r.take_error();
  // One command that waits in the guest: a round trip per attempt costs 0.3 to 0.5 s.
  auto up = lab.exec(guest,
                     {"sh", "-c",
                      "for i in $(seq 600); do virsh -q -c qemu:///system version >/dev/null "
                      "2>&1 && exit 0; sleep 0.2; done; exit 1"},
                     RunOptions{.timeout = 180s});
  if (!up.ok()) return up.take_error();
  if (up->exit_code != 0) {
    auto log = lab.exec(guest, {"tail", "-n", "30", "/var/log/libvirt/libvirtd.log"});
    return unavailable("node" + std::to_string(guest) + ": libvirtd does not answer; its log:\n" +
                       (log.ok() ? log->out : log.error().message));
  }
  return ok_status();
}

Result<std::unique_ptr<LabController>> LabController::start(KernelLab& lab,
                                                            ControllerOptions options) {
  auto c = std::unique_ptr<LabController>(new LabController());
  c->dir_ = lab.state_dir() / "controller";
  std::error_code ec;
  fs::create_directories(c->dir_, ec);
  if (ec) return internal_error("create " + c->dir_.string() + ": " + ec.message());
  c->url_ = std::string("http://") + KernelLab::kBridgeAddress + ":" + std::to_string(options.port);
  c->client_ = std::make_unique<NetnsHttpClient>(lab.netns());

  // TCG guests are slow: a heartbeat may come late without the host being gone.
  nlohmann::json config = {
      {"listen_address", KernelLab::kBridgeAddress},
      {"listen_port", options.port},
      {"database_path", (c->dir_ / "controller.db").string()},
      {"bootstrap_token_file", (c->dir_ / "admin.token").string()},
      {"heartbeat_interval_ms", 2000},
      {"unreachable_after_ms", 20000},
      {"down_after_ms", 90000},
      {"scheduler", {{"reserved_memory_mib", 0}}},
  };
  config.merge_patch(options.config);
  {
    std::ofstream out(c->dir_ / "controller.json");
    out << config.dump(2) << "\n";
    if (!out) return internal_error("cannot write controller.json");
  }
  SpawnOptions so;
  so.stdout_path = c->log_path().string();
  so.stderr_path = so.stdout_path;
  auto id = lab.spawn_in_netns(
      {options.binary.string(), "--config", (c->dir_ / "controller.json").string()}, so,
      "kvmfleet-controller");
  if (!id.ok()) return id.take_error();
  c->process_ = *id;

  const auto deadline = steady::now() + 60s;
  while (true) {
    auto r = c->client_->request("GET", c->url_ + "/v1/healthz", "", "", 2s);
    if (r.ok() && r->status == 200) break;
    if (!process_alive(c->process_))
      return unavailable("kvmfleet-controller exited; its log:\n" + c->log_tail());
    if (steady::now() > deadline)
      return unavailable("kvmfleet-controller does not answer; its log:\n" + c->log_tail());
    std::this_thread::sleep_for(100ms);
  }
  c->admin_token_ = trim(read_text(c->dir_ / "admin.token"));
  if (c->admin_token_.empty()) return internal_error("the controller wrote no admin token");
  return c;
}

std::string LabController::log_tail(std::size_t bytes) const {
  std::string s = read_text(log_path());
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

Result<http::ClientResponse> LabController::request(std::string_view method,
                                                    const std::string& path,
                                                    const std::string& body,
                                                    std::chrono::seconds timeout) {
  return client_->request(method, url_ + path, admin_token_, body, timeout);
}

Result<nlohmann::json> LabController::wait_operation(const std::string& id,
                                                     std::chrono::seconds limit) {
  const auto deadline = steady::now() + limit;
  nlohmann::json last;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - steady::now());
    const long wait = std::max<long>(0, std::min<long>(30, left.count()));
    auto r = request("GET", "/v1/operations/" + id + "?wait=" + std::to_string(wait), "",
                     std::chrono::seconds(wait + 30));
    if (!r.ok()) return r.take_error();
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (r->status != 200 && r->status != 202)
      return internal_error("GET /v1/operations/" + id + " answered " + std::to_string(r->status) +
                            ": " + r->body);
    if (j.is_discarded() || !j.is_object())
      return internal_error("GET /v1/operations/" + id + ": not JSON: " + r->body);
    last = j;
    const std::string state = j.value("state", "");
    if (state == "succeeded" || state == "failed" || state == "cancelled") return j;
    if (steady::now() >= deadline)
      return Error(ErrorCode::timeout, "operation " + id + " did not end within " +
                                           std::to_string(limit.count()) + " s: " + last.dump());
  }
}

Result<std::string> LabController::register_host(const std::string& name,
                                                 const std::string& agent_url) {
  auto r =
      request("POST", "/v1/hosts", nlohmann::json{{"name", name}, {"agent_url", agent_url}}.dump());
  if (!r.ok()) return r.take_error();
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (r->status >= 300 || j.is_discarded() || !j.contains("agent_token"))
    return internal_error("POST /v1/hosts " + name + " answered " + std::to_string(r->status) +
                          ": " + r->body);
  return j["agent_token"].get<std::string>();
}

Result<nlohmann::json> LabController::wait_host_up(const std::string& name,
                                                   std::chrono::seconds limit) {
  const auto deadline = steady::now() + limit;
  std::string last;
  while (true) {
    auto r = request("GET", "/v1/hosts/" + name);
    if (r.ok()) {
      last = std::to_string(r->status) + ": " + r->body;
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (r->status == 200 && j.is_object() && j.value("state", "") == "up" &&
          j.contains("last_heartbeat") && !j["last_heartbeat"].is_null())
        return j;
    } else {
      last = r.error().message;
    }
    if (steady::now() > deadline)
      return unavailable("host " + name + " not up after " + std::to_string(limit.count()) +
                         " s; last answer " + last);
    std::this_thread::sleep_for(300ms);
  }
}

void LabController::stop() {
  if (process_.pid != 0) stop_process(process_, 10s);
}

Result<int> start_agent(KernelLab& lab, int guest, const AgentOptions& options) {
  const auto& g = lab.guest(guest);
  if (auto r = in_guest(lab, guest,
                        {"mkdir", "-p", "/etc/kvmfleet", "/var/lib/kvmfleet/images", "/var/log"});
      !r.ok())
    return r.take_error();
  if (auto s =
          write_guest_file(lab, guest, "/etc/kvmfleet/agent.token", options.token + "\n", "0600");
      !s.ok())
    return s.take_error();
  nlohmann::json config = {
      {"host", g.hostname},
      {"listen_address", g.address},
      {"listen_port", options.port},
      {"controller_url", options.controller_url},
      {"token_file", "/etc/kvmfleet/agent.token"},
      {"libvirt_uri", "qemu:///system"},
      {"image_pool_path", "/var/lib/kvmfleet/images"},
      {"heartbeat_interval_ms", options.heartbeat_interval_ms},
      {"migration_address", g.address},
  };
  if (!options.storage.is_null()) config["storage"] = options.storage;
  if (auto s = write_guest_file(lab, guest, "/etc/kvmfleet/agent.json", config.dump(2) + "\n");
      !s.ok())
    return s.take_error();
  auto pid = start_guest_background(
      lab, guest, {options.binary.string(), "--config", "/etc/kvmfleet/agent.json"},
      "/var/log/kvmfleet-agent.log");
  if (!pid.ok()) return pid.take_error();

  NetnsHttpClient client(lab.netns());
  const std::string url = agent_url(lab, guest, options.port) + "/agent/v1/inventory";
  const auto deadline = steady::now() + 90s;
  std::string last;
  while (true) {
    auto r = client.request("GET", url, options.token, "", 10s);
    if (r.ok() && r->status == 200) return *pid;
    last = r.ok() ? std::to_string(r->status) + ": " + r->body : r.error().message;
    if (steady::now() > deadline) {
      auto log = lab.exec(guest, {"tail", "-n", "30", "/var/log/kvmfleet-agent.log"});
      return unavailable("node" + std::to_string(guest) + ": kvmfleet-agent does not answer (" +
                         last + "); its log:\n" + (log.ok() ? log->out : log.error().message));
    }
    std::this_thread::sleep_for(300ms);
  }
}

}  // namespace kvmfleet::klab
