#pragma once

// clang-format off
// The controller↔agent protocol, declared in one table (kCalls below): one row per
// call with its method, path pattern, timeout class, how a repeat is made harmless and
// the body fields it accepts. The agent's router matches each request against these
// rows and dispatches to the one handler of the row (src/agent/agent_service.cpp);
// the controller's client (HttpAgentApi) builds its requests from the same rows.
// Every call is JSON over HTTP with the host's own bearer token. Requests that change
// something carry the controller's operation id ("op_id"), so a retried request is
// harmless: the agent remembers recent op ids and answers a repeat with the first
// answer.
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
//        refuses a running domain with conflict; absent domain: no-op. remove_volumes
//        deletes the domain's qcow2 volumes in the image pool only: a block-device disk
//        (shared storage) is never deleted or wiped.
//   A disk of DomainSpec is either {"volume": "NAME.qcow2", "size_gib" ≥ 1} (created in
//   the image pool at define) or {"block_device": "/dev/VG/LV", "size_gib" ≥ 0} (raw,
//   cache=none, io=native; it need not exist at define, only at start). Every domain
//   gets a virtio-serial channel org.qemu.guest_agent.0 for the QEMU guest agent.
//
//   POST /agent/v1/domains/{uuid}/fsfreeze     {"op_id"} → {"frozen": N}
//   POST /agent/v1/domains/{uuid}/fsthaw       {"op_id"} → {"thawed": N}
//        every mounted filesystem of the guest, through its QEMU guest agent
//        (virDomainFSFreeze/virDomainFSThaw, agent timeout 10 s). Not running: 409
//        conflict. No guest agent answering (not installed, not started, not
//        configured): 409 conflict with details {"reason": "guest_agent_unavailable"};
//        a freeze that timed out may still have frozen the guest, so a failed freeze is
//        followed by a thaw. fsfreeze refuses a migrating domain (409); fsthaw never does.
//   POST /agent/v1/domains/{uuid}/block-resize {"op_id", "device", "size_bytes"}
//        → {"device", "size_bytes"}: the running domain's disk on block device `device`
//        (a shared volume whose LV was just extended) is now size_bytes long
//        (virDomainBlockResize), so the guest sees it at once. Not running or
//        migrating: 409; no disk on that device: 404.
//
//   POST /agent/v1/domains/{uuid}/nics/attach  {"op_id", "nic": {"mac", "bridge", "model", "mtu"?},
//        "generation"} → DomainStatus: a NIC on a host bridge joins the domain
//        (virDomainAttachDeviceFlags: CONFIG, and LIVE when it runs), its metadata
//        takes `generation`. A NIC with that MAC there already: no-op. Migrating: 409.
//   POST /agent/v1/domains/{uuid}/nics/detach  {"op_id", "mac", "generation"} → DomainStatus:
//        the NIC with that MAC leaves it (virDomainDetachDeviceFlags, the same flags);
//        none there: no-op. The live detach is the guest's to complete: the call waits
//        up to 10 s for libvirt's device-removed event, then 409 conflict
//        (details.reason "detach_pending") with the definition already changed.
//   POST /agent/v1/domains/{uuid}/media/prepare {"op_id", "spec": DomainSpec}
//        → {"cdrom"?, "seed"?}: on a migration's destination, before it starts, the
//        files of the domain's CD-ROMs are made here as a define would make them (the
//        ISO fetched from the controller, checked and cached; the NoCloud seed written
//        anew from the spec), and their paths returned. The spec's uuid must be the
//        path's. A spec without cdrom and cloud_init: {} (nothing to do).
//   POST /agent/v1/domains/{uuid}/media/remove  {"op_id", "cdrom_sha256"?} → {"removed": [paths]}
//        removes the domain's seed here, and the cached ISO of that SHA-256 unless a
//        domain defined here uses it: a migration's source after it left, or its
//        destination after it failed. 409 conflict while the domain is defined here
//        (its media stay with it) or migrating.
//   POST /agent/v1/domains/{uuid}/migrate      {"op_id", "destination_uri", "migrate_uri",
//        "max_downtime_ms"?, "bandwidth_mib_s"?, "auto_converge"?, "allow_post_copy"?,
//        "converge_timeout_s"?, "downtime_ceiling_ms"?, "cdrom_path"?, "seed_path"?}
//        (MigrationPolicy's defaults) → MigrationStatus. A domain with a disk in the
//        image pool is refused (409 conflict, details "disks"): no other host can reach
//        it; block-device disks are shared and migrate. A domain with CD-ROMs migrates
//        when the request names their files on the destination (media_prepare's
//        answer): cdrom_path for its ISO, seed_path for its seed; the definitions sent
//        (live and persistent, VIR_MIGRATE_PARAM_DEST_XML / PERSIST_XML) name them.
//        One missing: 409 conflict, details.reason "boot_media_not_prepared". Starts a peer-to-peer live migration (LIVE | PEER2PEER |
//        PERSIST_DEST | UNDEFINE_SOURCE | ABORT_ON_ERROR) in the background and returns
//        at once; a repeat with the same op_id while it runs returns its status.
//   GET  /agent/v1/domains/{uuid}/migration    → MigrationStatus of the last migration
//        of that domain started by this agent: state none|running|completed|failed|cancelled,
//        op_id, data_total/processed/remaining (bytes), memory_iteration,
//        expected_downtime_ms, elapsed_ms, error (Error or null).
//   POST /agent/v1/domains/{uuid}/migration/abort {"op_id"} → MigrationStatus
//        (virDomainAbortJob; the guest keeps running on the source).
//
//   Shared storage (docs/storage.md, "Agent API"); each call is one backend call and
//   answers 409 conflict "storage is not configured on this host" when the agent's
//   configuration has no "storage" object. Names and sizes are checked by the storage
//   library (bad ones: 400 invalid_argument); {vg} and {lv} are LVM names.
//   GET  /agent/v1/storage                     → StorageInventory JSON (locks, iscsi_sessions,
//        vgs, multipath, errors); with storage.multipath each map has its paths'
//        health ("healthy_paths", "degraded", "failed_paths", "path_states")
//   POST /agent/v1/storage/iscsi/discover      {"op_id", "portal"} → {"targets": [{"iqn", "portal", "tpgt"}]}
//   POST /agent/v1/storage/iscsi/login         {"op_id", "target", "portal",
//        "chap": {"username", "password"}?, "lun": 0..16383? (default 1)}
//        → {"device": "/dev/disk/by-path/…" or "/dev/sdX"} (logged in already: no-op
//        login). The kernel scans the LUNs after login: the agent polls for the LUN's
//        device up to 20 s (one session rescan after 2 s), then 503 unavailable
//        "LUN N of TARGET has no block device yet". With storage.multipath, when a
//        dm-multipath map holds the LUN's disk (looked for up to 3 s more, within
//        the 20 s): {"device": "/dev/mapper/NAME", "path_device": the single path,
//        "multipath_map": "NAME"}; no map: {"device": the path}; multipathd not
//        answering (or a link that resolves to nothing): {"device": the path,
//        "multipath_unused": "why"}. "device" is what joins LVM's device filter.
//   POST /agent/v1/storage/iscsi/logout        {"op_id", "target", "portal"} → {} (no session: no-op)
//   GET  /agent/v1/storage/iscsi/sessions      → {"sessions": [IscsiSession]}
//   GET  /agent/v1/storage/fc/luns             → {"luns": [{"wwid", "device", "multipath_device"?}]}
//        Fibre Channel (or any SCSI) LUNs by WWID from /dev/disk/by-id (scsi-3…, wwn-0x…),
//        one per disk, sorted by WWID; a link that resolves to nothing is left out.
//        With storage.multipath, a LUN a map holds has "multipath_device"
//        ("/dev/mapper/NAME"); multipathd not answering adds "multipath_unused": "why".
//   POST /agent/v1/storage/fc/attach           {"op_id", "wwids": [1..16 WWIDs]}
//        → {"devices": [{"wwid", "device", "path_device"?, "multipath_map"?,
//        "multipath_unused"?}]}, in WWID order: each LUN's device (its multipath map when
//        one holds it, as for an iSCSI login) joins LVM's device filter. A WWID this
//        host does not see: 404 not_found with details.wwid.
//   POST /agent/v1/storage/vgs/create          {"op_id", "vg", "devices": [path]} → {}
//        vgcreate --shared (starts the lockspace here too)
//   GET  /agent/v1/storage/vgs/{vg}            → VolumeGroup
//   POST /agent/v1/storage/vgs/{vg}/lockstart  {"op_id"} → {}
//   POST /agent/v1/storage/vgs/{vg}/lockstop   {"op_id"} → {}
//   GET  /agent/v1/storage/vgs/{vg}/lvs        → {"lvs": [LogicalVolume]}
//   POST /agent/v1/storage/vgs/{vg}/lvs/create {"op_id", "lv", "size_bytes", "activate_exclusive"?} → {}
//   GET  /agent/v1/storage/vgs/{vg}/lvs/{lv}   → LogicalVolume
//   POST /agent/v1/storage/vgs/{vg}/lvs/{lv}/grow     {"op_id", "size_bytes"} → {}
//   POST /agent/v1/storage/vgs/{vg}/lvs/{lv}/delete   {"op_id"} → {}
//   POST /agent/v1/storage/vgs/{vg}/lvs/{lv}/activate {"op_id", "mode": "exclusive"|"shared"|"inactive"} → {}
//   POST /agent/v1/storage/vgs/{vg}/lvs/{lv}/snapshot {"op_id", "snapshot", "size_bytes"} → {}
//   POST /agent/v1/storage/vgs/{vg}/lvs/{lv}/merge    {"op_id"} → {} ({lv} is the snapshot)
//
//   Networks (src/network/; docs/api.md, "Networks"); 409 conflict "networking is not
//   configured on this host" when the agent has no host network backend.
//   POST /agent/v1/networks/ensure             {"op_id", "bridge", "mtu", "vlan"?, "uplink"?}
//        → {"created": [link names], "links": [HostLink]}: makes the network usable here,
//        idempotently. With a VLAN: `ip link add link UPLINK name UPLINK.VLAN type vlan
//        id VLAN` and a bridge over it unless they exist (an existing link of another
//        kind or VLAN under either name is a 409 conflict), MTU set, both up. Without:
//        the bridge must exist already (404 not_found otherwise; the agent never makes
//        a bridge on a physical NIC by guessing); it is set up. Names are checked as
//        Linux interface names (400 invalid_argument, details.reason
//        "invalid_interface_name"); an uplink that does not exist is 404.
//
//   Serial console (docs/console.md):
//   GET  /agent/v1/domains/{uuid}/console      WebSocket only (a plain GET is 400
//        invalid_argument, details.reason "websocket_required"): the token and the
//        path are checked before the upgrade. Then libvirt's console stream of the
//        running domain (virDomainOpenConsole, forced: a newer session replaces an
//        older one) relays both ways: each binary message from the guest's serial port
//        to the client, each message from the client (at most 4 KiB) to the guest.
//        Not running or unknown: the socket closes with a reason after the upgrade.
//   GET  /agent/v1/domains/{uuid}/console/log?lines=N → {"text", "lines", "truncated"}:
//        the last N lines (1..10000; default 100) of the console log that virtlogd
//        writes (<console_log_dir>/<uuid>.log), read from at most its last 1 MiB;
//        bytes that are not UTF-8 are replaced. No log yet: "" (the domain never ran
//        here). Unknown domain: 404.
//
// Agent → controller (served by kvmfleet-controller):
//   POST /v1/agent/heartbeat  {"host", "agent_url", "inventory": HostInventory}
//        → {"heartbeat_interval_ms"}
//   POST /v1/agent/events     {"host", "events": [{"uuid", "name", "state", "reason", "at",
//        "stamp"}]} → {}
//
// Stamps: every answer that tells a domain's state (DomainStatus, MigrationStatus, the
// inventory) and every heartbeat's inventory and event carries "stamp": {"agent": the
// agent run's random name, "seq": a counter}, from one ReportClock per agent process
// (report_clock.hpp): an answer's is taken after the call acted, a heartbeat's before it
// lists the domains, an event's when libvirt delivered it. The controller uses them to
// tell a report that was overtaken on the way from news (core/domain_reports.hpp).
//   The agent sends the two from separate senders, each on a keep-alive connection of
//   its own: heartbeats on their schedule, never behind events; events in order,
//   batched, and sent again after a failure (src/agent/heartbeat.cpp).
//
// Errors travel in the public API's error body, so a category survives the hop.
//
// Details the agent guarantees:
//   - Authentication comes first: without the host's token every path is 401, known
//     or not. A path no row has is 404 not_found "no such agent endpoint"; a path
//     that some row has, asked with another method, is 405 method_not_allowed with an
//     Allow header. Never is an unknown call turned into another one.
//   - A path parameter is one non-empty segment. A literal segment wins over {uuid}
//     (no UUID spells "define": GET /agent/v1/domains/define is a 405); {vg} and {lv}
//     are LVM names, which may spell a literal, so there the method decides first
//     (GET /agent/v1/storage/vgs/create reads the VG named "create").
//   - op_id is 1-128 characters of [A-Za-z0-9._:-] and is remembered per call path, so
//     one operation may use its id for define, then start, ... A repeat of the same
//     call answers the first 2xx answer again; failures are not remembered (a retry
//     acts). The same op_id and path with a different body is a 409 conflict.
//   - {uuid} must be a lowercase canonical UUID (else 400 invalid_argument, field
//     "uuid"); {vg} and {lv} are checked by the storage library.
//   - The agent acts only on domains carrying kvmfleet's metadata element; any other
//     domain with the requested uuid or name is a 409 conflict. Unknown uuid: 404.
//   - Request bodies are checked strictly: unknown fields, wrong types and values out
//     of range are 400 invalid_argument naming the field, before libvirt is called.
//   - Event "state" is the domain's VmState name after the event ("stopped" once it
//     is undefined); "reason" is libvirt's event and detail, e.g. "started:booted",
//     "stopped:destroyed", "stopped:migrated", "undefined:removed"; "at" is RFC 3339.
// clang-format on

