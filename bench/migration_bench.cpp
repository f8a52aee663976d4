// Live migration benchmarks on the cluster lab (docs/benchmarks.md, "Live migration"):
// a controller plus two namespaced libvirtd hosts, each with a kvmfleet-agent, and
// real KVM guests.
//
//   single: one VM moved through POST /v1/vms/{id}/migrate?wait=..., against a twin
//           VM (same domain XML, unknown to the controller) moved by raw
//           `virsh migrate --live --p2p --persistent --undefinesource --abort-on-error`
//           run inside the source host; alternating, both directions.
//   drain:  8 VMs leave a host through POST /v1/hosts/{name}/maintenance, against 8
//           twins moved by 8 sequential raw virsh migrations; once per budget
//           (migrations_per_host, the controller restarted with that config).
//
// It prints figures and ratios; it asserts nothing about time. Needs root and the
// lab's packages (docs/lab.md). Everything it makes is removed on exit, also on error
// or SIGINT/SIGTERM.
#include "tests/lab/lab.hpp"

#include "kvmfleet/http/client.hpp"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint16_t kAgentPort = 8401;
std::atomic<bool> g_interrupted{false};

void on_signal(int) {
  g_interrupted = true;
}

void check_interrupted() {
  if (g_interrupted) throw std::runtime_error("interrupted");
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

struct Stats {
  double median = 0, p90 = 0, min = 0, max = 0;
};

// Median (mean of the two middle values for an even count) and p90 by nearest rank.
Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  const std::size_t rank = (9 * n + 9) / 10;  // ceil(0.9 n)
  s.p90 = v[std::min(n, std::max<std::size_t>(rank, 1)) - 1];
  s.min = v.front();
  s.max = v.back();
  return s;
}

// Milliseconds since the epoch of "YYYY-MM-DDTHH:MM:SS.mmmZ"; -1 if absent.
std::int64_t epoch_ms(const json& j) {
  if (!j.is_string()) return -1;
  std::tm tm{};
  int ms = 0;
  const std::string s = j.get<std::string>();
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

// `xml` (a domain) renamed to `name`, with its uuid, metadata and MAC addresses
// removed so that libvirt makes new ones: the same machine as a domain of its own.
std::string twin_xml(const std::string& xml, const std::string& name) {
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr,
                    XML_PARSE_NONET),
      &xmlFreeDoc);
  if (!doc) throw std::runtime_error("cannot parse the domain XML");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  std::vector<xmlNode*> drop;
  auto walk = [&](auto&& self, xmlNode* parent) -> void {
    for (xmlNode* n = parent->children; n != nullptr; n = n->next) {
      if (n->type != XML_ELEMENT_NODE) continue;
      if (parent == root && xmlStrEqual(n->name, BAD_CAST "name")) {
        xmlNodeSetContent(n, nullptr);
        xmlNodeAddContent(n, BAD_CAST name.c_str());
      } else if ((parent == root && (xmlStrEqual(n->name, BAD_CAST "uuid") ||
                                     xmlStrEqual(n->name, BAD_CAST "metadata"))) ||
                 xmlStrEqual(n->name, BAD_CAST "mac")) {
        drop.push_back(n);
      } else {
        self(self, n);
      }
    }
  };
  walk(walk, root);
  for (xmlNode* n : drop) {
    xmlUnlinkNode(n);
    xmlFreeNode(n);
  }
  xmlChar* mem = nullptr;
  int size = 0;
  xmlDocDumpMemory(doc.get(), &mem, &size);
  std::string out(reinterpret_cast<const char*>(mem), static_cast<std::size_t>(size));
  xmlFree(mem);
  return out;
}

// A controller and two lab hosts with agents, as tests/e2e/migration_e2e_test.cpp
// sets them up. The destructor stops the controller and tears the lab down.
class Cluster {
 public:
  Cluster() = default;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ~Cluster() { shutdown(); }

  // Where shutdown copies the controller's and agents' logs (for profiling); empty: nowhere.
  std::filesystem::path keep_logs;
  // The programs under test (another build can be measured on the same lab).
  std::string controller_bin = KVMFLEET_CONTROLLER_BIN;
  std::string agent_bin = KVMFLEET_AGENT_BIN;

