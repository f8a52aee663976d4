#include "kernel_lab.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::klab {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

constexpr const char* kJournal = "journal";
constexpr const char* kDescription = "lab.json";
constexpr int kMaxGuests = 16;

// Holds root/.lock: stale cleanup and claiming a lab name happen under it, so two
// makers never tear down or claim the same lab at once.
class RootLock {
 public:
  explicit RootLock(const fs::path& root) {
    fd_ = ::open((root / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~RootLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  RootLock(const RootLock&) = delete;
  RootLock& operator=(const RootLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// QEMU's option syntax gives commas a meaning and the journal gives tabs and
// newlines one; paths the lab hands to either must hold none.
bool is_safe_path(const fs::path& p) {
  return p.is_absolute() && p.string().find_first_of(",\t\n\r ") == std::string::npos;
}

Result<std::map<std::string, std::string>> read_env_file(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return not_found("cannot read " + p.string());
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

Result<JournalRecord> journal_owner(const fs::path& journal_path) {
  auto records = LabJournal(journal_path).read();
  if (!records.ok()) return records.take_error();
  for (const auto& r : *records) {
    if (r.kind == JournalRecord::Kind::owner) return r;
  }
  return not_found("no owner in " + journal_path.string());
}

nlohmann::json process_json(const ProcessId& p) {
  return {{"pid", p.pid}, {"start_ticks", p.start_ticks}};
}
ProcessId process_from_json(const nlohmann::json& j) {
  return {j.at("pid").get<pid_t>(), j.at("start_ticks").get<unsigned long long>()};
}

std::string mac_for(int index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "52:54:00:6b:00:%02x", index);
  return buf;
}

}  // namespace

Result<std::unique_ptr<KernelLab>> KernelLab::up(LabOptions options) {
  if (auto s = check_name("lab name", options.name); !s.ok()) return s.take_error();
  if (options.guests < 0 || options.guests > kMaxGuests) {
    return invalid("guests must be 0.." + std::to_string(kMaxGuests));
  }
  if (options.memory_mib < 256 || options.memory_mib > 8192)
    return invalid("memory_mib must be 256..8192");
  if (!is_safe_path(options.state_root))
    return invalid("state_root must be absolute, without commas or blanks");
  if (::geteuid() != 0) {
    return Error(ErrorCode::permission_denied,
                 "the kernel lab needs root (namespaces, taps, 9p passthrough)");
  }
  std::error_code ec;
  fs::create_directories(options.state_root, ec);
  if (ec) return internal_error("create " + options.state_root.string() + ": " + ec.message());

  auto lab = std::unique_ptr<KernelLab>(new KernelLab());
  lab->name_ = options.name;
  lab->netns_ = "kvmfleet-klab-" + options.name;
  lab->state_root_ = options.state_root;
  lab->state_dir_ = options.state_root / options.name;
  lab->persistent_ = options.persistent;
  {
    RootLock lock(options.state_root);
    if (!lock.ok()) return internal_error("cannot lock " + options.state_root.string());
    if (auto s = cleanup_stale_locked(options.state_root); !s.ok()) {
      spdlog::warn("klab: stale cleanup: {}", s.error().message);
    }
    if (fs::exists(lab->state_dir_)) {
      auto owner = journal_owner(lab->state_dir_ / kJournal);
      if (owner.ok() && owner->process.pid != 0 && process_alive(owner->process)) {
        return conflict("lab " + options.name + " is in use by pid " +
                        std::to_string(owner->process.pid));
      }
      if (owner.ok()) {
        auto s = LabJournal::teardown(lab->state_dir_ / kJournal, options.state_root, lab->system_);
        if (!s.ok()) return s.take_error();
      }
      // A dir without a journal never got past its first step: nothing else was made.
      fs::remove_all(lab->state_dir_, ec);
    }
    fs::create_directories(lab->state_dir_, ec);
    if (ec) return internal_error("create " + lab->state_dir_.string() + ": " + ec.message());
    lab->journal_ = std::make_unique<LabJournal>(lab->state_dir_ / kJournal);
    lab->owned_ = true;
    ProcessId owner;  // pid 0: nobody; the lab stays until destroyed
    if (!options.persistent) {
      auto self = process_identity(::getpid());
      if (!self) return internal_error("cannot read this process's identity");
      owner = *self;
    }
    if (auto s = lab->journal_->record_owner(owner); !s.ok()) return s.take_error();
    if (auto s = lab->journal_->record_dir(lab->state_dir_); !s.ok()) return s.take_error();
  }

  if (auto s = lab->boot(options); !s.ok()) {
    auto e = s.take_error();
    if (auto d = lab->down(); !d.ok())
      spdlog::warn("klab: teardown after failed boot: {}", d.error().message);
    return e;
  }
  return lab;
}

Result<ProcessOutput> KernelLab::host(const std::vector<std::string>& argv,
                                      std::chrono::seconds timeout) {
  RunOptions opts;
  opts.timeout = timeout;
  return require_success(system_.run(argv, opts), argv);
}

Status KernelLab::boot(const LabOptions& options) {
  // --- kernel, modules, initramfs (cached) ---
  RunOptions prep;
  prep.timeout = 30min;  // a first run installs packages and downloads the kernel
  std::vector<std::string> prep_argv{"bash", (options.source_dir / "prepare.sh").string()};
  auto prepared = require_success(system_.run(prep_argv, prep), prep_argv);
  if (!prepared.ok()) return prepared.take_error();
  std::string env_path = prepared->out;
  while (!env_path.empty() && env_path.back() == '\n') env_path.pop_back();
  env_path =
      env_path.substr(env_path.rfind('\n') == std::string::npos ? 0 : env_path.rfind('\n') + 1);
  auto env = read_env_file(env_path);
  if (!env.ok()) return env.take_error();
  for (const char* key : {"KLAB_KVER", "KLAB_VMLINUZ", "KLAB_INITRD", "KLAB_MODDIR"}) {
    if (env->count(key) == 0) return internal_error(std::string("prepare.sh wrote no ") + key);
  }
  kernel_version_ = env->at("KLAB_KVER");
  const fs::path vmlinuz = env->at("KLAB_VMLINUZ");
  const fs::path initrd = env->at("KLAB_INITRD");
  const fs::path moddir = env->at("KLAB_MODDIR");
  for (const auto& p : {vmlinuz, initrd, moddir, state_dir_}) {
    if (!is_safe_path(p)) return invalid("path unusable on a QEMU command line: " + p.string());
  }

  // --- the lab network: a bridge in a namespace of our own ---
  if (auto s = journal_->record_netns(netns_); !s.ok()) return s;
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"ip", "netns", "add", netns_},
           {"ip", "-n", netns_, "link", "set", "lo", "up"},
           {"ip", "-n", netns_, "link", "add", "br0", "type", "bridge"},
           {"ip", "-n", netns_, "addr", "add", std::string(kBridgeAddress) + "/24", "dev", "br0"},
           {"ip", "-n", netns_, "link", "set", "br0", "up"},
       }) {
    if (auto r = host(argv); !r.ok()) return r.take_error();
  }

  // --- tgtd, inside the namespace; its IPC socket in the lab dir so that labs (and
  // any other tgtd on the machine) never share one ---
  std::error_code ec;
  fs::create_directories(state_dir_ / "tgtd", ec);
  tgt_socket_ = state_dir_ / "tgtd" / "ipc";
  {
    SpawnOptions so;
    so.stdout_path = (state_dir_ / "tgtd.log").string();
    so.stderr_path = so.stdout_path;
    so.env = {{"TGT_IPC_SOCKET", tgt_socket_.string()}};
    auto pid = system_.spawn({"ip", "netns", "exec", netns_, "tgtd", "-f"}, so);
    if (!pid.ok()) return pid.take_error();
    auto id = process_identity(*pid);
    if (!id) return internal_error("tgtd exited at once; see " + so.stdout_path);
    if (auto s = journal_->record_tgtd(*id, tgt_socket_); !s.ok()) return s;
    RunOptions show;
    show.timeout = 10s;
    show.env = so.env;
    auto deadline = steady::now() + 30s;
    while (true) {
      auto r = system_.run({"tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"}, show);
      if (r.ok() && r->success()) break;
      if (!process_alive(*id) || steady::now() > deadline) {
        return unavailable("tgtd did not come up; see " + so.stdout_path);
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  // --- the guests ---
  const auto started = steady::now();
  for (int i = 1; i <= options.guests; ++i) {
    GuestInfo g;
    g.index = i;
    g.hostname = "node" + std::to_string(i);
    g.address = std::string(kGuestPrefix) + std::to_string(10 + i);
    g.host_id = i;
    g.iqn = std::string(kIqnPrefix) + ":" + g.hostname;
    const fs::path dir = state_dir_ / "guests" / g.hostname;
    g.job_dir = dir / "job";
    g.console_log = dir / "console.log";
    fs::create_directories(g.job_dir / "req", ec);
    fs::create_directories(g.job_dir / "out", ec);
    if (ec) return internal_error("create " + g.job_dir.string() + ": " + ec.message());
    fs::copy_file(options.source_dir / "guest" / "agent.sh", g.job_dir / "agent.sh",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) return internal_error("copy agent.sh: " + ec.message());
    {
      std::ofstream genv(g.job_dir / "guest.env");
      genv << "name=" << g.hostname << "\naddr=" << g.address << "/24\nhost_id=" << g.host_id
           << "\niqn=" << g.iqn << "\nhost=" << kBridgeAddress << ",lab-gateway\n";
      for (int j = 1; j <= options.guests; ++j) {
        genv << "host=" << kGuestPrefix << (10 + j) << ",node" << j << "\n";
      }
      if (!genv) return internal_error("cannot write guest.env");
    }
    const std::string tap = "tap" + std::to_string(i);
    if (auto s = journal_->record_link(netns_, tap); !s.ok()) return s;
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"ip", "-n", netns_, "tuntap", "add", "dev", tap, "mode", "tap"},
             {"ip", "-n", netns_, "link", "set", tap, "master", "br0"},
             {"ip", "-n", netns_, "link", "set", tap, "up"},
         }) {
      if (auto r = host(argv); !r.ok()) return r.take_error();
    }
    // clang-format off
    std::vector<std::string> qemu{
        "ip", "netns", "exec", netns_, "qemu-system-x86_64",
        "-name", "klab-" + name_ + "-" + g.hostname,
        "-accel", "tcg",
        "-m", std::to_string(options.memory_mib),
        "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-monitor", "none",
        "-serial", "file:" + g.console_log.string(),
        "-kernel", vmlinuz.string(),
        "-initrd", initrd.string(),
        // loglevel=5 keeps the kernel's warnings (a NIC's transmit timeout, I/O
        // errors) in the console log that failure messages show.
        "-append", "console=ttyS0 panic=-1 loglevel=5",
        // The machine's root, read-only (the guest puts a tmpfs overlay on it),
        // the kernel's modules, and the guest's job dir, its command channel.
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,"
                   "multidevs=remap",
        "-virtfs", "local,path=" + moddir.string() +
                   ",mount_tag=mods,security_model=passthrough,readonly=on",
        "-virtfs", "local,path=" + g.job_dir.string() + ",mount_tag=job,security_model=passthrough",
        "-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
        // e1000, not virtio-net: under TCG, QEMU 7.2's virtio-net can stop
        // transmitting for good (the guest driver only logs the timeout); e1000's
        // driver resets the NIC on a transmit timeout and the lab network recovers.
        "-device", "e1000,netdev=n0,mac=" + mac_for(i),
    };
    // clang-format on
    SpawnOptions so;
    so.stdout_path = (dir / "qemu.log").string();
    so.stderr_path = so.stdout_path;
    auto pid = system_.spawn(qemu, so);
    if (!pid.ok()) return pid.take_error();
    auto id = process_identity(*pid);
    if (!id) return internal_error("qemu exited at once; see " + so.stdout_path);
    g.qemu = *id;
    if (auto s = journal_->record_guest(g.qemu, g.job_dir); !s.ok()) return s;
    guests_.push_back(g);
  }

  for (const auto& g : guests_) {
    auto deadline = started + options.boot_timeout;
    while (!fs::exists(g.job_dir / "ready")) {
      if (!process_alive(g.qemu)) {
        return unavailable("guest " + g.hostname + " stopped while booting; console:\n" +
                           console_tail(g.index));
      }
      if (steady::now() > deadline) {
        return Error(ErrorCode::timeout, "guest " + g.hostname + " not ready after " +
                                             std::to_string(options.boot_timeout.count()) +
                                             " s; console:\n" + console_tail(g.index));
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  boot_time_ = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);
  for (const auto& g : guests_)
    runners_.push_back(std::make_unique<GuestRunner>(g.hostname, g.job_dir, g.qemu));
  return save_description();
}

KernelLab::~KernelLab() {
  if (!owned_ || persistent_ || down_) return;
  if (auto s = down(); !s.ok()) spdlog::error("klab: teardown of {}: {}", name_, s.error().message);
}

Status KernelLab::down() {
  if (down_ || journal_ == nullptr) return ok_status();
  down_ = true;
  runners_.clear();
  return LabJournal::teardown(state_dir_ / kJournal, state_root_, system_);
}

Result<ProcessOutput> KernelLab::exec(int index, const std::vector<std::string>& argv,
                                      RunOptions options) {
  if (index < 1 || index > guest_count()) return invalid("no guest " + std::to_string(index));
  return runner(index).run(argv, options);
}

Result<LunInfo> KernelLab::add_lun(const std::string& name, std::uint64_t size_bytes) {
  if (auto s = check_name("lun name", name); !s.ok()) return s.take_error();
  if (size_bytes < (1u << 20)) return invalid("a LUN needs at least 1 MiB");
  for (const auto& l : luns_) {
    if (l.name == name) return conflict("lun " + name + " exists");
  }
  LunInfo lun;
  lun.name = name;
  lun.tid = 1;
  for (const auto& l : luns_) lun.tid = std::max(lun.tid, l.tid + 1);
  lun.iqn = std::string(kIqnPrefix) + ":" + name;
  lun.portal = std::string(kBridgeAddress) + ":3260";
  lun.size_bytes = size_bytes;
  std::error_code ec;
  fs::create_directories(state_dir_ / "luns", ec);
  lun.backing_file = state_dir_ / "luns" / (name + ".img");
  if (auto s = journal_->record_file(lun.backing_file); !s.ok()) return s.take_error();
  {
    std::ofstream f(lun.backing_file, std::ios::binary | std::ios::trunc);
    if (!f) return internal_error("cannot create " + lun.backing_file.string());
  }
  fs::resize_file(lun.backing_file, size_bytes, ec);  // sparse
  if (ec) return internal_error("resize " + lun.backing_file.string() + ": " + ec.message());

  if (auto s = journal_->record_tgt_target(tgt_socket_, lun.tid); !s.ok()) return s.take_error();
  RunOptions opts;
  opts.timeout = 30s;
  opts.env = {{"TGT_IPC_SOCKET", tgt_socket_.string()}};
  const std::string tid = std::to_string(lun.tid);
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", tid, "-T",
            lun.iqn},
           {"tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", tid,
            "--lun", "1", "-b", lun.backing_file.string()},
           {"tgtadm", "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", tid, "-I",
            "ALL"},
       }) {
    auto r = require_success(system_.run(argv, opts), argv);
    if (!r.ok()) return r.take_error();
  }
  luns_.push_back(lun);
  if (auto s = save_description(); !s.ok()) return s.take_error();
  return lun;
}

