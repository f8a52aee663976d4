#pragma once

// Whether the daemons that guard shared LVs run on this host: wdmd (the watchdog
// multiplexer), sanlock (disk leases) and lvmlockd (LVM's lock manager), and which
// VG lockspaces are started.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::storage {

struct SanlockLockspace {
  std::string name;  // "lvm_VG" for an lvmlockd VG
  int host_id = 0;
  std::string path;
  std::string state;  // "started", "adding" (ADD), "removing" (REM)
};

// What the agent puts in its host inventory.
struct LockDaemonStatus {
  bool wdmd = false;
  bool sanlock = false;
  bool lvmlockd = false;
  std::vector<SanlockLockspace> lockspaces;
  // VGs whose lockspace is fully started here (lvmlockd has it, sanlock joined it).
  std::vector<std::string> started_vgs;
  // Why a daemon counts as not running (first line of what its probe printed).
  std::vector<std::string> problems;

  bool all_running() const { return wdmd && sanlock && lvmlockd; }
  bool vg_started(std::string_view vg) const;
  nlohmann::json to_json() const;
};

struct LockDaemonOptions {
  std::string wdmd = "wdmd";
  std::string sanlock = "sanlock";
  std::string lvmlockctl = "lvmlockctl";
  std::chrono::milliseconds timeout{std::chrono::seconds{20}};
};

class LockDaemons {
 public:
  explicit LockDaemons(ProcessRunner& runner, LockDaemonOptions options = {})
      : runner_(runner), options_(std::move(options)) {}

  // Asks each daemon itself (`wdmd --dump`, `sanlock client status`,
  // `lvmlockctl --info`): a daemon that answers runs. A daemon that does not answer
  // is a false field plus a problem line, not an error; errors are for failures of
  // the probing itself (e.g. the runner cannot start programs).
  Result<LockDaemonStatus> check();

 private:
  ProcessRunner& runner_;
  LockDaemonOptions options_;
};

// `sanlock client status`: the "s" lines.
Result<std::vector<SanlockLockspace>> parse_sanlock_status(std::string_view text);

}  // namespace kvmfleet::storage
