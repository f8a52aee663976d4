// ClusterState's indices and its grouped commits: the indices must always say what a
// scan of the records would say (after every write and after a restart from the
// store), and grouping writers' commits must never show readers a write that is not
// durable.

#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/reconciler.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <random>
#include <set>
#include <thread>

namespace kvmfleet {
namespace {

using namespace std::chrono_literals;
using Data = ClusterState::Data;

const Clock::time_point kT0 = Clock::time_point{} + 1000h;

// What the indices should say, by scanning the records.
const Operation* scan_active_for(const Data& d, const std::string& target) {
  const Operation* oldest = nullptr;
  for (const auto& [_, op] : d.operations) {
    if (op.target_id != target || is_terminal(op.state)) continue;
    if (!oldest || std::pair(op.created_at, op.id) < std::pair(oldest->created_at, oldest->id))
      oldest = &op;
  }
  return oldest;
}

std::set<std::string> scan_vms_on(const Data& d, const std::string& host) {
  std::set<std::string> out;
  for (const auto& [id, vm] : d.vms)
    if (vm.host == host) out.insert(id);
  return out;
}

std::set<std::string> scan_running(const Data& d, const std::string& vm) {
  std::set<std::string> out;
  for (const auto& [name, h] : d.hosts)
    for (const auto& dom : h.inventory.domains)
      if (dom.uuid == vm && vm_state_from_domain(dom.state) == VmState::running) out.insert(name);
  return out;
}

std::optional<Clock::time_point> scan_oldest_up(const Data& d) {
  std::optional<Clock::time_point> out;
  for (const auto& [_, h] : d.hosts) {
    if (h.state != HostState::up) continue;
    const auto t = h.last_heartbeat.value_or(Clock::time_point::min());
    if (!out || t < *out) out = t;
  }
  return out;
}

// The scheduler's view made the slow way (every VM summed) and from the usage index
// must agree, anti-affinity groups compared as sets.
void expect_same_snapshot(const Data& d) {
  std::vector<Host> hosts;
  std::vector<Vm> vms;
  for (const auto& [_, h] : d.hosts) hosts.push_back(h);
  for (const auto& [_, v] : d.vms) vms.push_back(v);
  auto slow = scheduler::snapshot_from(hosts, vms);
  scheduler::attach_pools(slow, d.usable_pools_by_host());
  const auto fast = scheduler_snapshot(d);
  ASSERT_EQ(slow.hosts.size(), fast.hosts.size());
  for (std::size_t i = 0; i < slow.hosts.size(); ++i) {
    const auto& a = slow.hosts[i];
    const auto& b = fast.hosts[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.allocated_memory_mib, b.allocated_memory_mib) << a.name;
    EXPECT_EQ(a.allocated_vcpus, b.allocated_vcpus) << a.name;
    EXPECT_EQ(std::set(a.anti_affinity_groups.begin(), a.anti_affinity_groups.end()),
              std::set(b.anti_affinity_groups.begin(), b.anti_affinity_groups.end()))
        << a.name;
  }
}

void expect_indices_agree(const Data& d, const std::vector<std::string>& host_names,
                          const std::vector<std::string>& vm_ids) {
  for (const auto& id : vm_ids) {
    EXPECT_EQ(d.active_operation_for(id), scan_active_for(d, id)) << id;
    EXPECT_EQ(d.hosts_running(id), scan_running(d, id)) << id;
  }
  for (const auto& h : host_names) {
    EXPECT_EQ(d.active_operation_for(h), scan_active_for(d, h)) << h;
    EXPECT_EQ(d.vm_ids_on(h), scan_vms_on(d, h)) << h;
    std::int64_t mem = 0;
    int vcpus = 0;
    for (const auto& id : scan_vms_on(d, h)) {
      mem += d.vms.at(id).spec.memory_mib;
      vcpus += d.vms.at(id).spec.vcpus;
    }
    EXPECT_EQ(d.usage_of(h).memory_mib, mem) << h;
    EXPECT_EQ(d.usage_of(h).vcpus, vcpus) << h;
  }
  EXPECT_EQ(d.oldest_up_heartbeat(), scan_oldest_up(d));
  std::vector<std::string> active_scan;
  std::vector<std::pair<Clock::time_point, std::string>> keyed;
  for (const auto& [id, op] : d.operations)
    if (!is_terminal(op.state)) keyed.emplace_back(op.created_at, id);
  std::sort(keyed.begin(), keyed.end());
  for (const auto& [_, id] : keyed) active_scan.push_back(id);
  std::vector<std::string> active_index;
  for (const Operation* op : d.active_operations()) active_index.push_back(op->id);
  EXPECT_EQ(active_index, active_scan);
  for (const auto& [id, t] : d.tokens) {
    const TokenRecord* found = d.find_token_by_hash(t.hash);
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(found->id, id);
  }
  EXPECT_EQ(d.find_token_by_hash("no-such-hash"), nullptr);
  expect_same_snapshot(d);
}

TEST(ClusterStateIndex, AgreesWithTheRecordsThroughRandomWritesAndARestart) {
  doubles::MemoryStore store;
  auto state = std::make_unique<ClusterState>(store);
  ASSERT_TRUE(state->load().ok());

  std::mt19937 rng(20261207);
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  const std::vector<std::string> hosts = {"h0", "h1", "h2", "h3"};
  std::vector<std::string> vms;
  for (int i = 0; i < 12; ++i)
    vms.push_back("00000000-0000-4000-8000-0000000000" + std::to_string(10 + i));
  const std::vector<std::string> groups = {"", "", "web", "db"};
  const std::vector<std::string> domain_states = {"running", "stopped", "paused", "crashed"};

  for (int step = 0; step < 600; ++step) {
    const bool persist = pick(4) != 0;
    auto st = state->update(
        [&](const Data& d, WriteBatch& b) -> Status {
          switch (pick(7)) {
            case 0: {  // a VM written: new, moved, resized, regrouped
              Vm vm;
              vm.id = vms[pick(vms.size())];
              if (const Vm* old = d.find_vm(vm.id)) vm = *old;
              vm.spec.name = "vm-" + vm.id.substr(vm.id.size() - 2);
              vm.spec.memory_mib = 256 * static_cast<std::int64_t>(1 + pick(8));
              vm.spec.vcpus = static_cast<int>(1 + pick(4));
              vm.spec.anti_affinity_group = groups[pick(groups.size())];
              vm.host = pick(5) == 0 ? "" : hosts[pick(hosts.size())];
              b.put_vms.push_back(vm);
              break;
            }
            case 1:
              b.delete_vms.push_back(vms[pick(vms.size())]);
              break;
            case 2: {  // a host report
              Host h;
              h.name = hosts[pick(hosts.size())];
              if (const Host* old = d.find_host(h.name)) h = *old;
              h.state = static_cast<HostState>(pick(3));
              h.last_heartbeat = pick(4) == 0
                                     ? std::nullopt
                                     : std::optional(kT0 + std::chrono::seconds(pick(100)));
              h.inventory.domains.clear();
              for (const auto& id : vms)
                if (pick(4) == 0)
                  h.inventory.domains.push_back(
                      {id, "d", domain_states[pick(domain_states.size())], true, 1, true});
              b.put_hosts.push_back(h);
              break;
            }
            case 3:
              b.delete_hosts.push_back(hosts[pick(hosts.size())]);
              break;
            case 4: {  // an operation: new or moving on
              Operation op;
              op.id = "op" + std::to_string(pick(20));
              if (const Operation* old = d.find_operation(op.id)) op = *old;
              op.target_id = pick(3) == 0 ? hosts[pick(hosts.size())] : vms[pick(vms.size())];
              op.kind = "vm.start";
              op.state = static_cast<OpState>(pick(5));
              op.created_at = kT0 + std::chrono::seconds(pick(10));
              b.put_operations.push_back(op);
              break;
            }
            case 5:
              b.delete_operations.push_back("op" + std::to_string(pick(20)));
              break;
            case 6: {
              TokenRecord t;
              t.id = "t" + std::to_string(pick(5));
              t.hash = "hash" + std::to_string(pick(8));
              t.name = "x";
              // One hash names one token, as sha256 of distinct tokens does.
              for (const auto& [id, other] : d.tokens)
                if (other.hash == t.hash && id != t.id) b.delete_tokens.push_back(id);
              b.put_tokens.push_back(t);
              break;
            }
          }
          return {};
        },
        persist);
    ASSERT_TRUE(st.ok());
    state->read([&](const Data& d) { expect_indices_agree(d, hosts, vms); });
    if (::testing::Test::HasFailure()) FAIL() << "at step " << step;
  }

  // What a restart builds from the store alone agrees too (the observations that were
  // never persisted are gone; the indices follow the records that remain).
  state = std::make_unique<ClusterState>(store);
  ASSERT_TRUE(state->load().ok());
  state->read([&](const Data& d) { expect_indices_agree(d, hosts, vms); });
}

Vm vm_named(const std::string& id, const std::string& name) {
  Vm vm;
  vm.id = id;
  vm.spec.name = name;
  vm.spec.memory_mib = 512;
  return vm;
}

const std::string kVmA = "00000000-0000-4000-8000-00000000000a";
const std::string kVmB = "00000000-0000-4000-8000-00000000000b";
const std::string kVmC = "00000000-0000-4000-8000-00000000000c";

TEST(ClusterStateGroupCommit, WritersQueuedBehindACommitShareTheNextAndReadersSeeOnlyDurable) {
  doubles::MemoryStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.load().ok());

