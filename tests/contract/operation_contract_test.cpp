// Each operation kind's params and result against api/openapi.yaml, for what the live
// test cannot reach without agents (a move that completes, a drain that moves VMs, any
// storage operation that succeeds): operations of every kind, their params and results
// made by the controller's own typed structs with every field set, rendered by the
// controller's view and checked by openapi_check.py; and the typed readers judge a table
// of stored params and results, which the kinds' schemas must judge the same way.
#include "checker.hpp"
#include "kvmfleet/fencing/fence_params.hpp"
#include "kvmfleet/ha/ha_params.hpp"

#include "kvmfleet/api/views.hpp"
#include "kvmfleet/migration/migration_params.hpp"
#include "kvmfleet/network/network_params.hpp"
#include "kvmfleet/shared_storage/storage_params.hpp"
#include "kvmfleet/vms/vm_params.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>

namespace kvmfleet::contract {
namespace {

using nlohmann::json;

const Clock::time_point kT0{std::chrono::seconds{1'780'000'000}};
const std::string kVmId = "5c1d6f0e-2b3a-4c5d-8e9f-0a1b2c3d4e5f";
const std::string kVolId = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const std::string kVol2Id = "1a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d";
const std::string kSnapId = "3c4d5e6f-7a8b-4c2d-9e3f-4a5b6c7d8e9f";
const std::string kSnap2Id = "4d5e6f7a-8b9c-4d3e-8f4a-5b6c7d8e9fa0";
const std::string kChildId = "6f7a8b9c-adbe-4f5a-8b6c-7d8e9fa0b1c2";

MigrationPolicy policy() {
  MigrationPolicy p;
  p.max_downtime_ms = 500;
  p.bandwidth_mib_s = 100;
  p.auto_converge = true;
  p.converge_timeout_s = 60;
  return p;
}

MigrationStatus migration_status(MigrationState state) {
  MigrationStatus s;
  s.state = state;
  s.op_id = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
  s.data_total = 64 << 20;
  s.data_processed = 64 << 20;
  s.memory_iteration = 3;
  s.expected_downtime_ms = 40;
  s.elapsed_ms = 2300;
  s.ladder_step = 1;
  s.downtime_limit_ms = 1000;
  if (state == MigrationState::failed) s.error = Error(ErrorCode::timeout, "did not converge");
  return s;
}

SnapshotsTaken taken() {
  SnapshotsTaken t;
  t.frozen_filesystems = 2;
  t.deactivate_error = "unavailable: node1 is not answering";
  t.snapshot_ids = std::vector<std::string>{kSnapId, kSnap2Id};
  t.consistency = SnapshotConsistency::quiesced;
  return t;
}

// One operation of the params' kind, ended as `state`, with `result`.
template <typename P, typename R>
Operation operation(const std::string& id, const std::string& target_type,
                    const std::string& target_id, const P& params, const R& result,
                    OpState state = OpState::succeeded) {
  Operation op;
  op.id = id;
  op.kind = std::string(P::kind);
  op.target_type = target_type;
  op.target_id = target_id;
  op.state = state;
  op.progress = state == OpState::succeeded ? 100 : 40;
  op.step = "done";
  if (state == OpState::failed) op.error = Error(ErrorCode::unavailable, "node1 is not answering");
  op.params = params;
  op.result = result;
  op.attempts = 1;
  op.requested_by = "ops";
  op.created_at = kT0;
  if (state != OpState::pending) op.started_at = kT0 + std::chrono::seconds(1);
  if (is_terminal(state)) op.finished_at = kT0 + std::chrono::seconds(9);
  return op;
}

std::string uuid(int n) {
  char buf[37];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

std::vector<Operation> every_kind() {
  std::vector<Operation> ops;
  int n = 0;
  auto add = [&](auto params, auto result, const std::string& type, const std::string& target,
                 OpState state = OpState::succeeded) {
    ops.push_back(operation(uuid(++n), type, target, params, result, state));
  };
  add(VmCreateParams{"web1", true}, VmCreateResult{"node1"}, "vm", kVmId);
  add(VmStartParams{}, VmStartResult{}, "vm", kVmId);
  add(VmStopParams{60, true}, VmStopResult{true, "shared volumes left active on node1: x"}, "vm",
      kVmId);
  add(VmRebootParams{}, VmRebootResult{}, "vm", kVmId);
  add(VmDestroyParams{}, VmDestroyResult{"shared volumes left active on node1: x"}, "vm", kVmId);
  add(VmDeleteParams{true}, VmDeleteResult{}, "vm", kVmId);

  add(VmMigrateParams{"node2", "node1", policy(), MigrationMode::live, "node1"},
      VmMigrateResult{MigrationMode::live, "node1", "node2", true,
                      "volumes not settled after the migration: x",
                      migration_status(MigrationState::completed)},
      "vm", kVmId);
  add(VmMigrateParams{"node2", "node1", policy(), MigrationMode::live, std::nullopt},
      VmMigrateResult{MigrationMode::live, "node1", "node2", false, std::nullopt,
                      migration_status(MigrationState::failed)},
      "vm", kVmId, OpState::failed);
  add(VmMigrateParams{"node2", "node1", policy(), MigrationMode::cold, std::nullopt},
      VmMigrateResult{.mode = MigrationMode::cold, .source_host = "node1", .target_host = "node2"},
      "vm", kVmId);
  // Pending: its result has its mode only.
  add(VmMigrateParams{"node2", "node1", policy(), MigrationMode::live, std::nullopt},
      VmMigrateResult{.mode = MigrationMode::live}, "vm", kVmId, OpState::pending);
  // A VM with CD-ROMs: the target prepared them, the source could not remove its copies.
  add(VmMigrateParams{"node2", "node1", policy(), MigrationMode::live, std::nullopt},
      VmMigrateResult{.mode = MigrationMode::live,
                      .source_host = "node1",
                      .target_host = "node2",
                      .migration = migration_status(MigrationState::completed),
                      .media_prepared = true,
                      .media_warning = "the VM's CD-ROM files stay on node1: x"},
      "vm", kVmId);
  NicSpec hot;
  hot.network = "lab";
  hot.mac = "52:54:00:12:34:56";
  hot.bridge = "br-lab";
  hot.mtu = 1500;
  add(VmNicAddParams{hot}, VmNicResult{hot.mac, "node1", true}, "vm", kVmId);
  add(VmNicAddParams{hot}, VmNicResult{hot.mac, "node1", std::nullopt}, "vm", kVmId,
      OpState::pending);
  add(VmNicRemoveParams{hot.mac}, VmNicResult{hot.mac, "node1", false}, "vm", kVmId);

  HostMaintenanceResult drain;
  drain.host = "node1";
  drain.vms = std::map<std::string, DrainEntry>{
      {"web1",
       {.state = DrainState::moved,
        .operation = kChildId,
        .target_host = "node2",
        .progress = 100,
        .step = "done"}},
      {"web2",
       {.state = DrainState::migrating,
        .operation = kChildId,
        .target_host = "node2",
        .progress = 40,
        .step = "migrating: iteration 2, 12 MiB remaining"}},
      {"web3",
       {.state = DrainState::queued, .operation = kChildId, .target_host = "node2", .progress = 0}},
      {"web4", {.state = DrainState::waiting, .step = "waiting for operation x (vm.stop) to end"}},
      {"web5", {.state = DrainState::failed, .error = Error(ErrorCode::conflict, "VM is paused")}},
      {"web6", {.state = DrainState::stays, .reason = "stopped: only running VMs move live"}}};
  add(HostMaintenanceParams{true, policy()}, drain, "host", "node1", OpState::running);
  add(HostMaintenanceParams{false, std::nullopt}, HostMaintenanceResult{"node1", std::nullopt},
      "host", "node1");

  add(StoragePoolCreateParams{{"node1", "node2"}, PoolType::iscsi},
      StoragePoolCreateResult{true, "san1", 2, 2}, "storage_pool", "san1");
  add(StoragePoolDeleteParams{}, StoragePoolDeleteResult{}, "storage_pool", "san1");
  add(StoragePoolConnectParams{{"node3", "node4"}},
      StoragePoolConnectResult{
          "fc1", std::map<std::string, std::string>{{"node3", "usable"}, {"node4", "lockstart: x"}},
          1, 2},
      "storage_pool", "fc1");
  add(VolumeCreateParams{"db1-data", "san1", 20ULL << 30}, VolumeCreateResult{kVolId}, "volume",
      kVolId);
  add(VolumeGrowParams{40ULL << 30}, VolumeGrowResult{40ULL << 30, true}, "volume", kVolId);
  add(VolumeDeleteParams{"db1-data"}, VolumeDeleteResult{}, "volume", kVolId);
  SnapshotCreateResult snap;
  static_cast<SnapshotsTaken&>(snap) = taken();
  snap.snapshot_id = kSnapId;
  add(SnapshotCreateParams{kSnapId, "before-upgrade", 4ULL << 30, true}, snap, "volume", kVolId);
  SnapshotCreateResult unfrozen;
  unfrozen.snapshot_id = kSnapId;
  unfrozen.quiesce_error = "unavailable: the guest agent is not answering";
  unfrozen.snapshot_ids = std::vector<std::string>{kSnapId};
  unfrozen.consistency = SnapshotConsistency::crash_consistent;
  add(SnapshotCreateParams{kSnapId, "nightly", 4ULL << 30, true}, unfrozen, "volume", kVolId);
  VmSnapshotResult vm_snap;
  static_cast<SnapshotsTaken&>(vm_snap) = taken();
  add(
      VmSnapshotParams{
          "nightly", true, {{kVolId, kSnapId, 4ULL << 30}, {kVol2Id, kSnap2Id, 1ULL << 30}}},
      vm_snap, "vm", kVmId);
  add(SnapshotDeleteParams{kSnapId, "nightly"}, SnapshotDeleteResult{}, "volume", kVolId);
  add(SnapshotRevertParams{kSnapId, "nightly"}, SnapshotRevertResult{true, "unavailable: x"},
      "volume", kVolId);
  add(fencing::HostFenceParams{"admin"},
      fencing::HostFenceResult{"node1", "down", true, "device 2 (fence_ipmilan)", 1,
                               std::vector<std::string>{"off failed (exit code 1): x", "fenced"},
                               std::nullopt},
      "host", "node1");
  add(fencing::HostFenceParams{"liveness"},
      fencing::HostFenceResult{"node1", "down", false, std::nullopt, 3,
                               std::vector<std::string>{"off failed (exit code 1): x"},
                               std::nullopt},
      "host", "node1", OpState::failed);
  add(VmHaRestartParams{"host_failed", "node1", "node2",
                        ProvenDown{"fence", "device 1 (fence_ipmilan): off", "kvmfleet fencing",
                                   Clock::time_point{std::chrono::seconds{1'800'000'000}}}},
      VmHaRestartResult{"node2", true}, "vm", kVmId);
  add(VmHaRestartParams{"crashed", "node1", "node1",
                        ProvenDown{"crashed", "node1's agent reported the domain crashed", "node1",
                                   Clock::time_point{std::chrono::seconds{1'800'000'000}}}},
      VmHaRestartResult{std::nullopt, false}, "vm", kVmId, OpState::pending);
  // Not started yet: every kind's result is empty then.
  add(VolumeGrowParams{8ULL << 30}, VolumeGrowResult{}, "volume", kVolId, OpState::pending);
  add(SnapshotRevertParams{kSnapId, "nightly"}, SnapshotRevertResult{}, "volume", kVolId,
      OpState::pending);
  return ops;
}

std::string exchange(const std::string& templ, const std::string& path, const json& body) {
  return json{{"method", "GET"},
              {"path_template", templ},
              {"path", path},
              {"status", 200},
              {"content_type", "application/json"},
              {"headers", json::object()},
              {"body", body.dump()}}
      .dump();
}

TEST(OperationContract, EveryKindsParamsAndResultMatchTheContract) {
  const auto ops = every_kind();
  std::set<std::string> kinds;
  json items = json::array();
  std::vector<std::string> lines;
  for (const auto& op : ops) {
    kinds.insert(op.kind);
    const json view = api::operation_view(op);
    items.push_back(view);
    lines.push_back(exchange("/v1/operations/{id}", "/v1/operations/" + op.id, view));
  }
  lines.push_back(
      exchange("/v1/operations", "/v1/operations", {{"items", items}, {"next_cursor", nullptr}}));
  // Every kind there is, once at least.
  EXPECT_EQ(kinds.size(), 22u);
  const std::string path = kRecordDir + "/recorded-operation-kinds.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({path});
  EXPECT_EQ(check.exit_code, 0)
      << "api/openapi.yaml does not describe the operations' params and results (" << path << "):\n"
      << check.out << check.err;
}

// ---- each kind's schemas against the controller's typed readers ----------------------------

struct Case {
  std::string label;
  json body;
  bool legacy = false;  // a record from before a rule of the contract, which the reader still reads
};

template <typename T>
bool reads(const json& j) {
  try {
    (void)j.get<T>();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

template <typename T>
void add_cases(std::vector<std::string>& out, const std::string& name,
               const std::vector<Case>& cases) {
  for (const auto& c : cases)
    out.push_back(json{
        {"label", name + ": " + c.label},
        {"schema", "/components/schemas/" + name},
        {"instance", c.body},
        {"accepted", reads<T>(c.body)},
        {"legacy",
         c.legacy}}.dump());
}

json with(json base, const std::string& key, const json& value) {
  if (value.is_discarded())
    base.erase(key);
  else
    base[key] = value;
  return base;
}

TEST(OperationContract, KindSchemasAcceptWhatTheTypedReadersAccept) {
  const json gone(json::value_t::discarded);
  const json no_params = json::object();
  const json stranger = {{"colour", "red"}};
  const json policy_json = policy();
  const json status = migration_status(MigrationState::running);
  const json error = Error(ErrorCode::conflict, "VM is paused").to_json();

  std::vector<std::string> lines;
  auto empty_cases = std::vector<Case>{
      {"empty", no_params}, {"a field", stranger}, {"not an object", json::array()}};
  add_cases<VmStartParams>(lines, "VmStartParams", empty_cases);
  add_cases<VmStartResult>(lines, "VmStartResult", empty_cases);
  add_cases<VmRebootParams>(lines, "VmRebootParams", empty_cases);
  add_cases<VmRebootResult>(lines, "VmRebootResult", empty_cases);
  add_cases<VmDestroyParams>(lines, "VmDestroyParams", empty_cases);
  add_cases<VmDeleteResult>(lines, "VmDeleteResult", empty_cases);
  add_cases<StoragePoolDeleteParams>(lines, "StoragePoolDeleteParams", empty_cases);
  add_cases<StoragePoolDeleteResult>(lines, "StoragePoolDeleteResult", empty_cases);
  add_cases<VolumeDeleteResult>(lines, "VolumeDeleteResult", empty_cases);
  add_cases<SnapshotDeleteResult>(lines, "SnapshotDeleteResult", empty_cases);

  const json create = {{"name", "web1"}, {"start", false}};
  add_cases<VmCreateParams>(lines, "VmCreateParams",
                            {{"both", create},
                             {"no start", with(create, "start", gone)},
                             {"start a string", with(create, "start", "yes")},
                             {"a field more", with(create, "host", "node1")}});
  add_cases<VmCreateResult>(lines, "VmCreateResult",
                            {{"empty", no_params},
                             {"host", {{"host", "node1"}}},
                             {"host a number", {{"host", 1}}},
                             {"a field more", stranger}});
  const json stop = {{"timeout_s", 60}, {"force", false}};
  add_cases<VmStopParams>(lines, "VmStopParams",
                          {{"both", stop},
                           {"no timeout", with(stop, "timeout_s", gone)},
                           {"no force", with(stop, "force", gone)},
                           {"timeout a string", with(stop, "timeout_s", "60")},
                           {"timeout a fraction", with(stop, "timeout_s", 1.5)},
                           {"force a number", with(stop, "force", 1)},
                           {"a field more", with(stop, "purge", true)}});
  add_cases<VmStopResult>(lines, "VmStopResult",
                          {{"empty", no_params},
                           {"forced", {{"forced", true}}},
                           {"warning", {{"storage_warning", "x"}}},
                           {"forced a string", {{"forced", "true"}}},
                           {"a field more", stranger}});
  add_cases<VmDestroyResult>(lines, "VmDestroyResult",
                             {{"empty", no_params},
                              {"warning", {{"storage_warning", "x"}}},
                              {"warning null", {{"storage_warning", nullptr}}},
                              {"a field more", stranger}});
  add_cases<VmDeleteParams>(lines, "VmDeleteParams",
                            {{"force", {{"force", true}}},
                             {"no force", no_params},
                             {"force null", {{"force", nullptr}}},
                             {"a field more", {{"force", true}, {"purge", true}}}});

  const json migrate = {{"target_host", "node2"},
                        {"source_host", "node1"},
                        {"policy", policy_json},
                        {"mode", "live"}};
  add_cases<VmMigrateParams>(
      lines, "VmMigrateParams",
      {{"live", migrate},
       {"cold", with(migrate, "mode", "cold")},
       {"of a drain", with(migrate, "maintenance_of", "node1")},
       {"no mode (stored before cold moves)", with(migrate, "mode", gone), true},
       {"another mode", with(migrate, "mode", "warm")},
       {"no target", with(migrate, "target_host", gone)},
       {"no source", with(migrate, "source_host", gone)},
       {"no policy", with(migrate, "policy", gone)},
       {"a policy without a field",
        with(migrate, "policy", with(policy_json, "auto_converge", gone))},
       {"a policy with a field more", with(migrate, "policy", with(policy_json, "turbo", true))},
       {"a policy's number a string",
        with(migrate, "policy", with(policy_json, "max_downtime_ms", "1"))},
       {"a field more", with(migrate, "colour", "red")}});
  const json moved = {{"mode", "live"},      {"source_host", "node1"}, {"target_host", "node2"},
                      {"migration", status}, {"volumes_shared", true}, {"storage_warning", "x"}};
  add_cases<VmMigrateResult>(
      lines, "VmMigrateResult",
      {{"everything", moved},
       {"mode only", {{"mode", "cold"}}},
       {"no mode (stored before every move recorded it)", with(moved, "mode", gone), true},
       {"empty (stored before every move recorded its mode)", no_params, true},
       {"another mode", with(moved, "mode", "warm")},
       {"a failed migration", with(moved, "migration", with(status, "error", error))},
       {"a migration without its error field",
        with(moved, "migration", with(status, "error", gone))},
       {"a migration in another state", with(moved, "migration", with(status, "state", "lost"))},
       {"a migration with a field more", with(moved, "migration", with(status, "speed", 1))},
       {"volumes_shared a string", with(moved, "volumes_shared", "yes")},
       {"a field more", with(moved, "colour", "red")}});
  add_cases<HostMaintenanceParams>(
      lines, "HostMaintenanceParams",
      {{"on", {{"enabled", true}, {"policy", policy_json}}},
       {"off", {{"enabled", false}}},
       {"no enabled", {{"policy", policy_json}}},
       {"a policy without a field", {{"enabled", true}, {"policy", {{"max_downtime_ms", 5}}}}},
       {"a field more", {{"enabled", false}, {"drain", true}}}});
  const json entry = {{"state", "moved"},
                      {"operation", kChildId},
                      {"target_host", "node2"},
                      {"progress", 100},
                      {"step", "done"}};
  auto vms = [](const json& e) { return json{{"host", "node1"}, {"vms", {{"web1", e}}}}; };
  add_cases<HostMaintenanceResult>(
      lines, "HostMaintenanceResult",
      {{"empty", no_params},
       {"host", {{"host", "node1"}}},
       {"no VMs", {{"host", "node1"}, {"vms", json::object()}}},
       {"a VM moved", vms(entry)},
       {"a VM failed", vms({{"state", "failed"}, {"error", error}})},
       {"a VM stays", vms({{"state", "stays"}, {"reason", "stopped"}})},
       {"an entry without a state", vms(with(entry, "state", gone))},
       {"an entry in another state", vms(with(entry, "state", "lost"))},
       {"an entry's progress a string", vms(with(entry, "progress", "10"))},
       {"an entry's error a string", vms({{"state", "failed"}, {"error", "boom"}})},
       {"an entry's error with another code",
        vms({{"state", "failed"}, {"error", with(error, "code", "oops")}})},
       {"an entry's error without details",
        vms({{"state", "failed"}, {"error", with(error, "details", gone)}})},
       {"an entry with a field more", vms(with(entry, "colour", "red"))},
       {"VMs a list", {{"vms", json::array()}}},
       {"a field more", stranger}});

  const json pool = {{"hosts", {"node1", "node2"}}, {"type", "iscsi"}};
  add_cases<StoragePoolCreateParams>(lines, "StoragePoolCreateParams",
                                     {{"iSCSI", pool},
                                      {"FC", with(pool, "type", "fc")},
                                      {"another type", with(pool, "type", "nfs")},
                                      {"no hosts", with(pool, "hosts", gone)},
                                      {"a host a number", with(pool, "hosts", {"node1", 2})},
                                      {"no type", with(pool, "type", gone)},
                                      {"a field more", with(pool, "colour", "red")}});
  const json pool_made = {
      {"pool", "san1"}, {"hosts_usable", 2}, {"hosts_total", 2}, {"adopted_existing_vg", true}};
  add_cases<StoragePoolCreateResult>(lines, "StoragePoolCreateResult",
                                     {{"everything", pool_made},
                                      {"empty", no_params},
                                      {"a count a string", with(pool_made, "hosts_total", "2")},
                                      {"a field more", with(pool_made, "hosts", json::object())}});
  add_cases<StoragePoolConnectParams>(lines, "StoragePoolConnectParams",
                                      {{"hosts", {{"hosts", {"node3"}}}},
                                       {"no hosts", no_params},
                                       {"hosts a string", {{"hosts", "node3"}}},
                                       {"a field more", {{"hosts", {"node3"}}, {"type", "fc"}}}});
  const json connected = {
      {"pool", "fc1"}, {"hosts", {{"node3", "usable"}}}, {"hosts_usable", 1}, {"hosts_total", 1}};
  add_cases<StoragePoolConnectResult>(
      lines, "StoragePoolConnectResult",
      {{"everything", connected},
       {"empty", no_params},
       {"a host's state a boolean", with(connected, "hosts", {{"node3", true}})},
       {"a field more", with(connected, "adopted_existing_vg", true)}});

  const json volume = {{"name", "db1-data"}, {"pool", "san1"}, {"size_bytes", 1 << 20}};
  add_cases<VolumeCreateParams>(lines, "VolumeCreateParams",
                                {{"all", volume},
                                 {"no pool", with(volume, "pool", gone)},
                                 {"size a string", with(volume, "size_bytes", "1048576")},
                                 {"size negative", with(volume, "size_bytes", -1048576)},
                                 {"a field more", with(volume, "size_gib", 1)}});
  add_cases<VolumeCreateResult>(
      lines, "VolumeCreateResult",
      {{"id", {{"volume_id", kVolId}}}, {"empty", no_params}, {"a field more", stranger}});
  add_cases<VolumeGrowParams>(lines, "VolumeGrowParams",
                              {{"size", {{"size_bytes", 1 << 20}}},
                               {"no size", no_params},
                               {"size a fraction", {{"size_bytes", 1048576.5}}},
                               {"a field more", {{"size_bytes", 1 << 20}, {"size_gib", 1}}}});
  add_cases<VolumeGrowResult>(lines, "VolumeGrowResult",
                              {{"both", {{"size_bytes", 1 << 20}, {"vm_resized", false}}},
                               {"empty", no_params},
                               {"resized a string", {{"vm_resized", "no"}}},
                               {"a field more", stranger}});
  add_cases<VolumeDeleteParams>(lines, "VolumeDeleteParams",
                                {{"name", {{"name", "db1-data"}}},
                                 {"no name", no_params},
                                 {"a field more", {{"name", "v"}, {"force", true}}}});

  const json snapshot = {
      {"snapshot_id", kSnapId}, {"name", "before"}, {"size_bytes", 1 << 22}, {"quiesce", true}};
  add_cases<SnapshotCreateParams>(lines, "SnapshotCreateParams",
                                  {{"all", snapshot},
                                   {"no id", with(snapshot, "snapshot_id", gone)},
                                   {"no quiesce", with(snapshot, "quiesce", gone)},
                                   {"quiesce a string", with(snapshot, "quiesce", "yes")},
                                   {"a field more", with(snapshot, "size_ratio", 0.25)}});
  const json snapshot_taken = {{"snapshot_id", kSnapId},
                               {"snapshot_ids", {kSnapId}},
                               {"consistency", "quiesced"},
                               {"frozen_filesystems", 2},
                               {"deactivate_error", "x"}};
  add_cases<SnapshotCreateResult>(
      lines, "SnapshotCreateResult",
      {{"everything", snapshot_taken},
       {"id only", {{"snapshot_id", kSnapId}}},
       {"empty", no_params},
       {"not frozen", with(with(snapshot_taken, "frozen_filesystems", gone), "quiesce_error", "x")},
       {"another consistency", with(snapshot_taken, "consistency", "fuzzy")},
       {"ids a string", with(snapshot_taken, "snapshot_ids", kSnapId)},
       {"a field more", with(snapshot_taken, "merge_pending", true)}});
  const json disk = {{"volume_id", kVolId}, {"snapshot_id", kSnapId}, {"size_bytes", 1 << 22}};
  const json vm_snapshot = {{"name", "nightly"}, {"quiesce", true}, {"snapshots", {disk}}};
  add_cases<VmSnapshotParams>(
      lines, "VmSnapshotParams",
      {{"one disk", vm_snapshot},
       {"no disks", with(vm_snapshot, "snapshots", json::array())},
       {"a disk without its size",
        with(vm_snapshot, "snapshots", {with(disk, "size_bytes", gone)})},
       {"a disk with a field more", with(vm_snapshot, "snapshots", {with(disk, "lv", "x")})},
       {"no name", with(vm_snapshot, "name", gone)},
       {"a field more", with(vm_snapshot, "size_ratio", 0.25)}});
  add_cases<VmSnapshotResult>(lines, "VmSnapshotResult",
                              {{"everything", with(snapshot_taken, "snapshot_id", gone)},
                               {"empty", no_params},
                               {"with a snapshot_id (snapshot.create's)", snapshot_taken},
                               {"frozen a string", {{"frozen_filesystems", "2"}}}});
  const json snapshot_ref = {{"snapshot_id", kSnapId}, {"snapshot", "before"}};
  for (const std::string name : {"SnapshotDeleteParams", "SnapshotRevertParams"}) {
    const std::vector<Case> cases = {{"both", snapshot_ref},
                                     {"no name", with(snapshot_ref, "snapshot", gone)},
                                     {"no id", with(snapshot_ref, "snapshot_id", gone)},
                                     {"a field more", with(snapshot_ref, "force", true)}};
    if (name == "SnapshotDeleteParams")
      add_cases<SnapshotDeleteParams>(lines, name, cases);
    else
      add_cases<SnapshotRevertParams>(lines, name, cases);
  }
  add_cases<SnapshotRevertResult>(lines, "SnapshotRevertResult",
                                  {{"both", {{"merge_pending", false}, {"deactivate_error", "x"}}},
                                   {"empty", no_params},
                                   {"pending a string", {{"merge_pending", "no"}}},
                                   {"a field more", stranger}});

  const std::string path = kRecordDir + "/agreement-operation-kinds.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({"--agreement", path});
  EXPECT_EQ(check.exit_code, 0)
      << "api/openapi.yaml's operation schemas and the controller's typed readers disagree ("
      << path << "):\n"
      << check.out << check.err;
}

}  // namespace
}  // namespace kvmfleet::contract