Result<ProcessId> KernelLab::spawn_in_netns(const std::vector<std::string>& argv,
                                            const SpawnOptions& options, std::string_view what) {
  if (argv.empty()) return invalid("empty argv");
  if (journal_ == nullptr || down_) return unavailable("lab " + name_ + " is not up");
  if (what.empty() || what.find_first_of("\t\n\r") != std::string_view::npos)
    return invalid("a process description must be one line without tabs");
  // `ip netns exec` enters the namespace and execs the program: the pid is the
  // program's own.
  std::vector<std::string> full{"ip", "netns", "exec", netns_};
  full.insert(full.end(), argv.begin(), argv.end());
  auto pid = system_.spawn(full, options);
  if (!pid.ok()) return pid.take_error();
  auto id = process_identity(*pid);
  if (!id) return internal_error(std::string(what) + " exited at once");
  if (auto s = journal_->record_process(*id, what); !s.ok()) {
    stop_process(*id, 5s);
    return s.take_error();
  }
  return *id;
}

std::string KernelLab::console_tail(int index, std::size_t bytes) const {
  if (index < 1 || index > guest_count()) return {};
  std::ifstream in(guest(index).console_log, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() > bytes) data = data.substr(data.size() - bytes);
  return data;
}

Status KernelLab::save_description() const {
  nlohmann::json j;
  j["name"] = name_;
  j["netns"] = netns_;
  j["state_root"] = state_root_.string();
  j["tgt_socket"] = tgt_socket_.string();
  j["kernel_version"] = kernel_version_;
  j["boot_ms"] = boot_time_.count();
  j["guests"] = nlohmann::json::array();
  for (const auto& g : guests_) {
    j["guests"].push_back({{"index", g.index},
                           {"hostname", g.hostname},
                           {"address", g.address},
                           {"host_id", g.host_id},
                           {"iqn", g.iqn},
                           {"qemu", process_json(g.qemu)},
                           {"job_dir", g.job_dir.string()},
                           {"console_log", g.console_log.string()}});
  }
  j["luns"] = nlohmann::json::array();
  for (const auto& l : luns_) {
    j["luns"].push_back({{"name", l.name},
                         {"iqn", l.iqn},
                         {"tid", l.tid},
                         {"portal", l.portal},
                         {"backing_file", l.backing_file.string()},
                         {"size_bytes", l.size_bytes}});
  }
  const fs::path tmp = state_dir_ / (std::string(kDescription) + ".tmp");
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) return internal_error("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, state_dir_ / kDescription, ec);
  if (ec) return internal_error("rename " + tmp.string() + ": " + ec.message());
  return ok_status();
}

