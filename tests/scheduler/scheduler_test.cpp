#include "kvmfleet/scheduler/scheduler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace kvmfleet::scheduler {
namespace {

HostView host(std::string name, int cpus, std::int64_t memory_mib,
              HostState state = HostState::up) {
  HostView h;
  h.name = std::move(name);
  h.state = state;
  h.cpus = cpus;
  h.memory_total_mib = memory_mib;
  return h;
}

Request request(std::int64_t memory_mib, int vcpus = 1) {
  Request r;
  r.spec.name = "vm";
  r.spec.memory_mib = memory_mib;
  r.spec.vcpus = vcpus;
  return r;
}

const Verdict& verdict_for(const Placement& p, const std::string& name) {
  const auto it = std::find_if(p.verdicts.begin(), p.verdicts.end(),
                               [&](const Verdict& v) { return v.host == name; });
  EXPECT_NE(it, p.verdicts.end()) << name;
  return *it;
}

// One host alone: the verdict says which filter rejected it and why.
Verdict judge(const HostView& h, const Request& r, const Config& c = {}) {
  Snapshot s{{h}};
  const auto p = place(s, r, c);
  EXPECT_EQ(p.verdicts.size(), 1u);
  EXPECT_EQ(p.host.empty(), !p.verdicts[0].feasible);
  return p.verdicts[0];
}

TEST(FilterTest, HostMustBeUp) {
  auto v = judge(host("n1", 4, 4096, HostState::down), request(512));
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "host_up");
  EXPECT_EQ(v.reason, "host is down");
  v = judge(host("n1", 4, 4096, HostState::unreachable), request(512));
  EXPECT_EQ(v.filter, "host_up");
  EXPECT_EQ(v.reason, "host is unreachable");
}

TEST(FilterTest, HostMustBeSchedulable) {
  auto h = host("n1", 4, 4096);
  h.schedulable = false;
  const auto v = judge(h, request(512));
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "schedulable");
  EXPECT_EQ(v.reason, "host is cordoned (not schedulable)");
}

TEST(FilterTest, ExcludedHostsAreRejected) {
  auto r = request(512);
  r.exclude_hosts = {"n0", "n1"};
  const auto v = judge(host("n1", 4, 4096), r);
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "excluded");
  EXPECT_EQ(v.reason, "host is excluded by the request");
  r.exclude_hosts = {"n2"};
  EXPECT_TRUE(judge(host("n1", 4, 4096), r).feasible);
}

TEST(FilterTest, PinnedVmRejectsEveryOtherHost) {
  auto r = request(512);
  r.spec.pinned_host = "n2";
  const Snapshot s{{host("n1", 4, 4096), host("n2", 4, 4096)}};
  const auto p = place(s, r, {});
  EXPECT_EQ(p.host, "n2");
  const auto& v = verdict_for(p, "n1");
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "pinned_host");
  EXPECT_EQ(v.reason, "VM is pinned to host 'n2'");
}

TEST(FilterTest, MemoryReasonGivesTheFigures) {
  auto h = host("n1", 4, 4096);
  h.allocated_memory_mib = 3072;
  const auto v = judge(h, request(2048));
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "memory");
  EXPECT_EQ(v.reason, "needs 2048 MiB, 1024 of 4096 MiB allocatable free");
  EXPECT_TRUE(v.scores.empty());
  // Exactly full is still a fit.
  EXPECT_TRUE(judge(h, request(1024)).feasible);
}

TEST(FilterTest, VcpuReasonGivesTheFigures) {
  auto h = host("n1", 2, 4096);
  h.allocated_vcpus = 7;
  const auto v = judge(h, request(512, 2));  // 2 cpus × 4.0 = 8 allocatable
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "vcpus");
  EXPECT_EQ(v.reason, "needs 2 vCPUs, 1 of 8 allocatable free");
  EXPECT_TRUE(judge(h, request(512, 1)).feasible);
}

