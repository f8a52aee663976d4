#include "kvmfleet/storage/lock_daemons.hpp"

#include <gtest/gtest.h>

#include "captured_output.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"

namespace kvmfleet::storage {
namespace {

using testing::captured;
using Argv = std::vector<std::string>;

TEST(LockDaemons, NothingRunning) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, captured("wdmd_dump_nodaemon"));
  runner.expect({"sanlock"}, captured("sanlock_status_nodaemon"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_nodaemon"));
  LockDaemons daemons(runner);
  auto st = daemons.check();
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(runner.calls(),
            (std::vector<Argv>{
                {"wdmd", "--dump"}, {"sanlock", "client", "status"}, {"lvmlockctl", "--info"}}));
  EXPECT_FALSE(st->wdmd);
  EXPECT_FALSE(st->sanlock);
  EXPECT_FALSE(st->lvmlockd);
  EXPECT_FALSE(st->all_running());
  ASSERT_EQ(st->problems.size(), 3u);
  EXPECT_NE(st->problems[2].find("Cannot connect to lvmlockd"), std::string::npos)
      << st->problems[2];
}

TEST(LockDaemons, RunningWithoutLockspaces) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, captured("wdmd_dump"));
  runner.expect({"sanlock"}, captured("sanlock_status_empty"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_empty"));
  LockDaemons daemons(runner);
  auto st = daemons.check();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->all_running());
  EXPECT_TRUE(st->lockspaces.empty());
  EXPECT_FALSE(st->vg_started("kvmvg"));
}

TEST(LockDaemons, StartedLockspace) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, captured("wdmd_dump"));
  runner.expect({"sanlock"}, captured("sanlock_status_lvs"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_lvs"));
  LockDaemons daemons(runner);
  auto st = daemons.check();
  ASSERT_TRUE(st.ok()) << st.error().message;
  ASSERT_EQ(st->lockspaces.size(), 1u);
  EXPECT_EQ(st->lockspaces[0].name, "lvm_kvmvg");
  EXPECT_EQ(st->lockspaces[0].host_id, 1);
  EXPECT_EQ(st->lockspaces[0].path, "/dev/mapper/kvmvg-lvmlock");
  EXPECT_EQ(st->lockspaces[0].state, "started");
  EXPECT_TRUE(st->vg_started("kvmvg"));
  auto j = st->to_json();
  EXPECT_EQ(j["started_vgs"], nlohmann::json::array({"kvmvg"}));
  EXPECT_EQ(j["sanlock"], true);
}

TEST(LockDaemons, LockspaceStillJoiningIsNotStarted) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, captured("wdmd_dump"));
  runner.expect({"sanlock"}, captured("sanlock_status_adding"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_adding"));
  LockDaemons daemons(runner);
  auto st = daemons.check();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->lockspaces.size(), 1u);
  EXPECT_EQ(st->lockspaces[0].state, "adding");
  EXPECT_EQ(st->lockspaces[0].host_id, 2);
  EXPECT_FALSE(st->vg_started("kvmvg"));
}

TEST(LockDaemons, HungDaemonIsNotRunningButRunnerFailureIsAnError) {
  FakeProcessRunner runner;
  runner.expect({"wdmd"}, Error(ErrorCode::timeout, "wdmd did not finish"));
  runner.expect({"sanlock"}, captured("sanlock_status_empty"));
  runner.expect({"lvmlockctl"}, captured("lvmlockctl_info_empty"));
  LockDaemons daemons(runner);
  auto st = daemons.check();
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->wdmd);
  EXPECT_TRUE(st->sanlock);

  FakeProcessRunner broken;
  broken.expect({"wdmd"}, Error(ErrorCode::internal, "fork failed"));
  LockDaemons d2(broken);
  EXPECT_EQ(d2.check().error().code, ErrorCode::internal);
}

TEST(LockDaemons, MalformedSanlockStatus) {
  EXPECT_FALSE(parse_sanlock_status("s nonsense\n").ok());
  EXPECT_FALSE(parse_sanlock_status("s lvm_x:abc:/dev/x:0\n").ok());
  auto ok = parse_sanlock_status("daemon x\np -1 helper\n");
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->empty());
}

}  // namespace
}  // namespace kvmfleet::storage