  void shutdown() {
    stop_controller();
    if (lab_ && !keep_logs.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(keep_logs, ec);
      std::filesystem::copy_file(lab_->work_dir() / "controller.log", keep_logs / "controller.log",
                                 std::filesystem::copy_options::overwrite_existing, ec);
      for (const auto& [name, _] : hosts_)
        std::filesystem::copy_file(lab_->work_dir() / name / "agent.log",
                                   keep_logs / (name + "-agent.log"),
                                   std::filesystem::copy_options::overwrite_existing, ec);
    }
    if (lab_) {
      if (auto st = lab_->teardown(); !st)
        std::cerr << "lab teardown: " << st.error().message << "\n";
      lab_.reset();
    }
  }

  void up(const std::vector<std::string>& names, int budget, const std::string& cache_dir) {
    lab::LabOptions lo;
    lo.capabilities_cache = cache_dir;
    auto lab = lab::Lab::create(runner_, lo);
    if (!lab) throw std::runtime_error("lab: " + lab.error().message);
    lab_ = std::move(*lab);
    {
      boost::asio::io_context io;
      boost::asio::ip::tcp::acceptor a(io,
                                       {boost::asio::ip::make_address(lab_->bridge_address()), 0});
      port_ = a.local_endpoint().port();
    }
    url_ = "http://" + lab_->bridge_address() + ":" + std::to_string(port_);
    start_controller(budget);
    std::ifstream tok(lab_->work_dir() / "admin.token");
    std::getline(tok, token_);
    for (const auto& name : names) {
      check_interrupted();
      auto h = lab_->add_host(name);
      if (!h) throw std::runtime_error("host " + name + ": " + h.error().message);
      const std::string agent_url = "http://" + h->address + ":" + std::to_string(kAgentPort);
      const json reg =
          api("POST", "/v1/hosts", json{{"name", name}, {"agent_url", agent_url}}.dump());
      const auto dir = lab_->work_dir() / name;
      std::filesystem::create_directories(dir / "images");
      std::ofstream(dir / "agent.token") << reg["agent_token"].get<std::string>() << "\n";
      std::filesystem::permissions(dir / "agent.token", std::filesystem::perms::owner_read |
                                                            std::filesystem::perms::owner_write);
      std::ofstream(dir / "agent.json") << json{
          {"host", name},
          {"listen_address", h->address},
          {"listen_port", kAgentPort},
          {"controller_url", url_},
          {"token_file", (dir / "agent.token").string()},
          {"libvirt_uri", "qemu:///system"},
          {"image_pool_path", (dir / "images").string()},
          {"migration_address", h->address},
          {"heartbeat_interval_ms", 1000}}.dump();
      SpawnOptions so;
      so.stdout_path = so.stderr_path = (dir / "agent.log").string();
      auto pid = lab_->run_in_host(*h, {agent_bin, "--config", (dir / "agent.json").string()}, so);
      if (!pid) throw std::runtime_error("agent: " + pid.error().message);
      hosts_[name] = *h;
    }
    wait_hosts_up();
  }

  // Stops the controller (if any) and starts it again on the same database with
  // migrations_per_host = budget (and enough workers for a drain plus its migrations).
  void start_controller(int budget) {
    if (controller_ > 0 && budget == budget_) return;
    stop_controller();
    budget_ = budget;
    const auto cfg = lab_->work_dir() / ("controller-" + std::to_string(budget) + ".json");
    std::ofstream(cfg) << json{
        {"migrations_per_host", budget},
        {"operation_workers", std::max(8, 2 * budget + 2)},
        {"heartbeat_interval_ms",
         1000}}.dump();
    SpawnOptions so;
    so.stdout_path = so.stderr_path = (lab_->work_dir() / "controller.log").string();
    auto pid =
        runner_.spawn({controller_bin, "--config", cfg.string(), "--database",
                       (lab_->work_dir() / "controller.db").string(), "--bootstrap-token-file",
                       (lab_->work_dir() / "admin.token").string(), "--listen-address",
                       lab_->bridge_address(), "--listen-port", std::to_string(port_)},
                      so);
    if (!pid) throw std::runtime_error("controller: " + pid.error().message);
    controller_ = *pid;
    http::BeastClient c;
    for (int i = 0; i < 150; ++i) {
      check_interrupted();
      auto r = c.request("GET", url_ + "/v1/healthz", "", "", 1s);
      if (r && r->status == 200) return;
      std::this_thread::sleep_for(200ms);
    }
    throw std::runtime_error("controller did not come up; see " +
                             (lab_->work_dir() / "controller.log").string());
  }