TEST(FilterTest, EveryNetworkOfTheNicsMustBeUsable) {
  auto h = host("n1", 4, 4096);
  h.networks = {"lab"};
  auto r = request(512);
  EXPECT_TRUE(judge(h, r).feasible);  // no NICs: no networks needed
  NicSpec lab;
  lab.network = "lab";
  NicSpec storage;
  storage.network = "storage-net";
  r.spec.nics = {lab, lab};
  EXPECT_TRUE(judge(h, r).feasible);
  r.spec.nics.push_back(storage);
  const auto v = judge(h, r);
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "networks");
  EXPECT_EQ(v.reason, "network 'storage-net' is not usable on this host");
  h.networks.push_back("storage-net");
  EXPECT_TRUE(judge(h, r).feasible);
}

TEST(FilterTest, NetworksAreAttachedByHostName) {
  Snapshot s{{host("n1", 4, 4096), host("n2", 4, 4096)}};
  attach_networks(s, {{"n2", {"lab"}}, {"n9", {"lab"}}});
  EXPECT_TRUE(s.hosts[0].networks.empty());
  EXPECT_EQ(s.hosts[1].networks, std::vector<std::string>{"lab"});
  auto r = request(512);
  NicSpec lab;
  lab.network = "lab";
  r.spec.nics = {lab};
  const auto p = place(s, r, {});
  EXPECT_EQ(p.host, "n2");
  EXPECT_EQ(verdict_for(p, "n1").filter, "networks");
}

TEST(FilterTest, AntiAffinityGroupAlreadyOnHost) {
  auto h = host("n1", 4, 4096);
  h.anti_affinity_groups = {"db", "web"};
  auto r = request(512);
  r.spec.anti_affinity_group = "web";
  const auto v = judge(h, r);
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "anti_affinity");
  EXPECT_EQ(v.reason, "anti-affinity group 'web' already has a VM on this host");
  r.spec.anti_affinity_group = "cache";
  EXPECT_TRUE(judge(h, r).feasible);
  r.spec.anti_affinity_group.clear();
  EXPECT_TRUE(judge(h, r).feasible);
}

TEST(FilterTest, TheFirstRejectingFilterIsReported) {
  auto h = host("n1", 1, 1024, HostState::down);
  h.schedulable = false;
  h.allocated_memory_mib = 1024;
  auto v = judge(h, request(4096, 8));
  EXPECT_EQ(v.filter, "host_up");
  h.state = HostState::up;
  v = judge(h, request(4096, 8));
  EXPECT_EQ(v.filter, "schedulable");
  h.schedulable = true;
  v = judge(h, request(4096, 8));
  EXPECT_EQ(v.filter, "memory");
  h.allocated_memory_mib = 0;
  v = judge(h, request(1024, 8));
  EXPECT_EQ(v.filter, "vcpus");
}

// A host that can take live migrations of KVM guests.
HostView migration_target(std::string name, int cpus = 4, std::int64_t memory_mib = 4096) {
  auto h = host(std::move(name), cpus, memory_mib);
  h.has_migration_address = true;
  h.domain_type = "kvm";
  return h;
}

Request migration(std::int64_t memory_mib, std::string source, bool live, std::string domain_type) {
  auto r = request(memory_mib);
  r.migration = Migration{std::move(source), live, std::move(domain_type)};
  return r;
}

TEST(MigrationFilterTest, TheSourceIsNeverTheTarget) {
  const auto v = judge(migration_target("n1"), migration(512, "n1", true, "kvm"));
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "migration_source");
  EXPECT_EQ(v.reason, "the VM's own host");
  EXPECT_TRUE(judge(migration_target("n2"), migration(512, "n1", true, "kvm")).feasible);
}

TEST(MigrationFilterTest, ALiveMigrationNeedsAMigrationAddress) {
  auto h = migration_target("n2");
  h.has_migration_address = false;
  const auto v = judge(h, migration(512, "n1", true, "kvm"));
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "migration_address");
  EXPECT_EQ(v.reason, "takes no migrations (no migration_address)");
  // A cold move copies nothing between the hosts, and a new VM moves nothing.
  EXPECT_TRUE(judge(h, migration(512, "n1", false, "")).feasible);
  EXPECT_TRUE(judge(h, request(512)).feasible);
}

