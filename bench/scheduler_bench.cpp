#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kvmfleet/scheduler/scheduler.hpp"

namespace kvmfleet::scheduler {
namespace {

// A mixed fleet: three host shapes, a few hosts down or cordoned, and some VMs already
// running with anti-affinity groups. The seed is fixed so every run measures the same work.
Snapshot make_cluster(int hosts, std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  struct Shape {
    int cpus;
    std::int64_t memory_mib;
  };
  const Shape shapes[] = {{32, 131072}, {64, 262144}, {128, 524288}};
  Snapshot s;
  s.hosts.reserve(static_cast<std::size_t>(hosts));
  for (int i = 0; i < hosts; ++i) {
    HostView h;
    h.name = "node" + std::to_string(i);
    const auto& shape = shapes[pick(0, 2)];
    h.cpus = shape.cpus;
    h.memory_total_mib = shape.memory_mib;
    h.state = pick(0, 49) == 0 ? HostState::down : HostState::up;
    h.schedulable = pick(0, 99) != 0;
    h.allocated_memory_mib = 4096 * pick(0, 8);
    h.allocated_vcpus = 2 * pick(0, 8);
    if (pick(0, 3) == 0) h.anti_affinity_groups.push_back("group" + std::to_string(pick(0, 199)));
    s.hosts.push_back(std::move(h));
  }
  return s;
}

std::vector<Request> make_requests(int count, int hosts, std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<Request> out;
  out.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    Request r;
    r.spec.name = "vm" + std::to_string(i);
    r.spec.memory_mib = 1024 << pick(0, 4);  // 1 to 16 GiB
    r.spec.vcpus = 1 << pick(0, 3);          // 1 to 8
    if (pick(0, 4) == 0) r.spec.anti_affinity_group = "group" + std::to_string(pick(0, 199));
    if (pick(0, 99) == 0) r.spec.pinned_host = "node" + std::to_string(pick(0, hosts - 1));
    if (pick(0, 19) == 0) r.exclude_hosts.push_back("node" + std::to_string(pick(0, hosts - 1)));
    out.push_back(std::move(r));
  }
  return out;
}

void BM_PlaceAll(benchmark::State& state, RankPolicy policy) {
  const int hosts = static_cast<int>(state.range(0));
  const int vms = static_cast<int>(state.range(1));
  std::mt19937 rng(42);
  const Snapshot cluster = make_cluster(hosts, rng);
  const auto requests = make_requests(vms, hosts, rng);
  Config config;
  config.rank = policy;
  std::size_t placed = 0;
  for (auto _ : state) {
    const auto chosen = place_all(cluster, requests, config);
    benchmark::DoNotOptimize(chosen.data());
    placed = 0;
    for (const auto& h : chosen) placed += h.empty() ? 0 : 1;
  }
  state.counters["placed"] = static_cast<double>(placed);
  state.counters["vms_per_s"] =
      benchmark::Counter(static_cast<double>(vms), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(BM_PlaceAll, spread, RankPolicy::spread)
    ->Args({1000, 10000})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlaceAll, pack, RankPolicy::pack)
    ->Args({1000, 10000})
    ->Unit(benchmark::kMillisecond);

// The same count on a fleet that ends up nearly full (uniform 64 GiB hosts, ~94 % of
// memory requested): most hosts stop fitting along the way, the index's worst ground.
void BM_PlaceAllNearlyFull(benchmark::State& state, RankPolicy policy) {
  const int hosts = static_cast<int>(state.range(0));
  const int vms = static_cast<int>(state.range(1));
  std::mt19937 rng(42);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Snapshot cluster;
  for (int i = 0; i < hosts; ++i) {
    HostView h;
    h.name = "node" + std::to_string(i);
    h.state = HostState::up;
    h.cpus = 32;
    h.memory_total_mib = 65536;
    cluster.hosts.push_back(std::move(h));
  }
  std::vector<Request> requests(static_cast<std::size_t>(vms));
  for (auto& r : requests) {
    r.spec.memory_mib = 1024 * pick(4, 8);
    r.spec.vcpus = pick(1, 4);
  }
  Config config;
  config.rank = policy;
  for (auto _ : state) {
    const auto chosen = place_all(cluster, requests, config);
    benchmark::DoNotOptimize(chosen.data());
  }
}
BENCHMARK_CAPTURE(BM_PlaceAllNearlyFull, spread, RankPolicy::spread)
    ->Args({1000, 10000})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PlaceAllNearlyFull, pack, RankPolicy::pack)
    ->Args({1000, 10000})
    ->Unit(benchmark::kMillisecond);

// One VM with a verdict for every host, as a dry run or a create request does.
void BM_PlaceWithVerdicts(benchmark::State& state, RankPolicy policy) {
  const int hosts = static_cast<int>(state.range(0));
  std::mt19937 rng(42);
  const Snapshot cluster = make_cluster(hosts, rng);
  const auto requests = make_requests(64, hosts, rng);
  Config config;
  config.rank = policy;
  std::size_t i = 0;
  for (auto _ : state) {
    auto p = place(cluster, requests[i++ % requests.size()], config);
    benchmark::DoNotOptimize(p.verdicts.data());
  }
}
BENCHMARK_CAPTURE(BM_PlaceWithVerdicts, spread, RankPolicy::spread)
    ->Arg(1000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_PlaceWithVerdicts, pack, RankPolicy::pack)
    ->Arg(1000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvmfleet::scheduler

BENCHMARK_MAIN();
