#include "kvmfleet/storage/iscsi_initiator.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "captured_output.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"

namespace kvmfleet::storage {
namespace {

using testing::captured;
using Argv = std::vector<std::string>;

constexpr const char* kIqn = "iqn.2026-01.io.kvmfleet.klab:shared";
constexpr const char* kChapIqn = "iqn.2026-01.io.kvmfleet.klab:chap";
constexpr const char* kPortal = "10.77.0.1:3260";

TEST(IscsiInitiator, DiscoveryRunsSendtargetsAndParsesTargets) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm", "-m", "discovery"}, captured("iscsiadm_discovery"));
  OpenIscsiInitiator iscsi(runner);
  auto targets = iscsi.discover("10.77.0.1");
  ASSERT_TRUE(targets.ok()) << targets.error().message;
  ASSERT_EQ(runner.calls().size(), 1u);
  EXPECT_EQ(runner.calls()[0],
            (Argv{"iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", kPortal}));
  ASSERT_EQ(targets->size(), 1u);
  EXPECT_EQ((*targets)[0].iqn, kIqn);
  EXPECT_EQ((*targets)[0].portal, kPortal);
  EXPECT_EQ((*targets)[0].tpgt, 1);
}

TEST(IscsiInitiator, UnreachablePortalIsUnavailable) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_discovery_bad"));
  OpenIscsiInitiator iscsi(runner);
  auto targets = iscsi.discover("10.77.0.99:3260");
  ASSERT_FALSE(targets.ok());
  EXPECT_EQ(targets.error().code, ErrorCode::unavailable);
  EXPECT_NE(targets.error().message.find("SendTargets"), std::string::npos)
      << targets.error().message;
  EXPECT_EQ(targets.error().details["exit_code"], 11);
}

TEST(IscsiInitiator, LoginWithoutChap) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_login"));
  OpenIscsiInitiator iscsi(runner);
  ASSERT_TRUE(iscsi.login(kIqn, kPortal, std::nullopt).ok());
  ASSERT_EQ(runner.calls().size(), 1u);
  EXPECT_EQ(runner.calls()[0],
            (Argv{"iscsiadm", "-m", "node", "-T", kIqn, "-p", kPortal, "--login"}));
}

TEST(IscsiInitiator, LoginTwiceIsASuccess) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_login_again"));  // exit 15
  OpenIscsiInitiator iscsi(runner);
  EXPECT_TRUE(iscsi.login(kIqn, kPortal, std::nullopt).ok());
}

TEST(IscsiInitiator, LoginToUnknownTargetIsNotFound) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_login_unknown"));  // exit 21
  OpenIscsiInitiator iscsi(runner);
  auto s = iscsi.login("iqn.2026-01.io.kvmfleet.klab:nope", kPortal, std::nullopt);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::not_found);
}

TEST(IscsiInitiator, ChapSetsAuthThenLogsInAndNeverShowsTheSecret) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm", "-m", "node", "-T", kChapIqn, "-p", kPortal, "--login"},
                captured("iscsiadm_login_chap"));
  OpenIscsiInitiator iscsi(runner);
  ASSERT_TRUE(iscsi.login(kChapIqn, kPortal, ChapCredentials{"kvmuser", "secretpass12"}).ok());
  const Argv node{"iscsiadm", "-m", "node", "-T", kChapIqn, "-p", kPortal, "-o", "update", "-n"};
  auto with = [&](Argv tail) {
    Argv a = node;
    a.insert(a.end(), tail.begin(), tail.end());
    return a;
  };
  ASSERT_EQ(runner.calls().size(), 4u);
  EXPECT_EQ(runner.calls()[0], with({"node.session.auth.authmethod", "-v", "CHAP"}));
  EXPECT_EQ(runner.calls()[1], with({"node.session.auth.username", "-v", "kvmuser"}));
  EXPECT_EQ(runner.calls()[2], with({"node.session.auth.password", "-v", "secretpass12"}));
  EXPECT_EQ(runner.calls()[3],
            (Argv{"iscsiadm", "-m", "node", "-T", kChapIqn, "-p", kPortal, "--login"}));
}

