#pragma once

// The shared-storage backends the agent's storage routes dispatch to
// (docs/storage.md, "Agent API"). The agent owns none of them: agent_main builds the
// real ones when the configuration has a "storage" object; tests pass doubles.

#include <chrono>
#include <filesystem>
#include <functional>

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/storage/iscsi_initiator.hpp"
#include "kvmfleet/storage/lock_daemons.hpp"
#include "kvmfleet/storage/multipath.hpp"
#include "kvmfleet/storage/volume_manager.hpp"

namespace kvmfleet::agent {

struct StorageBackend {
  storage::IscsiInitiator& iscsi;
  storage::VolumeManager& lvm;
  // What the waits below go by (SystemClock in the agent; a ManualClock in tests).
  Clock& clock;
  // Optional parts of the inventory (GET /agent/v1/storage); null leaves them out.
  storage::LockDaemons* locks = nullptr;
  // Set when multipath is configured (storage.multipath): the inventory reports the
  // maps, a LUN that a map holds is used through the map (login, the sessions' LUNs
  // at start, fc/luns), and a login waits up to `multipath_wait` of its `lun_wait`
  // for multipathd to build the map once the path appeared (storage_devices.hpp).
  storage::Multipath* multipath = nullptr;
  std::chrono::milliseconds multipath_wait{3'000};
  // The disk behind a LUN's device link (by-path → /dev/sdX), to find it among the
  // maps' paths; empty means resolve_device_link (std::filesystem, this host's /dev).
  std::function<Result<std::string>(const std::string&)> resolve_device;
  // Where GET /agent/v1/storage/fc/luns looks for LUNs by WWID.
  std::filesystem::path fc_by_id_dir = "/dev/disk/by-id";
  // An iSCSI login answers the LUN's block device. The kernel scans the LUNs after
  // the login returns, so the device is looked for every `lun_poll` for up to
  // `lun_wait`; after `lun_rescan_after` without one, the sessions are rescanned once
  // (a target that was logged in already gets no scan from the login).
  std::chrono::milliseconds lun_wait{20'000};
  std::chrono::milliseconds lun_poll{250};
  std::chrono::milliseconds lun_rescan_after{2'000};
};

}  // namespace kvmfleet::agent
