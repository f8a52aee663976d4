// Moving a VM that has CD-ROMs (an ISO from an image, a cloud-init seed): the target
// prepares their files before a live migration starts and the request names them; the
// host the VM does not run on afterwards gives them up.
#include <gtest/gtest.h>

#include "tests/unit/controller_fixture.hpp"

namespace kvmfleet {
namespace {

using namespace std::chrono_literals;

class MigrationMediaTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    ControllerTest::SetUp();
    host_up("node1");
    host_up("node2", 4, 4096);
    runner_->start();
    VmSpec s = spec("web1");
    s.pinned_host = "node1";
    auto c = ctl_->vms().create_vm(admin(), s, true, {});
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
    // A CD-ROM and a seed, as a create from images records them.
    ASSERT_TRUE(state_
                    ->update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
                      Vm v = *d.find_vm("web1");
                      v.spec.cdrom = CdromSpec{"installer", std::string(64, 'c'), 4096};
                      v.spec.cloud_init = CloudInit{};
                      v.spec.cloud_init->hostname = "web1";
                      b.put_vms.push_back(v);
                      return {};
                    })
                    .ok());
    id_ = vm("web1").id;
  }
  std::vector<std::string> calls_named(const std::string& name) {
    std::vector<std::string> out;
    for (const auto& c : agents_.calls())
      if (c.name == name) out.push_back(c.host);
    return out;
  }
  int index_of(const std::string& name) {
    const auto all = agents_.calls();
    for (std::size_t i = 0; i < all.size(); ++i)
      if (all[i].name == name) return static_cast<int>(i);
    return -1;
  }
  std::string id_;
};

TEST_F(MigrationMediaTest, TheTargetPreparesTheCdromsBeforeTheMoveAndTheSourceGivesThemUp) {
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(op.result.value("media_prepared", false), true);
  EXPECT_FALSE(op.result.contains("media_warning")) << op.result.dump();

  // Prepared on the target only, before the migration started.
  EXPECT_EQ(calls_named("prepare_media"), (std::vector<std::string>{"node2"}));
  ASSERT_GE(index_of("prepare_media"), 0);
  EXPECT_LT(index_of("prepare_media"), index_of("migrate"));
  // The source agent was told where the target keeps them.
  const MigrationRequest req = agents_.last_migration_request(id_);
  EXPECT_EQ(req.media.cdrom, "/node2/pool/cache/" + std::string(64, 'c') + ".img");
  EXPECT_EQ(req.media.seed, "/node2/pool/" + id_ + "-seed.iso");
  EXPECT_EQ(agents_.media_on("node2", id_), req.media);
  // The source gave them up once the VM ran on the target.
  EXPECT_EQ(calls_named("remove_media"), (std::vector<std::string>{"node1"}));
}

TEST_F(MigrationMediaTest, ATargetThatCannotPrepareThemFailsTheMoveBeforeAnythingMoves) {
  agents_.fail_next("prepare_media",
                    Error(ErrorCode::unavailable, "image installer does not match its SHA-256",
                          {{"reason", "image_checksum_mismatch"}}),
                    5);
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_EQ(op.error->code, ErrorCode::unavailable);
  EXPECT_NE(op.error->message.find("CD-ROMs could not be prepared on node2"), std::string::npos)
      << op.error->message;
  EXPECT_EQ(agents_.count("migrate"), 0);
  EXPECT_EQ(vm("web1").host, "node1");
  // Whatever the target made meanwhile goes; the source keeps its own.
  EXPECT_EQ(calls_named("remove_media"), (std::vector<std::string>{"node2"}));
}

TEST_F(MigrationMediaTest, AFailedMigrationLeavesTheVmAndItsMediaOnTheSourceAndCleansTheTarget) {
  agents_.fail_next("migrate", Error(ErrorCode::conflict, "domain is migrating"));
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::failed);
  EXPECT_EQ(vm("web1").host, "node1");
  EXPECT_EQ(calls_named("remove_media"), (std::vector<std::string>{"node2"}));
  EXPECT_TRUE(agents_.media_on("node2", id_).empty());
}

// What the target refuses to remove (it has the domain defined) is a warning, not a
// failure of a move that succeeded.
TEST_F(MigrationMediaTest, MediaThatCannotBeRemovedAreAWarning) {
  agents_.fail_next("remove_media", Error(ErrorCode::unavailable, "agent restarting"), 10);
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_NE(op.result.value("media_warning", "").find("stay on node1"), std::string::npos)
      << op.result.dump();
}

// A cold move defines the VM on the target, whose agent makes the CD-ROMs as any
// define does; the source gives them up.
TEST_F(MigrationMediaTest, AColdMoveLeavesTheSourceWithoutTheCdroms) {
  auto stop = ctl_->vms().vm_action(admin(), "web1", op_kind::vm_destroy, {}, {});
  ASSERT_EQ(wait_done(stop->operation.id).state, OpState::succeeded);
  auto m = ctl_->migration().migrate_vm(admin(), "web1", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto op = wait_done(m->operation.id);
  ASSERT_EQ(op.state, OpState::succeeded) << (op.error ? op.error->message : "");
  EXPECT_EQ(vm("web1").host, "node2");
  EXPECT_EQ(agents_.count("prepare_media"), 0);
  EXPECT_TRUE(agents_.spec_of(id_).cdrom.has_value());
  EXPECT_TRUE(agents_.spec_of(id_).cloud_init.has_value());
  EXPECT_EQ(calls_named("remove_media"), (std::vector<std::string>{"node1"}));
}

// A VM without CD-ROMs moves as it always did: nothing prepared, nothing removed.
TEST_F(MigrationMediaTest, AVmWithoutCdromsPreparesNothing) {
  VmSpec s = spec("plain");
  s.pinned_host = "node1";
  auto c = ctl_->vms().create_vm(admin(), s, true, {});
  ASSERT_EQ(wait_done(c->operation.id).state, OpState::succeeded);
  auto m = ctl_->migration().migrate_vm(admin(), "plain", "node2", {}, {});
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(wait_done(m->operation.id).state, OpState::succeeded);
  EXPECT_EQ(agents_.count("prepare_media"), 0);
  EXPECT_EQ(agents_.count("remove_media"), 0);
  EXPECT_TRUE(agents_.last_migration_request(vm("plain").id).media.empty());
}

}  // namespace
}  // namespace kvmfleet
