// The controller at scale (docs/benchmarks.md, "Controller at scale"): one real
// kvmfleet-controller process, N simulated hosts and M VMs.
//
// The simulator plays every agent itself: per host one HTTP server on 127.0.0.1 (its own
// port, that port is the host's agent_url) answering the agent protocol
// (include/kvmfleet/agent/protocol.hpp) from an in-memory domain list, idempotent by
// op_id, and one keep-alive connection to the controller on which the host heartbeats
// with its inventory. Hosts are registered, VMs created and the cluster read through the
// public REST API, as an operator would. Everything runs on one asio io_context with a
// few threads (coroutines, no thread per host).
//
// Phases: start the controller; register the hosts and wait for them to be up; create
// the VMs (a fixed number of requests in flight); a steady window with heartbeats only
// (controller CPU and RSS, heartbeat latency); a window with a steady GET load as well
// (GET latencies). Host states are followed all along (GET /v1/hosts, /metrics and the
// controller's log): no host may ever leave `up`, since no simulated host stops
// heartbeating. It prints figures and their ratio to the goals of the scale issue; it
// asserts nothing about time. --smoke only makes the exit code say whether the hosts
// came up, every VM was created and no host left `up`.
#include "kvmfleet/common/process.hpp"
#include "kvmfleet/http/server.hpp"
#include "kvmfleet/http/types.hpp"
#include "kvmfleet/model/json.hpp"

#include <sys/resource.h>
#include <unistd.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;
using asio::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::atomic<bool> g_interrupted{false};

