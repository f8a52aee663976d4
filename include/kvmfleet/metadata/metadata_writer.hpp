#pragma once

// Writes each VM's metadata record to the metadata directory in the background, so
// the API never waits for the share. Changes are coalesced per VM (only the newest
// generation is written) in a bounded queue; every file operation runs on a dedicated
// I/O thread under a timeout guard, so a hung NFS share shows up as lag and errors in
// health() while submissions keep being accepted. docs/metadata.md has the guarantees.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/metadata/metadata_fs.hpp"
#include "kvmfleet/metadata/record.hpp"

namespace kvmfleet::metadata {

struct MetadataWriterOptions {
  // VMs with a change waiting; beyond it the oldest waiting change is dropped and its
  // VM re-read from the controller's state once there is room again.
  std::size_t queue_capacity = 1024;
  // A file operation still running after this marks the writer unhealthy.
  std::chrono::milliseconds write_timeout{10'000};
  // Pause after a failed write before the VM is tried again.
  std::chrono::milliseconds retry_backoff{1'000};
  PoolInfo pool;
  std::string writer_id;  // who wrote a record (the controller's host name)
};

struct MetadataHealth {
  bool healthy = true;  // false from a failed or timed-out write until the next success
  std::optional<Clock::time_point> last_success;
  std::chrono::milliseconds lag{0};  // age of the oldest change not yet written
  std::size_t queue_depth = 0;       // VMs with a change not yet written
  std::uint64_t writes_total = 0;    // records written or removed
  std::uint64_t errors_total = 0;    // failed or timed-out file operations
  std::uint64_t dropped_total = 0;   // changes pushed out of a full queue (re-read later)
  std::string last_error;
  std::optional<Clock::time_point> last_error_at;
};

nlohmann::json to_json(const MetadataHealth& h);
// Prometheus text lines: kvmfleet_metadata_lag_seconds, _write_errors_total,
// _queue_depth, _healthy, _writes_total, _dropped_total.
std::string render_metrics(const MetadataHealth& h);

class MetadataWriter {
 public:
  // The VM as the controller knows it now; nullopt when it no longer exists. Called on
  // the writer's thread, for VMs whose change was pushed out of a full queue.
  using Refetch = std::function<std::optional<VmMetadata>(const std::string& vm_id)>;

  MetadataWriter(std::shared_ptr<MetadataFs> fs, const Clock& clock, MetadataWriterOptions opts,
                 Refetch refetch);
  ~MetadataWriter();
  MetadataWriter(const MetadataWriter&) = delete;
  MetadataWriter& operator=(const MetadataWriter&) = delete;

  void start();
  // Finishes the write in progress (waiting at most write_timeout for it) and stops;
  // changes still queued are not written (the next start rewrites every VM).
  void stop();

  // Never blocks on the share: takes a short lock and returns. A generation not newer
  // than one already queued, in flight or written for the VM is ignored.
  void submit(VmMetadata meta);
  void submit_delete(const std::string& vm_id);

  MetadataHealth health() const;

 private:
  struct Shared;
  std::shared_ptr<Shared> s_;
};

}  // namespace kvmfleet::metadata