TEST(MigrationFilterTest, ARunningGuestKeepsItsAccelerator) {
  auto h = migration_target("n2");
  h.domain_type = "qemu";
  const auto v = judge(h, migration(512, "n1", true, "kvm"));
  EXPECT_FALSE(v.feasible);
  EXPECT_EQ(v.filter, "accelerator");
  EXPECT_EQ(v.reason, "runs qemu guests, not kvm");
  EXPECT_TRUE(judge(h, migration(512, "n1", true, "qemu")).feasible);
  // No accelerator asked for (a cold move is defined for the target's own).
  EXPECT_TRUE(judge(h, migration(512, "n1", false, "")).feasible);
  EXPECT_TRUE(judge(h, request(512)).feasible);
}

TEST(MigrationFilterTest, MigrationVerdictsComeBeforeEveryOtherFilter) {
  // A host that no migration can reach says so, whatever else is wrong with it.
  auto h = host("n1", 1, 1024, HostState::down);
  h.schedulable = false;
  h.domain_type = "qemu";
  auto r = migration(4096, "n1", true, "kvm");
  r.exclude_hosts = {"n1"};
  r.spec.pinned_host = "n2";
  EXPECT_EQ(judge(h, r).filter, "migration_source");
  r.migration->source_host = "n0";
  EXPECT_EQ(judge(h, r).filter, "migration_address");
  h.has_migration_address = true;
  EXPECT_EQ(judge(h, r).filter, "accelerator");
  h.domain_type = "kvm";
  EXPECT_EQ(judge(h, r).filter, "host_up");
}

TEST(MigrationFilterTest, PlaceAndPlaceAllPickOnlyHostsThatTakeTheMigration) {
  // The roomiest hosts are the ones a live KVM guest cannot go to.
  auto no_address = migration_target("a", 64, 65536);
  no_address.has_migration_address = false;
  auto tcg = migration_target("b", 64, 65536);
  tcg.domain_type = "qemu";
  const Snapshot s{{no_address, tcg, migration_target("src", 64, 65536), migration_target("d")}};
  const auto live = migration(512, "src", true, "kvm");
  const auto p = place(s, live, {});
  EXPECT_EQ(p.host, "d");
  EXPECT_EQ(verdict_for(p, "a").reason, "takes no migrations (no migration_address)");
  EXPECT_EQ(verdict_for(p, "b").reason, "runs qemu guests, not kvm");
  EXPECT_EQ(verdict_for(p, "src").reason, "the VM's own host");
  EXPECT_EQ(place_all(s, {live, live}, {}), (std::vector<std::string>{"d", "d"}));
  // A cold move may go anywhere but its source.
  const auto cold = migration(512, "src", false, "");
  EXPECT_EQ(place(s, cold, {}).host, "a");
  EXPECT_EQ(place_all(s, {cold, cold}, {}), (std::vector<std::string>{"a", "b"}));
}

TEST(OvercommitTest, RatiosAndReservedMemoryShapeCapacity) {
  const auto h = host("n1", 2, 4096);
  Config c;
  c.memory_overcommit = 1.5;  // 6144 MiB allocatable
  EXPECT_TRUE(judge(h, request(6144), c).feasible);
  auto v = judge(h, request(6145), c);
  EXPECT_EQ(v.reason, "needs 6145 MiB, 6144 of 6144 MiB allocatable free");

  c.reserved_memory_mib = 1024;  // 6144 - 1024
  v = judge(h, request(6144), c);
  EXPECT_EQ(v.filter, "memory");
  EXPECT_EQ(v.reason, "needs 6144 MiB, 5120 of 5120 MiB allocatable free");
  EXPECT_TRUE(judge(h, request(5120), c).feasible);

  c.cpu_overcommit = 1.0;  // 2 vCPUs
  EXPECT_TRUE(judge(h, request(512, 2), c).feasible);
  v = judge(h, request(512, 3), c);
  EXPECT_EQ(v.filter, "vcpus");
  EXPECT_EQ(v.reason, "needs 3 vCPUs, 2 of 2 allocatable free");
  c.cpu_overcommit = 1.75;  // 3.5 rounds down to 3
  EXPECT_TRUE(judge(h, request(512, 3), c).feasible);
  EXPECT_FALSE(judge(h, request(512, 4), c).feasible);
}

