#pragma once

// Shared storage requests (docs/storage.md): each checks what the cluster state holds,
// records the resource and its operation in one write, and leaves the work to the
// operation (storage_operations.hpp).

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/operations.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

class StorageService {
 public:
  StorageService(Operations& operations, const Clock& clock)
      : operations_(operations), clock_(clock) {}

  // A pool is made on `hosts` (empty: every host that is up, and every host that comes
  // up later: see StorageMonitor).
  Result<Submitted> create_pool(const Principal& who, StoragePool pool,
                                std::vector<std::string> hosts, const SubmitOptions& opts);
  // Connects `hosts` (registered, up) to a ready pool: iSCSI discovery and login or the
  // FC LUNs found, then the VG's lockspace started, each recorded in the pool. A host
  // that fails keeps its error there; the pool stays as it is.
  Result<Submitted> connect_pool(const Principal& who, const std::string& name,
                                 std::vector<std::string> hosts, const SubmitOptions& opts);
  // Detaches a pool that has no volumes: every host stops the VG's lockspace and logs
  // out; the VG stays on the LUNs (a pool created again on them adopts it).
  Result<Submitted> delete_pool(const Principal& who, const std::string& name,
                                const SubmitOptions& opts);
  Result<Submitted> create_volume(const Principal& who, const std::string& name,
                                  const std::string& pool, std::uint64_t size_bytes,
                                  const SubmitOptions& opts);
  Result<Submitted> grow_volume(const Principal& who, const std::string& id_or_name,
                                std::uint64_t size_bytes, const SubmitOptions& opts);
  Result<Submitted> delete_volume(const Principal& who, const std::string& id_or_name,
                                  const SubmitOptions& opts);
  // COW room: `size_bytes` when given, else `ratio` (0 < ratio <= 1) of the volume.
  Result<Submitted> create_snapshot(const Principal& who, const std::string& volume,
                                    const std::string& name, std::uint64_t size_bytes, double ratio,
                                    bool quiesce, const SubmitOptions& opts);
  // Snapshots every disk of a VM (all must be shared volumes) at one instant, each
  // named `name`, sized like create_snapshot.
  Result<Submitted> create_vm_snapshot(const Principal& who, const std::string& vm,
                                       const std::string& name, std::uint64_t size_bytes,
                                       double ratio, bool quiesce, const SubmitOptions& opts);
  // kind: snapshot.delete or snapshot.revert
  Result<Submitted> snapshot_action(const Principal& who, const std::string& volume,
                                    const std::string& snapshot, std::string_view kind,
                                    const SubmitOptions& opts);

 private:
  Operations& operations_;
  const Clock& clock_;
};

}  // namespace kvmfleet
