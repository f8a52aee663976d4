#include "lab.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"

#ifndef KVMFLEET_LAB_SCRIPTS_DIR
#define KVMFLEET_LAB_SCRIPTS_DIR ""
#endif

namespace kvmfleet::lab {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kStateFile = "lab.json";
constexpr const char* kWorkDirPrefix = "kvmfleet-lab-";
constexpr int kFirstHostOctet = 10;
constexpr std::size_t kMaxHostNameLength = 24;

// A process as recorded: pid plus its start time, so that a recycled pid is never
// mistaken for ours.
struct ProcRef {
  pid_t pid = -1;
  unsigned long long start = 0;
  std::string what;
};

struct NsId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool valid() const { return ino != 0; }
  bool operator==(const NsId& o) const { return dev == o.dev && ino == o.ino; }
};

struct ProcStat {
  char state = '?';
  unsigned long long start = 0;
};

// /proc/PID/stat: the state is the field after the command's closing parenthesis,
// the start time the 20th after it.
std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  ProcStat st;
  rest >> st.state;
  std::string field;
  for (int i = 0; i < 18 && rest >> field; ++i) {
  }
  rest >> st.start;
  if (!rest) return std::nullopt;
  return st;
}

// Running (a zombie has already released its namespaces and counts as gone).
bool is_alive(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st && st->state != 'Z' && st->state != 'X';
}

bool is_alive(const ProcRef& p) {
  if (p.pid <= 1) return false;
  auto st = read_proc_stat(p.pid);
  return st && st->state != 'Z' && st->state != 'X' && st->start == p.start;
}

std::optional<ProcRef> ref_of(pid_t pid, std::string what) {
  auto st = read_proc_stat(pid);
  if (!st) return std::nullopt;
  return ProcRef{pid, st->start, std::move(what)};
}

NsId ns_of_path(const fs::path& p) {
  struct stat sb {};
  if (::stat(p.c_str(), &sb) != 0) return {};
  return {sb.st_dev, sb.st_ino};
}

NsId ns_of(pid_t pid, const char* kind) {
  return ns_of_path(fs::path("/proc") / std::to_string(pid) / "ns" / kind);
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A one-word sysfs attribute such as operstate, without its newline; empty if unreadable.
std::string read_word(const fs::path& p) {
  auto text = read_file(p);
  if (!text) return {};
  auto end = text->find_first_of(" \n");
  return text->substr(0, end);
}

std::optional<pid_t> read_pid_file(const fs::path& p) {
  auto text = read_file(p);
  if (!text) return std::nullopt;
  try {
    long v = std::stol(*text);
    if (v > 1) return static_cast<pid_t>(v);
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::string tail_of(const fs::path& p, std::size_t n) {
  auto text = read_file(p).value_or("");
  if (text.size() > n) text = "..." + text.substr(text.size() - n);
  return text;
}

Status write_file_atomic(const fs::path& p, const std::string& data) {
  auto tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return internal_error("cannot write " + tmp.string());
    out << data;
    out.flush();
    if (!out) return internal_error("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) return internal_error("cannot rename " + tmp.string() + ": " + ec.message());
  return ok_status();
}

bool link_exists(const std::string& name) {
  return !name.empty() && fs::exists(fs::path("/sys/class/net") / name);
}

bool netns_exists(const std::string& name) {
  return !name.empty() && fs::exists(fs::path("/run/netns") / name);
}

// True when something is mounted at or below dir in the caller's mount namespace:
// removing such a tree would delete through the mount.
bool has_mounts_below(const fs::path& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  const std::string prefix = dir.string();
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    if (mount_point == prefix || mount_point.rfind(prefix + "/", 0) == 0) return true;
  }
  return false;
}

std::string octets(int a, int b, int c, int d) {
  return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c) + "." +
         std::to_string(d);
}

// Whether 10.77.N.0/24 is already in use on the machine: an address or a route in it.
bool subnet_in_use(int n) {
  const std::uint32_t net = (10u << 24) | (77u << 16) | (static_cast<std::uint32_t>(n) << 8);
  ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) == 0) {
    for (auto* i = ifs; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
      auto addr = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
      if ((addr & 0xffffff00u) == net) {
        ::freeifaddrs(ifs);
        return true;
      }
    }
    ::freeifaddrs(ifs);
  }
  std::ifstream routes("/proc/net/route");
  std::string line;
  std::getline(routes, line);  // header
  while (std::getline(routes, line)) {
    std::istringstream f(line);
    std::string iface, dest_hex, gw, flags, refcnt, use, metric, mask_hex;
    f >> iface >> dest_hex >> gw >> flags >> refcnt >> use >> metric >> mask_hex;
    if (!f) continue;
    auto dest = ntohl(static_cast<std::uint32_t>(std::stoul(dest_hex, nullptr, 16)));
    auto mask = ntohl(static_cast<std::uint32_t>(std::stoul(mask_hex, nullptr, 16)));
    if ((mask & 0xffffff00u) == 0xffffff00u && (dest & 0xffffff00u) == net) return true;
  }
  return false;
}