TEST(RankTest, SpreadPrefersTheMostFreeFractionAndPackTheLeast) {
  auto busy = host("busy", 8, 8192);
  busy.allocated_memory_mib = 6144;  // 25 % free
  auto idle = host("idle", 8, 8192);
  idle.allocated_memory_mib = 2048;  // 75 % free
  auto big = host("big", 8, 65536);
  big.allocated_memory_mib = 32768;  // 50 % free, most MiB free
  const Snapshot s{{busy, idle, big}};

  Config spread;
  spread.rank = RankPolicy::spread;
  auto p = place(s, request(1024), spread);
  EXPECT_EQ(p.host, "idle");
  EXPECT_DOUBLE_EQ(verdict_for(p, "idle").scores.at("spread"), 0.75);
  EXPECT_DOUBLE_EQ(verdict_for(p, "busy").scores.at("spread"), 0.25);

  Config pack;
  pack.rank = RankPolicy::pack;
  p = place(s, request(1024), pack);
  EXPECT_EQ(p.host, "busy");
  EXPECT_DOUBLE_EQ(verdict_for(p, "busy").scores.at("pack"), 0.75);
  // The fullest host no longer fits: pack takes the next fullest.
  p = place(s, request(4096), pack);
  EXPECT_EQ(p.host, "big");
  EXPECT_EQ(verdict_for(p, "busy").filter, "memory");
}

TEST(RankTest, TotalIsTheSumOfNamedScores) {
  auto h = host("n1", 4, 4096);
  h.allocated_memory_mib = 1024;
  h.allocated_vcpus = 4;  // of 16
  const auto v = judge(h, request(512));
  ASSERT_TRUE(v.feasible);
  ASSERT_EQ(v.scores.size(), 2u);
  double sum = 0;
  for (const auto& [name, score] : v.scores) sum += score;
  EXPECT_DOUBLE_EQ(v.total, sum);
  EXPECT_DOUBLE_EQ(v.scores.at("spread"), 0.75);
  EXPECT_GT(v.scores.at("spread.vcpus"), 0);
  EXPECT_TRUE(v.filter.empty());
  EXPECT_TRUE(v.reason.empty());
}

TEST(RankTest, SpreadBreaksMemoryTiesByFewestVcpus) {
  auto a = host("a", 8, 8192);
  a.allocated_vcpus = 6;
  auto b = host("b", 8, 8192);
  b.allocated_vcpus = 2;
  Config c;
  EXPECT_EQ(place(Snapshot{{a, b}}, request(512), c).host, "b");
  c.rank = RankPolicy::pack;
  EXPECT_EQ(place(Snapshot{{a, b}}, request(512), c).host, "a");
}

TEST(RankTest, FullTiesGoToTheSmallerNameWhateverTheOrder) {
  const auto a = host("node-a", 8, 8192);
  const auto b = host("node-b", 8, 8192);
  for (const auto policy : {RankPolicy::spread, RankPolicy::pack}) {
    Config c;
    c.rank = policy;
    EXPECT_EQ(place(Snapshot{{b, a}}, request(512), c).host, "node-a");
    EXPECT_EQ(place(Snapshot{{a, b}}, request(512), c).host, "node-a");
    EXPECT_EQ(place_all(Snapshot{{b, a}}, {request(512)}, c), std::vector<std::string>{"node-a"});
  }
}

TEST(PlaceTest, PinToADownHostFailsWithThatReason) {
  const Snapshot s{{host("n1", 4, 4096, HostState::down), host("n2", 4, 4096)}};
  auto r = request(512);
  r.spec.pinned_host = "n1";
  const auto p = place(s, r, {});
  EXPECT_TRUE(p.host.empty());
  ASSERT_EQ(p.verdicts.size(), 2u);
  EXPECT_EQ(p.verdicts[0].host, "n1");
  EXPECT_EQ(p.verdicts[0].filter, "host_up");
  EXPECT_EQ(p.verdicts[0].reason, "host is down");
  EXPECT_EQ(p.verdicts[1].filter, "pinned_host");
  EXPECT_EQ(place_all(s, {r}, {}), std::vector<std::string>{""});
}