  void stop_controller() {
    if (controller_ > 0) (void)runner_.terminate(controller_, 10s);
    controller_ = 0;
  }

  void wait_hosts_up() {
    for (int i = 0; i < 300; ++i) {
      check_interrupted();
      auto hs = try_api("GET", "/v1/hosts");
      std::size_t up = 0;
      if (hs)
        for (auto& h : (*hs)["items"]) up += h["state"] == "up";
      if (up == hosts_.size()) return;
      std::this_thread::sleep_for(200ms);
    }
    throw std::runtime_error("hosts did not report in; see the agent logs under " +
                             lab_->work_dir().string());
  }

  Result<json> try_api(const std::string& method, const std::string& path,
                       const std::string& body = {}, std::chrono::seconds timeout = 30s) {
    http::BeastClient c;
    auto r = c.request(method, url_ + path, token_, body, timeout);
    if (!r) return r.take_error();
    auto j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) return internal_error("not JSON: " + r->body);
    if (r->status >= 400) return Error::from_json(j);
    return j;
  }

  json api(const std::string& method, const std::string& path, const std::string& body = {},
           std::chrono::seconds timeout = 30s) {
    auto r = try_api(method, path, body, timeout);
    if (!r) throw std::runtime_error(method + " " + path + ": " + r.error().message);
    return *r;
  }

  // An operation answered with ?wait= must have succeeded.
  json api_op(const std::string& method, const std::string& path, const std::string& body,
              std::chrono::seconds timeout) {
    json op = api(method, path, body, timeout);
    if (op.value("state", "") != "succeeded")
      throw std::runtime_error(method + " " + path + " did not succeed: " + op.dump());
    return op;
  }

  ProcessOutput virsh(const std::string& host, const std::vector<std::string>& args) {
    auto r = lab_->virsh(hosts_.at(host), args);
    if (!r) throw std::runtime_error("virsh: " + r.error().message);
    return *r;
  }

  ProcessOutput virsh_ok(const std::string& host, const std::vector<std::string>& args) {
    auto r = virsh(host, args);
    if (!r.success()) {
      std::string cmd;
      for (const auto& a : args) cmd += " " + a;
      throw std::runtime_error("virsh" + cmd + " on " + host + ": " + r.err);
    }
    return r;
  }

  std::string domstate(const std::string& host, const std::string& vm) {
    auto r = virsh(host, {"domstate", vm});
    return r.success() ? trim(r.out) : "absent";
  }

  // The raw migration: what the agent asks libvirt for (LIVE | PEER2PEER | PERSIST_DEST
  // | UNDEFINE_SOURCE | ABORT_ON_ERROR, migrate URI tcp://ADDR), as virsh inside the
  // source host. Returns the wall time in ms.
  double raw_migrate(const std::string& from, const std::string& to, const std::string& vm) {
    const std::string addr = hosts_.at(to).address;
    RunOptions ro;
    ro.timeout = 300s;
    const auto t0 = Clock::now();
    auto r =
        lab_->exec_in_host(hosts_.at(from),
                           {"virsh", "-q", "-c", "qemu:///system", "migrate", "--live", "--p2p",
                            "--persistent", "--undefinesource", "--abort-on-error", vm,
                            "qemu+tcp://" + addr + "/system", "--migrateuri", "tcp://" + addr},
                           ro);
    const double ms = ms_since(t0);
    if (!r) throw std::runtime_error("virsh migrate: " + r.error().message);
    if (!r->success())
      throw std::runtime_error("virsh migrate " + vm + " " + from + " -> " + to + ": " + r->err);
    return ms;
  }

  // Defines and starts `name` on `host` from another domain's persistent XML, without
  // its uuid, kvmfleet metadata and MAC addresses: the same machine, unknown to kvmfleet.
  void define_twin(const std::string& host, const std::string& model, const std::string& name) {
    const std::string xml = virsh_ok(host, {"dumpxml", "--inactive", model}).out;
    const auto path = lab_->work_dir() / (name + ".xml");
    std::ofstream(path) << twin_xml(xml, name);
    virsh_ok(host, {"define", path.string()});
    virsh_ok(host, {"start", name});
  }

  void undefine_everywhere(const std::string& vm) {
    for (const auto& [name, _] : hosts_) {
      (void)lab_->virsh(hosts_.at(name), {"destroy", vm});
      (void)lab_->virsh(hosts_.at(name), {"undefine", vm});
    }
  }

  std::string domain_type(const std::string& host) {
    return api("GET", "/v1/hosts/" + host).value("domain_type", "?");
  }

  const std::filesystem::path& work_dir() const { return lab_->work_dir(); }

 private:
  SystemProcessRunner runner_;
  std::unique_ptr<lab::Lab> lab_;
  std::map<std::string, lab::Host> hosts_;
  std::string url_, token_;
  std::uint16_t port_ = 0;
  pid_t controller_ = 0;
  int budget_ = 0;
};