void on_signal(int) {
  g_interrupted = true;
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double s_since(Clock::time_point a) {
  return ms_between(a, Clock::now()) / 1000.0;
}

// ---------------------------------------------------------------------------------
// Options

struct Options {
  int hosts = 100;
  int vms = 2500;
  int heartbeat_ms = 2000;
  int steady_s = 60;
  int get_s = 30;
  double get_rate = 5;  // requests per second per endpoint (closed loop when slower)
  int get_limit = 100;
  int create_concurrency = 32;
  int threads = 2;
  int create_timeout_s = 420;  // stop submitting creates after this long
  int up_timeout_s = 120;
  int vm_memory_mib = 1024;
  int host_cpus = 64;
  std::int64_t host_memory_mib = 256 * 1024;
  int api_threads = 0;  // 0: the controller's default
  std::string controller_log_level = "info";
  std::string controller = KVMFLEET_CONTROLLER_BIN;
  bool keep_dir = false;
  bool smoke = false;
};

int usage() {
  std::cerr
      << "usage: kvmfleet_fleet_sim [--preset 100|500|1000|2000] [--hosts N] [--vms M]\n"
         "         [--heartbeat-ms MS] [--steady-s S] [--get-s S] [--get-rate R]\n"
         "         [--get-limit L] [--create-concurrency C] [--create-timeout-s S]\n"
         "         [--threads T] [--up-timeout-s S] [--vm-memory-mib MIB]\n"
         "         [--api-threads K] [--controller-log-level L] [--controller PATH]\n"
         "         [--keep-dir] [--smoke]\n"
         "  --preset H   H hosts and 25 VMs per host (100/2,500 ... 2,000/50,000)\n"
         "  --steady-s   window with heartbeats only (controller CPU/RSS, heartbeat latency)\n"
         "  --get-s      window with a GET load as well (GET /v1/hosts, GET /v1/vms)\n"
         "  --smoke      exit 1 unless all hosts came up, all VMs were created, no host\n"
         "               left `up` and the controller logged no VM as changed outside\n"
         "               kvmfleet or undefined (no timing is checked)\n";
  return 2;
}

// ---------------------------------------------------------------------------------
// Latency samples

struct Samples {
  std::mutex mu;
  std::vector<double> ms;
  void add(double v) {
    std::lock_guard lk(mu);
    ms.push_back(v);
  }
  std::vector<double> take() {
    std::lock_guard lk(mu);
    return ms;
  }
};

// Nearest rank.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

// ---------------------------------------------------------------------------------
// /proc readings

struct ProcReading {
  double cpu_s = 0;  // utime + stime
  double rss_mib = 0;
  double hwm_mib = 0;
  int threads = 0;
  bool ok = false;
};

ProcReading read_proc(pid_t pid) {
  ProcReading r;
  const std::string base = "/proc/" + std::to_string(pid);
  std::ifstream stat(base + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command (which may hold spaces) start at the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return r;
  std::istringstream rest(text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string s; rest >> s;) f.push_back(s);
  // rest starts at field 3 (state); utime is field 14, stime 15, num_threads 20.
  if (f.size() < 18) return r;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  r.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / tick;
  r.threads = std::stoi(f[17]);
  std::ifstream status(base + "/status");
  for (std::string line; std::getline(status, line);) {
    auto kib = [&](std::string_view key) -> std::optional<double> {
      if (!line.starts_with(key)) return std::nullopt;
      return std::stod(line.substr(key.size())) / 1024.0;
    };
    if (auto v = kib("VmRSS:")) r.rss_mib = *v;
    if (auto v = kib("VmHWM:")) r.hwm_mib = *v;
  }
  r.ok = true;
  return r;
}

// ---------------------------------------------------------------------------------
// An HTTP/1.1 client connection kept alive between requests.

struct Reply {
  unsigned status = 0;
  std::string body;
  std::string error;  // empty: an answer arrived
  bool timed_out = false;
  bool retried = false;
  double ms = 0;
};

class Conn {
 public:
  Conn(asio::any_io_executor ex, tcp::endpoint ep) : stream_(std::move(ex)), ep_(ep) {}

  // One request; a connection the server closed while idle is reopened once (the
  // request is resent only when it is safe: the caller says so).
  asio::awaitable<Reply> request(bhttp::verb verb, std::string target, const std::string& bearer,
                                 std::string body, std::chrono::milliseconds timeout,
                                 bool resend_ok = true, std::string idempotency_key = {}) {
    const auto t0 = Clock::now();
    Reply r;
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = open_;
      r = co_await once(verb, target, bearer, body, timeout, idempotency_key);
      if (r.error.empty() || r.timed_out || !reused || !resend_ok) break;
      r.retried = true;
    }
    r.ms = ms_between(t0, Clock::now());
    co_return r;
  }

 private:
  asio::awaitable<Reply> once(bhttp::verb verb, const std::string& target,
                              const std::string& bearer, const std::string& body,
                              std::chrono::milliseconds timeout, const std::string& idem) {
    Reply r;
    beast::error_code ec;
    stream_.expires_after(timeout);
    if (!open_) {
      co_await stream_.async_connect(ep_, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return fail(r, "connect", ec);
      open_ = true;
    }
    bhttp::request<bhttp::string_body> req{verb, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!bearer.empty()) req.set(bhttp::field::authorization, "Bearer " + bearer);
    if (!idem.empty()) req.set("Idempotency-Key", idem);
    req.keep_alive(true);
    if (!body.empty() || verb == bhttp::verb::post) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    co_await bhttp::async_write(stream_, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail(r, "write", ec);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(256u << 20);
    co_await bhttp::async_read(stream_, buffer_, parser,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail(r, "read", ec);
    auto res = parser.release();
    r.status = res.result_int();
    r.body = std::move(res.body());
    if (!res.keep_alive()) close();
    co_return r;
  }

  Reply& fail(Reply& r, const char* what, const beast::error_code& ec) {
    r.timed_out = ec == beast::error::timeout;
    r.error = std::string(what) + ": " + ec.message();
    close();
    return r;
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    open_ = false;
  }

  beast::tcp_stream stream_;
  tcp::endpoint ep_;
  beast::flat_buffer buffer_;
  bool open_ = false;
};

// ---------------------------------------------------------------------------------
// A simulated host: its agent's side of the protocol, from memory.

struct SimDomain {
  kvmfleet::DomainStatus status;
  std::int64_t memory_mib = 0;
};

struct SimHost {
  std::string name;
  std::string token;
  std::string host_uuid;
  std::unique_ptr<kvmfleet::http::Server> server;
  std::uint16_t port = 0;

  std::mutex mu;
  std::map<std::string, SimDomain> domains;  // by uuid
  // (path, op_id) → the first 2xx answer, as the agent's op cache.
  std::unordered_map<std::string, std::string> op_cache;

  std::atomic<long> agent_calls{0};

  // The agent's report clock (agent/report_clock.hpp): one run name per simulated agent
  // and a counter, under mu. A heartbeat is stamped before it lists the domains, an
  // answer after its action, an event when it is queued.
  std::string run;
  std::uint64_t seq = 0;
  kvmfleet::ReportStamp next_stamp() { return {run, ++seq}; }

  // Lifecycle events waiting to be posted, as the agent's libvirt event callback queues
  // them; the host's heartbeat coroutine (on `strand`) posts them and `wake` cuts its
  // wait short.
  std::vector<json> events;
  std::optional<asio::strand<asio::io_context::executor_type>> strand;
  std::unique_ptr<asio::steady_timer> wake;

  // Called with mu held.
  void queue_event(const kvmfleet::DomainStatus& d, const char* state, const char* reason) {
    events.push_back({{"uuid", d.uuid},
                      {"name", d.name},
                      {"state", state},
                      {"reason", reason},
                      {"at", kvmfleet::format_time(std::chrono::system_clock::now())},
                      {"stamp", next_stamp()}});
    if (strand && wake) asio::post(*strand, [t = wake.get()] { t->cancel(); });
  }

  kvmfleet::HostInventory inventory(const Options& o) {
    kvmfleet::HostInventory inv;
    inv.hostname = name;
    inv.host_uuid = host_uuid;
    inv.cpus = o.host_cpus;
    inv.cpu_model = "Intel Xeon Gold 6338 (simulated)";
    inv.memory_total_mib = o.host_memory_mib;
    inv.libvirt_version = "9.0.0";
    inv.qemu_version = "7.2.0";
    inv.domain_type = "kvm";
    inv.migration_address = "127.0.0.1";
    std::int64_t used = 0;
    std::lock_guard lk(mu);
    inv.stamp = next_stamp();
    inv.domains.reserve(domains.size());
    for (const auto& [_, d] : domains) {
      inv.domains.push_back(d.status);
      if (d.status.state == "running") used += d.memory_mib;
    }
    inv.memory_free_mib = std::max<std::int64_t>(0, o.host_memory_mib - 2048 - used);
    return inv;
  }
};

std::string lower_uuid_v4(std::mt19937_64& rng) {
  std::uniform_int_distribution<std::uint64_t> d;
  const std::uint64_t a = d(rng), b = d(rng);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

using kvmfleet::http::HttpStatus;
using kvmfleet::http::Request;
using kvmfleet::http::Response;

Response error_of(const Request& req, kvmfleet::Error e) {
  return kvmfleet::http::error_response(e, req.version(), req.keep_alive());
}

Response ok_text(const Request& req, std::string text) {
  return kvmfleet::http::json_response(HttpStatus::ok, std::move(text), req.version(),
                                       req.keep_alive());
}

// An answer about a domain, stamped after the action (h.mu held).
kvmfleet::DomainStatus stamped(SimHost& h, kvmfleet::DomainStatus d) {
  d.stamp = h.next_stamp();
  return d;
}

// Answers one agent call for host `h`.
Response agent_call(SimHost& h, const Options& o, const Request& req) {
  ++h.agent_calls;
  if (kvmfleet::http::bearer_token(req) != h.token)
    return error_of(req, kvmfleet::Error(kvmfleet::ErrorCode::unauthenticated, "bad token"));
  std::string path(req.target());
  if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
  constexpr std::string_view kDomains = "/agent/v1/domains/";
  const bool get = req.method() == bhttp::verb::get;
  const bool post = req.method() == bhttp::verb::post;
  if (get && path == "/agent/v1/inventory")
    return ok_text(req, kvmfleet::http::json_text(json(h.inventory(o))));
  if (!path.starts_with(kDomains))
    return error_of(req, kvmfleet::not_found("no such agent endpoint"));
  const std::string rest = path.substr(kDomains.size());
  const auto slash = rest.find('/');
  const std::string uuid = rest.substr(0, slash);
  const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);

  if (get && action.empty()) {
    std::lock_guard lk(h.mu);
    auto it = h.domains.find(uuid);
    if (it == h.domains.end()) return error_of(req, kvmfleet::not_found("no such domain"));
    return ok_text(req, kvmfleet::http::json_text(json(stamped(h, it->second.status))));
  }
  if (!post) return error_of(req, kvmfleet::not_found("no such agent endpoint"));

  const json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("op_id") ||
      !body["op_id"].is_string())
    return error_of(req, kvmfleet::invalid("body needs an op_id", {{"field", "op_id"}}));
  const std::string key = path + "\n" + body["op_id"].get<std::string>();
  std::lock_guard lk(h.mu);
  if (auto it = h.op_cache.find(key); it != h.op_cache.end()) return ok_text(req, it->second);

  json answer;
  if (uuid == "define" && action.empty()) {
    kvmfleet::DomainSpec spec;
    try {
      const json& s = body.at("spec");
      spec.uuid = s.at("uuid").get<std::string>();
      spec.name = s.at("name").get<std::string>();
      spec.memory_mib = s.at("memory_mib").get<std::int64_t>();
      spec.generation = s.value("generation", std::int64_t{1});
    } catch (const std::exception& e) {
      return error_of(req, kvmfleet::invalid(std::string("bad spec: ") + e.what()));
    }
    auto& d = h.domains[spec.uuid];
    const bool added = d.status.uuid.empty();
    if (added) d.status.state = "stopped";
    d.status.uuid = spec.uuid;
    d.status.name = spec.name;
    d.status.managed = true;
    d.status.persistent = true;
    d.status.generation = spec.generation;
    d.memory_mib = spec.memory_mib;
    h.queue_event(d.status, "stopped", added ? "defined:added" : "defined:updated");
    answer = stamped(h, d.status);
  } else {
    auto it = h.domains.find(uuid);
    if (it == h.domains.end()) {
      if (action == "undefine") {
        answer = json::object();
      } else {
        return error_of(req, kvmfleet::not_found("no such domain"));
      }
    } else if (action == "start" || action == "reboot") {
      if (it->second.status.state != "running")
        h.queue_event(it->second.status, "running", "started:booted");
      it->second.status.state = "running";
      answer = stamped(h, it->second.status);
    } else if (action == "shutdown" || action == "destroy") {
      if (it->second.status.state != "stopped")
        h.queue_event(it->second.status, "stopped",
                      action == "destroy" ? "stopped:destroyed" : "stopped:shutdown");
      it->second.status.state = "stopped";
      answer = stamped(h, it->second.status);
    } else if (action == "undefine") {
      if (it->second.status.state == "running")
        return error_of(req, kvmfleet::conflict("domain is running"));
      h.queue_event(it->second.status, "stopped", "undefined:removed");
      h.domains.erase(it);
      answer = json::object();
    } else {
      return error_of(req, kvmfleet::not_found("no such agent endpoint"));
    }
  }
  std::string text = kvmfleet::http::json_text(answer);
  if (h.op_cache.size() > 4096) h.op_cache.clear();  // the agent's cache is bounded too
  h.op_cache.emplace(key, text);
  return ok_text(req, std::move(text));
}

// ---------------------------------------------------------------------------------
// The controller process

class ControllerProcess {
 public:
  ~ControllerProcess() { stop(); }

  void start(const Options& o) {
    const fs::path base = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
    std::string templ = (base / "kvmfleet-fleet-sim-XXXXXX").string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = buf.data();
    keep_dir_ = o.keep_dir;
    json cfg = {{"listen_address", "127.0.0.1"},
                {"listen_port", 0},
                {"database_path", (dir_ / "controller.db").string()},
                {"bootstrap_token_file", (dir_ / "admin.token").string()},
                {"heartbeat_interval_ms", o.heartbeat_ms}};
    if (o.api_threads > 0) cfg["api_threads"] = o.api_threads;
    std::ofstream(dir_ / "controller.json") << cfg.dump(2) << "\n";
    kvmfleet::SpawnOptions so;
    so.stdout_path = so.stderr_path = log_path().string();
    auto pid = runner_.spawn({o.controller, "--config", (dir_ / "controller.json").string(),
                              "--log-level", o.controller_log_level},
                             so);
    if (!pid) throw std::runtime_error("spawn controller: " + pid.error().message);
    pid_ = *pid;
    // The controller logs the port the kernel gave it, after the admin token is written.
    constexpr std::string_view kServing = "serving http://127.0.0.1:";
    for (int i = 0; i < 600 && !g_interrupted; ++i) {
      if (auto exited = runner_.wait(pid_, 0ms); exited) {
        pid_ = -1;
        throw std::runtime_error("controller exited during start; log:\n" + log());
      }
      const std::string text = log();
      if (auto at = text.find(kServing); at != std::string::npos) {
        const char* p = text.data() + at + kServing.size();
        int port = 0;
        auto [end, ec] = std::from_chars(p, text.data() + text.size(), port);
        if (ec != std::errc{} || port <= 0 || port > 65535)
          throw std::runtime_error("no port in the controller log");
        port_ = static_cast<std::uint16_t>(port);
        std::ifstream tok(dir_ / "admin.token");
        std::getline(tok, token_);
        if (token_.empty()) throw std::runtime_error("empty admin token file");
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    throw std::runtime_error("controller did not start serving");
  }

  void stop() {
    if (pid_ > 0) (void)runner_.terminate(pid_, 10s);
    pid_ = -1;
    if (!dir_.empty() && !keep_dir_) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    dir_.clear();
  }

  std::string log() const {
    std::ifstream in(log_path());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  fs::path log_path() const { return dir_ / "controller.log"; }
  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }
  const std::string& token() const { return token_; }
  const fs::path& dir() const { return dir_; }

 private:
  kvmfleet::SystemProcessRunner runner_;
  fs::path dir_;
  bool keep_dir_ = false;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string token_;
};

// ---------------------------------------------------------------------------------
// The benchmark

enum Phase { kSetup = 0, kCreate = 1, kSteady = 2, kGetLoad = 3, kPhases = 4 };
const char* kPhaseNames[kPhases] = {"setup", "create", "steady", "get-load"};

struct HeartbeatStats {
  Samples latency[kPhases];
  std::atomic<long> ok{0}, failed{0}, timeouts{0}, retried{0};
  std::atomic<long> failed_in[kPhases];
  std::mutex mu;
  std::map<std::string, long> errors;  // first words of each failure
};

struct ResourceSample {
  double t = 0;
  Phase phase = kSetup;
  ProcReading ctrl, self;
};

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  int run(const std::string& command_line);

 private:
  asio::any_io_executor ex() { return ioc_->get_executor(); }
  tcp::endpoint ctl() const { return {asio::ip::make_address("127.0.0.1"), controller_.port()}; }

  // Blocks the calling (main) thread on a coroutine's result.
  template <typename T>
  T await(asio::awaitable<T> a) {
    auto p = std::make_shared<std::promise<T>>();
    auto f = p->get_future();
    asio::co_spawn(ex(), std::move(a), [p](std::exception_ptr e, T v) {
      if (e)
        p->set_exception(e);
      else
        p->set_value(std::move(v));
    });
    return f.get();
  }

  asio::awaitable<Reply> api(Conn& c, bhttp::verb v, std::string target, std::string body = {},
                             std::chrono::milliseconds timeout = 30s, bool resend_ok = true,
                             std::string idem = {}) {
    co_return co_await c.request(v, std::move(target), controller_.token(), std::move(body),
                                 timeout, resend_ok, std::move(idem));
  }

  void start_agents();
  asio::awaitable<int> register_hosts();
  asio::awaitable<void> heartbeat_loop(SimHost& h, Clock::duration first);
  asio::awaitable<void> watch_metrics();
  asio::awaitable<void> watch_hosts(std::chrono::milliseconds every);
  asio::awaitable<void> create_worker(int worker);
  asio::awaitable<void> get_loop(bool hosts, Samples& out, std::atomic<long>& failures);
  void note_hosts(const std::string& body);
  void sample_resources();
  // Closes the window of the phase that ends and opens the next one with a reading each.
  void set_phase(Phase p) {
    sample_resources();
    phase_ = p;
    sample_resources();
  }
  bool wait_all_up(int timeout_s);
  void print_results(const std::string& command_line);
  void count_log();

  Options o_;
  ControllerProcess controller_;
  std::vector<std::unique_ptr<SimHost>> hosts_;
  std::unique_ptr<asio::io_context> ioc_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> phase_{kSetup};
  Clock::time_point t_start_ = Clock::now();

  HeartbeatStats hb_;
  std::atomic<long> ev_ok_{0}, ev_failed_{0}, events_sent_{0};
  Samples ev_latency_;

  // Host states as the API shows them.
  std::mutex states_mu_;
  std::unordered_map<std::string, std::string> last_state_;
  std::unordered_map<std::string, bool> seen_up_;
  long false_transitions_[kPhases] = {};
  std::vector<std::string> transition_examples_;
  std::atomic<long> hosts_polls_{0};
  // From /metrics: hosts not up once every host had come up.
  std::atomic<int> metrics_up_{0};
  std::atomic<bool> all_were_up_{false};
  std::atomic<int> max_not_up_[kPhases];
  std::atomic<long> metrics_polls_{0}, metrics_failures_{0};

  // VM creation
  std::atomic<int> next_vm_{0};
  std::atomic<long> created_{0}, create_failed_{0};
  std::mutex create_mu_;
  std::vector<double> created_at_s_;  // seconds since the creation phase started
  std::map<std::string, long> create_errors_;
  Clock::time_point create_t0_{};
  Clock::time_point create_deadline_{};
  Samples create_latency_;

  // GET load
  Samples get_hosts_ms_, get_vms_ms_;
  std::atomic<long> get_hosts_failed_{0}, get_vms_failed_{0};

  // Resources
  std::mutex res_mu_;
  std::vector<ResourceSample> res_;

  // Log counts
  long log_unreachable_ = 0, log_down_ = 0, log_not_defined_ = 0, log_changed_outside_ = 0,
       log_errors_ = 0, log_warnings_ = 0;

  double register_s_ = 0, up_s_ = 0, create_s_ = 0;
  int registered_ = 0;
  bool hosts_came_up_ = false;
};

void Bench::start_agents() {
  std::mt19937_64 rng(42);
  hosts_.reserve(static_cast<std::size_t>(o_.hosts));
  for (int i = 0; i < o_.hosts; ++i) {
    auto h = std::make_unique<SimHost>();
    char name[32];
    std::snprintf(name, sizeof name, "sim-%05d", i);
    h->name = name;
    h->host_uuid = lower_uuid_v4(rng);
    h->run = lower_uuid_v4(rng);
    kvmfleet::http::ServerOptions so;
    so.address = "127.0.0.1";
    so.port = 0;
    so.read_timeout = 60s;
    SimHost* hp = h.get();
    const Options* opts = &o_;
    h->server = std::make_unique<kvmfleet::http::Server>(
        *ioc_, so, [hp, opts](Request&& req, kvmfleet::http::Responder respond) {
          respond(agent_call(*hp, *opts, req));
        });
    if (auto st = h->server->start(); !st)
      throw std::runtime_error("agent server for " + h->name + ": " + st.error().message);
    h->port = h->server->port();
    hosts_.push_back(std::move(h));
  }
}

asio::awaitable<int> Bench::register_hosts() {
  // A few registrations in flight.
  std::atomic<int> next{0}, done{0};
  constexpr int kWorkers = 8;
  auto worker = [&]() -> asio::awaitable<void> {
    Conn c(co_await asio::this_coro::executor, ctl());
    for (int i = next++; i < o_.hosts && !g_interrupted; i = next++) {
      SimHost& h = *hosts_[static_cast<std::size_t>(i)];
      const json body = {{"name", h.name},
                         {"agent_url", "http://127.0.0.1:" + std::to_string(h.port)}};
      auto r = co_await api(c, bhttp::verb::post, "/v1/hosts", body.dump(), 30s, false);
      const json j = json::parse(r.body, nullptr, false);
      if (!r.error.empty() || r.status != 201 || j.is_discarded() || !j.contains("agent_token")) {
        std::lock_guard lk(hb_.mu);
        std::cerr << "register " << h.name << " failed: " << r.status << " " << r.error << " "
                  << r.body.substr(0, 300) << "\n";
        continue;
      }
      h.token = j["agent_token"].get<std::string>();
      ++done;
    }
  };
  auto remaining = std::make_shared<std::atomic<int>>(kWorkers);
  // The executor in a variable of its own: GCC 12 miscompiles a co_await inside the
  // argument list of a call that also builds temporaries (the completion handler ran
  // twice and the wait below outlived the workers by the 30 s timeout).
  const auto executor = co_await asio::this_coro::executor;
  asio::steady_timer t(executor);
  for (int w = 0; w < kWorkers; ++w)
    asio::co_spawn(executor, worker(), [remaining](std::exception_ptr) { --*remaining; });
  while (*remaining > 0) {
    t.expires_after(20ms);
    co_await t.async_wait(asio::use_awaitable);
  }
  co_return done.load();
}

asio::awaitable<void> Bench::heartbeat_loop(SimHost& h, Clock::duration first) {
  Conn c(co_await asio::this_coro::executor, ctl());
  asio::steady_timer& t = *h.wake;
  const std::string agent_url = "http://127.0.0.1:" + std::to_string(h.port);
  const auto interval = std::chrono::milliseconds(o_.heartbeat_ms);
  const auto timeout = std::max<std::chrono::milliseconds>(5000ms, interval);
  auto next_beat = Clock::now() + first;
  while (!stopping_) {
    std::vector<json> batch;
    {
      std::lock_guard lk(h.mu);
      const auto n = std::min<std::size_t>(h.events.size(), 500);
      batch.assign(h.events.begin(), h.events.begin() + static_cast<std::ptrdiff_t>(n));
      h.events.erase(h.events.begin(), h.events.begin() + static_cast<std::ptrdiff_t>(n));
    }
    const bool beat_due = Clock::now() >= next_beat;
    if (batch.empty() && !beat_due) {
      // Checked and started in one step on the host's strand: an event queued meanwhile
      // cancels this wait.
      t.expires_at(next_beat);
      beast::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (!batch.empty()) {
      // As the agent: events as they come, heartbeats still carry the whole state, so a
      // lost batch is not resent.
      const json body = {{"host", h.name}, {"events", batch}};
      auto r = co_await c.request(bhttp::verb::post, "/v1/agent/events", h.token,
                                  kvmfleet::http::json_text(body), timeout);
      if (r.error.empty() && r.status == 200) {
        ++ev_ok_;
        events_sent_ += static_cast<long>(batch.size());
        ev_latency_.add(r.ms);
      } else {
        ++ev_failed_;
        std::lock_guard lk(hb_.mu);
        ++hb_.errors["events: " + (r.error.empty() ? "HTTP " + std::to_string(r.status) + " " +
                                                         r.body.substr(0, 120)
                                                   : r.error)];
      }
    }
    if (!beat_due || stopping_) continue;
    const json body = {{"host", h.name}, {"agent_url", agent_url}, {"inventory", h.inventory(o_)}};
    const int phase = phase_;
    auto r = co_await c.request(bhttp::verb::post, "/v1/agent/heartbeat", h.token,
                                kvmfleet::http::json_text(body), timeout);
    if (r.retried) ++hb_.retried;
    if (r.error.empty() && r.status == 200) {
      ++hb_.ok;
      hb_.latency[phase].add(r.ms);
    } else {
      ++hb_.failed;
      ++hb_.failed_in[phase];
      if (r.timed_out) ++hb_.timeouts;
      std::lock_guard lk(hb_.mu);
      ++hb_.errors[r.error.empty()
                       ? "HTTP " + std::to_string(r.status) + " " + r.body.substr(0, 120)
                       : r.error];
    }
    // As the agent: the next beat one interval after this one ended.
    next_beat = Clock::now() + interval;
  }
}

void Bench::note_hosts(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.contains("items")) return;
  ++hosts_polls_;
  const int phase = phase_;
  std::lock_guard lk(states_mu_);
  for (const auto& h : j["items"]) {
    const std::string name = h.value("name", "");
    const std::string state = h.value("state", "");
    auto& last = last_state_[name];
    if (state == "up") {
      seen_up_[name] = true;
    } else if (seen_up_[name] && last == "up") {
      ++false_transitions_[phase];
      if (transition_examples_.size() < 10)
        transition_examples_.push_back(name + " up->" + state + " during " + kPhaseNames[phase] +
                                       " at " + std::to_string(s_since(t_start_)) + " s");
    }
    last = state;
  }
}

asio::awaitable<void> Bench::watch_hosts(std::chrono::milliseconds every) {
  Conn c(co_await asio::this_coro::executor, ctl());
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!stopping_) {
    // While the GET load runs it reads /v1/hosts itself.
    // Every host, a page of 1,000 at a time.
    for (std::string cursor; phase_ != kGetLoad;) {
      // The target built before the co_await: GCC 12 mishandles temporaries of a
      // conditional expression inside a co_await's arguments.
      std::string target = "/v1/hosts?limit=1000";
      if (!cursor.empty()) target += "&cursor=" + cursor;
      auto r = co_await api(c, bhttp::verb::get, std::move(target), {}, 60s);
      if (!r.error.empty() || r.status != 200) break;
      note_hosts(r.body);
      const json j = json::parse(r.body, nullptr, false);
      if (j.is_discarded() || !j.contains("next_cursor") || !j["next_cursor"].is_string()) break;
      cursor = j["next_cursor"].get<std::string>();
    }
    t.expires_after(every);
    beast::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> Bench::watch_metrics() {
  Conn c(co_await asio::this_coro::executor, ctl());
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!stopping_) {
    auto r = co_await api(c, bhttp::verb::get, "/metrics", {}, 30s);
    if (!r.error.empty() || r.status != 200) {
      ++metrics_failures_;
    } else {
      ++metrics_polls_;
      // Prometheus text: kvmfleet_hosts{state="up"} N, one line per state.
      int up = 0, not_up = 0;
      std::istringstream in(r.body);
      for (std::string line; std::getline(in, line);) {
        constexpr std::string_view kHosts = "kvmfleet_hosts{state=\"";
        if (!line.starts_with(kHosts)) continue;
        const auto sp = line.rfind(' ');
        if (sp == std::string::npos) continue;
        int n = 0;
        std::from_chars(line.data() + sp + 1, line.data() + line.size(), n);
        if (line.compare(kHosts.size(), 3, "up\"") == 0)
          up = n;
        else
          not_up += n;
      }
      metrics_up_ = up;
      if (up == o_.hosts) all_were_up_ = true;
      if (all_were_up_) {
        auto& m = max_not_up_[phase_];
        int prev = m;
        while (not_up > prev && !m.compare_exchange_weak(prev, not_up)) {
        }
      }
    }
    t.expires_after(1s);
    beast::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> Bench::create_worker(int worker) {
  Conn c(co_await asio::this_coro::executor, ctl());
  (void)worker;
  for (int i = next_vm_++; i < o_.vms && !stopping_ && !g_interrupted; i = next_vm_++) {
    if (Clock::now() > create_deadline_) break;
    char name[32];
    std::snprintf(name, sizeof name, "vm-%06d", i);
    const json body = {{"name", name},
                       {"vcpus", 1},
                       {"memory_mib", o_.vm_memory_mib},
                       {"disks", json::array({{{"size_gib", 10}}})},
                       {"start", true}};
    const auto t0 = Clock::now();
    auto r = co_await api(c, bhttp::verb::post, "/v1/vms?wait=120", body.dump(), 130s, true,
                          std::string("create-") + name);
    std::string why;
    json op = json::parse(r.body, nullptr, false);
    // Not finished within the wait: follow the operation.
    while (why.empty() && r.error.empty() && r.status == 202 && !op.is_discarded() &&
           op.contains("id") && !stopping_) {
      r = co_await api(c, bhttp::verb::get,
                       "/v1/operations/" + op["id"].get<std::string>() + "?wait=60", {}, 70s);
      op = json::parse(r.body, nullptr, false);
      if (r.status == 200 && !op.is_discarded() &&
          (op.value("state", "") == "pending" || op.value("state", "") == "running"))
        r.status = 202;
    }
    if (!r.error.empty())
      why = r.error;
    else if (r.status != 200 || op.is_discarded())
      why = "HTTP " + std::to_string(r.status);
    else if (op.value("state", "") != "succeeded")
      why = "operation " + op.value("state", std::string("?"));
    if (why.empty()) {
      ++created_;
      create_latency_.add(ms_between(t0, Clock::now()));
      std::lock_guard lk(create_mu_);
      created_at_s_.push_back(s_since(create_t0_));
    } else {
      ++create_failed_;
      std::string detail = why;
      if (!op.is_discarded() && op.contains("error") && op["error"].is_object())
        detail += ": " + op["error"].value("code", std::string()) + " " +
                  op["error"].value("message", std::string()).substr(0, 120);
      std::lock_guard lk(create_mu_);
      ++create_errors_[detail];
    }
  }
}

asio::awaitable<void> Bench::get_loop(bool hosts, Samples& out, std::atomic<long>& failures) {
  Conn c(co_await asio::this_coro::executor, ctl());
  asio::steady_timer t(co_await asio::this_coro::executor);
  std::mt19937 rng(hosts ? 1 : 2);
  const auto period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(1.0 / std::max(0.01, o_.get_rate)));
  auto next = Clock::now();
  const int vms = std::max(1, static_cast<int>(created_.load()));
  while (!stopping_ && phase_ == kGetLoad) {
    // A random page: the cursor is the last name of the page before.
    char cursor[32];
    if (hosts)
      std::snprintf(cursor, sizeof cursor, "sim-%05d",
                    std::uniform_int_distribution<int>(0, o_.hosts - 1)(rng));
    else
      std::snprintf(cursor, sizeof cursor, "vm-%06d",
                    std::uniform_int_distribution<int>(0, vms - 1)(rng));
    const std::string target = std::string(hosts ? "/v1/hosts" : "/v1/vms") +
                               "?limit=" + std::to_string(o_.get_limit) + "&cursor=" + cursor;
    auto r = co_await api(c, bhttp::verb::get, target, {}, 60s);
    if (r.error.empty() && r.status == 200) {
      out.add(r.ms);
      if (hosts) note_hosts(r.body);
    } else {
      ++failures;
    }
    next += period;
    if (next < Clock::now()) next = Clock::now();  // closed loop when slower than the rate
    t.expires_at(next);
    beast::error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

void Bench::sample_resources() {
  ResourceSample s;
  s.t = s_since(t_start_);
  s.phase = static_cast<Phase>(phase_.load());
  s.ctrl = read_proc(controller_.pid());
  s.self = read_proc(::getpid());
  std::lock_guard lk(res_mu_);
  res_.push_back(s);
}

bool Bench::wait_all_up(int timeout_s) {
  const auto until = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < until && !g_interrupted) {
    if (metrics_up_ == o_.hosts) return true;
    std::this_thread::sleep_for(200ms);
  }
  return metrics_up_ == o_.hosts;
}

void Bench::count_log() {
  std::ifstream in(controller_.log_path());
  for (std::string line; std::getline(in, line);) {
    if (line.find("[error]") != std::string::npos) ++log_errors_;
    if (line.find("[warning]") != std::string::npos) ++log_warnings_;
    if (line.find("host ") != std::string::npos &&
        line.find(" is unreachable") != std::string::npos)
      ++log_unreachable_;
    if (line.find("host ") != std::string::npos && line.find(" is down") != std::string::npos)
      ++log_down_;
    if (line.find("is no longer defined on") != std::string::npos) ++log_not_defined_;
    if (line.find("changed outside kvmfleet") != std::string::npos) ++log_changed_outside_;
  }
}

std::string run_text(const std::vector<std::string>& argv) {
  kvmfleet::SystemProcessRunner runner;
  kvmfleet::RunOptions ro;
  ro.timeout = 10s;
  auto r = runner.run(argv, ro);
  if (!r || !r->success()) return "?";
  std::string s = r->out;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

int Bench::run(const std::string& command_line) {
  t_start_ = Clock::now();
  std::printf("kvmfleet fleet simulator: %d hosts, %d VMs, heartbeat every %d ms, %u CPUs\n",
              o_.hosts, o_.vms, o_.heartbeat_ms, std::thread::hardware_concurrency());
  std::fflush(stdout);
  controller_.start(o_);
  std::printf("controller pid %d on 127.0.0.1:%u, dir %s\n", controller_.pid(), controller_.port(),
              controller_.dir().c_str());
  std::fflush(stdout);

  ioc_ = std::make_unique<asio::io_context>(o_.threads);
  auto guard = asio::make_work_guard(*ioc_);
  for (int i = 0; i < o_.threads; ++i) threads_.emplace_back([this] { ioc_->run(); });
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      sample_resources();
      std::this_thread::sleep_for(1s);
    }
  });

  int rc = 0;
  try {
    start_agents();
    asio::co_spawn(ex(), watch_metrics(), asio::detached);
    asio::co_spawn(ex(), watch_hosts(5s), asio::detached);

    // Hosts
    auto t0 = Clock::now();
    registered_ = await(register_hosts());
    register_s_ = s_since(t0);
    std::printf("registered %d/%d hosts in %.1f s\n", registered_, o_.hosts, register_s_);
    std::fflush(stdout);
    std::mt19937_64 rng(7);
    const auto interval = std::chrono::milliseconds(o_.heartbeat_ms);
    for (auto& h : hosts_) {
      if (h->token.empty()) continue;
      const Clock::duration first = std::chrono::duration_cast<Clock::duration>(
          interval * std::uniform_real_distribution<double>(0, 1)(rng));
      {
        std::lock_guard lk(h->mu);
        h->strand.emplace(asio::make_strand(*ioc_));
        h->wake = std::make_unique<asio::steady_timer>(*h->strand);
      }
      asio::co_spawn(*h->strand, heartbeat_loop(*h, first), asio::detached);
    }
    t0 = Clock::now();
    hosts_came_up_ = wait_all_up(o_.up_timeout_s);
    up_s_ = s_since(t0);
    std::printf("%d/%d hosts up after %.1f s\n", metrics_up_.load(), o_.hosts, up_s_);
    std::fflush(stdout);

    // VMs
    if (hosts_came_up_ && o_.vms > 0 && !g_interrupted) {
      set_phase(kCreate);
      create_t0_ = Clock::now();
      create_deadline_ = create_t0_ + std::chrono::seconds(o_.create_timeout_s);
      auto remaining = std::make_shared<std::atomic<int>>(o_.create_concurrency);
      for (int w = 0; w < o_.create_concurrency; ++w)
        asio::co_spawn(ex(), create_worker(w), [remaining](std::exception_ptr) { --*remaining; });
      long last_report = 0;
      while (*remaining > 0) {
        std::this_thread::sleep_for(200ms);
        if (g_interrupted) stopping_ = true;
        const long done = created_ + create_failed_;
        if (done - last_report >= std::max(1, o_.vms / 10)) {
          last_report = done;
          std::printf("  %ld/%d VMs done (%ld failed) after %.1f s\n", done, o_.vms,
                      create_failed_.load(), s_since(create_t0_));
          std::fflush(stdout);
        }
      }
      create_s_ = s_since(create_t0_);
      std::printf("created %ld/%d VMs in %.1f s (%ld failed)\n", created_.load(), o_.vms, create_s_,
                  create_failed_.load());
      std::fflush(stdout);
    }

    // Steady state: heartbeats only, then with the GET load.
    if (!g_interrupted && !stopping_) {
      set_phase(kSteady);
      std::printf("steady state: %d s heartbeats only\n", o_.steady_s);
      std::fflush(stdout);
      for (int i = 0; i < o_.steady_s * 10 && !g_interrupted; ++i)
        std::this_thread::sleep_for(100ms);
    }
    if (!g_interrupted && !stopping_ && o_.get_s > 0) {
      set_phase(kGetLoad);
      std::printf("steady state: %d s with GET /v1/hosts and GET /v1/vms at %.1f/s each\n",
                  o_.get_s, o_.get_rate);
      std::fflush(stdout);
      auto remaining = std::make_shared<std::atomic<int>>(2);
      asio::co_spawn(ex(), get_loop(true, get_hosts_ms_, get_hosts_failed_),
                     [remaining](std::exception_ptr) { --*remaining; });
      asio::co_spawn(ex(), get_loop(false, get_vms_ms_, get_vms_failed_),
                     [remaining](std::exception_ptr) { --*remaining; });
      for (int i = 0; i < o_.get_s * 10 && !g_interrupted; ++i) std::this_thread::sleep_for(100ms);
      set_phase(kSetup);  // the loops end after their request in flight
      for (int i = 0; i < 700 && *remaining > 0; ++i) std::this_thread::sleep_for(100ms);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "benchmark failed: %s\n", e.what());
    rc = 1;
  }
  set_phase(kSetup);
  stopping_ = true;
  sampling = false;
  sampler.join();
  count_log();
  print_results(command_line);

  if (o_.smoke) {
    const bool ok = hosts_came_up_ && created_ == o_.vms && create_failed_ == 0 &&
                    [&] {
                      long t = 0;
                      for (long v : false_transitions_) t += v;
                      return t == 0;
                    }() &&
                    log_unreachable_ == 0 && log_down_ == 0 && log_changed_outside_ == 0 &&
                    log_not_defined_ == 0 && hosts_polls_ > 0;
    std::printf("smoke: %s\n", ok ? "ok" : "FAILED");
    if (!ok) rc = 1;
  }
  // Teardown: the controller by its pid, the agents' servers, the threads.
  controller_.stop();
  for (auto& h : hosts_) h->server->stop();
  guard.reset();
  ioc_->stop();
  for (auto& t : threads_) t.join();
  return rc;
}

void Bench::print_results(const std::string& command_line) {
  const std::string source = KVMFLEET_SOURCE_DIR;
  const std::string commit = run_text({"git", "-C", source, "rev-parse", "--short=12", "HEAD"});
  const std::string dirty =
      run_text({"git", "-C", source, "status", "--porcelain", "--", "src", "include", "bench"});
  std::printf("\n==== kvmfleet fleet simulator results ====\n");
  std::printf("commit      %s%s\n", commit.c_str(), dirty.empty() ? "" : " (uncommitted changes)");
  std::printf("command     %s\n", command_line.c_str());
  std::printf("controller  %s\n", o_.controller.c_str());
  std::printf("machine     %u CPUs; controller and simulator share them (%d simulator threads)\n",
              std::thread::hardware_concurrency(), o_.threads);
  std::printf("hosts       %d registered in %.1f s, all up: %s (%.1f s)\n", registered_,
              register_s_, hosts_came_up_ ? "yes" : "NO", up_s_);

  // Resources per phase.
  struct Window {
    double ctrl_cpu = 0, self_cpu = 0, rss_avg = 0, rss_max = 0, secs = 0;
    int ctrl_threads = 0;
  };
  Window win[kPhases];
  double peak_hwm = 0;
  {
    std::lock_guard lk(res_mu_);
    for (int p = 0; p < kPhases; ++p) {
      const ResourceSample* first = nullptr;
      const ResourceSample* last = nullptr;
      double rss_sum = 0;
      int n = 0;
      for (const auto& s : res_) {
        if (s.phase != p || !s.ctrl.ok) continue;
        if (!first) first = &s;
        last = &s;
        rss_sum += s.ctrl.rss_mib;
        ++n;
        win[p].rss_max = std::max(win[p].rss_max, s.ctrl.rss_mib);
        win[p].ctrl_threads = s.ctrl.threads;
      }
      if (first && last && last->t > first->t) {
        win[p].secs = last->t - first->t;
        win[p].ctrl_cpu = 100.0 * (last->ctrl.cpu_s - first->ctrl.cpu_s) / win[p].secs;
        win[p].self_cpu = 100.0 * (last->self.cpu_s - first->self.cpu_s) / win[p].secs;
      }
      if (n > 0) win[p].rss_avg = rss_sum / n;
    }
    for (const auto& s : res_) peak_hwm = std::max(peak_hwm, s.ctrl.hwm_mib);
  }

  std::printf(
      "\nper phase        secs  ctrl CPU%%  sim CPU%%  ctrl RSS avg/max MiB  hb n  "
      "hb p50 ms  hb p99 ms  hb max ms  hb failed\n");
  for (int p = kCreate; p < kPhases; ++p) {
    auto v = hb_.latency[p].take();
    std::printf("%-14s %6.1f  %9.1f  %8.1f  %9.1f / %-9.1f  %6zu  %9.2f  %9.2f  %9.2f  %9ld\n",
                kPhaseNames[p], win[p].secs, win[p].ctrl_cpu, win[p].self_cpu, win[p].rss_avg,
                win[p].rss_max, v.size(), percentile(v, 50), percentile(v, 99),
                v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()), hb_.failed_in[p].load());
  }

  // VM creation
  std::vector<double> at;
  {
    std::lock_guard lk(create_mu_);
    at = created_at_s_;
  }
  std::sort(at.begin(), at.end());
  const double overall = create_s_ > 0 ? static_cast<double>(created_) / create_s_ : 0;
  double min_decile = 0;
  bool have_decile = false;
  std::printf(
      "\nVM creation: %ld created, %ld failed, %.1f s, %.1f VMs/s overall "
      "(concurrency %d)\n",
      created_.load(), create_failed_.load(), create_s_, overall, o_.create_concurrency);
  if (!at.empty()) {
    std::printf("  per 10 %% of M:");
    const std::size_t step = std::max<std::size_t>(1, static_cast<std::size_t>(o_.vms) / 10);
    double prev = 0;
    bool first = true;
    for (std::size_t k = step; k <= at.size(); k += step) {
      const double t = at[k - 1];
      const double rate = t > prev ? static_cast<double>(step) / (t - prev) : 0;
      std::printf(" %.0f", rate);
      min_decile = first ? rate : std::min(min_decile, rate);
      have_decile = true;
      first = false;
      prev = t;
    }
    std::printf(" VMs/s\n");
    auto lat = create_latency_.take();
    std::printf("  create latency (request to operation succeeded): p50 %.1f ms, p99 %.1f ms\n",
                percentile(lat, 50), percentile(lat, 99));
  }
  {
    std::lock_guard lk(create_mu_);
    for (const auto& [why, n] : create_errors_) std::printf("  failed x%ld: %s\n", n, why.c_str());
  }

  // Heartbeats
  std::printf(
      "\nheartbeats: %ld ok, %ld failed (%ld timeouts), %ld resent on a closed "
      "keep-alive connection\n",
      hb_.ok.load(), hb_.failed.load(), hb_.timeouts.load(), hb_.retried.load());
  {
    std::lock_guard lk(hb_.mu);
    for (const auto& [why, n] : hb_.errors) std::printf("  x%ld: %s\n", n, why.c_str());
  }
  long agent_calls = 0;
  for (const auto& h : hosts_) agent_calls += h->agent_calls;
  auto evl = ev_latency_.take();
  std::printf(
      "lifecycle events: %ld sent in %ld posts (%ld failed), post p50 %.2f ms, p99 %.2f "
      "ms\n",
      events_sent_.load(), ev_ok_.load(), ev_failed_.load(), percentile(evl, 50),
      percentile(evl, 99));
  std::printf("agent calls answered: %ld\n", agent_calls);

  // Host states
  long transitions = 0;
  {
    std::lock_guard lk(states_mu_);
    for (long v : false_transitions_) transitions += v;
    std::printf("\nhost states: %ld GET /v1/hosts read, %ld /metrics read (%ld failed)\n",
                hosts_polls_.load(), metrics_polls_.load(), metrics_failures_.load());
    std::printf(
        "  up -> unreachable/down seen in GET /v1/hosts: create %ld, steady %ld, "
        "get-load %ld\n",
        false_transitions_[kCreate], false_transitions_[kSteady], false_transitions_[kGetLoad]);
    std::printf("  most hosts not up at once in /metrics: create %d, steady %d, get-load %d\n",
                max_not_up_[kCreate].load(), max_not_up_[kSteady].load(),
                max_not_up_[kGetLoad].load());
    for (const auto& e : transition_examples_) std::printf("  e.g. %s\n", e.c_str());
  }
  std::printf(
      "  controller log: %ld \"is unreachable\", %ld \"is down\", %ld \"no longer "
      "defined\", %ld \"changed outside kvmfleet\"; %ld warnings, %ld errors\n",
      log_unreachable_, log_down_, log_not_defined_, log_changed_outside_, log_warnings_,
      log_errors_);

  // GET load
  auto gh = get_hosts_ms_.take(), gv = get_vms_ms_.take();
  std::printf(
      "\nGET load (%d s, target %.1f/s each): GET /v1/hosts?limit=%d %zu ok %ld failed; "
      "GET /v1/vms?limit=%d %zu ok %ld failed\n",
      o_.get_s, o_.get_rate, o_.get_limit, gh.size(), get_hosts_failed_.load(), o_.get_limit,
      gv.size(), get_vms_failed_.load());

  // The table against the goals (2,000 hosts / 50,000 VMs).
  const auto hb_steady = hb_.latency[kSteady].take();
  const double hb99 = percentile(hb_steady, 99);
  const long false_unreachable = std::max<long>(transitions, log_unreachable_ + log_down_);
  struct Row {
    std::string figure, measured, goal;
    double ratio;
    bool lower_better;
    bool have;
  };
  char b[128];
  auto fmt = [&](const char* f, double v) {
    std::snprintf(b, sizeof b, f, v);
    return std::string(b);
  };
  std::vector<Row> rows = {
      {"controller CPU, steady (% of one core)", fmt("%.1f %%", win[kSteady].ctrl_cpu), "< 25 %",
       win[kSteady].ctrl_cpu / 25, true, win[kSteady].secs > 0},
      {"controller RSS, steady (max)", fmt("%.1f MiB", win[kSteady].rss_max), "< 300 MB",
       win[kSteady].rss_max * 1.048576 / 300, true, win[kSteady].secs > 0},
      {"controller RSS, peak (VmHWM)", fmt("%.1f MiB", peak_hwm), "< 300 MB",
       peak_hwm * 1.048576 / 300, true, peak_hwm > 0},
      {"heartbeat p50, steady", fmt("%.2f ms", percentile(hb_steady, 50)), "-", 0, true, false},
      {"heartbeat p99, steady", fmt("%.2f ms", hb99), "< 50 ms", hb99 / 50, true,
       !hb_steady.empty()},
      {"false unreachable/down (all phases)", std::to_string(false_unreachable), "0",
       static_cast<double>(false_unreachable), true, true},
      {"GET /v1/hosts?limit=" + std::to_string(o_.get_limit) + " p50",
       fmt("%.2f ms", percentile(gh, 50)), "-", 0, true, false},
      {"GET /v1/hosts?limit=" + std::to_string(o_.get_limit) + " p99",
       fmt("%.2f ms", percentile(gh, 99)), "< 20 ms", percentile(gh, 99) / 20, true, !gh.empty()},
      {"GET /v1/vms?limit=" + std::to_string(o_.get_limit) + " p50",
       fmt("%.2f ms", percentile(gv, 50)), "-", 0, true, false},
      {"GET /v1/vms?limit=" + std::to_string(o_.get_limit) + " p99",
       fmt("%.2f ms", percentile(gv, 99)), "< 20 ms", percentile(gv, 99) / 20, true, !gv.empty()},
      {"VM creation, overall", fmt("%.1f VMs/s", overall), ">= 200 VMs/s", overall / 200, false,
       created_ > 0},
      {"VM creation, slowest 10 %", fmt("%.1f VMs/s", min_decile), ">= 200 VMs/s", min_decile / 200,
       false, have_decile},
      {"controller CPU, GET load", fmt("%.1f %%", win[kGetLoad].ctrl_cpu), "-", 0, true, false},
      {"controller CPU, creation", fmt("%.1f %%", win[kCreate].ctrl_cpu), "-", 0, true, false},
      {"simulator CPU, steady (% of one core)", fmt("%.1f %%", win[kSteady].self_cpu), "-", 0, true,
       false},
  };
  // A GET that never answered within its 60 s timeout is a miss, not a hole in the table.
  for (auto [name, samples, failed] :
       {std::tuple{std::string("GET /v1/hosts p99"), &gh, get_hosts_failed_.load()},
        std::tuple{"GET /v1/vms?limit=" + std::to_string(o_.get_limit) + " p99", &gv,
                   get_vms_failed_.load()}}) {
    if (!samples->empty() || failed == 0) continue;
    for (auto& r : rows)
      if (r.figure == name) {
        r.measured = "> 60 s (" + std::to_string(failed) + " timed out)";
        r.ratio = 60000.0 / 20;
        r.have = true;
      }
  }
  // Heartbeats that all failed (5 s timeout) in the steady window: a miss as well.
  if (hb_steady.empty() && hb_.failed_in[kSteady] > 0)
    for (auto& r : rows)
      if (r.figure == "heartbeat p99, steady") {
        r.measured = "> 5 s (" + std::to_string(hb_.failed_in[kSteady].load()) + " failed)";
        r.ratio = 5000.0 / 50;
        r.have = true;
      }
  std::printf("\n%-40s %16s %14s %8s  %s\n", "figure", "measured", "goal", "ratio", "");
  for (const auto& r : rows) {
    std::string ratio = "-", verdict;
    if (r.have && r.goal != "-") {
      if (r.goal == "0") {
        ratio = r.ratio == 0 ? "0" : std::to_string(static_cast<long>(r.ratio));
        verdict = r.ratio == 0 ? "meets" : "MISSES";
      } else {
        ratio = fmt("%.2f", r.ratio);
        verdict = (r.lower_better ? r.ratio < 1 : r.ratio >= 1) ? "meets" : "MISSES";
      }
    } else if (r.goal != "-") {
      verdict = "not measured";
    }
    std::printf("%-40s %16s %14s %8s  %s\n", r.figure.c_str(), r.measured.c_str(), r.goal.c_str(),
                ratio.c_str(), verdict.c_str());
  }
  std::printf(
      "(ratio: measured / goal; below 1 meets a ceiling, 1 or more meets a floor. Goals "
      "are for 2,000 hosts / 50,000 VMs.)\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
        return argv[++i];
      };
      auto num = [&]() { return std::stoi(next()); };
      if (arg == "--preset") {
        o.hosts = num();
        o.vms = o.hosts * 25;
      } else if (arg == "--hosts") {
        o.hosts = num();
      } else if (arg == "--vms") {
        o.vms = num();
      } else if (arg == "--heartbeat-ms") {
        o.heartbeat_ms = num();
      } else if (arg == "--steady-s") {
        o.steady_s = num();
      } else if (arg == "--get-s") {
        o.get_s = num();
      } else if (arg == "--get-rate") {
        o.get_rate = std::stod(next());
      } else if (arg == "--get-limit") {
        o.get_limit = num();
      } else if (arg == "--create-concurrency") {
        o.create_concurrency = num();
      } else if (arg == "--create-timeout-s") {
        o.create_timeout_s = num();
      } else if (arg == "--threads") {
        o.threads = num();
      } else if (arg == "--up-timeout-s") {
        o.up_timeout_s = num();
      } else if (arg == "--vm-memory-mib") {
        o.vm_memory_mib = num();
      } else if (arg == "--api-threads") {
        o.api_threads = num();
      } else if (arg == "--controller-log-level") {
        o.controller_log_level = next();
      } else if (arg == "--controller") {
        o.controller = next();
      } else if (arg == "--keep-dir") {
        o.keep_dir = true;
      } else if (arg == "--smoke") {
        o.smoke = true;
      } else {
        return usage();
      }
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return usage();
  }
  if (o.hosts < 1 || o.vms < 0 || o.heartbeat_ms < 100 || o.steady_s < 0 || o.get_s < 0 ||
      o.create_concurrency < 1 || o.threads < 1 || o.get_limit < 1 || o.get_limit > 1000)
    return usage();

  // Two sockets per host here (its server, its heartbeat connection) and as many in the
  // controller, which inherits this limit.
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &lim);
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  Bench bench(o);
  try {
    return bench.run(command_line);
  } catch (const std::exception& e) {
    std::cerr << "benchmark failed: " << e.what() << "\n";
    return 1;
  }
}
