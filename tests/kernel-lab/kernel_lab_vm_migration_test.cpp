// Shared storage end to end, through kvmfleet's own daemons, in ONE boot of two
// kernel-lab guests: a kvmfleet-controller runs on this machine in the lab's network
// namespace (listening on the bridge), and each guest runs what a host of the
// cluster runs: iscsid, wdmd, sanlock, lvmlockd, libvirtd and a kvmfleet-agent with
// shared storage configured. Through the API only, the test makes a storage pool on
// the lab's iSCSI LUN (a shared VG with lvmlockd + sanlock), a volume (an LV), a VM
// pinned to node1 whose disk is that volume, starts it, live-migrates it to node2,
// grows the volume while the VM runs there, snapshots the volume there (a live
// migration is then refused), stops the VM, moves it cold back to node1, reverts
// the volume to the snapshot, and deletes the VM and the volume. After each step, the lvm tools,
// sanlock and virsh inside both guests say whether it really happened: the LV is active exclusively
// on the VM's host only, the other host's `lvchange -aey` is refused (the split-brain guard), the
// domain runs where the API says.
//
// The VM is a nested QEMU under TCG (domain type "qemu", 64 MiB, no OS: SeaBIOS
// idles), since the guests have no KVM. The steps build on each other and run in
// the order written.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kernel_lab.hpp"
#include "kernel_lab_test_support.hpp"
#include "kvmfleet/storage/volume_manager.hpp"
#include "lab_cluster.hpp"

namespace kvmfleet::klab {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing_support::report_time;
using testing_support::runs_and_fails;
using testing_support::runs_ok;
using steady = std::chrono::steady_clock;

constexpr int kGuests = 2;
constexpr std::uint64_t kLunBytes = std::uint64_t{2} << 30;  // sanlock's lvmlock LV takes 256 MiB
constexpr std::int64_t kVolumeBytes = std::int64_t{64} << 20;
constexpr std::int64_t kGrownBytes = std::int64_t{96} << 20;  // D1: grown while the VM runs
constexpr const char* kPool = "pool1";
constexpr const char* kVolume = "disk1";
constexpr const char* kVm = "vm1";
constexpr const char* kSnapshot = "snap1";
// The marker block: 4 KiB at 48 MiB into the 64 MiB LV (block 12288 of 4 KiB).
constexpr const char* kMarkerBlock = "12288";
// The only disk a guest has once the pool's host logged in; checked before and after.
constexpr const char* kLunDevice = "/dev/sda";
// Where a guest records the LV locks it holds while a migration runs.
constexpr const char* kLockLog = "/tmp/klab-lv-locks.log";

std::string node(int g) {
  return "node" + std::to_string(g);
}

// One API exchange, kept whole so that a failure shows exactly what was asked and
// what the controller answered.
struct Exchange {
  std::string request;  // "POST /v1/... BODY"
  unsigned status = 0;
  std::string body;
  json answer;        // null when not JSON
  std::string error;  // the request did not get an answer at all

  std::string describe() const {
    return request + "\n  -> " +
           (error.empty() ? std::to_string(status) + " " + body : "no answer: " + error);
  }
};

class KernelLabVmMigration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_start_ = steady::now();
    LabOptions options;
    options.name = "ctest-vm-migration";
    options.guests = kGuests;
    auto lab = KernelLab::up(options);
    if (!lab.ok()) {
      setup_error_ = std::string(to_string(lab.error().code)) + ": " + lab.error().message;
      return;
    }
    lab_ = std::move(*lab);
    std::printf("[   INFO   ] guests run kernel %s under TCG; the VM is a nested TCG guest\n",
                lab_->kernel_version().c_str());
    report_time("boot_2_guests_ms", lab_->boot_time());
    auto lun = lab_->add_lun(kPool, kLunBytes);
    if (!lun.ok()) {
      setup_error_ = "add_lun: " + lun.error().message;
      return;
    }
    lun_ = *lun;

    // Each guest becomes a host: storage daemons, libvirtd. In parallel.
    auto t = steady::now();
    std::array<std::string, kGuests + 1> errors;
    {
      std::vector<std::future<void>> jobs;
      for (int g = 1; g <= kGuests; ++g) {
        jobs.push_back(std::async(std::launch::async, [g, &errors] {
          // Before the pool logs in, a guest has no SCSI disk: the LUN will be sda.
          auto disks = testing_support::run_in(*lab_, g, {"ls", "/sys/block"}, 60s);
          if (!disks.ok() || disks->out.find("sd") != std::string::npos) {
            errors[g] = node(g) + " has SCSI disks before the pool's login: " +
                        (disks.ok() ? disks->out : disks.error().message);
            return;
          }
          if (auto s = start_storage_daemons(*lab_, g); !s.ok()) {
            errors[g] = s.error().message;
            return;
          }
          if (auto s = start_libvirtd(*lab_, g); !s.ok()) errors[g] = s.error().message;
        }));
      }
      for (auto& j : jobs) j.get();
    }
    for (const auto& e : errors) {
      if (!e.empty()) {
        setup_error_ = e;
        return;
      }
    }
    report_time("storage_daemons_and_libvirtd_both_ms", steady::now() - t);

    t = steady::now();
    ControllerOptions co;
    co.binary = KVMFLEET_CONTROLLER_BIN;
    auto controller = LabController::start(*lab_, co);
    if (!controller.ok()) {
      setup_error_ = "controller: " + controller.error().message;
      return;
    }
    controller_ = std::move(*controller);
    report_time("controller_start_ms", steady::now() - t);

