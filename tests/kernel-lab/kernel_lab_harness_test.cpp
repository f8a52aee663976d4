// The kernel lab's own machinery, against a real one-guest lab: the command channel
// (argv, exit status, streams, stdin, timeouts), each guest's identity and network,
// and teardown by the journal, also of a lab whose maker crashed.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "kernel_lab.hpp"
#include "kernel_lab_test_support.hpp"

namespace kvmfleet::klab {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing_support::report_time;
using testing_support::runs_and_fails;
using testing_support::runs_ok;
using steady = std::chrono::steady_clock;

constexpr const char* kLabName = "ctest-harness";

bool netns_exists(const std::string& name) {
  return fs::exists(fs::path("/run/netns") / name);
}

class KernelLabHarness : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_start_ = steady::now();
    LabOptions options;
    options.name = kLabName;
    options.guests = 1;
    auto lab = KernelLab::up(options);
    if (!lab.ok()) {
      setup_error_ = std::string(to_string(lab.error().code)) + ": " + lab.error().message;
      return;
    }
    lab_ = std::move(*lab);
    report_time("boot_1_guest_ms", lab_->boot_time());
  }

  static void TearDownTestSuite() {
    lab_.reset();  // tears down whatever Z_DownRemovesEverything left
    report_time("whole_suite_ms", steady::now() - suite_start_);
  }

  void SetUp() override { ASSERT_TRUE(lab_ != nullptr) << "lab did not come up: " << setup_error_; }

  KernelLab& lab() { return *lab_; }

  static std::unique_ptr<KernelLab> lab_;
  static std::string setup_error_;
  static steady::time_point suite_start_;
};

std::unique_ptr<KernelLab> KernelLabHarness::lab_;
std::string KernelLabHarness::setup_error_;
steady::time_point KernelLabHarness::suite_start_;

TEST_F(KernelLabHarness, ExecPassesArgvLiterally) {
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1, {"printf", "[%s]", "a b", "$HOME", "'q'", "*", "", "x\ny"}, &out));
  EXPECT_EQ(out.out, "[a b][$HOME]['q'][*][][x\ny]");
}

TEST_F(KernelLabHarness, ExitStatusAndStreams) {
  ProcessOutput out;
  ASSERT_TRUE(runs_and_fails(lab(), 1, {"sh", "-c", "echo to-out; echo to-err >&2; exit 7"}, &out));
  EXPECT_EQ(out.exit_code, 7);
  EXPECT_EQ(out.out, "to-out\n");
  EXPECT_EQ(out.err, "to-err\n");
  auto missing = testing_support::run_in(lab(), 1, {"no-such-program-in-the-guest"});
  ASSERT_TRUE(missing.ok()) << missing.error().message;
  EXPECT_EQ(missing->exit_code, 127);
}

TEST_F(KernelLabHarness, StdinReachesProgram) {
  std::string input("binary\0input\nwith a NUL", 23);
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1, {"cat"}, &out, 60s, input));
  EXPECT_TRUE(out.out == input);
}

TEST_F(KernelLabHarness, EnvAndWorkingDirectory) {
  RunOptions o;
  o.env = {{"KLAB_PROBE", "it works"}};
  o.working_dir = "/tmp";
  auto r = lab().exec(1, {"sh", "-c", "echo \"$KLAB_PROBE\"; pwd"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_EQ(r->out, "it works\n/tmp\n");
}

TEST_F(KernelLabHarness, TimeoutKillsCommandAndAgentGoesOn) {
  RunOptions o;
  o.timeout = 2s;
  // The child of sh is in the same process group, so it goes too.
  auto r = lab().exec(1, {"sh", "-c", "sleep 300 & wait"}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout) << r.error().message;
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1, {"echo", "still here"}, &out));
  EXPECT_EQ(out.out, "still here\n");
  ASSERT_TRUE(runs_and_fails(lab(), 1, {"pgrep", "-x", "-f", "sleep 300"}, &out))
      << "the sleep survived: " << out.out;
}

TEST_F(KernelLabHarness, GuestHasItsOwnIdentity) {
  const auto& g = lab().guest(1);
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1, {"hostname"}, &out));
  EXPECT_EQ(out.out, g.hostname + "\n");
  ASSERT_TRUE(runs_ok(lab(), 1, {"uname", "-r"}, &out));
  EXPECT_EQ(out.out, lab().kernel_version() + "\n");
  utsname host{};
  ::uname(&host);
  EXPECT_NE(out.out, std::string(host.release) + "\n") << "the guest runs this machine's kernel";
  ASSERT_TRUE(runs_ok(lab(), 1, {"lvmconfig", "local/host_id"}, &out));
  EXPECT_EQ(out.out, "host_id=" + std::to_string(g.host_id) + "\n");
  ASSERT_TRUE(runs_ok(lab(), 1, {"cat", "/etc/iscsi/initiatorname.iscsi"}, &out));
  EXPECT_EQ(out.out, "InitiatorName=" + g.iqn + "\n");
  ASSERT_TRUE(runs_ok(lab(), 1, {"ip", "-o", "-4", "addr", "show"}, &out));
  EXPECT_NE(out.out.find(g.address + "/24"), std::string::npos) << out.out;
  // The guest sees this machine's files (root over 9p) but may not change them.
  ASSERT_TRUE(runs_ok(lab(), 1, {"test", "-f", (lab().state_dir() / "journal").string()}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"touch", "/klab-overlay-probe"}));
  EXPECT_FALSE(fs::exists("/klab-overlay-probe")) << "a guest's write reached this machine's root";
}