TEST(IscsiInitiator, WrongChapIsInvalidArgumentAndMasked) {
  FakeProcessRunner runner;
  auto failed = captured("iscsiadm_login_badchap");  // exit 24
  // Should iscsiadm ever echo the secret, it must not reach the error.
  failed.err += "iscsiadm: debug: password wrongpass123 rejected\n";
  runner.expect({"iscsiadm", "-m", "node", "-T", kChapIqn, "-p", kPortal, "--login"}, failed);
  OpenIscsiInitiator iscsi(runner);
  auto s = iscsi.login(kChapIqn, kPortal, ChapCredentials{"kvmuser", "wrongpass123"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(s.error().message.find("CHAP"), std::string::npos) << s.error().message;
  const std::string all = s.error().message + s.error().details.dump();
  EXPECT_EQ(all.find("wrongpass123"), std::string::npos) << all;
}

TEST(IscsiInitiator, MissingChapIsInvalidArgument) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_login_noauth"));
  OpenIscsiInitiator iscsi(runner);
  auto s = iscsi.login(kChapIqn, kPortal, std::nullopt);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
}

TEST(IscsiInitiator, BadInputRunsNothing) {
  FakeProcessRunner runner;
  OpenIscsiInitiator iscsi(runner);
  EXPECT_EQ(iscsi.discover("10.77.0.1:99999").error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.discover("-o update").error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.login("iqn.bad", kPortal, std::nullopt).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.login(kIqn, "10.77.0.1;reboot", std::nullopt).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.login(kIqn, kPortal, ChapCredentials{"", "x"}).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.login(kIqn, kPortal, ChapCredentials{"u", "with space"}).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.logout("--all", kPortal).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(iscsi.lun_device(kIqn, kPortal, -1).error().code, ErrorCode::invalid_argument);
  EXPECT_TRUE(runner.calls().empty());
}

TEST(IscsiInitiator, LogoutAndLogoutAgain) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_logout"));
  runner.expect({"iscsiadm"}, captured("iscsiadm_logout_again"));  // exit 21: no session
  OpenIscsiInitiator iscsi(runner);
  EXPECT_TRUE(iscsi.logout(kChapIqn, kPortal).ok());
  EXPECT_TRUE(iscsi.logout(kChapIqn, kPortal).ok());
  EXPECT_EQ(runner.calls()[0],
            (Argv{"iscsiadm", "-m", "node", "-T", kChapIqn, "-p", kPortal, "--logout"}));
}

TEST(IscsiInitiator, SessionsParsedFromTheDetailedListing) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_p3_two"));
  OpenIscsiInitiator iscsi(runner);
  auto sessions = iscsi.sessions();
  ASSERT_TRUE(sessions.ok()) << sessions.error().message;
  EXPECT_EQ(runner.calls()[0], (Argv{"iscsiadm", "-m", "session", "-P", "3"}));
  ASSERT_EQ(sessions->size(), 2u);
  const auto& a = (*sessions)[0];
  EXPECT_EQ(a.target, kIqn);
  EXPECT_EQ(a.portal, kPortal);
  EXPECT_EQ(a.sid, 1);
  EXPECT_EQ(a.initiator_name, "iqn.2026-01.io.kvmfleet.klab:node1");
  EXPECT_TRUE(a.logged_in());
  EXPECT_EQ(a.connection_state, "LOGGED IN");
  ASSERT_EQ(a.luns.size(), 2u);
  EXPECT_EQ(a.luns[0].lun, 0);
  EXPECT_EQ(a.luns[0].disk, "");
  EXPECT_EQ(a.luns[1].lun, 1);
  EXPECT_EQ(a.luns[1].disk, "/dev/sda");
  EXPECT_EQ(a.luns[1].state, "running");
  const auto& b = (*sessions)[1];
  EXPECT_EQ(b.target, kChapIqn);
  EXPECT_EQ(b.sid, 4);
  EXPECT_EQ(b.luns.at(1).disk, "/dev/sdb");
}

TEST(IscsiInitiator, NoSessionsIsAnEmptyList) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_none"));  // exit 21
  OpenIscsiInitiator iscsi(runner);
  auto sessions = iscsi.sessions();
  ASSERT_TRUE(sessions.ok());
  EXPECT_TRUE(sessions->empty());
}

TEST(IscsiInitiator, HostileSessionListingIsAnInternalError) {
  const std::string good = captured("iscsiadm_session_p3").out;
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  for (const std::string& text :
       {replace("sda", "../../etc/passwd"), replace("SID: 1", "SID: x"),
        replace("Lun: 1", "Lun: -4"), replace("Target: iqn.2026-01", "Target: $(id)"),
        replace("Current Portal: 10.77.0.1:3260,1", "Current Portal: ;,1"),
        std::string("Target: iqn.2026-01.io.kvmfleet.klab:x (non-flash)\n")}) {
    auto r = parse_session_listing(text);
    ASSERT_FALSE(r.ok()) << text.substr(0, 300);
    EXPECT_EQ(r.error().code, ErrorCode::internal);
  }
  auto garbage = parse_session_listing(std::string("\0\xff\xfe junk\n", 9));
  ASSERT_TRUE(garbage.ok());  // no Target line: no sessions
  EXPECT_TRUE(garbage->empty());
  EXPECT_FALSE(parse_sendtargets("garbage").ok());
  EXPECT_FALSE(parse_sendtargets("10.77.0.1:3260,1 not-an-iqn\n").ok());
}

