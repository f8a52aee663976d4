#pragma once

// The shared-storage backends the agent's storage routes dispatch to
// (docs/storage.md, "Agent API"). The agent owns none of them: agent_main builds the
// real ones when the configuration has a "storage" object; tests pass doubles.

#include "kvmfleet/storage/iscsi_initiator.hpp"
#include "kvmfleet/storage/lock_daemons.hpp"
#include "kvmfleet/storage/multipath.hpp"
#include "kvmfleet/storage/volume_manager.hpp"

namespace kvmfleet::agent {

struct StorageBackend {
  storage::IscsiInitiator& iscsi;
  storage::VolumeManager& lvm;
  // Optional parts of the inventory (GET /agent/v1/storage); null leaves them out.
  storage::LockDaemons* locks = nullptr;
  storage::Multipath* multipath = nullptr;
};

}  // namespace kvmfleet::agent