TEST(PlaceTest, PinWinsOverABetterHostAndAnUnknownPinFitsNowhere) {
  auto worse = host("worse", 4, 4096);
  worse.allocated_memory_mib = 3000;
  const Snapshot s{{worse, host("better", 4, 4096)}};
  auto r = request(512);
  r.spec.pinned_host = "worse";
  EXPECT_EQ(place(s, r, {}).host, "worse");
  r.spec.pinned_host = "ghost";
  const auto p = place(s, r, {});
  EXPECT_TRUE(p.host.empty());
  for (const auto& v : p.verdicts) EXPECT_EQ(v.filter, "pinned_host");
}

TEST(PlaceTest, AntiAffinitySendsTheVmElsewhere) {
  auto a = host("a", 8, 8192);
  a.anti_affinity_groups = {"web"};
  auto b = host("b", 8, 8192);
  b.allocated_memory_mib = 4096;  // spread would rather pick a
  const Snapshot s{{a, b}};
  auto r = request(512);
  r.spec.anti_affinity_group = "web";
  EXPECT_EQ(place(s, r, {}).host, "b");
  // Three of the group on two hosts: the third finds no room.
  EXPECT_EQ(place_all(s, {r, r, r}, {}), (std::vector<std::string>{"b", "", ""}));
}

TEST(PlaceTest, EmptyClusterPlacesNothing) {
  const Snapshot empty;
  const auto p = place(empty, request(512), {});
  EXPECT_TRUE(p.host.empty());
  EXPECT_TRUE(p.verdicts.empty());
  EXPECT_EQ(place_all(empty, {request(512), request(1)}, {}), (std::vector<std::string>{"", ""}));
  EXPECT_TRUE(place_all(empty, {}, {}).empty());
}

TEST(PlaceTest, EveryHostGetsAVerdictInSnapshotOrder) {
  const Snapshot s{{host("c", 4, 4096), host("a", 4, 4096, HostState::down), host("b", 1, 512)}};
  const auto p = place(s, request(1024), {});
  ASSERT_EQ(p.verdicts.size(), 3u);
  EXPECT_EQ(p.verdicts[0].host, "c");
  EXPECT_TRUE(p.verdicts[0].feasible);
  EXPECT_EQ(p.verdicts[1].host, "a");
  EXPECT_EQ(p.verdicts[2].host, "b");
  EXPECT_EQ(p.verdicts[2].filter, "memory");
  EXPECT_EQ(p.host, "c");
}

TEST(PlaceAllTest, LaterVmsSeeEarlierOnesAndCapacityRunsOut) {
  const Snapshot s{{host("a", 2, 2048), host("b", 2, 2048)}};
  Config c;
  c.rank = RankPolicy::spread;
  EXPECT_EQ(
      place_all(s, {request(1024), request(1024), request(1024), request(1024), request(1024)}, c),
      (std::vector<std::string>{"a", "b", "a", "b", ""}));
  c.rank = RankPolicy::pack;
  EXPECT_EQ(
      place_all(s, {request(1024), request(1024), request(1024), request(1024), request(1024)}, c),
      (std::vector<std::string>{"a", "a", "b", "b", ""}));
}

