// The metadata writer on a real NFS share, in one boot of two guests: guest 1 serves a
// tmpfs over NFSv4.2, guest 2 mounts it and runs a writer that is killed with SIGKILL
// mid-write, several times; `kvmfleet-controller --import` then finds only complete
// records, on the client and on the server. Then the server's nfsd is stopped under a
// running writer: its health turns unhealthy with lag, and it recovers when nfsd is back.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kernel_lab.hpp"
#include "kernel_lab_test_support.hpp"

namespace kvmfleet::klab {
namespace {

using namespace std::chrono_literals;
using testing_support::report_time;
using testing_support::runs_ok;
using steady = std::chrono::steady_clock;

constexpr const char* kExport = "/srv/klab-meta";
constexpr const char* kMount = "/mnt/klab-meta";

class KernelLabMetadata : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LabOptions options;
    options.name = "ctest-metadata";
    options.guests = 2;
    auto lab = KernelLab::up(options);
    if (!lab.ok()) {
      setup_error_ = std::string(to_string(lab.error().code)) + ": " + lab.error().message;
      return;
    }
    lab_ = std::move(*lab);
    report_time("boot_2_guests_ms", lab_->boot_time());
  }
  static void TearDownTestSuite() {
    if (lab_) {
      auto s = lab_->down();
      if (!s.ok()) std::printf("[  ERROR   ] teardown: %s\n", s.error().message.c_str());
    }
    lab_.reset();
  }
  void SetUp() override { ASSERT_TRUE(lab_) << setup_error_; }
  KernelLab& lab() { return *lab_; }