void create_vm(Cluster& c, const std::string& name, const std::string& host) {
  c.api_op("POST", "/v1/vms?wait=120",
           json{{"name", name}, {"memory_mib", 64}, {"host", host}, {"start", true}}.dump(), 150s);
  if (c.domstate(host, name) != "running")
    throw std::runtime_error(name + " is not running on " + host + " after create");
}

void expect_on(Cluster& c, const std::string& vm, const std::string& host,
               const std::string& other) {
  if (c.domstate(host, vm) != "running" || c.domstate(other, vm) != "absent")
    throw std::runtime_error(vm + " should run on " + host + " only: " + host + "=" +
                             c.domstate(host, vm) + ", " + other + "=" + c.domstate(other, vm));
}

void print_stats(const std::string& what, const std::vector<double>& v) {
  const Stats s = stats_of(v);
  std::printf("  %-34s n=%-3zu median %7.1f ms  p90 %7.1f ms  min %7.1f  max %7.1f\n", what.c_str(),
              v.size(), s.median, s.p90, s.min, s.max);
}

// ---- one VM ---------------------------------------------------------------------

void bench_single(Cluster& c, int runs, const std::string& a, const std::string& b) {
  std::printf("\n== One VM: API migrate vs raw virsh migrate (%d runs each way, alternating)\n",
              runs);
  create_vm(c, "bench-api", a);
  c.define_twin(a, "bench-api", "bench-raw");
  std::printf(
      "VMs: bench-api (through kvmfleet), bench-raw (same XML, unknown to kvmfleet); 64 MiB, "
      "domain type %s\n",
      c.domain_type(a).c_str());
  std::vector<double> api_ms, raw_ms, api_ab, api_ba, raw_ab, raw_ba, agent_ms, ctrl_ms;
  std::printf("%-4s %-6s %10s %12s %12s %10s\n", "run", "dir", "api_ms", "op_ms", "libvirt_ms",
              "virsh_ms");
  for (int i = 0; i < runs; ++i) {
    for (int dir = 0; dir < 2; ++dir) {
      check_interrupted();
      const std::string& from = dir == 0 ? a : b;
      const std::string& to = dir == 0 ? b : a;
      // Alternate which one goes first, so neither always follows the other.
      double api_wall = 0, raw_wall = 0;
      json op;
      auto run_api = [&] {
        const auto t0 = Clock::now();
        op = c.api_op("POST", "/v1/vms/bench-api/migrate?wait=120",
                      json{{"target_host", to}}.dump(), 150s);
        api_wall = ms_since(t0);
        expect_on(c, "bench-api", to, from);
      };
      auto run_raw = [&] {
        raw_wall = c.raw_migrate(from, to, "bench-raw");
        expect_on(c, "bench-raw", to, from);
      };
      if ((i + dir) % 2 == 0) {
        run_api();
        run_raw();
      } else {
        run_raw();
        run_api();
      }
      const std::int64_t op_ms = epoch_ms(op["finished_at"]) - epoch_ms(op["created_at"]);
      const std::int64_t lv_ms = op["result"]["migration"].value("elapsed_ms", std::int64_t{-1});
      std::printf("%-4d %-6s %10.1f %12lld %12lld %10.1f\n", i + 1, dir == 0 ? "A->B" : "B->A",
                  api_wall, static_cast<long long>(op_ms), static_cast<long long>(lv_ms), raw_wall);
      std::fflush(stdout);
      api_ms.push_back(api_wall);
      raw_ms.push_back(raw_wall);
      (dir == 0 ? api_ab : api_ba).push_back(api_wall);
      (dir == 0 ? raw_ab : raw_ba).push_back(raw_wall);
      if (lv_ms >= 0) agent_ms.push_back(static_cast<double>(lv_ms));
      if (op_ms >= 0) ctrl_ms.push_back(static_cast<double>(op_ms));
    }
  }
  std::printf("\nOne VM, %zu migrations each way:\n", api_ab.size());
  print_stats("API wall (A->B)", api_ab);
  print_stats("API wall (B->A)", api_ba);
  print_stats("raw virsh wall (A->B)", raw_ab);
  print_stats("raw virsh wall (B->A)", raw_ba);
  print_stats("API wall (both)", api_ms);
  print_stats("raw virsh wall (both)", raw_ms);
  print_stats("API: operation created->finished", ctrl_ms);
  print_stats("API: agent's libvirt migrate call", agent_ms);
  const Stats sa = stats_of(api_ms), sr = stats_of(raw_ms);
  std::printf("RATIO median(API)/median(virsh) = %.3f  (A->B %.3f, B->A %.3f; target <= 1.05)\n",
              sa.median / sr.median, stats_of(api_ab).median / stats_of(raw_ab).median,
              stats_of(api_ba).median / stats_of(raw_ba).median);
  std::printf("RATIO p90(API)/p90(virsh) = %.3f\n", sa.p90 / sr.p90);
  std::fflush(stdout);
  c.api_op("DELETE", "/v1/vms/bench-api?force=true&wait=60", {}, 90s);
  c.undefine_everywhere("bench-raw");
}