    t = steady::now();
    std::array<std::string, kGuests + 1> tokens;
    for (int g = 1; g <= kGuests; ++g) {
      auto token = controller_->register_host(node(g), agent_url(*lab_, g));
      if (!token.ok()) {
        setup_error_ = token.error().message;
        return;
      }
      tokens[g] = *token;
    }
    {
      std::vector<std::future<void>> jobs;
      for (int g = 1; g <= kGuests; ++g) {
        jobs.push_back(std::async(std::launch::async, [g, &errors, &tokens] {
          AgentOptions ao;
          ao.binary = KVMFLEET_AGENT_BIN;
          ao.controller_url = controller_->url();
          ao.token = tokens[g];
          // No devices configured: the agent adds the LUN to LVM's filter when the
          // pool's login finds it (what a pool made at run time needs).
          ao.storage = {{"host_id", lab_->guest(g).host_id},
                        {"devices", json::array()},
                        {"udev", false},
                        {"lock_manager", "sanlock"}};
          auto pid = start_agent(*lab_, g, ao);
          if (!pid.ok()) errors[g] = pid.error().message;
        }));
      }
      for (auto& j : jobs) j.get();
    }
    for (const auto& e : errors) {
      if (!e.empty()) {
        setup_error_ = e;
        return;
      }
    }
    for (int g = 1; g <= kGuests; ++g) {
      auto up = controller_->wait_host_up(node(g), 90s);
      if (!up.ok()) {
        setup_error_ = up.error().message + "\ncontroller log:\n" + controller_->log_tail();
        return;
      }
    }
    report_time("agents_up_both_ms", steady::now() - t);
  }

  static void TearDownTestSuite() {
    if (controller_) {
      controller_->stop();
      controller_.reset();
    }
    if (lab_) {
      auto t = steady::now();
      auto s = lab_->down();
      if (!s.ok()) std::printf("[  ERROR   ] teardown: %s\n", s.error().message.c_str());
      report_time("teardown_ms", steady::now() - t);
      lab_.reset();
    }
    report_time("whole_suite_ms", steady::now() - suite_start_);
  }

  void SetUp() override {
    ASSERT_TRUE(lab_ != nullptr && controller_ != nullptr && setup_error_.empty())
        << "the lab did not come up: " << setup_error_;
  }

  void TearDown() override {
    if (HasFailure() && lab_ && controller_) {
      std::printf("[  REPORT  ] controller log (end):\n%s\n", controller_->log_tail().c_str());
      for (int g = 1; g <= kGuests; ++g) {
        auto log = testing_support::run_in(
            *lab_, g, {"tail", "-n", "40", "/var/log/kvmfleet-agent.log"}, 30s);
        std::printf("[  REPORT  ] %s agent log (end):\n%s\n", node(g).c_str(),
                    log.ok() ? log->out.c_str() : log.error().message.c_str());
      }
      std::fflush(stdout);
    }
  }

  KernelLab& lab() { return *lab_; }

  static Exchange api(const std::string& method, const std::string& path,
                      const json& body = nullptr, std::chrono::seconds timeout = 60s) {
    Exchange x;
    const std::string text = body.is_null() ? std::string() : body.dump();
    x.request = method + " " + path + (text.empty() ? "" : " " + text);
    auto r = controller_->request(method, path, text, timeout);
    if (!r.ok()) {
      x.error = r.error().message;
      return x;
    }
    x.status = r->status;
    x.body = r->body;
    x.answer = json::parse(r->body, nullptr, false);
    if (x.answer.is_discarded()) x.answer = nullptr;
    return x;
  }

  // A mutating call that must be accepted (202, or 200 once ended) and whose
  // operation must succeed within `limit`. `op` receives the final operation.
  static ::testing::AssertionResult operation_succeeds(const std::string& method,
                                                       const std::string& path, const json& body,
                                                       std::chrono::seconds limit,
                                                       json* op = nullptr,
                                                       const std::string& kind = {}) {
    const Exchange x = api(method, path, body);
    if (!x.error.empty() || (x.status != 202 && x.status != 200) || !x.answer.is_object() ||
        !x.answer.contains("id") || !x.answer["id"].is_string()) {
      return ::testing::AssertionFailure() << "not accepted as an operation:\n" << x.describe();
    }
    if (!kind.empty() && x.answer.value("kind", "") != kind) {
      return ::testing::AssertionFailure()
             << "operation kind " << x.answer.value("kind", "?") << ", want " << kind << ":\n"
             << x.describe();
    }
    auto done = controller_->wait_operation(x.answer["id"].get<std::string>(), limit);
    if (!done.ok()) {
      return ::testing::AssertionFailure()
             << x.describe() << "\nthen: " << to_string(done.error().code) << ": "
             << done.error().message;
    }
    if (op != nullptr) *op = *done;
    if (done->value("state", "") != "succeeded") {
      return ::testing::AssertionFailure()
             << x.describe() << "\nthe operation ended " << done->value("state", "?") << ":\n"
             << done->dump();
    }
    return ::testing::AssertionSuccess();
  }

  // Runs step(g) for every guest at once; different guests run in parallel.
  template <typename Step>
  static void on_each_guest(Step step) {
    std::vector<std::future<void>> jobs;
    for (int g = 1; g <= kGuests; ++g) jobs.push_back(std::async(std::launch::async, step, g));
    for (auto& j : jobs) j.get();
  }

  // The --config the agent gives LVM on guest g (filter on the LUN, lvmlockd, host_id,
  // no udev), so that the checks see exactly what the agent sees.
  static std::string lvm_config(int g) {
    storage::LvmOptions o;
    o.devices = {kLunDevice};
    o.host_id = lab_->guest(g).host_id;
    o.udev = false;
    auto c = storage::Lvm2Cli(lab_->runner(g), o).config_string();
    return c.ok() ? *c : std::string();
  }
  static std::string lv_name() { return std::string(kPool) + "/" + kVolume; }
  static std::string lv_device() { return std::string("/dev/") + kPool + "/" + kVolume; }
  // The snapshot's COW LV: VOLUME.snap.SNAPSHOT.
  static std::string snap_lv() { return std::string(kVolume) + ".snap." + kSnapshot; }
  static std::string snap_device() { return std::string("/dev/") + kPool + "/" + snap_lv(); }

  // `lvs --noheadings -o FIELD pool1/disk1` (or another LV of the VG) in guest g,
  // blanks trimmed.
  std::string lvs_field(int g, const std::string& field, const std::string& lv = lv_name()) {
    ProcessOutput out;
    EXPECT_TRUE(runs_ok(lab(), g,
                        {"lvs", "--config", lvm_config(g), "--noheadings", "-o", field, lv}, &out));
    const auto first = out.out.find_first_not_of(" \n");
    if (first == std::string::npos) return {};
    return out.out.substr(first, out.out.find_last_not_of(" \n") - first + 1);
  }

  // Writes `text`, padded with zeros to 4 KiB, to the marker block of `device` in
  // guest g, with direct I/O (past the host's page cache, as the VM's cache='none').
  void write_marker(int g, const std::string& device, const std::string& text) {
    EXPECT_TRUE(runs_ok(lab(), g,
                        {"sh", "-c",
                         std::string("printf %s \"$1\" | dd of=\"$2\" bs=4096 seek=") +
                             kMarkerBlock + " count=1 conv=sync,notrunc oflag=direct status=none",
                         "sh", text, device},
                        nullptr, 60s));
  }
  // The marker block of `device` in guest g, read with direct I/O, zeros dropped.
  std::string read_marker(int g, const std::string& device) {
    ProcessOutput out;
    EXPECT_TRUE(runs_ok(lab(), g,
                        {"sh", "-c",
                         std::string("dd if=\"$1\" bs=4096 skip=") + kMarkerBlock +
                             " count=1 iflag=direct status=none | head -c 64 | tr -d '\\000'",
                         "sh", device},
                        &out, 60s));
    return out.out;
  }

  // The LV lock lvmlockd holds on guest g: "ex", "sh", or "" (none, or "un" once let go).
  std::string lv_lock(int g) {
    ProcessOutput out;
    EXPECT_TRUE(runs_ok(lab(), g, {"lvmlockctl", "--info"}, &out));
    for (const char* mode : {"ex", "sh"}) {
      if (out.out.find(std::string("LK LV ") + mode + " " + lv_uuid_) != std::string::npos)
        return mode;
    }
    return "";
  }

  // Whether guest g has a device-mapper device for the LV.
  bool has_dm_device(int g) {
    auto r = testing_support::run_in(lab(), g,
                                     {"dmsetup", "info", std::string(kPool) + "-" + kVolume}, 60s);
    return r.ok() && r->exit_code == 0;
  }

  // `virsh domstate vm1` in guest g: "running", "shut off", ... or "absent".
  std::string domstate(int g) {
    auto r =
        testing_support::run_in(lab(), g, {"virsh", "-c", "qemu:///system", "domstate", kVm}, 60s);
    if (!r.ok() || r->exit_code != 0) return "absent";
    std::string s = r->out;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

  // The split-brain guard: another host's exclusive activation is refused by lvmlockd.
  void exclusive_refused_on(int g) {
    ProcessOutput out;
    ASSERT_TRUE(
        runs_and_fails(lab(), g, {"lvchange", "--config", lvm_config(g), "-aey", lv_name()}, &out))
        << node(g) << " activated the LV exclusively while another host holds it";
    EXPECT_NE(out.err.find("LV locked by other host"), std::string::npos) << out.err;
    EXPECT_FALSE(has_dm_device(g)) << node(g) << " has a dm device for the LV after the refusal";
  }

  // The LV is active exclusively on `holder` and on no other guest, checked with
  // lvmlockctl, lvs, dmsetup and sanlock on both guests at once.
  void held_exclusively_by(int holder) {
    on_each_guest([&](int g) {
      if (g == holder) {
        EXPECT_EQ(lv_lock(g), "ex") << node(g) << " must hold the LV's lock exclusively";
        EXPECT_EQ(lvs_field(g, "lv_active_locally"), "active locally") << node(g);
        EXPECT_EQ(lvs_field(g, "lv_active_exclusively"), "active exclusively") << node(g);
        EXPECT_TRUE(has_dm_device(g)) << node(g);
        // sanlock holds the LV's lease (resource named by the LV's UUID) for this host.
        ProcessOutput out;
        EXPECT_TRUE(runs_ok(lab(), g, {"sanlock", "client", "status"}, &out));
        EXPECT_NE(out.out.find("r lvm_" + std::string(kPool) + ":" + lv_uuid_), std::string::npos)
            << node(g) << " sanlock client status:\n"
            << out.out;
      } else {
        EXPECT_EQ(lv_lock(g), "") << node(g) << " must not hold the LV's lock";
        EXPECT_EQ(lvs_field(g, "lv_active"), "") << node(g) << " must not have the LV active";
        EXPECT_FALSE(has_dm_device(g)) << node(g);
      }
    });
  }

  // Records the LV locks lvmlockd holds on guest g about five times a second, until
  // stopped; the pid (in the guest) of the watching shell.
  std::optional<int> watch_locks(int g) {
    auto pid = start_guest_background(
        lab(), g, {"sh", "-c", "while :; do lvmlockctl --info; sleep 0.2; done"}, kLockLog);
    EXPECT_TRUE(pid.ok()) << (pid.ok() ? "" : pid.error().message);
    return pid.ok() ? std::optional<int>(*pid) : std::nullopt;
  }
  // Stops the watcher; the lock modes it saw held on the LV ("ex", "sh"), each once, in
  // the order first seen. ("un", a lock let go or never granted, e.g. after a refused
  // lvchange, is not a hold.)
  std::vector<std::string> locks_seen(int g, std::optional<int> watcher) {
    if (!watcher) return {};
    EXPECT_TRUE(
        runs_ok(lab(), g, {"kill", "-TERM", "--", "-" + std::to_string(*watcher)}, nullptr, 60s));
    ProcessOutput out;
    EXPECT_TRUE(runs_ok(lab(), g, {"cat", kLockLog}, &out, 60s));
    std::vector<std::string> modes;
    const std::string suffix = " " + lv_uuid_;
    std::size_t at = 0;
    while ((at = out.out.find("LK LV ", at)) != std::string::npos) {
      const std::string mode = out.out.substr(at + 6, 2);
      const bool ours = out.out.compare(at + 8, suffix.size(), suffix) == 0;
      if (ours && mode != "un" && std::find(modes.begin(), modes.end(), mode) == modes.end())
        modes.push_back(mode);
      at += 6;
    }
    // The watcher samples at intervals and is stopped when the operation has ended: a
    // conversion in the operation's last moments may fall between its samples, so the
    // lock held now closes the record.
    if (const std::string now = lv_lock(g);
        !now.empty() && (modes.empty() || modes.back() != now) &&
        std::find(modes.begin(), modes.end(), now) == modes.end())
      modes.push_back(now);
    return modes;
  }

  static inline std::unique_ptr<KernelLab> lab_;
  static inline std::unique_ptr<LabController> controller_;
  static inline std::string setup_error_;
  static inline LunInfo lun_;
  static inline steady::time_point suite_start_;
  static inline bool pool_ok_ = false;
  static inline bool volume_ok_ = false;
  static inline bool started_ok_ = false;
  static inline bool migrated_ok_ = false;
  static inline bool stopped_ok_ = false;
  static inline bool snapshot_ok_ = false;
  static inline std::string volume_id_;
  static inline std::string vm_id_;
  static inline std::string lv_uuid_;
};