  store.hold();
  auto a = std::async(std::launch::async, [&] {
    return state.update([&](const Data&, WriteBatch& b) -> Status {
      b.put_vms.push_back(vm_named(kVmA, "a"));
      return {};
    });
  });
  store.wait_for_waiting(1);  // a's commit is in flight

  // b plans on top of a (not durable yet); c after b.
  bool b_saw_a = false;
  auto b = std::async(std::launch::async, [&] {
    return state.update([&](const Data& d, WriteBatch& batch) -> Status {
      b_saw_a = d.find_vm("a") != nullptr;
      batch.put_vms.push_back(vm_named(kVmB, "b"));
      return {};
    });
  });
  auto c = std::async(std::launch::async, [&] {
    return state.update([&](const Data&, WriteBatch& batch) -> Status {
      batch.put_vms.push_back(vm_named(kVmC, "c"));
      return {};
    });
  });
  while (state.queued_batches() < 2) std::this_thread::yield();

  // Nothing is durable yet, so readers see none of it — and reading does not wait.
  EXPECT_FALSE(state.vm("a"));
  EXPECT_FALSE(state.vm("b"));
  EXPECT_FALSE(state.vm("c"));

  store.release();
  EXPECT_TRUE(a.get().ok());
  EXPECT_TRUE(b.get().ok());
  EXPECT_TRUE(c.get().ok());
  EXPECT_TRUE(b_saw_a);
  EXPECT_TRUE(state.vm("a"));
  EXPECT_TRUE(state.vm("b"));
  EXPECT_TRUE(state.vm("c"));
  // a alone, then b and c in one transaction.
  EXPECT_EQ(store.commits, 2);
  EXPECT_EQ(store.batches, 3);
  const auto stats = state.commit_stats();
  EXPECT_EQ(stats.transactions, 2u);
  EXPECT_EQ(stats.batches, 3u);
}

TEST(ClusterStateGroupCommit, AFailedCommitFailsTheBatchesPlannedOnTopOfIt) {
  doubles::MemoryStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.load().ok());