// ---- drain ----------------------------------------------------------------------

struct DrainFigures {
  int budget = 0;
  std::string dir;
  double drain_ms = 0, raw_ms = 0;
};

double drain(Cluster& c, const std::string& host, const std::vector<std::string>& vms) {
  const auto t0 = Clock::now();
  // ?wait= stops at 300 s: a longer drain is followed on its operation.
  json op =
      c.api("POST", "/v1/hosts/" + host + "/maintenance?wait=300", R"({"enabled":true})", 330s);
  for (int i = 0; i < 10 && (op["state"] == "pending" || op["state"] == "running"); ++i)
    op = c.api("GET", "/v1/operations/" + op["id"].get<std::string>() + "?wait=300", {}, 330s);
  const double ms = ms_since(t0);
  if (op["state"] != "succeeded")
    throw std::runtime_error("drain of " + host + " did not succeed: " + op.dump());
  for (const auto& n : vms)
    if (op["result"]["vms"][n].value("state", "") != "moved")
      throw std::runtime_error("drain of " + host + " did not move " + n + ": " + op.dump());
  c.api_op("POST", "/v1/hosts/" + host + "/maintenance?wait=60", R"({"enabled":false})", 90s);
  return ms;
}

double raw_sequence(Cluster& c, const std::string& from, const std::string& to,
                    const std::vector<std::string>& vms) {
  const auto t0 = Clock::now();
  for (const auto& n : vms) {
    check_interrupted();
    c.raw_migrate(from, to, n);
  }
  return ms_since(t0);
}