TEST(SnapshotTest, SumsTheVmsOfEachHost) {
  std::vector<Host> hosts(3);
  hosts[0].name = "n1";
  hosts[0].state = HostState::up;
  hosts[0].inventory.cpus = 8;
  hosts[0].inventory.memory_total_mib = 16384;
  hosts[1].name = "n2";
  hosts[1].state = HostState::unreachable;
  hosts[1].schedulable = false;
  hosts[1].inventory.cpus = 4;
  hosts[1].inventory.memory_total_mib = 8192;
  hosts[2].name = "n3";
  auto vm = [](std::string host, std::int64_t mem, int vcpus, std::string group) {
    Vm v;
    v.host = std::move(host);
    v.spec.memory_mib = mem;
    v.spec.vcpus = vcpus;
    v.spec.anti_affinity_group = std::move(group);
    v.state = VmState::stopped;  // stopped VMs still hold their capacity
    return v;
  };
  const std::vector<Vm> vms = {vm("n1", 1024, 2, "web"), vm("n1", 2048, 1, ""),
                               vm("n1", 512, 1, "web"),  vm("n2", 4096, 4, "db"),
                               vm("", 9999, 9, "web"),   vm("gone", 9999, 9, "web")};
  const auto s = snapshot_from(hosts, vms);
  ASSERT_EQ(s.hosts.size(), 3u);
  EXPECT_EQ(s.hosts[0].name, "n1");
  EXPECT_EQ(s.hosts[0].state, HostState::up);
  EXPECT_EQ(s.hosts[0].cpus, 8);
  EXPECT_EQ(s.hosts[0].memory_total_mib, 16384);
  EXPECT_EQ(s.hosts[0].allocated_memory_mib, 3584);
  EXPECT_EQ(s.hosts[0].allocated_vcpus, 4);
  EXPECT_EQ(s.hosts[0].anti_affinity_groups, std::vector<std::string>{"web"});
  EXPECT_EQ(s.hosts[1].state, HostState::unreachable);
  EXPECT_FALSE(s.hosts[1].schedulable);
  EXPECT_EQ(s.hosts[1].allocated_memory_mib, 4096);
  EXPECT_EQ(s.hosts[1].allocated_vcpus, 4);
  EXPECT_EQ(s.hosts[1].anti_affinity_groups, std::vector<std::string>{"db"});
  EXPECT_EQ(s.hosts[2].allocated_memory_mib, 0);
  EXPECT_TRUE(s.hosts[2].anti_affinity_groups.empty());
}

TEST(SnapshotTest, CarriesWhatAMigrationTargetNeeds) {
  std::vector<Host> hosts(2);
  hosts[0].name = "n1";
  hosts[0].inventory.migration_address = "10.0.0.1";
  hosts[0].inventory.domain_type = "kvm";
  hosts[1].name = "n2";
  hosts[1].inventory.domain_type = "qemu";
  const auto s = snapshot_from(hosts, {});
  ASSERT_EQ(s.hosts.size(), 2u);
  EXPECT_TRUE(s.hosts[0].has_migration_address);
  EXPECT_EQ(s.hosts[0].domain_type, "kvm");
  EXPECT_FALSE(s.hosts[1].has_migration_address);
  EXPECT_EQ(s.hosts[1].domain_type, "qemu");
}

// What place_all must reproduce: place() one request at a time, each seeing the last.
std::vector<std::string> place_one_by_one(Snapshot s, const std::vector<Request>& requests,
                                          const Config& c) {
  std::vector<std::string> out;
  for (const auto& r : requests) {
    const auto p = place(s, r, c);
    out.push_back(p.host);
    if (p.host.empty()) continue;
    auto it = std::find_if(s.hosts.begin(), s.hosts.end(),
                           [&](const HostView& h) { return h.name == p.host; });
    it->allocated_memory_mib += r.spec.memory_mib;
    it->allocated_vcpus += r.spec.vcpus;
    if (!r.spec.anti_affinity_group.empty())
      it->anti_affinity_groups.push_back(r.spec.anti_affinity_group);
  }
  return out;
}

struct RandomCase {
  Snapshot snapshot;
  std::vector<Request> requests;
  Config config;
};

