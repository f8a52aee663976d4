#pragma once

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace kvmfleet {

struct ControllerConfig {
  // API
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 8400;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::size_t body_limit_bytes = 256 * 1024;
  std::chrono::milliseconds read_timeout{10'000};
  int api_threads = 2;
  // State
  std::string database_path = "/var/lib/kvmfleet/controller.db";
  // Written on first start when no admin token exists yet (mode 0600).
  std::string bootstrap_token_file = "/var/lib/kvmfleet/admin.token";
  // Uploaded images (docs/images.md); empty: "image-store" beside the database.
  std::string image_dir;
  std::string resolved_image_dir() const;
  // Placement
  scheduler::Config scheduler;
  // Networks: VM NICs without a MAC get one under this prefix (three octets; QEMU's
  // own locally used one by default).
  std::string mac_prefix = "52:54:00";
  // Hosts
  std::chrono::milliseconds heartbeat_interval{2'000};
  std::chrono::milliseconds unreachable_after{6'000};
  std::chrono::milliseconds down_after{30'000};
  // Liveness under load (docs/architecture.md, "Host liveness"). A periodic pass that
  // runs this late, or a heartbeat that waits this long between arrival and processing,
  // means the controller is behind: that time does not count against hosts, and no host
  // is declared unreachable or down until liveness_lag_grace after it.
  std::chrono::milliseconds liveness_lag_threshold{1'000};
  std::chrono::milliseconds liveness_lag_grace{4'000};
  // Mass-failure guard: more than this share of the up hosts, and at least this many,
  // turning unreachable within the window is taken as a controller or network failure.
  double liveness_guard_share = 0.3;
  int liveness_guard_min_hosts = 3;
  std::chrono::milliseconds liveness_guard_window{60'000};
  // Operations
  // A drain holds one worker while its migrations use others.
  int operation_workers = 8;
  // At most this many live migrations leave, and this many arrive on, any host at once.
  int migrations_per_host = 2;
  int agent_retry_attempts = 5;
  std::chrono::milliseconds agent_retry_backoff{500};
  int default_stop_timeout_s = 120;
  std::chrono::hours operation_retention{24 * 7};
  std::string agent_ca_file;  // for agents served over https
  // VM metadata records (docs/metadata.md); empty: not written.
  std::string metadata_dir;
  std::chrono::milliseconds metadata_write_timeout{10'000};
  std::size_t metadata_queue_capacity = 1024;
  // Where agents keep VM volumes (their image_pool_path): disk paths in the records.
  std::string metadata_pool_path = "/var/lib/kvmfleet/images";

  // Shared storage: how often pools' space and snapshots' COW fill are read from the
  // hosts; a snapshot this full is warned about (log + metric); with
  // snapshot_autoextend_threshold_percent > 0 a snapshot that full is grown by
  // snapshot_autoextend_percent of its size (LVM's snapshot_autoextend, cluster-wide).
  std::chrono::milliseconds storage_refresh_interval{30'000};
  // A host a pool lists but cannot use (a failed login, a lost iSCSI session, a
  // lockspace that would not start) gets a storage_pool.connect this often.
  std::chrono::milliseconds storage_reconnect_interval{300'000};
  int snapshot_warn_percent = 80;
  int snapshot_autoextend_threshold_percent = 0;
  int snapshot_autoextend_percent = 20;

  // Reads the JSON config file; unknown keys and bad values are errors that name the key.
  static Result<ControllerConfig> from_json(const nlohmann::json& j);
};

}  // namespace kvmfleet