// The pool: every host logs in to the LUN, one makes the shared VG, every host starts
// its lockspace. The API's view, then lvm's and sanlock's on each guest.
TEST_F(KernelLabVmMigration, A_PoolCreate) {
  const auto t = steady::now();
  json op;
  ASSERT_TRUE(
      operation_succeeds("POST", "/v1/storage-pools",
                         {{"name", kPool},
                          {"type", "iscsi"},
                          {"targets", {{{"portal", lun_.portal}, {"iqn", lun_.iqn}, {"lun", 1}}}}},
                         300s, &op, "storage_pool.create"));
  report_time("pool_create_ms", steady::now() - t);

  const Exchange x = api("GET", std::string("/v1/storage-pools/") + kPool);
  ASSERT_EQ(x.status, 200u) << x.describe();
  const json& p = x.answer;
  ASSERT_TRUE(p.is_object()) << x.describe();
  EXPECT_EQ(p.value("name", ""), kPool) << x.describe();
  EXPECT_EQ(p.value("type", ""), "iscsi") << x.describe();
  EXPECT_EQ(p.value("vg", ""), kPool) << x.describe();
  EXPECT_EQ(p.value("state", ""), "ready") << x.describe();
  EXPECT_TRUE(p.contains("size_bytes") && p["size_bytes"].is_number() &&
              p["size_bytes"].get<std::int64_t>() > 0)
      << x.describe();
  EXPECT_TRUE(p.contains("free_bytes") && p["free_bytes"].is_number() &&
              p["free_bytes"].get<std::int64_t>() >= kVolumeBytes)
      << x.describe();
  for (int g = 1; g <= kGuests; ++g) {
    ASSERT_TRUE(p.contains("hosts") && p["hosts"].contains(node(g))) << x.describe();
    const json& h = p["hosts"][node(g)];
    EXPECT_EQ(h.value("connected", false), true) << node(g) << ": " << x.describe();
    EXPECT_EQ(h.value("devices", json()), json::array({kLunDevice}))
        << node(g) << ": " << x.describe();
    EXPECT_EQ(h.value("lockspace_started", false), true) << node(g) << ": " << x.describe();
    EXPECT_EQ(h.value("usable", false), true) << node(g) << ": " << x.describe();
    EXPECT_TRUE(h.contains("error") && h["error"].is_null()) << node(g) << ": " << x.describe();
  }

  // What the hosts themselves say.
  on_each_guest([&](int g) {
    ProcessOutput out;
    // The LUN is the guest's sda, logged in over iSCSI to the lab's target.
    ASSERT_TRUE(runs_ok(lab(), g, {"iscsiadm", "-m", "session", "-P", "3"}, &out));
    EXPECT_NE(out.out.find(lun_.iqn), std::string::npos) << node(g) << ":\n" << out.out;
    EXPECT_NE(out.out.find("Attached scsi disk sda"), std::string::npos) << node(g) << ":\n"
                                                                         << out.out;
    ASSERT_TRUE(runs_ok(lab(), g,
                        {"vgs", "--config", lvm_config(g), "--noheadings", "-o",
                         "vg_name,vg_lock_type,vg_shared", kPool},
                        &out));
    EXPECT_NE(out.out.find("sanlock"), std::string::npos) << node(g) << ": " << out.out;
    EXPECT_NE(out.out.find("shared"), std::string::npos) << node(g) << ": " << out.out;
    ASSERT_TRUE(runs_ok(lab(), g, {"sanlock", "client", "status"}, &out));
    EXPECT_NE(out.out.find("s lvm_" + std::string(kPool) + ":" + std::to_string(g) + ":"),
              std::string::npos)
        << node(g) << " has not joined the lockspace with host id " << g << ":\n"
        << out.out;
  });
  pool_ok_ = !HasFailure();
}

