// Each operation kind's typed params and result: their JSON keeps the shape operations
// were stored in before (so stored operations keep loading), reads strictly, and a
// stored operation whose params do not parse fails cleanly instead of running.
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/migration/migration_params.hpp"
#include "kvmfleet/shared_storage/storage_params.hpp"
#include "kvmfleet/vms/vm_params.hpp"
#include "tests/unit/controller_fixture.hpp"

#include <gtest/gtest.h>

namespace kvmfleet {
namespace {

using nlohmann::json;

const std::string kUuid1 = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const std::string kUuid2 = "1a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d";

const json kPolicy = {{"max_downtime_ms", 500},   {"bandwidth_mib_s", 100},
                      {"auto_converge", true},    {"allow_post_copy", false},
                      {"converge_timeout_s", 60}, {"downtime_ceiling_ms", 2000}};

const json kMigrationStatus = {
    {"state", "running"},         {"op_id", kUuid1},       {"data_total", 1000},
    {"data_processed", 400},      {"data_remaining", 600}, {"memory_iteration", 2},
    {"expected_downtime_ms", 30}, {"elapsed_ms", 1500},    {"ladder_step", 1},
    {"downtime_limit_ms", 600},   {"error", nullptr}};

// Parsed into T and written again, `stored` comes out as it went in.
template <typename T>
void expect_same_shape(const json& stored) {
  SCOPED_TRACE(stored.dump());
  T parsed;
  ASSERT_NO_THROW(parsed = stored.get<T>());
  EXPECT_EQ(json(parsed), stored);
}

template <typename T>
void expect_refused(const json& stored) {
  SCOPED_TRACE(stored.dump());
  EXPECT_ANY_THROW((void)stored.get<T>());
}

// ---- the shapes, kind by kind (as the services and operations always wrote them) ----

TEST(OperationParams, VmKindsKeepTheirShape) {
  expect_same_shape<VmCreateParams>({{"name", "web1"}, {"start", true}});
  expect_same_shape<VmCreateResult>(json::object());
  expect_same_shape<VmCreateResult>({{"host", "node1"}});
  expect_same_shape<VmStartParams>(json::object());
  expect_same_shape<VmStartResult>(json::object());
  expect_same_shape<VmStopParams>({{"timeout_s", 60}, {"force", true}});
  expect_same_shape<VmStopResult>(json::object());
  expect_same_shape<VmStopResult>(
      {{"forced", true}, {"storage_warning", "shared volumes left active"}});
  expect_same_shape<VmRebootParams>(json::object());
  expect_same_shape<VmRebootResult>(json::object());
  expect_same_shape<VmDestroyParams>(json::object());
  expect_same_shape<VmDestroyResult>({{"storage_warning", "left active"}});
  expect_same_shape<VmDeleteParams>({{"force", false}});
  expect_same_shape<VmDeleteResult>(json::object());

  const auto stop = json{{"timeout_s", 60}, {"force", true}}.get<VmStopParams>();
  EXPECT_EQ(stop.timeout_s, 60);
  EXPECT_TRUE(stop.force);
}

TEST(OperationParams, MigrationKindsKeepTheirShape) {
  const json params = {{"target_host", "node2"},
                       {"source_host", "node1"},
                       {"policy", kPolicy},
                       {"mode", "cold"},
                       {"maintenance_of", "node1"}};
  expect_same_shape<VmMigrateParams>(params);
  const auto p = params.get<VmMigrateParams>();
  EXPECT_EQ(p.target_host, "node2");
  EXPECT_EQ(p.mode, MigrationMode::cold);
  EXPECT_EQ(p.policy.max_downtime_ms, 500);
  EXPECT_TRUE(p.policy.auto_converge);
  EXPECT_EQ(p.maintenance_of, "node1");

  expect_same_shape<VmMigrateResult>({{"mode", "live"}});
  expect_same_shape<VmMigrateResult>({{"mode", "live"},
                                      {"source_host", "node1"},
                                      {"target_host", "node2"},
                                      {"volumes_shared", true},
                                      {"storage_warning", "volumes not settled"},
                                      {"migration", kMigrationStatus}});
  json failed_status = kMigrationStatus;
  failed_status["state"] = "failed";
  failed_status["error"] = Error(ErrorCode::timeout, "did not converge").to_json();
  expect_same_shape<VmMigrateResult>({{"mode", "live"}, {"migration", failed_status}});

  expect_same_shape<HostMaintenanceParams>({{"enabled", true}, {"policy", kPolicy}});
  expect_same_shape<HostMaintenanceParams>({{"enabled", false}});
  expect_same_shape<HostMaintenanceResult>({{"host", "node1"}});
  const json drain = {
      {"host", "node1"},
      {"vms",
       {{"web1",
         {{"state", "moved"},
          {"operation", kUuid1},
          {"target_host", "node2"},
          {"progress", 100},
          {"step", "done"}}},
        {"web2",
         {{"state", "failed"}, {"error", Error(ErrorCode::conflict, "VM is paused").to_json()}}},
        {"web3", {{"state", "stays"}, {"reason", "stopped: only running VMs move live"}}},
        {"web4", {{"state", "waiting"}, {"step", "waiting for operation x (vm.stop) to end"}}}}}};
  expect_same_shape<HostMaintenanceResult>(drain);
  const auto r = drain.get<HostMaintenanceResult>();
  ASSERT_TRUE(r.vms);
  EXPECT_EQ(r.vms->at("web1").state, DrainState::moved);
  ASSERT_TRUE(r.vms->at("web2").error);
  EXPECT_EQ(r.vms->at("web2").error->code, ErrorCode::conflict);
}

TEST(OperationParams, StorageKindsKeepTheirShape) {
  expect_same_shape<StoragePoolCreateParams>({{"hosts", {"node1", "node2"}}, {"type", "fc"}});
  expect_same_shape<StoragePoolCreateResult>(
      {{"adopted_existing_vg", true}, {"pool", "san1"}, {"hosts_usable", 2}, {"hosts_total", 2}});
  expect_same_shape<StoragePoolDeleteParams>(json::object());
  expect_same_shape<StoragePoolDeleteResult>(json::object());
  expect_same_shape<StoragePoolConnectParams>({{"hosts", {"node3"}}});
  expect_same_shape<StoragePoolConnectResult>(
      {{"pool", "fc1"},
       {"hosts", {{"node3", "usable"}, {"node4", "lockstart: unavailable: x"}}},
       {"hosts_usable", 1},
       {"hosts_total", 2}});
  expect_same_shape<VolumeCreateParams>(
      {{"name", "db1-data"}, {"pool", "san1"}, {"size_bytes", 1ULL << 40}});
  expect_same_shape<VolumeCreateResult>({{"volume_id", kUuid1}});
  expect_same_shape<VolumeGrowParams>({{"size_bytes", 4096}});
  expect_same_shape<VolumeGrowResult>({{"size_bytes", 4194304}, {"vm_resized", false}});
  expect_same_shape<VolumeDeleteParams>({{"name", "db1-data"}});
  expect_same_shape<VolumeDeleteResult>(json::object());
  expect_same_shape<SnapshotCreateParams>(
      {{"snapshot_id", kUuid1}, {"name", "before"}, {"size_bytes", 4194304}, {"quiesce", true}});
  expect_same_shape<SnapshotCreateResult>({{"snapshot_id", kUuid1}});
  expect_same_shape<SnapshotCreateResult>({{"snapshot_id", kUuid1},
                                           {"snapshot_ids", {kUuid1}},
                                           {"consistency", "quiesced"},
                                           {"frozen_filesystems", 2},
                                           {"deactivate_error", "unavailable: x"}});
  const json vm_snapshot = {
      {"name", "nightly"},
      {"quiesce", false},
      {"snapshots",
       {{{"volume_id", kUuid1}, {"snapshot_id", kUuid2}, {"size_bytes", 4194304}},
        {{"volume_id", kUuid2}, {"snapshot_id", kUuid1}, {"size_bytes", 8388608}}}}};
  expect_same_shape<VmSnapshotParams>(vm_snapshot);
  EXPECT_EQ(vm_snapshot.get<VmSnapshotParams>().snapshots.at(1).size_bytes, 8388608u);
  expect_same_shape<VmSnapshotResult>({{"snapshot_ids", {kUuid1, kUuid2}},
                                       {"consistency", "crash-consistent"},
                                       {"quiesce_error", "no agent"}});
  expect_same_shape<SnapshotDeleteParams>({{"snapshot_id", kUuid1}, {"snapshot", "before"}});
  expect_same_shape<SnapshotDeleteResult>(json::object());
  expect_same_shape<SnapshotRevertParams>({{"snapshot_id", kUuid1}, {"snapshot", "before"}});
  expect_same_shape<SnapshotRevertResult>({{"merge_pending", true}, {"deactivate_error", "x"}});
}

// What older controllers stored reads as they meant it.
TEST(OperationParams, RecordsFromBeforeKeepLoading) {
  // Before cold moves, a vm.migrate had no mode in its params: it was live.
  const auto p = json{{"target_host", "node2"}, {"source_host", "node1"}, {"policy", kPolicy}}
                     .get<VmMigrateParams>();
  EXPECT_EQ(p.mode, MigrationMode::live);
  EXPECT_FALSE(p.maintenance_of);
  // Before every move recorded its mode in the result, only cold ones did.
  const auto r = json{{"source_host", "node1"}, {"target_host", "node2"}}.get<VmMigrateResult>();
  EXPECT_EQ(r.mode, MigrationMode::live);
  EXPECT_EQ(json(r).value("mode", ""), "live");
  // Results are partial while an operation runs, and empty before it starts.
  EXPECT_NO_THROW((void)json::object().get<VmMigrateResult>());
  EXPECT_NO_THROW((void)json::object().get<HostMaintenanceResult>());
  EXPECT_NO_THROW((void)json::object().get<SnapshotCreateResult>());
}

TEST(OperationParams, ReadsStrictly) {
  // A missing required field, a field of another type, a field nobody knows.
  expect_refused<VmCreateParams>({{"name", "web1"}});
  expect_refused<VmStopParams>({{"timeout_s", "60"}, {"force", true}});
  expect_refused<VmStopParams>({{"timeout_s", 60}, {"force", 1}});
  expect_refused<VmStopParams>({{"timeout_s", 60.5}, {"force", true}});
  expect_refused<VmDeleteParams>({{"force", false}, {"purge", true}});
  expect_refused<VmStartParams>({{"force", true}});
  expect_refused<VmStartParams>(json::array());
  expect_refused<VmMigrateParams>({{"target_host", "node2"}, {"policy", kPolicy}});
  expect_refused<VmMigrateParams>(
      {{"target_host", "node2"}, {"source_host", "node1"}, {"policy", kPolicy}, {"mode", "warm"}});
  json partial_policy = kPolicy;
  partial_policy.erase("auto_converge");
  expect_refused<VmMigrateParams>(
      {{"target_host", "node2"}, {"source_host", "node1"}, {"policy", partial_policy}});
  expect_refused<VmMigrateResult>({{"mode", "live"}, {"migration", {{"state", "running"}}}});
  expect_refused<HostMaintenanceParams>({{"policy", kPolicy}});
  expect_refused<HostMaintenanceResult>({{"vms", {{"web1", {{"state", "lost"}}}}}});
  expect_refused<HostMaintenanceResult>(
      {{"vms", {{"web1", {{"state", "failed"}, {"error", "boom"}}}}}});
  expect_refused<HostMaintenanceResult>(
      {{"vms",
        {{"web1",
          {{"state", "failed"},
           {"error", {{"code", "oops"}, {"message", "x"}, {"details", json::object()}}}}}}}});
  expect_refused<StoragePoolCreateParams>({{"hosts", {"node1", 2}}, {"type", "iscsi"}});
  expect_refused<StoragePoolCreateParams>({{"hosts", {"node1"}}, {"type", "nfs"}});
  expect_refused<VolumeCreateParams>({{"name", "v"}, {"pool", "p"}, {"size_bytes", -512}});
  expect_refused<VolumeGrowParams>({{"size_bytes", "4096"}});
  expect_refused<SnapshotCreateResult>({{"consistency", "fuzzy"}});
  expect_refused<VmSnapshotParams>({{"name", "n"},
                                    {"quiesce", true},
                                    {"snapshots", {{{"volume_id", kUuid1}, {"size_bytes", 512}}}}});
  expect_refused<SnapshotRevertParams>({{"snapshot_id", kUuid1}});
}

TEST(OperationParams, StoredParamsThatDoNotParseAreAnInternalErrorNamingTheOperation) {
  Operation op;
  op.id = kUuid1;
  op.kind = std::string(op_kind::vm_stop);
  op.params = {{"timeout_s", "soon"}, {"force", false}};
  auto p = params_of<VmStopParams>(op);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::internal);
  EXPECT_NE(p.error().message.find(kUuid1), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("params"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("timeout_s"), std::string::npos) << p.error().message;
  EXPECT_EQ(p.error().details.value("kind", ""), "vm.stop");

  op.result = {{"forced", "yes"}};
  auto r = result_of<VmStopResult>(op);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::internal);
  EXPECT_NE(r.error().message.find("result"), std::string::npos) << r.error().message;
}

TEST(OperationParams, SetParamsNamesTheKind) {
  Operation op;
  set_params(op, VolumeGrowParams{8192});
  EXPECT_EQ(op.kind, "volume.grow");
  EXPECT_EQ(op.params, json({{"size_bytes", 8192}}));
  set_params(op, SnapshotRevertParams{kUuid1, "before"});
  EXPECT_EQ(op.kind, "snapshot.revert");
}

// ---- a stored operation whose params do not parse ------------------------------------

using testing_support::ControllerTest;
using namespace std::chrono_literals;

class StoredParamsTest : public ControllerTest {};

TEST_F(StoredParamsTest, AnOperationWhoseParamsDoNotParseFailsWithAClearErrorAndOthersRun) {
  host_up("node1");
  runner_->start();
  auto c = ctl_->vms().create_vm(admin(), spec("web1"), true, {});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  const std::string id = vm("web1").id;

  // As a damaged (or foreign) record would hold it: picked up at the next start.
  shutdown();
  Operation bad;
  bad.id = new_uuid();
  bad.kind = std::string(op_kind::vm_stop);
  bad.target_type = "vm";
  bad.target_id = id;
  bad.params = {{"timeout_s", 30}, {"force", "yes"}};
  bad.created_at = clock_.now();
  boot();
  record_operation(bad);
  runner_->start();

  const Operation failed = wait_done(bad.id);
  EXPECT_EQ(failed.state, OpState::failed);
  ASSERT_TRUE(failed.error);
  EXPECT_EQ(failed.error->code, ErrorCode::internal);
  EXPECT_NE(failed.error->message.find("stored params"), std::string::npos)
      << failed.error->message;
  EXPECT_NE(failed.error->message.find("force"), std::string::npos) << failed.error->message;
  EXPECT_EQ(failed.result, json::object());
  EXPECT_EQ(agents_.count("shutdown"), 0) << "the operation must not have run";
  EXPECT_EQ(vm("web1").state, VmState::running);

  // The runner carries on with the next operation on the same VM.
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_stop, VmStopParams{5, true}, {});
  ASSERT_TRUE(stop.ok()) << stop.error().message;
  EXPECT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
}

}  // namespace
}  // namespace kvmfleet