  store.hold();
  auto a = std::async(std::launch::async, [&] {
    return state.update([&](const Data&, WriteBatch& b) -> Status {
      b.put_vms.push_back(vm_named(kVmA, "a"));
      return {};
    });
  });
  store.wait_for_waiting(1);
  auto b = std::async(std::launch::async, [&] {
    return state.update([&](const Data& d, WriteBatch& batch) -> Status {
      // Planned on a: a rename of it.
      if (!d.find_vm("a")) return not_found("no a");
      Vm renamed = *d.find_vm("a");
      renamed.spec.name = "a2";
      batch.put_vms.push_back(renamed);
      return {};
    });
  });
  while (state.queued_batches() < 1) std::this_thread::yield();
  store.fail_commits = 1;
  store.release();
  EXPECT_FALSE(a.get().ok());
  EXPECT_FALSE(b.get().ok());
  EXPECT_FALSE(state.vm("a"));
  EXPECT_FALSE(state.vm("a2"));

  // Writers plan from what is durable again: a new write neither sees a nor fails.
  bool saw_a = true;
  ASSERT_TRUE(state
                  .update([&](const Data& d, WriteBatch& batch) -> Status {
                    saw_a = d.find_vm(kVmA) != nullptr;
                    batch.put_vms.push_back(vm_named(kVmC, "c"));
                    return {};
                  })
                  .ok());
  EXPECT_FALSE(saw_a);
  EXPECT_TRUE(state.vm("c"));
  EXPECT_EQ(state.read([](const Data& d) { return d.vms.size(); }), 1u);
}