// The volume: an LV of the pool's VG, seen from both hosts, active on neither.
TEST_F(KernelLabVmMigration, B_VolumeCreate) {
  ASSERT_TRUE(pool_ok_) << "needs A_PoolCreate";
  const auto t = steady::now();
  json op;
  ASSERT_TRUE(operation_succeeds("POST", "/v1/volumes",
                                 {{"name", kVolume}, {"pool", kPool}, {"size_bytes", kVolumeBytes}},
                                 120s, &op, "volume.create"));
  report_time("volume_create_ms", steady::now() - t);
  ASSERT_TRUE(op.contains("result") && op["result"].contains("volume_id") &&
              op["result"]["volume_id"].is_string())
      << "volume.create has no result.volume_id: " << op.dump();
  volume_id_ = op["result"]["volume_id"].get<std::string>();

  for (const std::string& ref : {volume_id_, std::string(kVolume)}) {
    const Exchange x = api("GET", "/v1/volumes/" + ref);
    ASSERT_EQ(x.status, 200u) << x.describe();
    const json& v = x.answer;
    ASSERT_TRUE(v.is_object()) << x.describe();
    EXPECT_EQ(v.value("id", ""), volume_id_) << x.describe();
    EXPECT_EQ(v.value("name", ""), kVolume) << x.describe();
    EXPECT_EQ(v.value("pool", ""), kPool) << x.describe();
    EXPECT_EQ(v.value("device", ""), lv_device()) << x.describe();
    EXPECT_EQ(v.value("size_bytes", std::int64_t{0}), kVolumeBytes) << x.describe();
    EXPECT_TRUE(v.contains("attached_to") && v["attached_to"].is_null()) << x.describe();
    EXPECT_TRUE(v.contains("snapshots") && v["snapshots"].is_array() && v["snapshots"].empty())
        << x.describe();
  }

  lv_uuid_ = lvs_field(1, "lv_uuid");
  ASSERT_FALSE(lv_uuid_.empty());
  on_each_guest([&](int g) {
    EXPECT_EQ(lvs_field(g, "lv_size"), "64.00m") << node(g);
    EXPECT_EQ(lvs_field(g, "lv_active"), "") << node(g) << ": a new volume is active nowhere";
    EXPECT_EQ(lv_lock(g), "") << node(g);
  });
  volume_ok_ = !HasFailure();
}

