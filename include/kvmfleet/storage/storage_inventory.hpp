#pragma once

// What a host reports about its shared storage in its inventory: the lock
// daemons, its iSCSI sessions and the shared VGs it sees through its filter.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvmfleet/storage/iscsi_initiator.hpp"
#include "kvmfleet/storage/lock_daemons.hpp"
#include "kvmfleet/storage/multipath.hpp"
#include "kvmfleet/storage/volume_manager.hpp"

namespace kvmfleet::storage {

struct StorageInventory {
  LockDaemonStatus locks;
  std::vector<IscsiSession> sessions;
  std::vector<VolumeGroup> vgs;
  std::vector<MultipathMap> multipath;
  // One line per part that could not be read; the other parts are still filled.
  std::vector<std::string> errors;

  // {"locks": {...}, "iscsi_sessions": [{"target", "portal", "state", "disks"}],
  //  "vgs": [{"name", "size_bytes", "free_bytes", "shared", "lock_type",
  //           "lockspace_started"}], "multipath": [{"name", "device", "paths",
  //           "healthy_paths", "degraded", "path_faults", "failed_paths": [...],
  //           "path_states": [{"dev", "healthy", "dm_state", "dev_state",
  //           "checker_state"}]}], "errors": [...]}
  nlohmann::json to_json() const;
};

// Reads each part that is given (a null backend is left out). Never fails as a
// whole: a host whose iscsid is down still reports its lock daemons.
StorageInventory collect_storage_inventory(IscsiInitiator* iscsi, VolumeManager* lvm,
                                           LockDaemons* locks, Multipath* multipath = nullptr);

}  // namespace kvmfleet::storage
