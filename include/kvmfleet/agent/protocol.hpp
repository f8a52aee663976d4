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
//   POST /agent/v1/domains/{uuid}/migrate      {"op_id", "destination_uri", "migrate_uri",
//        "max_downtime_ms", "bandwidth_mib_s", "auto_converge", "allow_post_copy"}
//        → MigrationStatus. A domain with a disk in the image pool is refused (409
//        conflict, details "disks"): no other host can reach it; block-device disks are
//        shared and migrate. Starts a peer-to-peer live migration (LIVE | PEER2PEER |
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

// The guest agent's own timeout is 10 s; the call has some room around it.
inline constexpr Call kFsFreeze{"fs_freeze", "POST", "/agent/v1/domains/{uuid}/fsfreeze", TimeoutClass::normal};
inline constexpr Call kFsThaw{"fs_thaw", "POST", "/agent/v1/domains/{uuid}/fsthaw", TimeoutClass::normal};
inline constexpr Call kBlockResize{"block_resize", "POST", "/agent/v1/domains/{uuid}/block-resize", TimeoutClass::normal};

inline constexpr Call kMigrate{"migrate", "POST", "/agent/v1/domains/{uuid}/migrate", TimeoutClass::normal};
inline constexpr Call kMigration{"migration", "GET", "/agent/v1/domains/{uuid}/migration", TimeoutClass::fast};
inline constexpr Call kMigrationAbort{"migration_abort", "POST", "/agent/v1/domains/{uuid}/migration/abort", TimeoutClass::normal};

inline constexpr Call kStorageInventory{"storage_inventory", "GET", "/agent/v1/storage", TimeoutClass::normal};
inline constexpr Call kIscsiDiscover{"iscsi_discover", "POST", "/agent/v1/storage/iscsi/discover", TimeoutClass::slow};
// Includes the wait for the LUN's device (up to 20 s).
inline constexpr Call kIscsiLogin{"iscsi_login", "POST", "/agent/v1/storage/iscsi/login", TimeoutClass::slow};
inline constexpr Call kIscsiLogout{"iscsi_logout", "POST", "/agent/v1/storage/iscsi/logout", TimeoutClass::slow};
inline constexpr Call kFcLuns{"fc_luns", "GET", "/agent/v1/storage/fc/luns", TimeoutClass::normal};
// Includes the wait for a multipath map (up to 3 s per LUN).
inline constexpr Call kFcAttach{"fc_attach", "POST", "/agent/v1/storage/fc/attach", TimeoutClass::slow};
inline constexpr Call kIscsiSessions{"iscsi_sessions", "GET", "/agent/v1/storage/iscsi/sessions", TimeoutClass::normal};
// vgcreate --shared and --lockstart wait for sanlock's host_id lease (20-60 s).
inline constexpr Call kVgCreate{"vg_create", "POST", "/agent/v1/storage/vgs/create", TimeoutClass::slow};
inline constexpr Call kVgGet{"vg_get", "GET", "/agent/v1/storage/vgs/{vg}", TimeoutClass::normal};
inline constexpr Call kVgLockStart{"vg_lockstart", "POST", "/agent/v1/storage/vgs/{vg}/lockstart", TimeoutClass::slow};
inline constexpr Call kVgLockStop{"vg_lockstop", "POST", "/agent/v1/storage/vgs/{vg}/lockstop", TimeoutClass::normal};
inline constexpr Call kLvList{"lv_list", "GET", "/agent/v1/storage/vgs/{vg}/lvs", TimeoutClass::normal};
inline constexpr Call kLvCreate{"lv_create", "POST", "/agent/v1/storage/vgs/{vg}/lvs/create", TimeoutClass::normal};
inline constexpr Call kLvGet{"lv_get", "GET", "/agent/v1/storage/vgs/{vg}/lvs/{lv}", TimeoutClass::normal};
inline constexpr Call kLvGrow{"lv_grow", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/grow", TimeoutClass::normal};
inline constexpr Call kLvDelete{"lv_delete", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/delete", TimeoutClass::normal};
inline constexpr Call kLvActivate{"lv_activate", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/activate", TimeoutClass::normal};
inline constexpr Call kLvSnapshot{"lv_snapshot", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/snapshot", TimeoutClass::normal};
// A merge of a large, full snapshot runs until it is done.
inline constexpr Call kLvMerge{"lv_merge", "POST", "/agent/v1/storage/vgs/{vg}/lvs/{lv}/merge", TimeoutClass::slow};

inline constexpr std::string_view kStoragePrefix = "/agent/v1/storage/";

inline constexpr std::string_view kHeartbeatPath = "/v1/agent/heartbeat";
inline constexpr std::string_view kEventsPath = "/v1/agent/events";

}  // namespace kvmfleet::agent_protocol