// A VM pinned to node1 with the volume as its disk; starting it activates the LV
// exclusively there. node2 cannot take the LV: the split-brain guard.
TEST_F(KernelLabVmMigration, C_VmCreateAndStartOnNode1) {
  ASSERT_TRUE(volume_ok_) << "needs B_VolumeCreate";
  auto t = steady::now();
  json op;
  ASSERT_TRUE(operation_succeeds("POST", "/v1/vms",
                                 {{"name", kVm},
                                  {"vcpus", 1},
                                  {"memory_mib", 64},
                                  {"disks", {{{"volume", kVolume}}}},
                                  {"host", node(1)}},
                                 180s, &op, "vm.create"));
  report_time("vm_create_ms", steady::now() - t);
  ASSERT_TRUE(op.contains("target") && op["target"].contains("id")) << op.dump();
  vm_id_ = op["target"]["id"].get<std::string>();

  t = steady::now();
  ASSERT_TRUE(
      operation_succeeds("POST", "/v1/vms/" + vm_id_ + "/start", nullptr, 180s, &op, "vm.start"));
  report_time("vm_start_ms", steady::now() - t);

  const Exchange vm = api("GET", "/v1/vms/" + vm_id_);
  ASSERT_EQ(vm.status, 200u) << vm.describe();
  EXPECT_EQ(vm.answer.value("host", ""), node(1)) << vm.describe();
  EXPECT_EQ(vm.answer.value("state", ""), "running") << vm.describe();
  const Exchange vol = api("GET", "/v1/volumes/" + volume_id_);
  ASSERT_EQ(vol.status, 200u) << vol.describe();
  EXPECT_EQ(vol.answer.value("attached_to", json()), json(vm_id_)) << vol.describe();

  // libvirt on node1 runs it, on the LV as a raw block device without host cache.
  EXPECT_EQ(domstate(1), "running");
  EXPECT_EQ(domstate(2), "absent");
  ProcessOutput xml;
  ASSERT_TRUE(runs_ok(lab(), 1, {"virsh", "-c", "qemu:///system", "dumpxml", kVm}, &xml));
  EXPECT_NE(xml.out.find("<domain type='qemu'"), std::string::npos) << xml.out;
  EXPECT_NE(xml.out.find("<disk type='block' device='disk'>"), std::string::npos) << xml.out;
  EXPECT_NE(xml.out.find("cache='none'"), std::string::npos) << xml.out;
  EXPECT_NE(xml.out.find("<source dev='" + lv_device() + "'"), std::string::npos) << xml.out;

  held_exclusively_by(1);
  exclusive_refused_on(2);
  started_ok_ = !HasFailure();
}

