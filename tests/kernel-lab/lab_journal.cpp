#include "lab_journal.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace kvmfleet::klab {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string errno_text(int e) {
  return std::strerror(e);
}

// A path may not break the one-record-per-line, tab-separated format.
bool is_plain(std::string_view s) {
  return s.find_first_of("\t\n\r") == std::string_view::npos;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    auto tab = line.find('\t', start);
    out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return out;
}

std::optional<long long> to_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  try {
    std::size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used != s.size()) return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<ProcessId> parse_process(const std::string& pid, const std::string& start) {
  auto p = to_number(pid);
  auto s = to_number(start);
  if (!p || !s || *p < 0 || *s < 0) return std::nullopt;
  return ProcessId{static_cast<pid_t>(*p), static_cast<unsigned long long>(*s)};
}

std::optional<JournalRecord> parse_record(const std::string& line) {
  auto f = split_tabs(line);
  JournalRecord r;
  const std::string& kind = f[0];
  if ((kind == "owner") && f.size() == 3) {
    auto p = parse_process(f[1], f[2]);
    if (!p) return std::nullopt;
    r.kind = JournalRecord::Kind::owner;
    r.process = *p;
  } else if (kind == "guest" && f.size() == 4) {
    auto p = parse_process(f[1], f[2]);
    if (!p) return std::nullopt;
    r.kind = JournalRecord::Kind::guest;
    r.process = *p;
    r.path = f[3];
  } else if (kind == "process" && f.size() == 4) {
    auto p = parse_process(f[1], f[2]);
    if (!p) return std::nullopt;
    r.kind = JournalRecord::Kind::process;
    r.process = *p;
    r.name = f[3];
  } else if (kind == "tgtd" && f.size() == 4) {
    auto p = parse_process(f[1], f[2]);
    if (!p) return std::nullopt;
    r.kind = JournalRecord::Kind::tgtd;
    r.process = *p;
    r.path = f[3];
  } else if (kind == "tgt-target" && f.size() == 3) {
    auto tid = to_number(f[2]);
    if (!tid) return std::nullopt;
    r.kind = JournalRecord::Kind::tgt_target;
    r.path = f[1];
    r.tid = static_cast<int>(*tid);
  } else if (kind == "link" && f.size() == 3) {
    r.kind = JournalRecord::Kind::link;
    r.name = f[1];
    r.path = f[2];
  } else if (kind == "netns" && f.size() == 2) {
    r.kind = JournalRecord::Kind::netns;
    r.name = f[1];
  } else if (kind == "file" && f.size() == 2) {
    r.kind = JournalRecord::Kind::file;
    r.path = f[1];
  } else if (kind == "dir" && f.size() == 2) {
    r.kind = JournalRecord::Kind::dir;
    r.path = f[1];
  } else {
    return std::nullopt;
  }
  return r;
}

// True when `p` lies strictly below `root` (both made absolute and normal).
bool is_below(const fs::path& p, const fs::path& root) {
  auto np = p.lexically_normal();
  auto nr = root.lexically_normal();
  auto rel = np.lexically_relative(nr);
  return !rel.empty() && *rel.begin() != ".." && rel != ".";
}

void keep_first(Status& first, Status s) {
  if (first.ok() && !s.ok()) first = std::move(s);
}

bool netns_exists(const std::string& name) {
  return fs::exists(fs::path("/run/netns") / name);
}

}  // namespace

std::optional<ProcessId> process_identity(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return std::nullopt;
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses; fields after the
  // last ')' are plain.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  std::vector<std::string> fields;
  while (rest >> field) fields.push_back(field);
  // fields[0] is field 3 (state); starttime is field 22.
  if (fields.size() < 20) return std::nullopt;
  if (fields[0] == "Z" || fields[0] == "X") return std::nullopt;
  auto start = to_number(fields[19]);
  if (!start) return std::nullopt;
  return ProcessId{pid, static_cast<unsigned long long>(*start)};
}

bool process_alive(const ProcessId& id) {
  if (id.pid <= 0) return false;
  // Reaps the process if it is a child of ours that has exited; ECHILD otherwise.
  ::waitpid(id.pid, nullptr, WNOHANG);
  auto now = process_identity(id.pid);
  return now && now->start_ticks == id.start_ticks;
}