// Claims 10.77.N.0/24 for this process: an abstract unix socket is a lock that the
// kernel releases when the process dies, and it leaves no file behind.
int claim_subnet(int n) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string name = "kvmfleet-lab-net-10.77." + std::to_string(n);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string short_id() {
  auto u = new_uuid();
  return u.substr(0, 6);
}

fs::path resolve_scripts_dir(const LabOptions& o) {
  if (!o.scripts_dir.empty()) return o.scripts_dir;
  if (const char* env = std::getenv("KVMFLEET_LAB_SCRIPTS"); env != nullptr && *env != '\0')
    return env;
  return KVMFLEET_LAB_SCRIPTS_DIR;
}

fs::path resolve_cache_dir(const LabOptions& o) {
  if (!o.capabilities_cache.empty()) return o.capabilities_cache;
  if (const char* env = std::getenv("KVMFLEET_LAB_CACHE"); env != nullptr && *env != '\0')
    return env;
  return {};
}

bool has_xml_files(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".xml") return true;
  }
  return false;
}

Status run_ok(ProcessRunner& runner, const std::vector<std::string>& argv) {
  RunOptions o;
  o.timeout = 30s;
  auto r = require_success(runner.run(argv, o), argv);
  if (!r.ok()) return r.take_error();
  return ok_status();
}

}  // namespace

struct Lab::HostRecord {
  std::string name;
  bool local = false;
  int index = 0;
  std::string netns;
  std::string veth;
  std::string address;
  std::string uuid;
  fs::path dir;
  std::vector<ProcRef> procs;  // init, virtlogd, libvirtd, and what run_in_host started
  NsId mnt;
  // Held open while the lab runs so that the mount namespace, and so its inode
  // number, cannot be recycled for someone else's namespace.
  int mnt_fd = -1;
  std::vector<pid_t> children;  // spawned by this process; reaped after they die
  bool up = false;

  void close_mnt() {
    if (mnt_fd >= 0) ::close(mnt_fd);
    mnt_fd = -1;
  }
};

namespace {

nlohmann::json proc_json(const ProcRef& p) {
  return {{"pid", p.pid}, {"start", p.start}, {"what", p.what}};
}

}  // namespace