// Live migration to node2: the LV is shared by both during the move, then exclusive
// on node2 and inactive on node1, whose own -aey is then refused.
TEST_F(KernelLabVmMigration, D_LiveMigrateToNode2) {
  ASSERT_TRUE(started_ok_) << "needs C_VmCreateAndStartOnNode1";
  std::array<std::optional<int>, kGuests + 1> watchers;
  for (int g = 1; g <= kGuests; ++g) watchers[g] = watch_locks(g);
  const auto t = steady::now();
  json op;
  const bool migrated = operation_succeeds("POST", "/v1/vms/" + vm_id_ + "/migrate",
                                           {{"target_host", node(2)}}, 300s, &op, "vm.migrate");
  report_time("vm_migrate_ms", steady::now() - t);
  std::array<std::vector<std::string>, kGuests + 1> seen;
  on_each_guest([&](int g) { seen[g] = locks_seen(g, watchers[g]); });
  ASSERT_TRUE(migrated);
  if (op.contains("result") && op["result"].contains("migration"))
    std::printf("[   INFO   ] migration: %s\n", op["result"]["migration"].dump().c_str());
  // The handover: both hosts held the LV shared while the VM moved, node1 never let go
  // of it before (ex, then sh), node2 ended exclusive (sh, then ex).
  auto joined = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& m : v) s += (s.empty() ? "" : " ") + m;
    return s;
  };
  std::printf("[   INFO   ] LV locks seen during the migration: node1 [%s], node2 [%s]\n",
              joined(seen[1]).c_str(), joined(seen[2]).c_str());
  EXPECT_EQ(joined(seen[1]), "ex sh") << "node1 must go from exclusive to shared";
  EXPECT_EQ(joined(seen[2]), "sh ex") << "node2 must join shared, then turn exclusive";

  const Exchange vm = api("GET", "/v1/vms/" + vm_id_);
  ASSERT_EQ(vm.status, 200u) << vm.describe();
  EXPECT_EQ(vm.answer.value("host", ""), node(2)) << vm.describe();
  EXPECT_EQ(vm.answer.value("state", ""), "running") << vm.describe();

  EXPECT_EQ(domstate(2), "running");
  const std::string on1 = domstate(1);
  EXPECT_TRUE(on1 == "absent" || on1 == "shut off") << "node1: " << on1;

  held_exclusively_by(2);
  exclusive_refused_on(1);
  migrated_ok_ = !HasFailure();
}

// Growing the running VM's volume: lvextend runs on node2, which holds the LV
// exclusively (no other host could), and QEMU there is told the new size, so `virsh
// domblkinfo` shows it at once. The lock stays exclusive on node2.
TEST_F(KernelLabVmMigration, D1_GrowWhileRunningOnNode2) {
  ASSERT_TRUE(migrated_ok_) << "needs D_LiveMigrateToNode2";
  const auto t = steady::now();
  json op;
  ASSERT_TRUE(operation_succeeds("POST", "/v1/volumes/" + volume_id_ + "/grow",
                                 {{"size_bytes", kGrownBytes}}, 120s, &op, "volume.grow"));
  report_time("volume_grow_live_ms", steady::now() - t);
  ASSERT_TRUE(op.contains("result")) << op.dump();
  EXPECT_EQ(op["result"].value("size_bytes", std::int64_t{0}), kGrownBytes) << op.dump();
  EXPECT_EQ(op["result"].value("vm_resized", false), true) << op.dump();

  for (int g = 1; g <= kGuests; ++g) EXPECT_EQ(lvs_field(g, "lv_size"), "96.00m") << node(g);
  ProcessOutput info;
  ASSERT_TRUE(
      runs_ok(lab(), 2, {"virsh", "-c", "qemu:///system", "domblkinfo", kVm, lv_device()}, &info));
  const auto at = info.out.find("Capacity:");
  ASSERT_NE(at, std::string::npos) << info.out;
  EXPECT_EQ(std::strtoll(info.out.c_str() + at + 9, nullptr, 10), kGrownBytes) << info.out;
  const Exchange v = api("GET", "/v1/volumes/" + volume_id_);
  EXPECT_EQ(v.answer.value("size_bytes", std::int64_t{0}), kGrownBytes) << v.describe();
  EXPECT_EQ(domstate(2), "running");
  held_exclusively_by(2);
}

