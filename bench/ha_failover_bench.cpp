// Failover on the two-host lab (docs/benchmarks.md, "HA failover"): mig-a loses power
// with N HA VMs on it; its BMC (ipmi_sim, fenced by the real fence_ipmilan) then reports
// it off. Measured from the power loss to each VM running on mig-b, over --runs runs, for
// one VM and for --vms VMs: p50 and p95, and each phase of the timeline (down, fenced,
// restarted). Needs root and KVM (or TCG); run by hand, not a ctest test.
//
//   build/bench/kvmfleet_ha_failover_bench [--runs 10] [--vms 8]
#include "tests/e2e/two_host_lab.hpp"
#include "tests/lab/ipmi_bmc.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

int g_runs = 10;
int g_vms = 8;

using Steady = std::chrono::steady_clock;

double seconds_since(Steady::time_point t0) {
  return std::chrono::duration<double>(Steady::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

class HaFailoverBench : public e2e::TwoHostLab {
 protected:
  static void SetUpTestSuite() {
    controller_config_ = {{"unreachable_after_ms", 3000}, {"down_after_ms", 6000}};
    TwoHostLab::SetUpTestSuite();
  }
  inline static std::atomic<bool> a_powered_{true};

  static std::string host_state(const std::string& name) {
    auto h = api("GET", "/v1/hosts/" + name);
    return h ? (*h)["state"].get<std::string>() : "";
  }

  // `n` HA VMs made on mig-a (mig-b cordoned meanwhile).
  static bool create_on_a(int run, int n, std::vector<std::string>& names) {
    if (!api("PATCH", "/v1/hosts/mig-b", R"({"schedulable":false})")) return false;
    bool ok = true;
    for (int i = 0; i < n && ok; ++i) {
      const std::string name = "f" + std::to_string(run) + "-" + std::to_string(i);
      auto c =
          api("POST", "/v1/vms?wait=120",
              json{{"name", name}, {"memory_mib", 64}, {"ha", true}, {"start", true}}.dump(), 150);
      ok = c && (*c)["state"] == "succeeded";
      names.push_back(name);
    }
    (void)api("PATCH", "/v1/hosts/mig-b", R"({"schedulable":true})");
    return ok;
  }

  struct Run {
    double fenced = 0;
    std::vector<double> running;  // per VM, from the power loss
    // The last VM running, from mig-a's last heartbeat (what kvmfleet_ha_recovery_seconds
    // counts): the host may have been silent a moment before the power loss.
    double from_heartbeat = 0;
  };

  // One failover of `n` VMs; mig-a is back up, and the VMs deleted, when it returns.
  static Run failover(int run, int n) {
    Run out;
    std::vector<std::string> names;
    EXPECT_TRUE(create_on_a(run, n, names));
    const auto t0 = Steady::now();
    EXPECT_TRUE(lab_->kill_host(hosts_["mig-a"]).ok());
    a_powered_ = false;
    std::vector<double> at(names.size(), -1);
    for (int i = 0; i < 3000; ++i) {
      const std::string s = host_state("mig-a");
      if (out.fenced == 0 && s == "fenced") out.fenced = seconds_since(t0);
      auto list = api("GET", "/v1/vms?host=mig-b&limit=1000");
      if (list)
        for (const auto& item : (*list)["items"])
          for (std::size_t k = 0; k < names.size(); ++k)
            if (at[k] < 0 && item["name"] == names[k] && item["state"] == "running")
              at[k] = seconds_since(t0);
      if (std::all_of(at.begin(), at.end(), [](double v) { return v >= 0; })) {
        auto h = api("GET", "/v1/hosts/mig-a");
        const auto hb = h && (*h)["last_heartbeat"].is_string()
                            ? parse_time((*h)["last_heartbeat"].get<std::string>())
                            : std::nullopt;
        if (hb)
          out.from_heartbeat =
              std::chrono::duration<double>(SystemClock::instance().now() - *hb).count();
        break;
      }
      std::this_thread::sleep_for(100ms);
    }
    out.running = at;
    // Back to the start: mig-a powered on, the VMs gone.
    auto back = lab_->restart_host(hosts_["mig-a"]);
    EXPECT_TRUE(back.ok());
    if (back) hosts_["mig-a"] = *back;
    a_powered_ = true;
    EXPECT_TRUE(start_agent("mig-a").ok());
    EXPECT_TRUE(wait_host_up("mig-a").ok());
    EXPECT_TRUE(wait_fresh_heartbeats("mig-a").ok());
    for (const auto& name : names) EXPECT_TRUE(remove_vm(name));
    return out;
  }

  static void report(const char* label, const std::vector<Run>& runs) {
    std::vector<double> all, last, fenced, from_heartbeat;
    for (const auto& r : runs) {
      fenced.push_back(r.fenced);
      from_heartbeat.push_back(r.from_heartbeat);
      double worst = 0;
      for (double v : r.running) {
        all.push_back(v);
        worst = std::max(worst, v);
      }
      last.push_back(worst);
    }
    std::printf(
        "%s: %zu runs; from the power loss: fenced p50 %.1f s; each VM running elsewhere p50 "
        "%.1f s p95 %.1f s; the last VM of a run p50 %.1f s p95 %.1f s; the last VM from the "
        "host's last heartbeat p50 %.1f s p95 %.1f s\n",
        label, runs.size(), percentile(fenced, 0.5), percentile(all, 0.5), percentile(all, 0.95),
        percentile(last, 0.5), percentile(last, 0.95), percentile(from_heartbeat, 0.5),
        percentile(from_heartbeat, 0.95));
  }
};

TEST_F(HaFailoverBench, PowerLossToRunningElsewhere) {
  const std::string password = "bmc-bench-secret";
  auto bmc = lab::IpmiBmc::start(runner_, lab_->work_dir() / "bmc-mig-a", password,
                                 {[] { return a_powered_.load(); }, [] {}, {}});
  ASSERT_TRUE(bmc.ok()) << bmc.error().message;
  json options = json::object();
  for (const auto& [k, v] : (*bmc)->fence_options(password)) options[k] = v;
  ASSERT_TRUE(api("PUT", "/v1/hosts/mig-a/fencing",
                  json{{"devices", {{{"agent", "fence_ipmilan"}, {"options", options}}}}}.dump())
                  .ok());
  for (int n : {1, g_vms}) {
    std::vector<Run> runs;
    for (int r = 0; r < g_runs; ++r) {
      runs.push_back(failover(r + 1000 * n, n));
      const auto& ran = runs.back().running;
      std::printf("  %d VM(s), run %d: last running at %.1f s (%.1f s from the last heartbeat)\n",
                  n, r + 1, ran.empty() ? 0.0 : *std::max_element(ran.begin(), ran.end()),
                  runs.back().from_heartbeat);
    }
    const std::string label = std::to_string(n) + " HA VM(s)";
    report(label.c_str(), runs);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0) g_runs = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--vms") == 0) g_vms = std::atoi(argv[i + 1]);
  }
  return RUN_ALL_TESTS();
}