namespace {

// Every process of a recorded host: those in its network namespace, those in its mount
// namespace (when `trust_mnt` says the recorded namespace is still the host's), and
// recorded processes that are still the same processes.
std::set<pid_t> collect_processes(const std::string& netns, NsId mnt, bool trust_mnt,
                                  const std::vector<ProcRef>& procs) {
  std::set<pid_t> out;
  NsId net = netns_exists(netns) ? ns_of_path(fs::path("/run/netns") / netns) : NsId{};
  const pid_t self = ::getpid();
  if (net.valid() || (trust_mnt && mnt.valid())) {
    for (pid_t pid : all_pids()) {
      if (pid <= 1 || pid == self) continue;
      if ((net.valid() && ns_of(pid, "net") == net) ||
          (trust_mnt && mnt.valid() && ns_of(pid, "mnt") == mnt)) {
        if (is_alive(pid)) out.insert(pid);
      }
    }
  }
  for (const auto& p : procs) {
    if (p.pid != self && is_alive(p)) out.insert(p.pid);
  }
  return out;
}

// SIGKILL until nothing is left; a killed daemon's children may appear meanwhile.
Status kill_processes(const std::string& netns, NsId mnt, bool trust_mnt,
                      const std::vector<ProcRef>& procs, ProcessRunner* runner,
                      const std::vector<pid_t>& children) {
  for (int round = 0; round < 20; ++round) {
    auto pids = collect_processes(netns, mnt, trust_mnt, procs);
    if (pids.empty()) break;
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline &&
           std::any_of(pids.begin(), pids.end(), [](pid_t p) { return is_alive(p); })) {
      if (runner != nullptr) {
        for (pid_t c : children) (void)runner->wait(c, 0ms);
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  if (runner != nullptr) {
    for (pid_t c : children) (void)runner->wait(c, 1s);
  }
  auto left = collect_processes(netns, mnt, trust_mnt, procs);
  if (!left.empty()) {
    return internal_error("processes survived SIGKILL",
                          {{"pids", std::vector<pid_t>(left.begin(), left.end())}});
  }
  return ok_status();
}

// Names the lab makes always carry its id; a state file naming anything else is not
// trusted with deletions.
bool owned_link(const std::string& id, const std::string& name) {
  return name.rfind("kvf" + id, 0) == 0 && name.size() <= 15;
}
bool owned_netns(const std::string& id, const std::string& name) {
  return name.rfind("kvf-" + id + "-", 0) == 0;
}

Status remove_network(ProcessRunner& runner, const std::string& id, const std::string& veth,
                      const std::string& netns) {
  Status first = ok_status();
  // The link first: deleting it is synchronous, while a deleted namespace takes its
  // devices down asynchronously.
  if (link_exists(veth) && owned_link(id, veth)) {
    if (auto s = run_ok(runner, {"ip", "link", "del", veth}); !s.ok() && first.ok()) first = s;
  }
  if (netns_exists(netns) && owned_netns(id, netns)) {
    if (auto s = run_ok(runner, {"ip", "netns", "del", netns}); !s.ok() && first.ok()) first = s;
  }
  return first;
}

Status remove_work_dir(const fs::path& dir) {
  if (dir.empty() || !fs::exists(dir)) return ok_status();
  if (!fs::exists(dir / kStateFile) && dir.filename().string().rfind(kWorkDirPrefix, 0) != 0) {
    return internal_error("refusing to remove " + dir.string() + ": not a lab work dir");
  }
  if (has_mounts_below(dir))
    return internal_error("refusing to remove " + dir.string() + ": mounts below it");
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return internal_error("cannot remove " + dir.string() + ": " + ec.message());
  return ok_status();
}

}  // namespace

Lab::Lab(ProcessRunner& runner, LabOptions options)
    : runner_(runner), options_(std::move(options)) {}

Result<std::unique_ptr<Lab>> Lab::create(ProcessRunner& runner, LabOptions options) {
  if (::geteuid() != 0) return Error(ErrorCode::permission_denied, "the lab needs root");
  std::unique_ptr<Lab> lab(new Lab(runner, std::move(options)));
  auto scripts = resolve_scripts_dir(lab->options_);
  lab->script_ = scripts / "lab-host-init.sh";
  if (::access(lab->script_.c_str(), X_OK) != 0)
    return unavailable("lab host script not executable: " + lab->script_.string());

  std::error_code ec;
  const auto& explicit_dir = lab->options_.work_dir;
  // The work dir is removed at teardown, so an explicit one must be new or empty.
  if (!explicit_dir.empty()) {
    if (fs::exists(explicit_dir / kStateFile))
      return conflict("a lab is already recorded in " + explicit_dir.string() +
                      "; clean it up first");
    if (fs::exists(explicit_dir) && !fs::is_empty(explicit_dir, ec))
      return invalid("work dir " + explicit_dir.string() + " is not empty");
    if (explicit_dir.is_relative()) return invalid("work dir must be absolute");
  }
  // An id no earlier lab on this machine still uses.
  for (int attempt = 0; attempt < 16 && lab->id_.empty(); ++attempt) {
    auto id = short_id();
    auto dir = explicit_dir.empty() ? lab->options_.base_dir / (kWorkDirPrefix + id) : explicit_dir;
    if (link_exists("kvf" + id + "br") || (explicit_dir.empty() && fs::exists(dir))) continue;
    lab->id_ = id;
    lab->work_dir_ = fs::absolute(dir);
  }
  if (lab->id_.empty()) return internal_error("no free lab id");
  fs::create_directories(lab->work_dir_, ec);
  if (ec) return internal_error("cannot create " + lab->work_dir_.string() + ": " + ec.message());
  if (auto s = lab->save_state(); !s.ok()) return s.take_error();

  if (lab->options_.network) {
    std::mt19937 rng(std::random_device{}());
    int start = static_cast<int>(rng() % 256);
    for (int i = 0; i < 256; ++i) {
      int n = (start + i) % 256;
      int fd = claim_subnet(n);
      if (fd < 0) continue;
      if (subnet_in_use(n)) {
        ::close(fd);
        continue;
      }
      lab->subnet_index_ = n;
      lab->subnet_lock_fd_ = fd;
      break;
    }
    if (lab->subnet_index_ < 0) return unavailable("every /24 of 10.77.0.0/16 is in use");
    lab->bridge_ = "kvf" + lab->id_ + "br";
    if (auto s = lab->save_state(); !s.ok()) return s.take_error();
    lab->bridge_created_ = true;
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"ip", "link", "add", lab->bridge_, "type", "bridge"},
             {"ip", "addr", "add", lab->bridge_address() + "/24", "dev", lab->bridge_},
             {"ip", "link", "set", lab->bridge_, "up"},
         }) {
      if (auto s = run_ok(runner, argv); !s.ok()) return s.take_error();
    }
  }
  return lab;
}