// A snapshot of the running VM's volume, taken on node2 where it runs: a marker block
// written from node2 before it, then the snapshot (quiesce asked, but the nested guest
// has no guest agent: crash-consistent). lvs shows the COW LV with its origin. A live
// migration is then refused (409): lvmlockd cannot share an origin with snapshots.
TEST_F(KernelLabVmMigration, D2_SnapshotOnNode2RefusesLiveMigration) {
  ASSERT_TRUE(migrated_ok_) << "needs D_LiveMigrateToNode2";
  write_marker(2, lv_device(), "BEFORE");
  ASSERT_EQ(read_marker(2, lv_device()), "BEFORE");

  auto t = steady::now();
  json op;
  ASSERT_TRUE(operation_succeeds("POST", "/v1/volumes/" + volume_id_ + "/snapshots",
                                 {{"name", kSnapshot}, {"quiesce", true}}, 120s, &op,
                                 "snapshot.create"));
  report_time("snapshot_create_ms", steady::now() - t);
  ASSERT_TRUE(op.contains("result") && op["result"].is_object()) << op.dump();
  const json& r = op["result"];
  EXPECT_EQ(r.value("consistency", ""), "crash-consistent") << op.dump();
  EXPECT_TRUE(r.contains("quiesce_error") && r["quiesce_error"].is_string() &&
              !r["quiesce_error"].get<std::string>().empty())
      << op.dump();
  EXPECT_TRUE(r.contains("snapshot_id") && r["snapshot_id"].is_string()) << op.dump();
  if (r.contains("quiesce_error"))
    std::printf("[   INFO   ] quiesce_error: %s\n", r["quiesce_error"].dump().c_str());

  // LVM on node2: the COW LV exists, a snapshot of the volume, active with it there.
  const std::string snap = std::string(kPool) + "/" + snap_lv();
  EXPECT_EQ(lvs_field(2, "origin", snap), kVolume);
  EXPECT_EQ(lvs_field(2, "lv_active_locally", snap), "active locally");
  EXPECT_EQ(lvs_field(2, "lv_attr", snap).substr(0, 1), "s");
  EXPECT_EQ(lvs_field(1, "lv_active", snap), "") << "node1 must not have the snapshot active";

  const Exchange list = api("GET", "/v1/volumes/" + volume_id_ + "/snapshots");
  ASSERT_EQ(list.status, 200u) << list.describe();
  ASSERT_TRUE(list.answer.is_object() && list.answer.contains("items") &&
              list.answer["items"].is_array() && list.answer["items"].size() == 1)
      << list.describe();
  const json& s = list.answer["items"][0];
  EXPECT_EQ(s.value("name", ""), kSnapshot) << list.describe();
  EXPECT_EQ(s.value("lv", ""), snap_lv()) << list.describe();
  EXPECT_EQ(s.value("volume_id", ""), volume_id_) << list.describe();
  EXPECT_EQ(s.value("consistency", ""), "crash-consistent") << list.describe();
  EXPECT_TRUE(s.contains("fill_percent") && s["fill_percent"].is_number()) << list.describe();
  EXPECT_EQ(s.value("invalid", true), false) << list.describe();
  EXPECT_EQ(s.value("merge_pending", true), false) << list.describe();
  snapshot_ok_ = s.value("name", "") == kSnapshot;

  // No live migration back to node1 while the volume has a snapshot.
  const Exchange m = api("POST", "/v1/vms/" + vm_id_ + "/migrate", {{"target_host", node(1)}});
  ASSERT_EQ(m.status, 409u) << m.describe();
  ASSERT_TRUE(m.answer.is_object() && m.answer.contains("error")) << m.describe();
  const json& e = m.answer["error"];
  EXPECT_EQ(e.value("code", ""), "conflict") << m.describe();
  ASSERT_TRUE(e.contains("details") && e["details"].contains("snapshots")) << m.describe();
  EXPECT_EQ(e["details"]["snapshots"], json::array({kSnapshot})) << m.describe();
  EXPECT_EQ(e["details"].value("volume", ""), kVolume) << m.describe();
  // Nothing moved.
  const Exchange vm = api("GET", "/v1/vms/" + vm_id_);
  EXPECT_EQ(vm.answer.value("host", ""), node(2)) << vm.describe();
  EXPECT_EQ(domstate(2), "running");
  held_exclusively_by(2);
}

// COW: the origin overwritten on node2 (direct I/O) reads "AFTER", the snapshot still
// the old "BEFORE".
TEST_F(KernelLabVmMigration, D3_SnapshotKeepsTheOldBlock) {
  ASSERT_TRUE(snapshot_ok_) << "needs D2_SnapshotOnNode2RefusesLiveMigration";
  write_marker(2, lv_device(), "AFTER");
  EXPECT_EQ(read_marker(2, lv_device()), "AFTER");
  EXPECT_EQ(read_marker(2, snap_device()), "BEFORE");
  const Exchange list = api("GET", "/v1/volumes/" + volume_id_ + "/snapshots");
  ASSERT_EQ(list.status, 200u) << list.describe();
  std::printf("[   INFO   ] snapshots after the overwrite: %s\n", list.body.c_str());
}

// Stopping the VM lets go of the LV everywhere.
TEST_F(KernelLabVmMigration, E_StopReleasesTheVolume) {
  ASSERT_TRUE(migrated_ok_) << "needs D_LiveMigrateToNode2";
  const auto t = steady::now();
  // SeaBIOS does not answer ACPI: the stop powers the VM off after its timeout.
  ASSERT_TRUE(operation_succeeds("POST", "/v1/vms/" + vm_id_ + "/stop",
                                 {{"timeout_s", 1}, {"force", true}}, 180s, nullptr, "vm.stop"));
  report_time("vm_stop_ms", steady::now() - t);
  const std::string on2 = domstate(2);
  EXPECT_TRUE(on2 == "shut off" || on2 == "absent") << "node2: " << on2;
  on_each_guest([&](int g) {
    EXPECT_EQ(lv_lock(g), "") << node(g) << " still holds the LV's lock";
    EXPECT_EQ(lvs_field(g, "lv_active"), "") << node(g) << " still has the LV active";
    EXPECT_FALSE(has_dm_device(g)) << node(g);
  });
  stopped_ok_ = !HasFailure();
}

