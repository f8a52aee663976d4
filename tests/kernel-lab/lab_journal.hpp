#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::klab {

// A process as the journal knows it: the pid plus its start time, so that a pid the
// kernel has since given to another process is never signalled.
struct ProcessId {
  pid_t pid = 0;
  unsigned long long start_ticks = 0;

  bool operator==(const ProcessId&) const = default;
};

// Reads /proc/PID/stat; nullopt when there is no such process.
std::optional<ProcessId> process_identity(pid_t pid);
// True while the very process `id` names runs (a zombie counts as gone; a zombie
// child of the caller is reaped on the way).
bool process_alive(const ProcessId& id);
// SIGTERM, up to `grace` for it to go, then SIGKILL. Never touches another process
// that happens to have the same pid.
void stop_process(const ProcessId& id, std::chrono::milliseconds grace);

// One line of the journal: a thing the lab made and how to undo it.
struct JournalRecord {
  enum class Kind {
    owner,       // the process the lab belongs to; pid 0 when it outlives its maker (the CLI)
    guest,       // a QEMU process and the job dir through which it can be asked to power off
    process,     // any other process
    tgtd,        // a tgtd and its IPC socket, through which it is told to exit
    tgt_target,  // a tgtd target: its IPC socket and tid
    link,        // a network interface (a tap) inside one of the lab's namespaces
    netns,       // a network namespace (its bridge and taps go with it)
    file,        // a file (LUN backing files)
    dir,         // a directory tree
  };
  Kind kind = Kind::file;
  ProcessId process;  // owner, guest, process
  std::string name;   // netns name (netns, link), process description
  std::filesystem::path
      path;     // guest job dir, tgt IPC socket (tgtd, tgt_target), link name, file, dir
  int tid = 0;  // tgt_target
};

// An append-only record of everything one lab made, kept in a file so that the
// lab can be torn down by exactly those records, also by a later process after
// its maker crashed. A record is written before the thing is made where that is
// possible (a namespace, a file), right after otherwise (a pid).
class LabJournal {
 public:
  explicit LabJournal(std::filesystem::path path) : path_(std::move(path)) {}

  const std::filesystem::path& path() const { return path_; }

  Status record_owner(const ProcessId& owner);
  Status record_guest(const ProcessId& qemu, const std::filesystem::path& job_dir);
  Status record_process(const ProcessId& process, std::string_view what);
  Status record_tgtd(const ProcessId& tgtd, const std::filesystem::path& ipc_socket);
  Status record_tgt_target(const std::filesystem::path& ipc_socket, int tid);
  Status record_netns(std::string_view name);
  Status record_link(std::string_view netns, std::string_view ifname);
  Status record_file(const std::filesystem::path& file);
  Status record_dir(const std::filesystem::path& dir);

  // Every record in the order written; a torn last line (a crash mid-write) is ignored.
  Result<std::vector<JournalRecord>> read() const;

  // Undoes every record, newest first: guests are asked to power off (all at once,
  // then waited for), processes stopped, tgt targets deleted, namespaces, files and
  // directories removed. Keeps going past failures and reports the first one.
  // Directories are only removed below `allowed_root`, whatever the file says.
  static Status teardown(const std::filesystem::path& journal_path,
                         const std::filesystem::path& allowed_root, ProcessRunner& runner);

 private:
  Status append(const std::vector<std::string>& fields);

  std::filesystem::path path_;
};

}  // namespace kvmfleet::klab