TEST(IscsiInitiator, LunDeviceFallsBackToTheAttachedDisk) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_p3"));
  runner.expect({"readlink"}, FakeProcessRunner::exited(1));  // no udev, no by-path link
  OpenIscsiInitiator iscsi(runner);
  auto dev = iscsi.lun_device(kIqn, "10.77.0.1", 1);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  EXPECT_EQ(*dev, "/dev/sda");
  EXPECT_EQ(runner.calls()[1],
            (Argv{"readlink", "-e",
                  "/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-" + std::string(kIqn) + "-lun-1"}));
}

TEST(IscsiInitiator, LunDevicePrefersTheByPathLink) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_p3"));
  runner.expect({"readlink"}, FakeProcessRunner::exited(0, "/dev/sda\n"));
  OpenIscsiInitiator iscsi(runner);
  auto dev = iscsi.lun_device(kIqn, kPortal, 1);
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ(*dev, iscsi_by_path(kIqn, kPortal, 1));
}

TEST(IscsiInitiator, LunDeviceOfMissingSessionOrLun) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_p3"));
  runner.expect({"iscsiadm"}, captured("iscsiadm_session_p3"));
  OpenIscsiInitiator iscsi(runner);
  EXPECT_EQ(iscsi.lun_device(kChapIqn, kPortal, 1).error().code, ErrorCode::not_found);
  EXPECT_EQ(iscsi.lun_device(kIqn, kPortal, 0).error().code, ErrorCode::not_found);  // no disk
}

TEST(IscsiInitiator, RescanAndItsArgv) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, captured("iscsiadm_rescan"));
  OpenIscsiInitiator iscsi(runner);
  EXPECT_TRUE(iscsi.rescan().ok());
  EXPECT_EQ(runner.calls()[0], (Argv{"iscsiadm", "-m", "session", "-R"}));
}

TEST(IscsiInitiator, ExitCodeMapping) {
  EXPECT_EQ(iscsiadm_error_code(15), ErrorCode::conflict);
  EXPECT_EQ(iscsiadm_error_code(21), ErrorCode::not_found);
  EXPECT_EQ(iscsiadm_error_code(24), ErrorCode::invalid_argument);
  EXPECT_EQ(iscsiadm_error_code(8), ErrorCode::timeout);
  EXPECT_EQ(iscsiadm_error_code(20), ErrorCode::unavailable);
  EXPECT_EQ(iscsiadm_error_code(11), ErrorCode::unavailable);
  EXPECT_EQ(iscsiadm_error_code(1), ErrorCode::internal);
  EXPECT_EQ(iscsiadm_error_code(255), ErrorCode::internal);
}

TEST(IscsiInitiator, RunnerTimeoutStaysATimeout) {
  FakeProcessRunner runner;
  runner.expect({"iscsiadm"}, Error(ErrorCode::timeout, "iscsiadm did not finish"));
  OpenIscsiInitiator iscsi(runner);
  EXPECT_EQ(iscsi.discover(kPortal).error().code, ErrorCode::timeout);
}

TEST(FcLuns, ListedByWwidFromTheByIdDirectory) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("kvmfleet-fc-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "dev");
  fs::create_directories(dir / "by-id");
  for (const char* d : {"sdc", "sdd"}) std::ofstream(dir / "dev" / d) << "";
  fs::create_symlink(dir / "dev/sdc", dir / "by-id/scsi-36001405aaaabbbbccccdddd00000001");
  fs::create_symlink(dir / "dev/sdc", dir / "by-id/wwn-0x6001405aaaabbbbccccdddd00000001");
  fs::create_symlink(dir / "dev/sdd", dir / "by-id/wwn-0x5000c500a1b2c3d4");
  fs::create_symlink(dir / "dev/sdc", dir / "by-id/scsi-36001405aaaabbbbccccdddd00000001-part1");
  fs::create_symlink(dir / "dev/sdc", dir / "by-id/ata-QEMU_HARDDISK_QM00001");
  fs::create_symlink(dir / "dev/gone", dir / "by-id/wwn-0x5000c500deadbeef");

  auto luns = list_fc_luns(dir / "by-id");
  ASSERT_TRUE(luns.ok()) << luns.error().message;
  ASSERT_EQ(luns->size(), 3u);
  EXPECT_EQ((*luns)[0].wwid, "0x5000c500a1b2c3d4");
  EXPECT_EQ((*luns)[0].device, (dir / "dev/sdd").string());
  EXPECT_EQ((*luns)[1].wwid, "0x5000c500deadbeef");
  EXPECT_EQ((*luns)[1].device, "");  // dangling
  EXPECT_EQ((*luns)[2].wwid, "36001405aaaabbbbccccdddd00000001");
  EXPECT_EQ((*luns)[2].link, (dir / "by-id/scsi-36001405aaaabbbbccccdddd00000001").string());

  auto none = list_fc_luns(dir / "missing");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvmfleet::storage
