#pragma once

// dm-multipath (multipath-tools): the multipath device of a LUN reached over
// several paths (iSCSI portals or FC ports), and the health of each path.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::storage {

struct MultipathPath {
  std::string dev;            // "sdb"
  std::string dm_state;       // "active", "failed"
  std::string dev_state;      // "running", "offline", ...
  std::string checker_state;  // "ready", "faulty", "shaky", "ghost", ...
  std::string target;         // target_wwnn: the IQN for iSCSI, the WWNN for FC

  bool healthy() const { return dm_state == "active" && checker_state == "ready"; }
};

struct MultipathMap {
  std::string name;      // the map's name: the WWID unless user_friendly_names
  std::string wwid;      // the map's uuid
  std::string sysfs;     // "dm-0"
  std::string dm_state;  // "active", "suspend"
  int path_faults = 0;
  std::vector<MultipathPath> paths;

  std::string device() const { return "/dev/mapper/" + name; }
  int healthy_paths() const;
  // Some path is down but I/O still flows.
  bool degraded() const { return healthy_paths() < static_cast<int>(paths.size()); }
  bool has_path(std::string_view dev) const;
};

struct MultipathOptions {
  std::string multipathd = "multipathd";
  std::chrono::milliseconds timeout{std::chrono::seconds{30}};
};

// Reads multipathd's state (`multipathd show maps json`); multipathd makes and
// grows the maps itself as paths appear.
class Multipath {
 public:
  explicit Multipath(ProcessRunner& runner, MultipathOptions options = {})
      : runner_(runner), options_(std::move(options)) {}

  // Every map with its paths. unavailable when multipathd does not answer.
  Result<std::vector<MultipathMap>> maps();
  // The map one of whose paths is `disk` ("/dev/sdb" or "sdb"): the device to use
  // for a LUN instead of any single path. not_found when no map holds it.
  Result<MultipathMap> map_with_path(std::string_view disk);

 private:
  ProcessRunner& runner_;
  MultipathOptions options_;
};

// `multipathd show maps json` (untrusted: malformed is internal).
Result<std::vector<MultipathMap>> parse_multipathd_maps(std::string_view json);

}  // namespace kvmfleet::storage