void stop_process(const ProcessId& id, std::chrono::milliseconds grace) {
  if (!process_alive(id)) return;
  ::kill(id.pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (process_alive(id) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  if (!process_alive(id)) return;
  ::kill(id.pid, SIGKILL);
  deadline = std::chrono::steady_clock::now() + 10s;
  while (process_alive(id) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
}

Status LabJournal::append(const std::vector<std::string>& fields) {
  std::string line;
  for (const auto& f : fields) {
    if (!is_plain(f)) return invalid("journal field holds a tab or newline: " + f);
    if (!line.empty()) line += '\t';
    line += f;
  }
  line += '\n';
  // One write() per record with O_APPEND: a crash leaves at most one torn line.
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return internal_error("open " + path_.string() + ": " + errno_text(errno));
  auto n = ::write(fd, line.data(), line.size());
  int e = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size()))
    return internal_error("write " + path_.string() + ": " + errno_text(e));
  return ok_status();
}

Status LabJournal::record_owner(const ProcessId& owner) {
  return append({"owner", std::to_string(owner.pid), std::to_string(owner.start_ticks)});
}
Status LabJournal::record_guest(const ProcessId& qemu, const fs::path& job_dir) {
  return append(
      {"guest", std::to_string(qemu.pid), std::to_string(qemu.start_ticks), job_dir.string()});
}
Status LabJournal::record_process(const ProcessId& process, std::string_view what) {
  return append({"process", std::to_string(process.pid), std::to_string(process.start_ticks),
                 std::string(what)});
}
Status LabJournal::record_tgtd(const ProcessId& tgtd, const fs::path& ipc_socket) {
  return append(
      {"tgtd", std::to_string(tgtd.pid), std::to_string(tgtd.start_ticks), ipc_socket.string()});
}
Status LabJournal::record_tgt_target(const fs::path& ipc_socket, int tid) {
  return append({"tgt-target", ipc_socket.string(), std::to_string(tid)});
}
Status LabJournal::record_netns(std::string_view name) {
  return append({"netns", std::string(name)});
}
Status LabJournal::record_link(std::string_view netns, std::string_view ifname) {
  return append({"link", std::string(netns), std::string(ifname)});
}
Status LabJournal::record_file(const fs::path& file) {
  return append({"file", file.string()});
}
Status LabJournal::record_dir(const fs::path& dir) {
  return append({"dir", dir.string()});
}

Result<std::vector<JournalRecord>> LabJournal::read() const {
  std::ifstream in(path_);
  if (!in) return not_found("no journal at " + path_.string());
  std::vector<JournalRecord> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto r = parse_record(line);
    if (!r) {
      spdlog::warn("klab: ignoring malformed journal line in {}: {}", path_.string(), line);
      continue;
    }
    out.push_back(std::move(*r));
  }
  return out;
}