// The stopped VM, whose volume has a snapshot (no live migration: D2), moves cold back
// to node1: defined there, gone from node2, the LV active nowhere; started on node1 it
// holds the LV exclusively there (node2's -aey refused), and stopped again it lets go.
TEST_F(KernelLabVmMigration, E1_ColdMoveWithTheSnapshotToNode1) {
  ASSERT_TRUE(stopped_ok_ && snapshot_ok_) << "needs E_StopReleasesTheVolume and a snapshot";
  auto t = steady::now();
  json op;
  ASSERT_TRUE(operation_succeeds("POST", "/v1/vms/" + vm_id_ + "/migrate",
                                 {{"target_host", node(1)}}, 180s, &op, "vm.migrate"));
  report_time("vm_cold_move_ms", steady::now() - t);
  ASSERT_TRUE(op.contains("result")) << op.dump();
  EXPECT_EQ(op["result"].value("mode", ""), "cold") << op.dump();
  const Exchange vm = api("GET", "/v1/vms/" + vm_id_);
  EXPECT_EQ(vm.answer.value("host", ""), node(1)) << vm.describe();
  EXPECT_EQ(vm.answer.value("state", ""), "stopped") << vm.describe();
  EXPECT_EQ(domstate(1), "shut off");
  EXPECT_EQ(domstate(2), "absent");
  on_each_guest([&](int g) {
    EXPECT_EQ(lvs_field(g, "lv_active"), "") << node(g);
    EXPECT_EQ(lv_lock(g), "") << node(g);
  });

  t = steady::now();
  ASSERT_TRUE(operation_succeeds("POST", "/v1/vms/" + vm_id_ + "/start", nullptr, 180s, nullptr,
                                 "vm.start"));
  report_time("vm_start_after_cold_move_ms", steady::now() - t);
  EXPECT_EQ(domstate(1), "running");
  held_exclusively_by(1);
  exclusive_refused_on(2);
  ASSERT_TRUE(operation_succeeds("POST", "/v1/vms/" + vm_id_ + "/stop",
                                 {{"timeout_s", 1}, {"force", true}}, 180s, nullptr, "vm.stop"));
  on_each_guest([&](int g) { EXPECT_EQ(lv_lock(g), "") << node(g); });
}

// Reverting the stopped VM's volume to the snapshot: lvconvert --merge, the snapshot
// LV gone, the marker "BEFORE" again (read after a brief -aey by hand on node1), and
// the LV inactive everywhere afterwards.
TEST_F(KernelLabVmMigration, E2_RevertRestoresTheMarker) {
  ASSERT_TRUE(stopped_ok_ && snapshot_ok_) << "needs E_StopReleasesTheVolume and a snapshot";
  const auto t = steady::now();
  json op;
  ASSERT_TRUE(operation_succeeds(
      "POST", "/v1/volumes/" + volume_id_ + "/snapshots/" + kSnapshot + "/revert?wait=120", nullptr,
      360s, &op, "snapshot.revert"));
  report_time("snapshot_revert_ms", steady::now() - t);
  EXPECT_TRUE(op.contains("result") && op["result"].value("merge_pending", true) == false)
      << op.dump();

  const Exchange list = api("GET", "/v1/volumes/" + volume_id_ + "/snapshots");
  ASSERT_EQ(list.status, 200u) << list.describe();
  EXPECT_EQ(list.answer.value("items", json()), json::array()) << list.describe();

  on_each_guest([&](int g) {
    ProcessOutput out;
    EXPECT_TRUE(runs_ok(lab(), g,
                        {"lvs", "--config", lvm_config(g), "--noheadings", "-o", "lv_name", kPool},
                        &out));
    EXPECT_EQ(out.out.find(snap_lv()), std::string::npos) << node(g) << ": " << out.out;
    EXPECT_EQ(lvs_field(g, "lv_active"), "") << node(g) << ": the revert left the LV active";
    EXPECT_EQ(lv_lock(g), "") << node(g);
  });

  ASSERT_TRUE(runs_ok(lab(), 1, {"lvchange", "--config", lvm_config(1), "-aey", lv_name()}));
  EXPECT_EQ(read_marker(1, lv_device()), "BEFORE");
  ASSERT_TRUE(runs_ok(lab(), 1, {"lvchange", "--config", lvm_config(1), "-an", lv_name()}));
  on_each_guest([&](int g) {
    EXPECT_EQ(lvs_field(g, "lv_active"), "") << node(g);
    EXPECT_EQ(lv_lock(g), "") << node(g);
    EXPECT_FALSE(has_dm_device(g)) << node(g);
  });
}

// Deleting the VM, then the volume: the LV is gone from the VG on both hosts.
TEST_F(KernelLabVmMigration, F_DeleteVmAndVolume) {
  ASSERT_TRUE(stopped_ok_) << "needs E_StopReleasesTheVolume";
  auto t = steady::now();
  ASSERT_TRUE(
      operation_succeeds("DELETE", "/v1/vms/" + vm_id_, nullptr, 180s, nullptr, "vm.delete"));
  report_time("vm_delete_ms", steady::now() - t);
  EXPECT_EQ(api("GET", "/v1/vms/" + vm_id_).status, 404u);
  on_each_guest([&](int g) { EXPECT_EQ(domstate(g), "absent") << node(g); });
  const Exchange vol = api("GET", "/v1/volumes/" + volume_id_);
  ASSERT_EQ(vol.status, 200u) << vol.describe();
  EXPECT_TRUE(vol.answer.contains("attached_to") && vol.answer["attached_to"].is_null())
      << vol.describe();

  t = steady::now();
  ASSERT_TRUE(operation_succeeds("DELETE", "/v1/volumes/" + volume_id_, nullptr, 120s, nullptr,
                                 "volume.delete"));
  report_time("volume_delete_ms", steady::now() - t);
  EXPECT_EQ(api("GET", "/v1/volumes/" + volume_id_).status, 404u);
  on_each_guest([&](int g) {
    ProcessOutput out;
    EXPECT_TRUE(runs_and_fails(lab(), g, {"lvs", "--config", lvm_config(g), lv_name()}, &out))
        << node(g) << " still lists " << lv_name();
    ASSERT_TRUE(runs_ok(lab(), g,
                        {"lvs", "--config", lvm_config(g), "--noheadings", "-o", "lv_name", kPool},
                        &out));
    EXPECT_EQ(out.out.find(kVolume), std::string::npos) << node(g) << ": " << out.out;
  });
}

}  // namespace
}  // namespace kvmfleet::klab