  // Polls a guest command's stdout until `pred` holds.
  bool eventually_out(int guest, const std::vector<std::string>& argv,
                      const std::function<bool(const std::string&)>& pred,
                      std::chrono::seconds bound) {
    const auto end = steady::now() + bound;
    while (steady::now() < end) {
      auto r = testing_support::run_in(lab(), guest, argv, 60s);
      if (r.ok() && r->exit_code == 0 && pred(r->out)) return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }
  int json_count(const std::string& ls) {
    int n = 0;
    for (std::size_t p = 0; (p = ls.find(".json", p)) != std::string::npos; ++p) ++n;
    return n;
  }
  // The writer's last printed health line.
  nlohmann::json last_health(const std::string& log) {
    auto r = testing_support::run_in(lab(), 2, {"tail", "-n", "1", log}, 60s);
    if (!r.ok() || r->exit_code != 0) return nullptr;
    auto j = nlohmann::json::parse(r->out, nullptr, false);
    return j.is_discarded() ? nullptr : j;
  }

  // Guests run commands to completion only, so a background writer is started by a
  // shell that forks it (its arguments passed as positional parameters, not pasted).
  std::optional<int> start_writer(int guest, const std::vector<std::string>& args,
                                  const std::string& log) {
    std::vector<std::string> argv{"sh", "-c",
                                  "log=$1; shift; setsid \"$@\" >\"$log\" 2>&1 </dev/null & "
                                  "echo $!",
                                  "sh", log};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessOutput out;
    if (!runs_ok(lab(), guest, argv, &out)) return std::nullopt;
    try {
      return std::stoi(out.out);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  // SIGKILL, then wait until the process is gone (or a zombie nobody reaps).
  ::testing::AssertionResult kill_writer(int guest, int pid) {
    const std::string p = std::to_string(pid);
    if (auto r = runs_ok(lab(), guest, {"kill", "-9", p}); !r) return r;
    return runs_ok(lab(), guest,
                   {"sh", "-c",
                    "for i in $(seq 600); do [ -e /proc/$1 ] || exit 0; "
                    "grep -q '^State:.*Z' /proc/$1/status && exit 0; sleep 0.1; done; exit 1",
                    "sh", p});
  }

  static inline std::unique_ptr<KernelLab> lab_;
  static inline std::string setup_error_;
};

TEST_F(KernelLabMetadata, WriterOnNfsSurvivesKillNineAndHangs) {
  // The guest sees the machine's root, but with its own tmpfs over /tmp and /run.
  ASSERT_TRUE(runs_ok(lab(), 2, {"test", "-x", KVMFLEET_CRASH_WRITER}))
      << KVMFLEET_CRASH_WRITER
      << " is not visible in the guest: a build under /tmp or /run is hidden by the guest's "
         "own tmpfs there; build elsewhere";
  const std::string server = lab().guest(1).address;
  ASSERT_TRUE(runs_ok(lab(), 1, {"modprobe", "-a", "nfsd", "nfs"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"mkdir", "-p", kExport}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"mount", "-t", "tmpfs", "klab-meta", kExport}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd"}));
  ASSERT_TRUE(runs_ok(lab(), 1,
                      {"exportfs", "-o", "rw,no_root_squash,fsid=0,no_subtree_check",
                       std::string(KernelLab::kGuestPrefix) + "0/24:" + kExport}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpcbind", "-w"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpc.mountd"}));
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpc.nfsd", "--grace-time", "10", "--lease-time", "10", "4"}));
  ASSERT_TRUE(runs_ok(lab(), 2, {"modprobe", "nfs"}));
  ASSERT_TRUE(runs_ok(lab(), 2, {"mkdir", "-p", kMount}));
  ASSERT_TRUE(runs_ok(lab(), 2, {"mount", "-t", "nfs", "-o", "vers=4.2", server + ":/", kMount},
                      nullptr, 300s));

  // kill -9 at a different moment each round.
  for (int round = 0; round < 3; ++round) {
    // From an empty directory, so the records waited for are this round's own.
    ASSERT_TRUE(
        runs_ok(lab(), 2, {"sh", "-c", "rm -f \"$1\"/* \"$1\"/.kvmfleet-tmp-*", "sh", kMount}));
    const auto t = steady::now();
    auto pid = start_writer(2, {KVMFLEET_CRASH_WRITER, kMount}, "/tmp/klab-meta-crash.log");
    ASSERT_TRUE(pid.has_value());
    ASSERT_TRUE(eventually_out(
        2, {"ls", kMount}, [&](const std::string& o) { return json_count(o) == 3; }, 300s));
    report_time("nfs_first_records_ms", steady::now() - t);
    std::this_thread::sleep_for(std::chrono::milliseconds(500 + 1500 * round));
    ASSERT_TRUE(kill_writer(2, *pid));

    ProcessOutput out;
    const std::string db = "/tmp/klab-meta-" + std::to_string(round) + ".db";
    ASSERT_TRUE(runs_ok(lab(), 2, {KVMFLEET_CONTROLLER_BIN, "--import", kMount, "--database", db},
                        &out, 300s));
    EXPECT_NE(out.out.find("3 imported, 0 unchanged, 0 refused"), std::string::npos) << out.out;
    std::printf("[   INFO   ] round %d client import:\n%s", round, out.out.c_str());
  }
  // The server's own view of the same files.
  ProcessOutput out;
  ASSERT_TRUE(runs_ok(
      lab(), 1,
      {KVMFLEET_CONTROLLER_BIN, "--import", kExport, "--database", "/tmp/klab-meta-server.db"},
      &out, 300s));
  EXPECT_NE(out.out.find("3 imported, 0 unchanged, 0 refused"), std::string::npos) << out.out;

  // A hung share: nfsd stops under a running writer (a hard mount waits forever).
  const std::string log = "/tmp/klab-meta-writer.log";
  auto pid = start_writer(2, {KVMFLEET_CRASH_WRITER, kMount, "--health"}, log);
  ASSERT_TRUE(pid.has_value());
  auto healthy_and_writing = [&](std::uint64_t above) {
    const auto end = steady::now() + 300s;
    while (steady::now() < end) {
      auto h = last_health(log);
      if (h.is_object() && h["healthy"] == true && h["writes_total"].get<std::uint64_t>() > above)
        return h["writes_total"].get<std::uint64_t>();
      std::this_thread::sleep_for(200ms);
    }
    return std::uint64_t{0};
  };
  ASSERT_GT(healthy_and_writing(0), 0u);
  const auto hang = steady::now();
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpc.nfsd", "0"}));
  nlohmann::json h;
  const auto end = steady::now() + 120s;
  while (steady::now() < end) {
    h = last_health(log);
    if (h.is_object() && h["healthy"] == false && h["lag_seconds"].get<double>() >= 2.0) break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(h.is_object()) << "no health line";
  EXPECT_EQ(h["healthy"], false) << h.dump();
  EXPECT_GE(h["lag_seconds"].get<double>(), 2.0) << h.dump();
  EXPECT_NE(h["last_error"].get<std::string>().find("has not finished"), std::string::npos)
      << h.dump();
  std::printf("[   INFO   ] hung share: %s\n", h.dump().c_str());
  const auto writes_when_hung = h["writes_total"].get<std::uint64_t>();
  ASSERT_TRUE(runs_ok(lab(), 1, {"rpc.nfsd", "--grace-time", "10", "--lease-time", "10", "4"}));
  const auto resumed = healthy_and_writing(writes_when_hung);
  EXPECT_GT(resumed, writes_when_hung);
  report_time("nfs_hang_to_recovery_ms", steady::now() - hang);
  ASSERT_TRUE(kill_writer(2, *pid));
  ASSERT_TRUE(runs_ok(
      lab(), 2,
      {KVMFLEET_CONTROLLER_BIN, "--import", kMount, "--database", "/tmp/klab-meta-after-hang.db"},
      &out, 300s));
  EXPECT_NE(out.out.find("3 imported, 0 unchanged, 0 refused"), std::string::npos) << out.out;
  ASSERT_TRUE(runs_ok(lab(), 2, {"umount", "-f", kMount}, nullptr, 120s));
}

}  // namespace
}  // namespace kvmfleet::klab
