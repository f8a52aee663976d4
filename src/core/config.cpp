#include "kvmfleet/core/config.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/network.hpp"

#include <string_view>
#include <tuple>

namespace kvmfleet {
namespace {

Status read_ms(const nlohmann::json& j, const char* key, std::chrono::milliseconds& out,
               std::int64_t min, std::int64_t max) {
  auto v = get_int(j, key, false, out.count(), min, max);
  if (!v) return v.take_error();
  out = std::chrono::milliseconds{*v};
  return {};
}

Status read_ratio(const nlohmann::json& j, const char* key, double& out) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > 64)
    return invalid(std::string(key) + " must be a number in (0, 64]", {{"field", key}});
  out = it->get<double>();
  return {};
}

}  // namespace

std::string ControllerConfig::resolved_image_dir() const {
  if (!image_dir.empty()) return image_dir;
  const auto slash = database_path.rfind('/');
  return (slash == std::string::npos ? std::string(".") : database_path.substr(0, slash)) +
         "/image-store";
}

Result<ControllerConfig> ControllerConfig::from_json(const nlohmann::json& j) {
  if (auto st = check_known_fields(j,
                                   {"listen_address",
                                    "listen_port",
                                    "tls_cert_file",
                                    "tls_key_file",
                                    "body_limit_bytes",
                                    "read_timeout_ms",
                                    "api_threads",
                                    "database_path",
                                    "bootstrap_token_file",
                                    "image_dir",
                                    "scheduler",
                                    "heartbeat_interval_ms",
                                    "unreachable_after_ms",
                                    "down_after_ms",
                                    "liveness_lag_threshold_ms",
                                    "liveness_lag_grace_ms",
                                    "liveness_guard_share",
                                    "liveness_guard_min_hosts",
                                    "liveness_guard_window_ms",
                                    "operation_workers",
                                    "migrations_per_host",
                                    "agent_retry_attempts",
                                    "agent_retry_backoff_ms",
                                    "default_stop_timeout_s",
                                    "operation_retention_hours",
                                    "agent_ca_file",
                                    "metadata_dir",
                                    "metadata_write_timeout_ms",
                                    "metadata_queue_capacity",
                                    "metadata_pool_path",
                                    "storage_refresh_interval_ms",
                                    "storage_reconnect_interval_ms",
                                    "snapshot_warn_percent",
                                    "snapshot_autoextend_threshold_percent",
                                    "snapshot_autoextend_percent",
                                    "mac_prefix"},
                                   "controller config");
      !st)
    return st.take_error();
  ControllerConfig c;
#define KVF_STR(key)                                  \
  if (auto v = get_string(j, #key, false, c.key); !v) \
    return v.take_error();                            \
  else                                                \
    c.key = *v;
  KVF_STR(listen_address)
  KVF_STR(tls_cert_file)
  KVF_STR(tls_key_file)
  KVF_STR(database_path)
  KVF_STR(bootstrap_token_file)
  KVF_STR(agent_ca_file)
  KVF_STR(metadata_dir)
  KVF_STR(metadata_pool_path)
  KVF_STR(mac_prefix)
  KVF_STR(image_dir)
#undef KVF_STR
  if (auto st = check_mac_prefix(c.mac_prefix); !st) return st.take_error();
  c.mac_prefix = *normalize_mac(c.mac_prefix + ":00:00:00");
  c.mac_prefix.resize(8);
  auto port = get_int(j, "listen_port", false, c.listen_port, 0, 65535);
  if (!port) return port.take_error();
  c.listen_port = static_cast<std::uint16_t>(*port);
  auto body = get_int(j, "body_limit_bytes", false, static_cast<std::int64_t>(c.body_limit_bytes),
                      1024, 64 << 20);
  if (!body) return body.take_error();
  c.body_limit_bytes = static_cast<std::size_t>(*body);
  auto threads = get_int(j, "api_threads", false, c.api_threads, 1, 64);
  if (!threads) return threads.take_error();
  c.api_threads = static_cast<int>(*threads);
  auto workers = get_int(j, "operation_workers", false, c.operation_workers, 1, 256);
  if (!workers) return workers.take_error();
  c.operation_workers = static_cast<int>(*workers);
  auto per_host = get_int(j, "migrations_per_host", false, c.migrations_per_host, 1, 64);
  if (!per_host) return per_host.take_error();
  c.migrations_per_host = static_cast<int>(*per_host);
  auto attempts = get_int(j, "agent_retry_attempts", false, c.agent_retry_attempts, 1, 100);
  if (!attempts) return attempts.take_error();
  c.agent_retry_attempts = static_cast<int>(*attempts);
  auto stop = get_int(j, "default_stop_timeout_s", false, c.default_stop_timeout_s, 1, 3600);
  if (!stop) return stop.take_error();
  c.default_stop_timeout_s = static_cast<int>(*stop);
  auto keep =
      get_int(j, "operation_retention_hours", false, c.operation_retention.count(), 1, 24 * 365);
  if (!keep) return keep.take_error();
  c.operation_retention = std::chrono::hours{*keep};
  for (auto [key, field] :
       {std::pair{"read_timeout_ms", &c.read_timeout},
        std::pair{"heartbeat_interval_ms", &c.heartbeat_interval},
        std::pair{"unreachable_after_ms", &c.unreachable_after},
        std::pair{"down_after_ms", &c.down_after},
        std::pair{"liveness_lag_threshold_ms", &c.liveness_lag_threshold},
        std::pair{"agent_retry_backoff_ms", &c.agent_retry_backoff},
        std::pair{"metadata_write_timeout_ms", &c.metadata_write_timeout},
        std::pair{"storage_refresh_interval_ms", &c.storage_refresh_interval},
        std::pair{"storage_reconnect_interval_ms", &c.storage_reconnect_interval}}) {
    if (auto st = read_ms(j, key, *field, 1, 3'600'000); !st) return st.take_error();
  }
  for (auto [key, field, min] :
       {std::tuple{"snapshot_warn_percent", &c.snapshot_warn_percent, 1},
        std::tuple{"snapshot_autoextend_threshold_percent",
                   &c.snapshot_autoextend_threshold_percent, 0},
        std::tuple{"snapshot_autoextend_percent", &c.snapshot_autoextend_percent, 1}}) {
    auto v = get_int(j, key, false, *field, min,
                     key == std::string_view("snapshot_autoextend_percent") ? 1000 : 99);
    if (!v) return v.take_error();
    *field = static_cast<int>(*v);
  }
  if (auto st = read_ms(j, "liveness_lag_grace_ms", c.liveness_lag_grace, 0, 3'600'000); !st)
    return st.take_error();
  if (auto st = read_ms(j, "liveness_guard_window_ms", c.liveness_guard_window, 1'000, 3'600'000);
      !st)
    return st.take_error();
  auto guard_min =
      get_int(j, "liveness_guard_min_hosts", false, c.liveness_guard_min_hosts, 1, 1'000'000);
  if (!guard_min) return guard_min.take_error();
  c.liveness_guard_min_hosts = static_cast<int>(*guard_min);
  if (auto it = j.find("liveness_guard_share"); it != j.end()) {
    // 1 turns the guard off: more than every host can never turn unreachable.
    if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > 1)
      return invalid("liveness_guard_share must be a number in (0, 1]",
                     {{"field", "liveness_guard_share"}});
    c.liveness_guard_share = it->get<double>();
  }
  auto mq = get_int(j, "metadata_queue_capacity", false,
                    static_cast<std::int64_t>(c.metadata_queue_capacity), 1, 1 << 20);
  if (!mq) return mq.take_error();
  c.metadata_queue_capacity = static_cast<std::size_t>(*mq);
  if (c.unreachable_after >= c.down_after)
    return invalid("unreachable_after_ms must be below down_after_ms");
  if (auto it = j.find("scheduler"); it != j.end()) {
    const auto& s = *it;
    if (auto st = check_known_fields(
            s, {"memory_overcommit", "cpu_overcommit", "reserved_memory_mib", "rank"},
            "scheduler config");
        !st)
      return st.take_error();
    if (auto st = read_ratio(s, "memory_overcommit", c.scheduler.memory_overcommit); !st)
      return st.take_error();
    if (auto st = read_ratio(s, "cpu_overcommit", c.scheduler.cpu_overcommit); !st)
      return st.take_error();
    auto reserved = get_int(s, "reserved_memory_mib", false, 0, 0, 1 << 24);
    if (!reserved) return reserved.take_error();
    c.scheduler.reserved_memory_mib = *reserved;
    auto rank = get_string(s, "rank", false, "spread");
    if (!rank) return rank.take_error();
    if (*rank == "spread")
      c.scheduler.rank = scheduler::RankPolicy::spread;
    else if (*rank == "pack")
      c.scheduler.rank = scheduler::RankPolicy::pack;
    else
      return invalid("scheduler.rank must be spread or pack", {{"field", "scheduler.rank"}});
  }
  return c;
}

}  // namespace kvmfleet