Lab::~Lab() {
  if (detached_) return;
  auto s = teardown();
  if (!s.ok()) spdlog::error("lab {}: teardown failed: {}", id_, s.error().message);
}

std::string Lab::subnet() const {
  return subnet_index_ < 0 ? std::string() : octets(10, 77, subnet_index_, 0) + "/24";
}

std::string Lab::bridge_address() const {
  return subnet_index_ < 0 ? std::string() : octets(10, 77, subnet_index_, 1);
}

Status Lab::save_state() {
  nlohmann::json hosts = nlohmann::json::array();
  for (const auto& h : hosts_) {
    nlohmann::json procs = nlohmann::json::array();
    for (const auto& p : h->procs) procs.push_back(proc_json(p));
    hosts.push_back({{"name", h->name},
                     {"local", h->local},
                     {"index", h->index},
                     {"netns", h->netns},
                     {"veth", h->veth},
                     {"address", h->address},
                     {"uuid", h->uuid},
                     {"dir", h->dir.string()},
                     {"mnt",
                      {{"dev", static_cast<std::uint64_t>(h->mnt.dev)},
                       {"ino", static_cast<std::uint64_t>(h->mnt.ino)}}},
                     {"procs", procs}});
  }
  auto owner = ref_of(::getpid(), "owner").value_or(ProcRef{::getpid(), 0, "owner"});
  nlohmann::json state = {{"version", 1},
                          {"id", id_},
                          {"work_dir", work_dir_.string()},
                          {"owner", proc_json(owner)},
                          {"detached", detached_},
                          {"bridge", bridge_},
                          {"subnet_index", subnet_index_},
                          {"hosts", hosts}};
  return write_file_atomic(work_dir_ / kStateFile, state.dump(2) + "\n");
}

Lab::HostRecord* Lab::find(const std::string& name) {
  for (auto& h : hosts_) {
    if (h->name == name) return h.get();
  }
  return nullptr;
}

const Lab::HostRecord* Lab::find(const std::string& name) const {
  for (const auto& h : hosts_) {
    if (h->name == name) return h.get();
  }
  return nullptr;
}

Host Lab::to_host(const HostRecord& rec) const {
  Host h;
  h.name = rec.name;
  h.local = rec.local;
  h.netns = rec.netns;
  h.veth = rec.veth;
  h.address = rec.address;
  h.libvirt_uri = rec.local ? "qemu:///system" : "qemu+tcp://" + rec.address + "/system";
  h.host_uuid = rec.uuid;
  for (const auto& p : rec.procs) {
    if (p.what == "init") h.init_pid = p.pid;
  }
  h.dir = rec.dir;
  return h;
}

std::vector<Host> Lab::hosts() const {
  std::vector<Host> out;
  for (const auto& h : hosts_) out.push_back(to_host(*h));
  return out;
}

Result<Host> Lab::host(const std::string& name) const {
  const auto* rec = find(name);
  if (rec == nullptr) return not_found("no lab host " + name);
  return to_host(*rec);
}

Result<Host> Lab::add_host(const std::string& name, const HostOptions& options) {
  return add(name, false, options);
}

Result<Host> Lab::add_local_host(const std::string& name, const HostOptions& options) {
  return add(name, true, options);
}