Status LabJournal::teardown(const fs::path& journal_path, const fs::path& allowed_root,
                            ProcessRunner& runner) {
  LabJournal journal(journal_path);
  auto records = journal.read();
  if (!records.ok()) return records.take_error();
  Status first;

  // Guests first and all together: each powers off by itself (its agent stops, PID 1
  // kills what is left and calls poweroff), which takes seconds under TCG.
  std::vector<const JournalRecord*> guests;
  for (const auto& r : *records) {
    if (r.kind != JournalRecord::Kind::guest || !process_alive(r.process)) continue;
    if (is_below(r.path, allowed_root)) {
      std::ofstream(r.path / "poweroff").put('\n');
    }
    guests.push_back(&r);
  }
  auto deadline = std::chrono::steady_clock::now() + 60s;
  for (const auto* g : guests) {
    while (process_alive(g->process) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
    }
  }

  for (auto it = records->rbegin(); it != records->rend(); ++it) {
    const auto& r = *it;
    switch (r.kind) {
      case JournalRecord::Kind::owner:
        break;
      case JournalRecord::Kind::guest:
        if (process_alive(r.process))
          spdlog::warn("klab: guest qemu {} did not power off; stopping it", r.process.pid);
        stop_process(r.process, 10s);
        if (process_alive(r.process))
          keep_first(first,
                     internal_error("qemu " + std::to_string(r.process.pid) + " survives SIGKILL"));
        break;
      case JournalRecord::Kind::process:
        stop_process(r.process, 10s);
        if (process_alive(r.process)) {
          keep_first(first, internal_error(r.name + " " + std::to_string(r.process.pid) +
                                           " survives SIGKILL"));
        }
        break;
      case JournalRecord::Kind::tgtd: {
        // tgtd ignores SIGTERM; it exits when told so through its IPC socket.
        if (process_alive(r.process) && fs::exists(fs::path(r.path.string() + ".0"))) {
          RunOptions opts;
          opts.timeout = 20s;
          opts.env = {{"TGT_IPC_SOCKET", r.path.string()}};
          auto out = runner.run({"tgtadm", "--op", "delete", "--mode", "system"}, opts);
          if (out.ok() && !out->success()) spdlog::warn("klab: tgtadm delete system: {}", out->err);
          auto until = std::chrono::steady_clock::now() + 10s;
          while (process_alive(r.process) && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(50ms);
          }
        }
        stop_process(r.process, 2s);
        if (process_alive(r.process)) {
          keep_first(first,
                     internal_error("tgtd " + std::to_string(r.process.pid) + " survives SIGKILL"));
        }
        break;
      }
      case JournalRecord::Kind::tgt_target: {
        // Only while its tgtd still answers; a dead tgtd took its targets along.
        if (!fs::exists(fs::path(r.path.string() + ".0"))) break;
        RunOptions opts;
        opts.timeout = 20s;
        opts.env = {{"TGT_IPC_SOCKET", r.path.string()}};
        auto out = runner.run({"tgtadm", "--lld", "iscsi", "--op", "delete", "--force", "--mode",
                               "target", "--tid", std::to_string(r.tid)},
                              opts);
        if (out.ok() && !out->success() &&
            out->err.find("can't find the target") == std::string::npos) {
          spdlog::warn("klab: tgtadm delete tid {}: {}", r.tid, out->err);
        }
        break;
      }
      case JournalRecord::Kind::link:
        if (netns_exists(r.name)) {
          auto shown = runner.run({"ip", "-n", r.name, "link", "show", "dev", r.path.string()});
          if (shown.ok() && shown->success()) {
            auto out = runner.run({"ip", "-n", r.name, "link", "delete", "dev", r.path.string()});
            if (!out.ok()) {
              keep_first(first, out.take_error());
            } else if (!out->success()) {
              keep_first(first,
                         internal_error("ip link delete " + r.path.string() + ": " + out->err));
            }
          }
        }
        break;
      case JournalRecord::Kind::netns:
        if (netns_exists(r.name)) {
          auto out = runner.run({"ip", "netns", "delete", r.name});
          if (!out.ok()) {
            keep_first(first, out.take_error());
          } else if (!out->success() && netns_exists(r.name)) {
            keep_first(first, internal_error("ip netns delete " + r.name + ": " + out->err));
          }
        }
        break;
      case JournalRecord::Kind::file: {
        std::error_code ec;
        if (is_below(r.path, allowed_root)) fs::remove(r.path, ec);
        if (ec)
          keep_first(first, internal_error("remove " + r.path.string() + ": " + ec.message()));
        break;
      }
      case JournalRecord::Kind::dir: {
        std::error_code ec;
        // The journal itself lives in the lab's dir, which is the first record, so
        // it goes last, and only once everything else is gone: otherwise the journal
        // stays for the next attempt.
        if (!first.ok()) {
          spdlog::warn("klab: keeping {} for another teardown: {}", r.path.string(),
                       first.error().message);
        } else if (is_below(r.path, allowed_root)) {
          fs::remove_all(r.path, ec);
        } else {
          spdlog::warn("klab: not removing {}: outside {}", r.path.string(), allowed_root.string());
        }
        if (ec)
          keep_first(first, internal_error("remove " + r.path.string() + ": " + ec.message()));
        break;
      }
    }
  }
  return first;
}

}  // namespace kvmfleet::klab
