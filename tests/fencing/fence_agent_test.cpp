// The real CommandFenceAgent over the real process runner, with small fence agents
// written by the test into a directory of its own: argv only, options on stdin, exit
// codes, timeouts, masked output.
#include "kvmfleet/fencing/fence_agent.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kvmfleet::fencing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class CommandFenceAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvmfleet-fence-agents-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An agent that copies its stdin and argv to files and exits with `exit_code`.
  void write_agent(const std::string& name, const std::string& body) {
    const auto path = dir_ / name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    fs::permissions(path, fs::perms::owner_all);
  }
  std::string read(const std::string& file) {
    std::ifstream in(dir_ / file);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path dir_;
  SystemProcessRunner processes_;
};

TEST_F(CommandFenceAgentTest, OptionsGoOnStdinWithTheActionAndNothingOnTheCommandLine) {
  write_agent(
      "fence_test",
      "cat > \"$(dirname \"$0\")/stdin\"\necho \"$#\" > \"$(dirname \"$0\")/argc\"\nexit 0\n");
  CommandFenceAgent agent(processes_, dir_.string());
  auto r = agent.run({"fence_test",
                      FenceAction::off,
                      {{"ip", "127.0.0.1"}, {"password", "pw with spaces; $(rm -rf /)"}},
                      10s});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(read("stdin"), "action=off\nip=127.0.0.1\npassword=pw with spaces; $(rm -rf /)\n");
  EXPECT_EQ(read("argc"), "0\n");
}

TEST_F(CommandFenceAgentTest, StatusExitCodesTellThePower) {
  write_agent("fence_on", "cat >/dev/null\necho 'Status: ON'\nexit 0\n");
  write_agent("fence_off", "cat >/dev/null\necho 'Status: OFF'\nexit 2\n");
  write_agent("fence_broken", "cat >/dev/null\necho 'Failed: Unable to connect' >&2\nexit 1\n");
  CommandFenceAgent agent(processes_, dir_.string());
  auto on = agent.run({"fence_on", FenceAction::status, {}, 10s});
  auto off = agent.run({"fence_off", FenceAction::status, {}, 10s});
  auto broken = agent.run({"fence_broken", FenceAction::status, {}, 10s});
  ASSERT_TRUE(on.ok() && off.ok() && broken.ok());
  EXPECT_EQ(on->status, PowerStatus::on);
  EXPECT_EQ(off->status, PowerStatus::off);
  EXPECT_EQ(off->exit_code, 2);
  EXPECT_EQ(broken->status, PowerStatus::unknown);
  EXPECT_FALSE(broken->ok());
  EXPECT_NE(broken->output_tail.find("Unable to connect"), std::string::npos);
  // An off that exits 2 is a failure, not a status.
  auto off_action = agent.run({"fence_off", FenceAction::off, {}, 10s});
  ASSERT_TRUE(off_action.ok());
  EXPECT_FALSE(off_action->ok());
  EXPECT_EQ(off_action->status, PowerStatus::unknown);
}

TEST_F(CommandFenceAgentTest, SecretsAreMaskedInTheOutputAndTheTailIsBounded) {
  write_agent("fence_chatty",
              "cat >/dev/null\ni=0\nwhile [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done\n"
              "echo 'login with s3cret failed'\nexit 1\n");
  CommandFenceAgent agent(processes_, dir_.string());
  auto r = agent.run({"fence_chatty", FenceAction::off, {{"passwd", "s3cret"}}, 10s});
  ASSERT_TRUE(r.ok());
  EXPECT_LE(r->output_tail.size(), kOutputTailBytes);
  EXPECT_EQ(r->output_tail.find("s3cret"), std::string::npos);
  EXPECT_NE(r->output_tail.find("login with *** failed"), std::string::npos);
}

TEST_F(CommandFenceAgentTest, AHungAgentIsKilledAtItsTimeout) {
  write_agent("fence_hang", "cat >/dev/null\necho started\nexec sleep 60\n");
  CommandFenceAgent agent(processes_, dir_.string());
  auto r = agent.run({"fence_hang", FenceAction::off, {}, 300ms});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->ok());
}

TEST_F(CommandFenceAgentTest, NamesAndOptionsAreCheckedBeforeAnythingRuns) {
  write_agent("fence_test", "touch \"$(dirname \"$0\")/ran\"\nexit 0\n");
  CommandFenceAgent agent(processes_, dir_.string());
  for (const std::string bad : {"fence_", "fence_../x", "../fence_test", "Fence_test",
                                "fence_test;id", "ipmitool", "fence_Test", "fence_a b"}) {
    auto r = agent.run({bad, FenceAction::status, {}, 10s});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << bad;
  }
  const std::vector<std::pair<std::string, std::string>> bad_options = {
      {"ip", "1.2.3.4\naction=on"},
      {"ip", std::string("a\0b", 3)},
      {"action", "on"},
      {"a=b", "x"},
      {"", "x"},
      {"Ip", "x"},
      {"ip", std::string(1025, 'x')},
      {std::string(65, 'k'), "x"}};
  for (const auto& [k, v] : bad_options) {
    auto r = agent.run({"fence_test", FenceAction::status, {{k, v}}, 10s});
    ASSERT_FALSE(r.ok()) << k;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << k;
  }
  EXPECT_FALSE(fs::exists(dir_ / "ran"));
  auto missing = agent.run({"fence_nothere", FenceAction::status, {}, 10s});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::unavailable);
  EXPECT_EQ(agent.check_available("fence_nothere").error().code, ErrorCode::not_found);
  EXPECT_TRUE(agent.check_available("fence_test").ok());
}

TEST(FenceOptions, SecretOptionsAreKnown) {
  for (const char* k : {"password", "passwd", "password_script", "passwd_script",
                        "snmp_priv_passwd", "community", "ssl_secret", "api_token"})
    EXPECT_TRUE(is_secret_option(k)) << k;
  for (const char* k : {"ip", "username", "login", "ipport", "lanplus", "plug", "cipher"})
    EXPECT_FALSE(is_secret_option(k)) << k;
}

}  // namespace
}  // namespace kvmfleet::fencing
