#pragma once

// The controller↔agent protocol, declared in one table. Every call is JSON over
// HTTP with the host's own bearer token. Requests that change something carry the
// controller's operation id ("op_id"), so a retried request is harmless: the agent
// remembers recent op ids and answers a repeat with the first answer.
//
// Controller → agent (served by kvmfleet-agent):
//   GET  /agent/v1/inventory                   → HostInventory
//   GET  /agent/v1/domains/{uuid}              → DomainStatus        (404 not_found if absent)
//   POST /agent/v1/domains/define              {"op_id", "spec": DomainSpec} → DomainStatus
//        defines (or redefines, when the generation differs) the domain and creates
//        its disk volumes in the agent's image pool if they do not exist yet.
//   POST /agent/v1/domains/{uuid}/start        {"op_id"} → DomainStatus (running: no-op)
//   POST /agent/v1/domains/{uuid}/shutdown     {"op_id"} → DomainStatus (ACPI request; returns at once)
//   POST /agent/v1/domains/{uuid}/reboot       {"op_id"} → DomainStatus
//   POST /agent/v1/domains/{uuid}/destroy      {"op_id"} → DomainStatus (stopped: no-op)
//   POST /agent/v1/domains/{uuid}/undefine     {"op_id", "remove_volumes": bool} → {}
//        refuses a running domain with conflict; absent domain: no-op.
//
//   POST /agent/v1/domains/{uuid}/migrate      {"op_id", "destination_uri", "migrate_uri",
//        "max_downtime_ms", "bandwidth_mib_s", "auto_converge", "allow_post_copy"}
//        → MigrationStatus. Starts a peer-to-peer live migration (LIVE | PEER2PEER |
//        PERSIST_DEST | UNDEFINE_SOURCE | ABORT_ON_ERROR) in the background and returns
//        at once; a repeat with the same op_id while it runs returns its status.
//   GET  /agent/v1/domains/{uuid}/migration    → MigrationStatus of the last migration
//        of that domain started by this agent: state none|running|completed|failed|cancelled,
//        op_id, data_total/processed/remaining (bytes), memory_iteration,
//        expected_downtime_ms, elapsed_ms, error (Error or null).
//   POST /agent/v1/domains/{uuid}/migration/abort {"op_id"} → MigrationStatus
//        (virDomainAbortJob; the guest keeps running on the source).
//
// Agent → controller (served by kvmfleet-controller):
//   POST /v1/agent/heartbeat  {"host", "agent_url", "inventory": HostInventory}
//        → {"heartbeat_interval_ms"}
//   POST /v1/agent/events     {"host", "events": [{"uuid", "name", "state", "reason", "at"}]}
//        → {}
//
// Errors travel in the public API's error body, so a category survives the hop.
//
// Details the agent guarantees:
//   - op_id is 1-128 characters of [A-Za-z0-9._:-] and is remembered per call path, so
//     one operation may use its id for define, then start, ... A repeat of the same
//     call answers the first 2xx answer again; failures are not remembered (a retry
//     acts). The same op_id and path with a different body is a 409 conflict.
//   - The agent acts only on domains carrying kvmfleet's metadata element; any other
//     domain with the requested uuid or name is a 409 conflict. Unknown uuid: 404.
//   - Request bodies are checked strictly: unknown fields, wrong types and values out
//     of range are 400 invalid_argument naming the field, before libvirt is called.
//   - Event "state" is the domain's VmState name after the event ("stopped" once it
//     is undefined); "reason" is libvirt's event and detail, e.g. "started:booted",
//     "stopped:destroyed", "stopped:migrated", "undefined:removed"; "at" is RFC 3339.

#include <chrono>
#include <string_view>

namespace kvmfleet::agent_protocol {

enum class TimeoutClass { fast, normal, slow };

constexpr std::chrono::milliseconds timeout_for(TimeoutClass c) {
  switch (c) {
    case TimeoutClass::fast: return std::chrono::milliseconds{5'000};
    case TimeoutClass::normal: return std::chrono::milliseconds{30'000};
    case TimeoutClass::slow: return std::chrono::milliseconds{120'000};
  }
  return std::chrono::milliseconds{30'000};
}

struct Call {
  std::string_view name;
  std::string_view method;
  std::string_view path;  // "{uuid}" is replaced by the domain UUID
  TimeoutClass timeout;
};

inline constexpr Call kInventory{"inventory", "GET", "/agent/v1/inventory", TimeoutClass::fast};
inline constexpr Call kDomainGet{"domain_get", "GET", "/agent/v1/domains/{uuid}", TimeoutClass::fast};
inline constexpr Call kDefine{"define", "POST", "/agent/v1/domains/define", TimeoutClass::slow};
inline constexpr Call kStart{"start", "POST", "/agent/v1/domains/{uuid}/start", TimeoutClass::normal};
inline constexpr Call kShutdown{"shutdown", "POST", "/agent/v1/domains/{uuid}/shutdown", TimeoutClass::normal};
inline constexpr Call kReboot{"reboot", "POST", "/agent/v1/domains/{uuid}/reboot", TimeoutClass::normal};
inline constexpr Call kDestroy{"destroy", "POST", "/agent/v1/domains/{uuid}/destroy", TimeoutClass::normal};
inline constexpr Call kUndefine{"undefine", "POST", "/agent/v1/domains/{uuid}/undefine", TimeoutClass::slow};

inline constexpr Call kMigrate{"migrate", "POST", "/agent/v1/domains/{uuid}/migrate", TimeoutClass::normal};
inline constexpr Call kMigration{"migration", "GET", "/agent/v1/domains/{uuid}/migration", TimeoutClass::fast};
inline constexpr Call kMigrationAbort{"migration_abort", "POST", "/agent/v1/domains/{uuid}/migration/abort", TimeoutClass::normal};

inline constexpr std::string_view kHeartbeatPath = "/v1/agent/heartbeat";
inline constexpr std::string_view kEventsPath = "/v1/agent/events";

}  // namespace kvmfleet::agent_protocol