TEST(ClusterStateGroupCommit, AnObservationQueuedBehindAWriteIsSeenOnlyWithIt) {
  doubles::MemoryStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.load().ok());
  Host h;
  h.name = "h";
  h.state = HostState::down;
  ASSERT_TRUE(state
                  .update([&](const Data&, WriteBatch& b) -> Status {
                    b.put_hosts.push_back(h);
                    return {};
                  })
                  .ok());

  store.hold();
  auto write = std::async(std::launch::async, [&] {
    return state.update([&](const Data&, WriteBatch& b) -> Status {
      b.put_vms.push_back(vm_named(kVmA, "a"));
      return {};
    });
  });
  store.wait_for_waiting(1);
  auto seen = std::async(std::launch::async, [&] {
    return state.update(
        [&](const Data& d, WriteBatch& b) -> Status {
          Host up = *d.find_host("h");
          up.state = HostState::up;
          up.last_heartbeat = kT0;
          b.put_hosts.push_back(up);
          return {};
        },
        false);
  });
  while (state.queued_batches() < 1) std::this_thread::yield();
  // The observation is ordered behind the write in flight: not shown before it.
  EXPECT_EQ(state.host("h")->state, HostState::down);
  store.release();
  EXPECT_TRUE(write.get().ok());
  EXPECT_TRUE(seen.get().ok());
  EXPECT_EQ(state.host("h")->state, HostState::up);
  EXPECT_TRUE(state.vm("a"));
  EXPECT_EQ(store.batches, 2);  // the observation reached memory only
}

TEST(ClusterStateIndex, HeardFromEveryUpHostFollowsTheOldestUpHeartbeat) {
  doubles::MemoryStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.load().ok());
  const auto started = kT0;
  auto put = [&](const std::string& name, HostState s, std::optional<Clock::time_point> last) {
    ASSERT_TRUE(state
                    .update(
                        [&](const Data&, WriteBatch& b) -> Status {
                          Host h;
                          h.name = name;
                          h.state = s;
                          h.last_heartbeat = last;
                          b.put_hosts.push_back(h);
                          return {};
                        },
                        false)
                    .ok());
  };
  auto heard_all = [&] {
    return state.read([&](const Data& d) { return heard_from_every_up_host(d, started); });
  };
  EXPECT_TRUE(heard_all());  // no host up
  put("a", HostState::up, started + 1s);
  put("b", HostState::up, started - 1s);  // heard by a previous controller only
  EXPECT_FALSE(heard_all());
  put("c", HostState::up, std::nullopt);
  EXPECT_FALSE(heard_all());
  put("b", HostState::up, started + 2s);
  EXPECT_FALSE(heard_all());                       // c never heard
  put("c", HostState::unreachable, std::nullopt);  // timed out: no longer waited for
  EXPECT_TRUE(heard_all());
  put("c", HostState::up, started + 3s);
  EXPECT_TRUE(heard_all());
}

TEST(ClusterStateRecords, BothViewsHoldOneCopyOfEachRecord) {
  WriteBatch b;
  b.put_vms.push_back(vm_named("11111111-1111-4111-8111-111111111111", "web1"));
  b.put_vms.push_back(vm_named("22222222-2222-4222-8222-222222222222", "web2"));
  const ClusterState::SharedBatch shared(b);
  Data durable, working;
  durable.apply(shared);
  working.apply(shared);
  // The same record, not two equal ones.
  EXPECT_EQ(durable.find_vm("web1"), working.find_vm("web1"));
  // A write to one view replaces its pointer only.
  WriteBatch w;
  Vm next = *working.find_vm("web1");
  next.generation += 1;
  w.put_vms.push_back(next);
  working.apply(w);
  EXPECT_NE(durable.find_vm("web1"), working.find_vm("web1"));
  EXPECT_EQ(durable.find_vm("web1")->generation + 1, working.find_vm("web1")->generation);
  EXPECT_EQ(durable.find_vm("web2"), working.find_vm("web2"));
  // A copy of a view shares every record with it.
  const Data copy = working;
  EXPECT_EQ(copy.find_vm("web1"), working.find_vm("web1"));
}

TEST(ClusterStateRecords, ReadLikeAMapOfValues) {
  WriteBatch b;
  for (const char* n : {"b", "a", "c"}) {
    Host h;
    h.name = n;
    b.put_hosts.push_back(h);
  }
  Data d;
  d.apply(b);
  std::vector<std::string> names;
  for (const auto& [name, h] : d.hosts) {
    EXPECT_EQ(name, h.name);
    names.push_back(name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(d.hosts.upper_bound("a")->second.name, "b");
  EXPECT_EQ(d.hosts.at("c").name, "c");
  EXPECT_THROW(d.hosts.at("d"), std::out_of_range);
  EXPECT_EQ(d.hosts.count("a"), 1u);
  EXPECT_EQ(d.hosts.find("d"), d.hosts.end());
  WriteBatch del;
  del.delete_hosts.push_back("b");
  d.apply(del);
  EXPECT_EQ(d.hosts.size(), 2u);
  EXPECT_EQ(d.find_host("b"), nullptr);
}

}  // namespace
}  // namespace kvmfleet