Result<Host> Lab::add(const std::string& name, bool local, const HostOptions& options) {
  if (torn_down_ || detached_) return conflict("the lab is torn down");
  if (auto s = check_name("host name", name); !s.ok()) return s.take_error();
  if (name.size() > kMaxHostNameLength)
    return invalid("host name longer than 24 characters: " + name);
  if (find(name) != nullptr) return conflict("lab host " + name + " exists");
  if (!local && !has_network())
    return invalid("the lab was made without network; use add_local_host");
  int index = next_host_index_;
  if (!local && kFirstHostOctet + index > 254) return unavailable("the lab network is full");
  ++next_host_index_;

  auto rec = std::make_unique<HostRecord>();
  rec->name = name;
  rec->local = local;
  rec->index = index;
  rec->uuid = new_uuid();
  rec->dir = work_dir_ / ("host-" + name);
  if (!local) {
    rec->netns = "kvf-" + id_ + "-" + name;
    rec->veth = "kvf" + id_ + "h" + std::to_string(index);
    rec->address = octets(10, 77, subnet_index_, kFirstHostOctet + index);
  }
  std::error_code ec;
  fs::create_directories(rec->dir / "pids", ec);
  if (ec) return internal_error("cannot create " + rec->dir.string() + ": " + ec.message());
  HostRecord& r = *rec;
  hosts_.push_back(std::move(rec));
  // Recorded before anything is made, so a crash from here on leaves a trail.
  if (auto s = save_state(); !s.ok()) return s.take_error();

  if (!local) {
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"ip", "netns", "add", r.netns},
             {"ip", "link", "add", r.veth, "type", "veth", "peer", "name", "eth0", "netns",
              r.netns},
             {"ip", "link", "set", r.veth, "master", bridge_},
             {"ip", "link", "set", r.veth, "up"},
             {"ip", "-n", r.netns, "addr", "add", r.address + "/24", "dev", "eth0"},
             {"ip", "-n", r.netns, "link", "set", "eth0", "up"},
             {"ip", "-n", r.netns, "link", "set", "lo", "up"},
         }) {
      if (auto s = run_ok(runner_, argv); !s.ok()) return s.take_error();
    }
  }
  if (auto s = start_host(r, options); !s.ok()) return s.take_error();
  return to_host(r);
}