void bench_drain(Cluster& c, int count, const std::vector<int>& budgets, int rounds,
                 const std::string& a, const std::string& b) {
  std::printf("\n== Drain %d VMs: maintenance vs %d sequential raw virsh migrations\n", count,
              count);
  std::vector<std::string> api_vms, raw_vms;
  for (int i = 1; i <= count; ++i) {
    check_interrupted();
    api_vms.push_back("drain-api-" + std::to_string(i));
    raw_vms.push_back("drain-raw-" + std::to_string(i));
    create_vm(c, api_vms.back(), a);
  }
  for (const auto& n : raw_vms) c.define_twin(a, api_vms.front(), n);
  std::printf("%d VMs through kvmfleet and %d twins unknown to it, 64 MiB each, all on %s\n", count,
              count, a.c_str());
  std::vector<DrainFigures> figures;
  for (int budget : budgets) {
    c.start_controller(budget);
    c.wait_hosts_up();
    for (int r = 0; r < rounds; ++r) {
      for (int dir = 0; dir < 2; ++dir) {
        const std::string& from = dir == 0 ? a : b;
        const std::string& to = dir == 0 ? b : a;
        DrainFigures f{budget, from + "->" + to, 0, 0};
        f.raw_ms = raw_sequence(c, from, to, raw_vms);
        f.drain_ms = drain(c, from, api_vms);
        for (const auto& n : api_vms) expect_on(c, n, to, from);
        for (const auto& n : raw_vms) expect_on(c, n, to, from);
        std::printf("budget %d  %-12s drain %9.1f ms   %d x raw virsh %9.1f ms   ratio %.3f\n",
                    budget, f.dir.c_str(), f.drain_ms, count, f.raw_ms, f.drain_ms / f.raw_ms);
        std::fflush(stdout);
        figures.push_back(f);
      }
    }
  }
  std::printf("\nDrain of %d VMs (target ratio <= 0.35):\n", count);
  for (int budget : budgets) {
    std::vector<double> d, r;
    for (const auto& f : figures)
      if (f.budget == budget) {
        d.push_back(f.drain_ms);
        r.push_back(f.raw_ms);
      }
    print_stats("drain, migrations_per_host=" + std::to_string(budget), d);
    print_stats("sequential raw virsh", r);
    std::printf("RATIO budget %d: median(drain)/median(%d x virsh) = %.3f\n", budget, count,
                stats_of(d).median / stats_of(r).median);
  }
  std::fflush(stdout);
  for (const auto& n : api_vms) c.api_op("DELETE", "/v1/vms/" + n + "?force=true&wait=60", {}, 90s);
  for (const auto& n : raw_vms) c.undefine_everywhere(n);
}

int usage() {
  std::cerr
      << "usage: kvmfleet_migration_bench [single|drain|all] [--runs N] [--vms N]\n"
         "                                [--budgets K[,K...]] [--rounds N]\n"
         "                                [--keep-logs DIR] [--controller PATH] [--agent PATH]\n"
         "  single   one VM, API vs raw virsh, N runs each way (default 10)\n"
         "  drain    N VMs (default 8) leave a host by maintenance vs N sequential raw\n"
         "           migrations, once per budget (default 2), --rounds times each way\n"
         "  --keep-logs DIR   copy the controller's and agents' logs there at the end\n"
         "  --controller, --agent   other builds of the programs to measure\n";
  return 2;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "all";
  int runs = 10, vms = 8, rounds = 1;
  std::vector<int> budgets = {2};
  Cluster cluster;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
        return argv[++i];
      };
      if (arg == "single" || arg == "drain" || arg == "all")
        mode = arg;
      else if (arg == "--runs")
        runs = std::stoi(next());
      else if (arg == "--vms")
        vms = std::stoi(next());
      else if (arg == "--rounds")
        rounds = std::stoi(next());
      else if (arg == "--budgets")
        budgets = parse_list(next());
      else if (arg == "--keep-logs")
        cluster.keep_logs = next();
      else if (arg == "--controller")
        cluster.controller_bin = next();
      else if (arg == "--agent")
        cluster.agent_bin = next();
      else
        return usage();
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return usage();
  }
  if (runs < 1 || vms < 1 || rounds < 1 || budgets.empty()) return usage();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const char* cache = std::getenv("KVMFLEET_LAB_CACHE");
  int rc = 0;
  try {
    std::printf(
        "kvmfleet migration benchmark: 2 lab hosts (own netns, libvirtd, agent), controller on "
        "the lab bridge; %u CPUs\n",
        std::thread::hardware_concurrency());
    cluster.up({"bench-a", "bench-b"}, budgets.front(), cache ? cache : KVMFLEET_LAB_CACHE_DIR);
    if (mode == "single" || mode == "all") bench_single(cluster, runs, "bench-a", "bench-b");
    if (mode == "drain" || mode == "all")
      bench_drain(cluster, vms, budgets, rounds, "bench-a", "bench-b");
  } catch (const std::exception& e) {
    std::cerr << "benchmark failed: " << e.what() << "\n";
    rc = 1;
  }
  cluster.shutdown();
  return rc;
}