RandomCase random_case(std::mt19937& rng, int max_hosts, int max_requests) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::vector<std::string> groups = {"g1", "g2", "g3"};
  RandomCase rc;
  const int n = pick(0, max_hosts);
  // Few distinct sizes, so that equal scores (and the name tie-break) come up often.
  // A big shape too, so that requests land in several of the index's memory bands.
  const std::int64_t mems[] = {2048, 4096, 8192, 65536};
  for (int i = 0; i < n; ++i) {
    auto h = host("h" + std::to_string(pick(0, 99999)) + "-" + std::to_string(i), pick(1, 4) * 2,
                  mems[pick(0, 3)]);
    const int state = pick(0, 9);
    h.state = state == 0 ? HostState::down : state == 1 ? HostState::unreachable : HostState::up;
    h.schedulable = pick(0, 9) != 0;
    h.allocated_memory_mib = 512 * pick(0, 4);
    h.allocated_vcpus = pick(0, 6);
    if (pick(0, 3) == 0) h.anti_affinity_groups.push_back(groups[pick(0, 2)]);
    rc.snapshot.hosts.push_back(std::move(h));
  }
  const int m = pick(0, max_requests);
  for (int i = 0; i < m; ++i) {
    auto r = request(128 * pick(1, 16) * (pick(0, 3) == 0 ? 8 : 1), pick(1, 4));
    if (pick(0, 2) == 0) r.spec.anti_affinity_group = groups[pick(0, 2)];
    if (n > 0 && pick(0, 5) == 0)
      r.spec.pinned_host = rc.snapshot.hosts[static_cast<std::size_t>(pick(0, n - 1))].name;
    if (pick(0, 15) == 0) r.spec.pinned_host = "no-such-host";
    if (n > 0 && pick(0, 4) == 0)
      r.exclude_hosts.push_back(rc.snapshot.hosts[static_cast<std::size_t>(pick(0, n - 1))].name);
    rc.requests.push_back(std::move(r));
  }
  rc.config.rank = pick(0, 1) == 0 ? RankPolicy::spread : RankPolicy::pack;
  rc.config.memory_overcommit = pick(0, 1) == 0 ? 1.0 : 1.5;
  rc.config.cpu_overcommit = pick(0, 1) == 0 ? 1.0 : 4.0;
  rc.config.reserved_memory_mib = 256 * pick(0, 2);
  return rc;
}

TEST(PlaceAllTest, EqualsPlacingOneByOneOnRandomSmallClusters) {
  std::mt19937 rng(20240611);
  int placed = 0;
  int refused = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const auto rc = random_case(rng, 12, 40);
    const auto expected = place_one_by_one(rc.snapshot, rc.requests, rc.config);
    const auto got = place_all(rc.snapshot, rc.requests, rc.config);
    ASSERT_EQ(got, expected) << "trial " << trial;
    for (const auto& h : got) (h.empty() ? refused : placed)++;
  }
  // The cases must exercise both outcomes to mean anything.
  EXPECT_GT(placed, 1000);
  EXPECT_GT(refused, 1000);
}

TEST(PlaceAllTest, EqualsPlacingOneByOneWithMigrations) {
  std::mt19937 rng(20250107);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::vector<std::string> types = {"kvm", "qemu"};
  int placed = 0;
  int refused = 0;
  for (int trial = 0; trial < 500; ++trial) {
    auto rc = random_case(rng, 12, 40);
    for (auto& h : rc.snapshot.hosts) {
      h.has_migration_address = pick(0, 3) != 0;
      h.domain_type = types[static_cast<std::size_t>(pick(0, 1))];
    }
    for (auto& r : rc.requests) {
      if (pick(0, 2) == 0) continue;  // some place new VMs
      Migration m;
      const auto n = static_cast<int>(rc.snapshot.hosts.size());
      m.source_host = n > 0 ? rc.snapshot.hosts[static_cast<std::size_t>(pick(0, n - 1))].name : "";
      m.live = pick(0, 1) == 0;
      if (m.live) m.domain_type = types[static_cast<std::size_t>(pick(0, 1))];
      r.migration = std::move(m);
    }
    const auto expected = place_one_by_one(rc.snapshot, rc.requests, rc.config);
    const auto got = place_all(rc.snapshot, rc.requests, rc.config);
    ASSERT_EQ(got, expected) << "trial " << trial;
    for (const auto& h : got) (h.empty() ? refused : placed)++;
  }
  EXPECT_GT(placed, 200);
  EXPECT_GT(refused, 200);
}

TEST(PlaceAllTest, EqualsPlacingOneByOneOnALargerCluster) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 6; ++trial) {
    const auto rc = random_case(rng, 300, 1500);
    ASSERT_EQ(place_all(rc.snapshot, rc.requests, rc.config),
              place_one_by_one(rc.snapshot, rc.requests, rc.config))
        << "trial " << trial;
  }
}

}  // namespace
}  // namespace kvmfleet::scheduler
