#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kvmfleet/common/process.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"

namespace kvmfleet {
namespace {

using namespace std::chrono_literals;

// The test process starts no other children, so "no child left" means the runner
// killed and reaped everything it started.
bool has_children() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

TEST(SystemProcessRunner, TrueExitsZero) {
  SystemProcessRunner runner;
  auto r = runner.run({"true"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->term_signal, 0);
  EXPECT_TRUE(r->success());
}

TEST(SystemProcessRunner, FalseIsAValueNotAnError) {
  SystemProcessRunner runner;
  auto r = runner.run({"false"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_FALSE(r->success());
}

TEST(SystemProcessRunner, CapturesStdoutAndStderrSeparately) {
  SystemProcessRunner runner;
  auto out = runner.run({"echo", "hello"});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->out, "hello\n");
  EXPECT_EQ(out->err, "");

  auto err = runner.run({"ls", "/nonexistent-kvmfleet-path"});
  ASSERT_TRUE(err.ok());
  EXPECT_NE(err->exit_code, 0);
  EXPECT_EQ(err->out, "");
  EXPECT_NE(err->err.find("nonexistent-kvmfleet-path"), std::string::npos);
}

TEST(SystemProcessRunner, ArgumentsReachTheProgramLiterally) {
  SystemProcessRunner runner;
  const std::vector<std::string> tricky = {"a b",   "it's", "\"quoted\"", "x;rm -rf /",
                                           "$HOME", "`id`", "*",          ""};
  std::vector<std::string> argv = {"printf", "[%s]\\n"};
  argv.insert(argv.end(), tricky.begin(), tricky.end());
  auto r = runner.run(argv);
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string expected;
  for (const auto& t : tricky) expected += "[" + t + "]\n";
  EXPECT_EQ(r->out, expected);
}

TEST(SystemProcessRunner, MissingProgramIsUnavailable) {
  SystemProcessRunner runner;
  auto r = runner.run({"kvmfleet-no-such-program"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  auto s = runner.spawn({"/nonexistent/kvmfleet-no-such-program"}, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::unavailable);
}

TEST(SystemProcessRunner, EmptyArgvIsInvalid) {
  SystemProcessRunner runner;
  auto r = runner.run({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
}

TEST(SystemProcessRunner, TimeoutKillsTheChild) {
  SystemProcessRunner runner;
  RunOptions o;
  o.timeout = 200ms;
  auto r = runner.run({"sleep", "1000"}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout);
  EXPECT_FALSE(has_children());
}

TEST(SystemProcessRunner, TimeoutEscalatesToSigkillWhenTermIsIgnored) {
  SystemProcessRunner runner;
  RunOptions o;
  o.timeout = 200ms;
  o.kill_grace = 200ms;
  auto r = runner.run({"env", "--ignore-signal=TERM", "sleep", "1000"}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout);
  EXPECT_FALSE(has_children());
}

TEST(SystemProcessRunner, TimeoutKeepsPartialOutput) {
  SystemProcessRunner runner;
  RunOptions o;
  o.timeout = 300ms;
  o.output_limit = 64;
  auto r = runner.run({"yes", "started"}, o);  // writes until it is killed
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::timeout);
  auto partial = r.error().details.value("stdout", std::string());
  EXPECT_EQ(partial.size(), 64u);
  EXPECT_EQ(partial.rfind("started\n", 0), 0u);
  EXPECT_FALSE(has_children());
}

TEST(SystemProcessRunner, FeedsStdin) {
  SystemProcessRunner runner;
  RunOptions o;
  o.input = std::string(1 << 20, 'x') + "end";  // larger than a pipe buffer both ways
  auto r = runner.run({"cat"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->out, *o.input);
}

TEST(SystemProcessRunner, StdinIsEmptyWithoutInput) {
  SystemProcessRunner runner;
  auto r = runner.run({"cat"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out, "");
}

TEST(SystemProcessRunner, ChildThatStopsReadingStdinDoesNotKillTheCaller) {
  SystemProcessRunner runner;
  RunOptions o;
  o.input = std::string(4 << 20, 'y');
  auto r = runner.run({"head", "-c", "10"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->out, std::string(10, 'y'));
}

TEST(SystemProcessRunner, OutputIsCappedButDrained) {
  SystemProcessRunner runner;
  RunOptions o;
  o.output_limit = 1000;
  auto r = runner.run({"head", "-c", "3000000", "/dev/zero"}, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out.size(), 1000u);
  EXPECT_TRUE(r->out_truncated);
  EXPECT_FALSE(r->err_truncated);
}

TEST(SystemProcessRunner, EnvironmentAndWorkingDir) {
  SystemProcessRunner runner;
  RunOptions o;
  o.env = {{"KVMFLEET_TEST_VAR", "v a l"}, {"HOME", "/nowhere"}};
  o.working_dir = "/usr";
  auto env = runner.run({"env"}, o);
  ASSERT_TRUE(env.ok());
  EXPECT_NE(env->out.find("KVMFLEET_TEST_VAR=v a l\n"), std::string::npos);
  EXPECT_NE(env->out.find("HOME=/nowhere\n"), std::string::npos);
  auto pwd = runner.run({"pwd"}, o);
  ASSERT_TRUE(pwd.ok());
  EXPECT_EQ(pwd->out, "/usr\n");
}

TEST(SystemProcessRunner, SignalledChildReportsTheSignal) {
  SystemProcessRunner runner;
  auto pid = runner.spawn({"sleep", "1000"}, {});
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  auto still = runner.wait(*pid, 0ms);
  ASSERT_FALSE(still.ok());
  EXPECT_EQ(still.error().code, ErrorCode::timeout);
  ASSERT_TRUE(runner.kill(*pid, SIGKILL).ok());
  auto st = runner.wait(*pid, 10s);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->term_signal, SIGKILL);
  EXPECT_EQ(st->exit_code, -1);
  EXPECT_FALSE(has_children());
}

TEST(SystemProcessRunner, TerminateStopsASpawnedDaemon) {
  SystemProcessRunner runner;
  auto pid = runner.spawn({"sleep", "1000"}, {});
  ASSERT_TRUE(pid.ok());
  auto st = runner.terminate(*pid, 5s);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->term_signal, SIGTERM);
  EXPECT_FALSE(has_children());
}

TEST(SystemProcessRunner, TerminateEscalatesToSigkill) {
  SystemProcessRunner runner;
  auto pid = runner.spawn({"env", "--ignore-signal=TERM", "sleep", "1000"}, {});
  ASSERT_TRUE(pid.ok());
  // Until env has installed its disposition, SIGTERM would still end it; wait for exec.
  std::string comm;
  for (int i = 0; i < 500 && comm != "sleep\n"; ++i) {
    std::ifstream in("/proc/" + std::to_string(*pid) + "/comm");
    std::stringstream ss;
    ss << in.rdbuf();
    comm = ss.str();
    if (comm != "sleep\n") ::usleep(10000);
  }
  ASSERT_EQ(comm, "sleep\n");
  auto st = runner.terminate(*pid, 200ms);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->term_signal, SIGKILL);
  EXPECT_FALSE(has_children());
}

TEST(SystemProcessRunner, SpawnWritesOutputToFiles) {
  SystemProcessRunner runner;
  auto dir = std::filesystem::temp_directory_path() /
             ("kvmfleet-process-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SpawnOptions so;
  so.stdout_path = (dir / "out.log").string();
  so.stderr_path = (dir / "err.log").string();
  auto pid = runner.spawn({"ls", "/", "/nonexistent-kvmfleet-path"}, so);
  ASSERT_TRUE(pid.ok());
  auto st = runner.wait(*pid, 10s);
  ASSERT_TRUE(st.ok());
  EXPECT_NE(st->exit_code, 0);
  std::ifstream out(dir / "out.log");
  std::ifstream err(dir / "err.log");
  std::stringstream o;
  std::stringstream e;
  o << out.rdbuf();
  e << err.rdbuf();
  EXPECT_NE(o.str().find("usr"), std::string::npos);
  EXPECT_NE(e.str().find("nonexistent-kvmfleet-path"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(SystemProcessRunner, WaitAndKillRejectWhatIsNotOurs) {
  SystemProcessRunner runner;
  auto w = runner.wait(1, 0ms);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::not_found);
  EXPECT_EQ(runner.kill(0, SIGTERM).error().code, ErrorCode::invalid_argument);
}

TEST(RequireSuccess, NonZeroExitBecomesAnErrorNamingTheProgram) {
  SystemProcessRunner runner;
  std::vector<std::string> argv = {"ls", "/nonexistent-kvmfleet-path"};
  auto r = require_success(runner.run(argv), argv);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::internal);
  EXPECT_NE(r.error().message.find("ls failed"), std::string::npos);
  EXPECT_NE(r.error().message.find("nonexistent-kvmfleet-path"), std::string::npos);
  auto ok = require_success(runner.run({"true"}), {"true"});
  EXPECT_TRUE(ok.ok());
}

TEST(FakeProcessRunner, AnswersByLongestPrefixAndRecordsCalls) {
  FakeProcessRunner fake;
  fake.expect({"lvs"}, FakeProcessRunner::exited(0, "short"));
  fake.expect({"lvs", "--reportformat", "json"}, FakeProcessRunner::exited(0, "{}"));
  fake.expect({"vgs"}, Error(ErrorCode::unavailable, "no lvm"));
  ProcessRunner& runner = fake;
  EXPECT_EQ(runner.run({"lvs", "--reportformat", "json", "vg0"})->out, "{}");
  EXPECT_EQ(runner.run({"lvs", "vg0"})->out, "short");
  EXPECT_EQ(runner.run({"vgs"}).error().code, ErrorCode::unavailable);
  EXPECT_EQ(runner.run({"pvs"})->exit_code, 0);  // unscripted: default answer
  ASSERT_EQ(fake.calls().size(), 4u);
  EXPECT_EQ(fake.calls()[1], (std::vector<std::string>{"lvs", "vg0"}));
}

}  // namespace
}  // namespace kvmfleet