Status Lab::start_host(HostRecord& rec, const HostOptions& options) {
  std::error_code ec;
  fs::remove(rec.dir / "ready", ec);
  for (const char* f : {"init.pid", "libvirtd.pid", "virtlogd.pid"})
    fs::remove(rec.dir / "pids" / f, ec);

  // Probing QEMU's capabilities takes libvirtd seconds; a cache from another host of
  // the same machine is valid (libvirt re-probes if the binaries changed).
  const auto caps = rec.dir / "cache" / "qemu" / "capabilities";
  const auto shared = resolve_cache_dir(options_);
  if (!has_xml_files(caps)) {
    fs::path seed;
    for (const auto& other : hosts_) {
      auto c = other->dir / "cache" / "qemu" / "capabilities";
      if (other.get() != &rec && has_xml_files(c)) seed = c;
    }
    if (seed.empty() && !shared.empty() && has_xml_files(shared)) seed = shared;
    if (!seed.empty()) {
      fs::create_directories(caps, ec);
      fs::copy(seed, caps, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
    }
  }

  std::vector<std::string> argv;
  if (!rec.local) argv = {"ip", "netns", "exec", rec.netns};
  for (const char* a : {"unshare", "--mount", "--uts", "--propagation", "private"})
    argv.emplace_back(a);
  argv.push_back(script_.string());
  // The script refuses to touch /run or the hostname unless it runs in namespaces
  // other than ours.
  std::error_code link_ec;
  argv.insert(argv.end(), {"--outer-mnt", fs::read_symlink("/proc/self/ns/mnt", link_ec).string(),
                           "--outer-uts", fs::read_symlink("/proc/self/ns/uts", link_ec).string()});
  argv.insert(argv.end(), {"--name", rec.name, "--dir", rec.dir.string(), "--uuid", rec.uuid});
  if (!rec.local) argv.insert(argv.end(), {"--address", rec.address});
  if (options.cgroups) argv.emplace_back("--cgroups");
  if (!options.command.empty()) {
    argv.emplace_back("--");
    argv.insert(argv.end(), options.command.begin(), options.command.end());
  }

  SpawnOptions so;
  so.stdout_path = (rec.dir / "init.log").string();
  so.stderr_path = so.stdout_path;
  auto pid = runner_.spawn(argv, so);
  if (!pid.ok()) return pid.take_error();
  rec.children.push_back(*pid);
  rec.procs.push_back(ref_of(*pid, "init").value_or(ProcRef{*pid, 0, "init"}));
  if (auto s = save_state(); !s.ok()) return s;

  auto fail = [&](Error e) -> Status {
    e.details["init_log"] = tail_of(rec.dir / "init.log", 3000);
    e.details["libvirtd_log"] = tail_of(rec.dir / "log" / "libvirtd.log", 3000);
    (void)kill_all(rec);
    return e;
  };
  auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  while (!fs::exists(rec.dir / "ready")) {
    auto waited = runner_.wait(*pid, 50ms);
    if (waited.ok()) {
      return fail(unavailable("lab host " + rec.name + " failed to start (exit " +
                              std::to_string(waited->exit_code) + ")"));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(Error(ErrorCode::timeout, "lab host " + rec.name + " did not become ready"));
    }
  }

  for (const char* what : {"virtlogd", "libvirtd"}) {
    auto p = read_pid_file(rec.dir / "pids" / (std::string(what) + ".pid"));
    if (!p) continue;
    if (auto ref = ref_of(*p, what)) rec.procs.push_back(*ref);
  }
  rec.mnt = ns_of(*pid, "mnt");
  rec.close_mnt();
  rec.mnt_fd = ::open(("/proc/" + std::to_string(*pid) + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC);
  if (!rec.mnt.valid() || rec.mnt_fd < 0)
    return fail(internal_error("cannot read the mount namespace of " + rec.name));
  rec.up = true;
  if (auto s = save_state(); !s.ok()) return s;

  if (!shared.empty() && !has_xml_files(shared) && has_xml_files(caps)) {
    // Copy aside, then rename: another lab may be seeding the same cache.
    auto tmp = shared;
    tmp += ".tmp-" + id_;
    fs::create_directories(tmp.parent_path(), ec);
    fs::copy(caps, tmp, fs::copy_options::recursive, ec);
    if (!ec) fs::rename(tmp, shared, ec);
    if (ec) fs::remove_all(tmp, ec);
  }
  return ok_status();
}

Result<pid_t> Lab::anchor_pid(const HostRecord& rec) const {
  // Prefer the init process; if its command ended, libvirtd still holds the namespaces.
  for (const char* what : {"init", "libvirtd", "virtlogd"}) {
    for (const auto& p : rec.procs) {
      if (p.what == what && is_alive(p)) return p.pid;
    }
  }
  return unavailable("lab host " + rec.name + " is down");
}

std::vector<std::string> Lab::nsenter_prefix(const HostRecord& rec, pid_t anchor) const {
  std::vector<std::string> argv = {"nsenter", "-t", std::to_string(anchor), "-m", "-u"};
  if (!rec.local) argv.emplace_back("-n");
  argv.emplace_back("--");
  return argv;
}

Result<ProcessOutput> Lab::exec_in_host(const Host& host, const std::vector<std::string>& argv,
                                        const RunOptions& options) {
  const auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  if (argv.empty()) return invalid("empty argument vector");
  auto anchor = anchor_pid(*rec);
  if (!anchor.ok()) return anchor.take_error();
  auto full = nsenter_prefix(*rec, *anchor);
  full.insert(full.end(), argv.begin(), argv.end());
  return runner_.run(full, options);
}

Result<pid_t> Lab::run_in_host(const Host& host, const std::vector<std::string>& argv,
                               const SpawnOptions& options) {
  auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  if (argv.empty()) return invalid("empty argument vector");
  auto anchor = anchor_pid(*rec);
  if (!anchor.ok()) return anchor.take_error();
  auto full = nsenter_prefix(*rec, *anchor);
  full.insert(full.end(), argv.begin(), argv.end());
  auto pid = runner_.spawn(full, options);
  if (!pid.ok()) return pid;
  rec->children.push_back(*pid);
  rec->procs.push_back(ref_of(*pid, "run").value_or(ProcRef{*pid, 0, "run"}));
  if (auto s = save_state(); !s.ok()) return s.take_error();
  return pid;
}

Result<ProcessOutput> Lab::virsh(const Host& host, const std::vector<std::string>& args,
                                 const RunOptions& options) {
  const auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  std::vector<std::string> argv = {"virsh", "-q", "-c", to_host(*rec).libvirt_uri};
  argv.insert(argv.end(), args.begin(), args.end());
  if (rec->local) return exec_in_host(host, argv, options);
  return runner_.run(argv, options);
}

std::vector<pid_t> Lab::processes(const Host& host) const {
  const auto* rec = find(host.name);
  if (rec == nullptr) return {};
  auto set = collect_processes(rec->netns, rec->mnt, rec->mnt_fd >= 0, rec->procs);
  return {set.begin(), set.end()};
}

Status Lab::kill_all(HostRecord& rec) {
  auto s = kill_processes(rec.netns, rec.mnt, rec.mnt_fd >= 0, rec.procs, &runner_, rec.children);
  if (s.ok()) {
    rec.procs.clear();
    rec.children.clear();
    rec.close_mnt();
    rec.mnt = {};
  }
  rec.up = false;
  auto saved = save_state();
  if (!s.ok()) return s;
  return saved;
}

Status Lab::kill_host(const Host& host) {
  auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  return kill_all(*rec);
}

Result<Host> Lab::restart_host(const Host& host, const HostOptions& options) {
  auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  if (auto s = kill_all(*rec); !s.ok()) return s.take_error();
  if (auto s = start_host(*rec, options); !s.ok()) return s.take_error();
  return to_host(*rec);
}

Status Lab::partition_host(const Host& host) {
  const auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  if (rec->local) return invalid("a local host has no link of its own");
  return run_ok(runner_, {"ip", "link", "set", rec->veth, "down"});
}

Status Lab::heal_host(const Host& host) {
  const auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  if (rec->local) return invalid("a local host has no link of its own");
  if (auto s = run_ok(runner_, {"ip", "link", "set", rec->veth, "up"}); !s.ok()) return s;
  // "up" is only the request: carrier on both ends of the pair, the bridge port and the
  // bridge itself follow asynchronously (linkwatch). Until then connections fail with
  // EHOSTUNREACH, so wait for all of them, then drop the neighbour entry that failed
  // while the link was cut so that the next connection resolves the host afresh.
  auto link_up = [&]() {
    const fs::path net = "/sys/class/net";
    if (read_word(net / rec->veth / "operstate") != "up") return false;
    if (read_word(net / bridge_ / "operstate") != "up") return false;
    if (read_word(net / rec->veth / "brport" / "state") != "3") return false;  // forwarding
    auto inside = runner_.run({"ip", "-n", rec->netns, "-o", "link", "show", "dev", "eth0"});
    return inside.ok() && inside->success() && inside->out.find("LOWER_UP") != std::string::npos &&
           inside->out.find("state UP") != std::string::npos;
  };
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!link_up()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return unavailable("the link of " + rec->name + " did not come back up within 15 s");
    std::this_thread::sleep_for(50ms);
  }
  (void)runner_.run({"ip", "neigh", "flush", "to", rec->address, "dev", bridge_});
  return ok_status();
}

Status Lab::limit_bandwidth(const Host& host, int kbit_s) {
  const auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  if (rec->local) return invalid("a local host has no link of its own");
  if (kbit_s < 0 || kbit_s > 10'000'000) return invalid("kbit_s must be 0..10000000");
  if (kbit_s == 0) {
    auto r = runner_.run({"tc", "qdisc", "del", "dev", rec->veth, "root"});
    if (!r.ok()) return r.take_error();
    return ok_status();  // "no qdisc" is as good as removed
  }
  // A token bucket on the machine-side end: what flows to the host is throttled.
  return run_ok(runner_, {"tc", "qdisc", "replace", "dev", rec->veth, "root", "tbf", "rate",
                          std::to_string(kbit_s) + "kbit", "burst", "32kbit", "latency", "400ms"});
}

Status Lab::restart_libvirtd(const Host& host) {
  auto* rec = find(host.name);
  if (rec == nullptr) return not_found("no lab host " + host.name);
  auto it = std::find_if(rec->procs.begin(), rec->procs.end(),
                         [](const ProcRef& p) { return p.what == "libvirtd"; });
  if (it != rec->procs.end()) {
    ProcRef old = *it;
    rec->procs.erase(it);
    if (is_alive(old)) {
      ::kill(old.pid, SIGTERM);
      auto deadline = std::chrono::steady_clock::now() + 15s;
      while (is_alive(old) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
      if (is_alive(old)) ::kill(old.pid, SIGKILL);
      deadline = std::chrono::steady_clock::now() + 5s;
      while (is_alive(old) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
      if (is_alive(old))
        return internal_error("libvirtd " + std::to_string(old.pid) + " survived SIGKILL");
    }
  }
  auto anchor = anchor_pid(*rec);
  if (!anchor.ok()) return anchor.take_error();
  std::vector<std::string> start = {"libvirtd", "-d"};
  if (!rec->local) start.emplace_back("--listen");
  {
    auto argv = nsenter_prefix(*rec, *anchor);
    argv.insert(argv.end(), start.begin(), start.end());
    auto r = require_success(runner_.run(argv), argv);
    if (!r.ok()) return r.take_error();
  }
  auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    auto argv = nsenter_prefix(*rec, *anchor);
    argv.insert(argv.end(), {"virsh", "-q", "-c", "qemu:///system", "version"});
    RunOptions o;
    o.timeout = 10s;
    auto r = runner_.run(argv, o);
    if (r.ok() && r->success()) break;
    if (std::chrono::steady_clock::now() > deadline)
      return Error(ErrorCode::timeout,
                   "libvirtd of " + rec->name + " did not answer after restart");
    std::this_thread::sleep_for(100ms);
  }
  // libvirtd's pid file lives in the host's own /run, seen through its init's root.
  auto pid = read_pid_file(fs::path("/proc") / std::to_string(*anchor) / "root/run/libvirtd.pid");
  if (!pid) return internal_error("cannot read libvirtd's pid file in " + rec->name);
  if (auto ref = ref_of(*pid, "libvirtd")) rec->procs.push_back(*ref);
  (void)write_file_atomic(rec->dir / "pids" / "libvirtd.pid", std::to_string(*pid) + "\n");
  return save_state();
}

Status Lab::teardown() {
  if (detached_ || torn_down_) return ok_status();
  Status first = ok_status();
  auto note = [&](Status s) {
    if (!s.ok()) {
      spdlog::warn("lab {}: {}", id_, s.error().message);
      if (first.ok()) first = std::move(s);
    }
  };
  for (auto it = hosts_.rbegin(); it != hosts_.rend(); ++it) {
    note(kill_all(**it));
    note(remove_network(runner_, id_, (*it)->veth, (*it)->netns));
  }
  if (!bridge_.empty() && link_exists(bridge_))
    note(run_ok(runner_, {"ip", "link", "del", bridge_}));
  if (first.ok()) {
    note(remove_work_dir(work_dir_));
    for (auto& h : hosts_) h->close_mnt();
    hosts_.clear();
    if (subnet_lock_fd_ >= 0) ::close(subnet_lock_fd_);
    subnet_lock_fd_ = -1;
    torn_down_ = first.ok();
  }
  return first;
}

void Lab::detach() {
  detached_ = true;
  (void)save_state();
  for (auto& h : hosts_) h->close_mnt();
}

Status Lab::cleanup_stale(ProcessRunner& runner, const fs::path& dir, bool force) {
  std::vector<fs::path> labs;
  if (fs::exists(dir / kStateFile)) {
    labs.push_back(dir);
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_directory() && e.path().filename().string().rfind(kWorkDirPrefix, 0) == 0 &&
          fs::exists(e.path() / kStateFile)) {
        labs.push_back(e.path());
      }
    }
  }
  Status first = ok_status();
  auto note = [&](Status s) {
    if (!s.ok() && first.ok()) first = std::move(s);
  };
  for (const auto& lab_dir : labs) {
    auto text = read_file(lab_dir / kStateFile);
    nlohmann::json st;
    try {
      st = nlohmann::json::parse(text.value_or(""));
    } catch (const nlohmann::json::exception& e) {
      note(internal_error("unreadable lab state in " + lab_dir.string() + ": " + e.what()));
      continue;
    }
    auto proc_from = [](const nlohmann::json& j) {
      return ProcRef{j.value("pid", -1), j.value("start", 0ull), j.value("what", std::string())};
    };
    const std::string id = st.value("id", std::string());
    if (id.empty()) {
      note(internal_error("lab state without id in " + lab_dir.string()));
      continue;
    }
    auto owner = proc_from(st.value("owner", nlohmann::json::object()));
    if (!force && !st.value("detached", false) && is_alive(owner)) {
      spdlog::info("lab {} still owned by running process {}; left alone", id, owner.pid);
      continue;
    }
    const auto hosts = st.value("hosts", nlohmann::json::array());
    for (auto it = hosts.rbegin(); it != hosts.rend(); ++it) {
      const auto& h = *it;
      std::vector<ProcRef> procs;
      for (const auto& p : h.value("procs", nlohmann::json::array())) procs.push_back(proc_from(p));
      auto m = h.value("mnt", nlohmann::json::object());
      NsId mnt{static_cast<dev_t>(m.value("dev", std::uint64_t{0})),
               static_cast<ino_t>(m.value("ino", std::uint64_t{0}))};
      // Without the lab's open handle the recorded mount namespace is only trusted
      // while one of the host's recorded processes is still inside it.
      bool trust_mnt =
          mnt.valid() && std::any_of(procs.begin(), procs.end(), [&](const ProcRef& p) {
            return is_alive(p) && ns_of(p.pid, "mnt") == mnt;
          });
      const std::string netns = h.value("netns", std::string());
      note(kill_processes(owned_netns(id, netns) ? netns : std::string(), mnt, trust_mnt, procs,
                          nullptr, {}));
      note(remove_network(runner, id, h.value("veth", std::string()), netns));
    }
    const std::string bridge = st.value("bridge", std::string());
    if (link_exists(bridge) && owned_link(id, bridge))
      note(run_ok(runner, {"ip", "link", "del", bridge}));
    if (first.ok()) note(remove_work_dir(lab_dir));
  }
  return first;
}

}  // namespace kvmfleet::lab