#include <array>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace kvmfleet::agent_protocol {

enum class TimeoutClass { fast, normal, slow };

constexpr std::chrono::milliseconds timeout_for(TimeoutClass c) {
  switch (c) {
    case TimeoutClass::fast:
      return std::chrono::milliseconds{5'000};
    case TimeoutClass::normal:
      return std::chrono::milliseconds{30'000};
    case TimeoutClass::slow:
      return std::chrono::milliseconds{120'000};
  }
  return std::chrono::milliseconds{30'000};
}

// How a repeat of a call is made harmless.
enum class Replay {
  none,      // a read: no body, no op_id
  op_cache,  // the body carries an op_id; a repeat answers the first 2xx answer
  // The body carries an op_id that the hypervisor keys the work by (migrate): a repeat
  // answers the work's status now, not a stale copy of the first answer.
  hypervisor,
};

// What serves a call on the agent. Storage calls answer 409 conflict on a host
// without a "storage" configuration; network calls on an agent without a host network
// backend.
enum class Backend { hypervisor, storage, network };

// One per row of kCalls, in the same order.
enum class CallId : std::size_t {
  inventory,
  domain_get,
  define,
  start,
  shutdown,
  reboot,
  destroy,
  undefine,
  fs_freeze,
  fs_thaw,
  block_resize,
  migrate,
  migration,
  migration_abort,
  media_prepare,
  media_remove,
  nic_attach,
  nic_detach,
  storage_inventory,
  iscsi_discover,
  iscsi_login,
  iscsi_logout,
  iscsi_sessions,
  fc_luns,
  fc_attach,
  vg_create,
  vg_get,
  vg_lockstart,
  vg_lockstop,
  lv_list,
  lv_create,
  lv_get,
  lv_grow,
  lv_delete,
  lv_activate,
  lv_snapshot,
  lv_merge,
  network_ensure,
  console,
  console_log,
};
inline constexpr std::size_t kCallCount = static_cast<std::size_t>(CallId::console_log) + 1;

struct Call {
  CallId id;
  std::string_view name;    // in logs, and in the controller's error details ("agent_call")
  std::string_view method;  // "GET" or "POST"
  // "{uuid}", "{vg}" and "{lv}" each stand for one non-empty path segment.
  std::string_view path;
  TimeoutClass timeout;
  Replay replay;
  Backend backend;
  // The fields a request body may have (POST); any other is 400 invalid_argument.
  // Empty for a read, which takes no body.
  std::span<const std::string_view> fields;
  // A WebSocket endpoint: served only as an upgrade (AgentService::open_upgrade).
  bool websocket = false;
};

// A call's path parameters: what fills {uuid}, {vg} and {lv}.
struct PathParams {
  std::string uuid;
  std::string vg;
  std::string lv;
  bool operator==(const PathParams&) const = default;
};

// The body fields of each kind of call.
namespace body {
inline constexpr std::string_view kOpId[] = {"op_id"};
inline constexpr std::string_view kDefine[] = {"op_id", "spec"};
inline constexpr std::string_view kUndefine[] = {"op_id", "remove_volumes"};
inline constexpr std::string_view kBlockResize[] = {"op_id", "device", "size_bytes"};
inline constexpr std::string_view kMigrate[] = {
    "op_id",           "destination_uri",    "migrate_uri",
    "max_downtime_ms", "bandwidth_mib_s",    "auto_converge",
    "allow_post_copy", "converge_timeout_s", "downtime_ceiling_ms",
    "cdrom_path",      "seed_path"};
inline constexpr std::string_view kMediaRemove[] = {"op_id", "cdrom_sha256"};
inline constexpr std::string_view kNicAttach[] = {"op_id", "nic", "generation"};
inline constexpr std::string_view kNicDetach[] = {"op_id", "mac", "generation"};
inline constexpr std::string_view kIscsiDiscover[] = {"op_id", "portal"};
inline constexpr std::string_view kIscsiLogin[] = {"op_id", "target", "portal", "chap", "lun"};
inline constexpr std::string_view kIscsiLogout[] = {"op_id", "target", "portal"};
inline constexpr std::string_view kFcAttach[] = {"op_id", "wwids"};
inline constexpr std::string_view kVgCreate[] = {"op_id", "vg", "devices"};
inline constexpr std::string_view kLvCreate[] = {"op_id", "lv", "size_bytes", "activate_exclusive"};
inline constexpr std::string_view kLvGrow[] = {"op_id", "size_bytes"};
inline constexpr std::string_view kLvActivate[] = {"op_id", "mode"};
inline constexpr std::string_view kLvSnapshot[] = {"op_id", "snapshot", "size_bytes"};
inline constexpr std::string_view kNetworkEnsure[] = {"op_id", "bridge", "mtu", "vlan", "uplink"};
}  // namespace body

// clang-format off
inline constexpr std::array<Call, kCallCount> kCalls{{
    {CallId::inventory, "inventory", "GET", "/agent/v1/inventory",
     TimeoutClass::fast, Replay::none, Backend::hypervisor, {}},
    {CallId::domain_get, "domain_get", "GET", "/agent/v1/domains/{uuid}",
     TimeoutClass::fast, Replay::none, Backend::hypervisor, {}},
    {CallId::define, "define", "POST", "/agent/v1/domains/define",
     TimeoutClass::slow, Replay::op_cache, Backend::hypervisor, body::kDefine},
    {CallId::start, "start", "POST", "/agent/v1/domains/{uuid}/start",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    {CallId::shutdown, "shutdown", "POST", "/agent/v1/domains/{uuid}/shutdown",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    {CallId::reboot, "reboot", "POST", "/agent/v1/domains/{uuid}/reboot",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    {CallId::destroy, "destroy", "POST", "/agent/v1/domains/{uuid}/destroy",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    {CallId::undefine, "undefine", "POST", "/agent/v1/domains/{uuid}/undefine",
     TimeoutClass::slow, Replay::op_cache, Backend::hypervisor, body::kUndefine},
    // The guest agent's own timeout is 10 s; the call has some room around it.
    {CallId::fs_freeze, "fs_freeze", "POST", "/agent/v1/domains/{uuid}/fsfreeze",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    {CallId::fs_thaw, "fs_thaw", "POST", "/agent/v1/domains/{uuid}/fsthaw",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    {CallId::block_resize, "block_resize", "POST", "/agent/v1/domains/{uuid}/block-resize",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kBlockResize},
    {CallId::migrate, "migrate", "POST", "/agent/v1/domains/{uuid}/migrate",
     TimeoutClass::normal, Replay::hypervisor, Backend::hypervisor, body::kMigrate},
    {CallId::migration, "migration", "GET", "/agent/v1/domains/{uuid}/migration",
     TimeoutClass::fast, Replay::none, Backend::hypervisor, {}},
    {CallId::migration_abort, "migration_abort", "POST", "/agent/v1/domains/{uuid}/migration/abort",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kOpId},
    // Fetching a large ISO from the controller takes its time.
    {CallId::media_prepare, "media_prepare", "POST", "/agent/v1/domains/{uuid}/media/prepare",
     TimeoutClass::slow, Replay::op_cache, Backend::hypervisor, body::kDefine},
    {CallId::media_remove, "media_remove", "POST", "/agent/v1/domains/{uuid}/media/remove",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kMediaRemove},
    {CallId::nic_attach, "nic_attach", "POST", "/agent/v1/domains/{uuid}/nics/attach",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kNicAttach},
    // Includes the wait for the guest to let the NIC go (up to 10 s).
    {CallId::nic_detach, "nic_detach", "POST", "/agent/v1/domains/{uuid}/nics/detach",
     TimeoutClass::normal, Replay::op_cache, Backend::hypervisor, body::kNicDetach},

    {CallId::storage_inventory, "storage_inventory", "GET", "/agent/v1/storage",
     TimeoutClass::normal, Replay::none, Backend::storage, {}},
    {CallId::iscsi_discover, "iscsi_discover", "POST", "/agent/v1/storage/iscsi/discover",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kIscsiDiscover},
    // Includes the wait for the LUN's device (up to 20 s).
    {CallId::iscsi_login, "iscsi_login", "POST", "/agent/v1/storage/iscsi/login",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kIscsiLogin},
    {CallId::iscsi_logout, "iscsi_logout", "POST", "/agent/v1/storage/iscsi/logout",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kIscsiLogout},
    {CallId::iscsi_sessions, "iscsi_sessions", "GET", "/agent/v1/storage/iscsi/sessions",
     TimeoutClass::normal, Replay::none, Backend::storage, {}},
    {CallId::fc_luns, "fc_luns", "GET", "/agent/v1/storage/fc/luns",
     TimeoutClass::normal, Replay::none, Backend::storage, {}},
    // Includes the wait for a multipath map (up to 3 s per LUN).
    {CallId::fc_attach, "fc_attach", "POST", "/agent/v1/storage/fc/attach",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kFcAttach},
    // vgcreate --shared and --lockstart wait for sanlock's host_id lease (20-60 s).
    {CallId::vg_create, "vg_create", "POST", "/agent/v1/storage/vgs/create",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kVgCreate},
    {CallId::vg_get, "vg_get", "GET", "/agent/v1/storage/vgs/{vg}",
     TimeoutClass::normal, Replay::none, Backend::storage, {}},
    {CallId::vg_lockstart, "vg_lockstart", "POST", "/agent/v1/storage/vgs/{vg}/lockstart",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kOpId},
    {CallId::vg_lockstop, "vg_lockstop", "POST", "/agent/v1/storage/vgs/{vg}/lockstop",
     TimeoutClass::normal, Replay::op_cache, Backend::storage, body::kOpId},
    {CallId::lv_list, "lv_list", "GET", "/agent/v1/storage/vgs/{vg}/lvs",
     TimeoutClass::normal, Replay::none, Backend::storage, {}},
    {CallId::lv_create, "lv_create", "POST", "/agent/v1/storage/vgs/{vg}/lvs/create",
     TimeoutClass::normal, Replay::op_cache, Backend::storage, body::kLvCreate},
    {CallId::lv_get, "lv_get", "GET", "/agent/v1/storage/vgs/{vg}/lvs/{lv}",
     TimeoutClass::normal, Replay::none, Backend::storage, {}},
    {CallId::lv_grow, "lv_grow", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/grow",
     TimeoutClass::normal, Replay::op_cache, Backend::storage, body::kLvGrow},
    {CallId::lv_delete, "lv_delete", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/delete",
     TimeoutClass::normal, Replay::op_cache, Backend::storage, body::kOpId},
    {CallId::lv_activate, "lv_activate", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/activate",
     TimeoutClass::normal, Replay::op_cache, Backend::storage, body::kLvActivate},
    {CallId::lv_snapshot, "lv_snapshot", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/snapshot",
     TimeoutClass::normal, Replay::op_cache, Backend::storage, body::kLvSnapshot},
    // A merge of a large, full snapshot runs until it is done. {lv} is the snapshot.
    {CallId::lv_merge, "lv_merge", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/merge",
     TimeoutClass::slow, Replay::op_cache, Backend::storage, body::kOpId},
    {CallId::network_ensure, "network_ensure", "POST", "/agent/v1/networks/ensure",
     TimeoutClass::normal, Replay::op_cache, Backend::network, body::kNetworkEnsure},
    {CallId::console, "console", "GET", "/agent/v1/domains/{uuid}/console",
     TimeoutClass::fast, Replay::none, Backend::hypervisor, {}, /*websocket=*/true},
    {CallId::console_log, "console_log", "GET", "/agent/v1/domains/{uuid}/console/log",
     TimeoutClass::fast, Replay::none, Backend::hypervisor, {}},
}};
// clang-format on

constexpr const Call& call(CallId id) {
  return kCalls[static_cast<std::size_t>(id)];
}

// The rows the controller's client calls, by name. (iscsi_sessions, fc_luns and lv_get
// serve operators and the lab.)
inline constexpr const Call& kInventory = call(CallId::inventory);
inline constexpr const Call& kDomainGet = call(CallId::domain_get);
inline constexpr const Call& kDefine = call(CallId::define);
inline constexpr const Call& kStart = call(CallId::start);
inline constexpr const Call& kShutdown = call(CallId::shutdown);
inline constexpr const Call& kReboot = call(CallId::reboot);
inline constexpr const Call& kDestroy = call(CallId::destroy);
inline constexpr const Call& kUndefine = call(CallId::undefine);
inline constexpr const Call& kFsFreeze = call(CallId::fs_freeze);
inline constexpr const Call& kFsThaw = call(CallId::fs_thaw);
inline constexpr const Call& kBlockResize = call(CallId::block_resize);
inline constexpr const Call& kMigrate = call(CallId::migrate);
inline constexpr const Call& kMigration = call(CallId::migration);
inline constexpr const Call& kMigrationAbort = call(CallId::migration_abort);
inline constexpr const Call& kMediaPrepare = call(CallId::media_prepare);
inline constexpr const Call& kMediaRemove = call(CallId::media_remove);
inline constexpr const Call& kNicAttach = call(CallId::nic_attach);
inline constexpr const Call& kNicDetach = call(CallId::nic_detach);
inline constexpr const Call& kStorageInventory = call(CallId::storage_inventory);
inline constexpr const Call& kIscsiDiscover = call(CallId::iscsi_discover);
inline constexpr const Call& kIscsiLogin = call(CallId::iscsi_login);
inline constexpr const Call& kIscsiLogout = call(CallId::iscsi_logout);
inline constexpr const Call& kFcAttach = call(CallId::fc_attach);
inline constexpr const Call& kVgCreate = call(CallId::vg_create);
inline constexpr const Call& kVgGet = call(CallId::vg_get);
inline constexpr const Call& kVgLockStart = call(CallId::vg_lockstart);
inline constexpr const Call& kVgLockStop = call(CallId::vg_lockstop);
inline constexpr const Call& kLvList = call(CallId::lv_list);
inline constexpr const Call& kLvCreate = call(CallId::lv_create);
inline constexpr const Call& kLvGrow = call(CallId::lv_grow);
inline constexpr const Call& kLvDelete = call(CallId::lv_delete);
inline constexpr const Call& kLvActivate = call(CallId::lv_activate);
inline constexpr const Call& kLvSnapshot = call(CallId::lv_snapshot);
inline constexpr const Call& kLvMerge = call(CallId::lv_merge);
inline constexpr const Call& kNetworkEnsure = call(CallId::network_ensure);
inline constexpr const Call& kConsole = call(CallId::console);
inline constexpr const Call& kConsoleLog = call(CallId::console_log);

// The serial console's limits.
inline constexpr std::size_t kConsoleMessageLimit = 4 * 1024;  // a client's message
inline constexpr int kConsoleLogMaxLines = 10'000;
inline constexpr int kConsoleLogDefaultLines = 100;
inline constexpr std::size_t kConsoleLogMaxBytes = 1 << 20;  // read from the log's end

// Agent → controller.
inline constexpr std::string_view kHeartbeatPath = "/v1/agent/heartbeat";
inline constexpr std::string_view kEventsPath = "/v1/agent/events";

}  // namespace kvmfleet::agent_protocol