Result<std::unique_ptr<KernelLab>> KernelLab::load(const fs::path& state_dir) {
  std::ifstream in(state_dir / kDescription);
  if (!in) return not_found("no running lab at " + state_dir.string());
  auto lab = std::unique_ptr<KernelLab>(new KernelLab());
  try {
    auto j = nlohmann::json::parse(in);
    lab->name_ = j.at("name").get<std::string>();
    lab->netns_ = j.at("netns").get<std::string>();
    lab->state_root_ = j.at("state_root").get<std::string>();
    lab->state_dir_ = state_dir;
    lab->tgt_socket_ = j.at("tgt_socket").get<std::string>();
    lab->kernel_version_ = j.at("kernel_version").get<std::string>();
    lab->boot_time_ = std::chrono::milliseconds(j.at("boot_ms").get<long long>());
    for (const auto& gj : j.at("guests")) {
      GuestInfo g;
      g.index = gj.at("index").get<int>();
      g.hostname = gj.at("hostname").get<std::string>();
      g.address = gj.at("address").get<std::string>();
      g.host_id = gj.at("host_id").get<int>();
      g.iqn = gj.at("iqn").get<std::string>();
      g.qemu = process_from_json(gj.at("qemu"));
      g.job_dir = gj.at("job_dir").get<std::string>();
      g.console_log = gj.at("console_log").get<std::string>();
      lab->guests_.push_back(g);
    }
    for (const auto& lj : j.at("luns")) {
      LunInfo l;
      l.name = lj.at("name").get<std::string>();
      l.iqn = lj.at("iqn").get<std::string>();
      l.tid = lj.at("tid").get<int>();
      l.portal = lj.at("portal").get<std::string>();
      l.backing_file = lj.at("backing_file").get<std::string>();
      l.size_bytes = lj.at("size_bytes").get<std::uint64_t>();
      lab->luns_.push_back(l);
    }
  } catch (const std::exception& e) {
    return internal_error("bad " + (state_dir / kDescription).string() + ": " + e.what());
  }
  lab->journal_ = std::make_unique<LabJournal>(state_dir / kJournal);
  for (const auto& g : lab->guests_) {
    lab->runners_.push_back(std::make_unique<GuestRunner>(g.hostname, g.job_dir, g.qemu));
  }
  return lab;
}