TEST_F(KernelLabHarness, GuestReachesTgtdOnTheLabNetworkOnly) {
  ASSERT_TRUE(runs_ok(
      lab(), 1,
      {"bash", "-c", std::string("exec 3<>/dev/tcp/") + KernelLab::kBridgeAddress + "/3260"}));
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(lab(), 1, {"ip", "route", "show", "default"}, &out));
  EXPECT_EQ(out.out, "") << "a guest must have no route out of the lab network";
}

TEST_F(KernelLabHarness, SecondUpOfALiveLabIsRefused) {
  LabOptions options;
  options.name = kLabName;
  options.guests = 1;
  auto second = KernelLab::up(options);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::conflict) << second.error().message;
  ASSERT_TRUE(runs_ok(lab(), 1, {"true"})) << "the refused up() disturbed the running lab";
}

// A process makes a lab and dies without tearing it down; the next cleanup finds
// its owner gone and removes exactly what the journal lists.
TEST_F(KernelLabHarness, StaleLabOfACrashedMakerIsTornDown) {
  const std::string name = "ctest-stale";
  const fs::path root = LabOptions{}.state_root;
  // The crashed maker's qemu and tgtd become our children rather than init's, so
  // that the cleanup's liveness checks reap them instead of leaving zombies.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  std::fflush(nullptr);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    LabOptions options;
    options.name = name;
    options.guests = 1;
    auto lab = KernelLab::up(options);
    if (!lab.ok()) std::fprintf(stderr, "child: %s\n", lab.error().message.c_str());
    // A crash: no destructor, no down().
    ::_exit(lab.ok() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child could not make its lab";

  auto records = LabJournal(root / name / "journal").read();
  ASSERT_TRUE(records.ok()) << records.error().message;
  std::vector<ProcessId> processes;
  for (const auto& r : *records) {
    if (r.kind == JournalRecord::Kind::guest || r.kind == JournalRecord::Kind::tgtd)
      processes.push_back(r.process);
  }
  ASSERT_EQ(processes.size(), 2u) << "expected one qemu and one tgtd in the journal";
  for (const auto& p : processes)
    EXPECT_TRUE(process_alive(p)) << "pid " << p.pid << " should outlive its maker";
  EXPECT_TRUE(netns_exists("kvmfleet-klab-" + name));

  auto s = KernelLab::cleanup_stale(root);
  ASSERT_TRUE(s.ok()) << s.error().message;
  for (const auto& p : processes)
    EXPECT_FALSE(process_alive(p)) << "pid " << p.pid << " survived the cleanup";
  EXPECT_FALSE(netns_exists("kvmfleet-klab-" + name));
  EXPECT_FALSE(fs::exists(root / name));
  ASSERT_TRUE(runs_ok(lab(), 1, {"true"})) << "cleaning the stale lab disturbed the live one";
}

TEST_F(KernelLabHarness, Z_DownRemovesEverything) {
  auto records = LabJournal(lab().state_dir() / "journal").read();
  ASSERT_TRUE(records.ok()) << records.error().message;
  // Held open, the console log stays readable after down() removes it.
  std::ifstream console(lab().guest(1).console_log, std::ios::binary);
  ASSERT_TRUE(console.good());
  const auto t = steady::now();
  auto s = lab().down();
  report_time("down_ms", steady::now() - t);
  ASSERT_TRUE(s.ok()) << s.error().message;
  for (const auto& r : *records) {
    if (r.kind == JournalRecord::Kind::guest || r.kind == JournalRecord::Kind::tgtd ||
        r.kind == JournalRecord::Kind::process) {
      EXPECT_FALSE(process_alive(r.process)) << "pid " << r.process.pid << " survived down()";
    }
  }
  EXPECT_FALSE(netns_exists(lab().netns()));
  EXPECT_FALSE(fs::exists(lab().state_dir()));
  std::string text((std::istreambuf_iterator<char>(console)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("klab-agent: poweroff requested"), std::string::npos)
      << "the guest was not asked to power off";
  EXPECT_NE(text.find("reboot: Power down"), std::string::npos)
      << "the guest did not power itself off:\n"
      << text;
}

}  // namespace
}  // namespace kvmfleet::klab