Result<std::unique_ptr<KernelLab>> KernelLab::attach(const std::string& name,
                                                     const fs::path& state_root) {
  if (auto s = check_name("lab name", name); !s.ok()) return s.take_error();
  auto lab = load(state_root / name);
  if (!lab.ok()) return lab;
  // An attached lab belongs to whoever made it: never torn down by this handle's
  // destructor.
  (*lab)->persistent_ = true;
  return lab;
}

Status KernelLab::destroy(const std::string& name, const fs::path& state_root) {
  if (auto s = check_name("lab name", name); !s.ok()) return s;
  RootLock lock(state_root);
  const fs::path dir = state_root / name;
  if (!fs::exists(dir)) return not_found("no lab " + name);
  SystemProcessRunner runner;
  if (!fs::exists(dir / kJournal)) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return ok_status();
  }
  return LabJournal::teardown(dir / kJournal, state_root, runner);
}

Status KernelLab::cleanup_stale(const fs::path& state_root) {
  if (!fs::exists(state_root)) return ok_status();
  RootLock lock(state_root);
  return cleanup_stale_locked(state_root);
}

Status KernelLab::cleanup_stale_locked(const fs::path& state_root) {
  Status first;
  SystemProcessRunner runner;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(state_root, ec)) {
    if (!entry.is_directory()) continue;
    const fs::path journal = entry.path() / kJournal;
    auto owner = journal_owner(journal);
    if (!owner.ok()) {
      // Made by a process that died before its first record, under the root lock we
      // hold now: nothing else of it exists.
      if (!fs::exists(journal)) fs::remove_all(entry.path(), ec);
      continue;
    }
    if (owner->process.pid == 0 || process_alive(owner->process)) continue;
    spdlog::info("klab: tearing down stale lab {} (owner pid {} is gone)",
                 entry.path().filename().string(), owner->process.pid);
    auto s = LabJournal::teardown(journal, state_root, runner);
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

}  // namespace kvmfleet::klab
