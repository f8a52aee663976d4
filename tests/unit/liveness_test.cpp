// Host liveness in simulated time: heartbeats count for their arrival, the controller's
// own lag is not the hosts' silence, the mass-failure guard, no store write per flap,
// managed domains the controller does not know.
#include "kvmfleet/hosts/liveness.hpp"
#include "kvmfleet/api/views.hpp"
#include "kvmfleet/core/config.hpp"
#include "tests/unit/controller_fixture.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <set>
#include <sstream>

using namespace kvmfleet;
using namespace std::chrono_literals;

namespace {

class LivenessTest : public testing_support::ControllerTest {
 protected:
  void SetUp() override {
    config_.unreachable_after = 6s;
    config_.down_after = 30s;
    config_.liveness_lag_threshold = 1s;
    config_.liveness_lag_grace = 4s;
    config_.liveness_guard_share = 0.3;
    config_.liveness_guard_min_hosts = 3;
    config_.liveness_guard_window = 60s;
    configure();
    ControllerTest::SetUp();
  }
  virtual void configure() {}

  HostService& hosts() { return ctl_->hosts(); }

  // A heartbeat as host_up sends it (nothing material changes), arrived at `at`.
  Status beat(const std::string& name, const Arrival& at, std::vector<DomainStatus> domains = {}) {
    HostInventory inv;
    inv.cpus = 4;
    inv.memory_total_mib = 8192;
    inv.domain_type = "kvm";
    inv.migration_address = "10.0.0." + std::to_string(name.size() + name.back());
    inv.domains = std::move(domains);
    return hosts().heartbeat({"a", "host:" + name, Role::agent, name}, name, "", inv, at);
  }
  Status beat(const std::string& name, std::vector<DomainStatus> domains = {}) {
    return beat(name, Arrival::now(clock_), std::move(domains));
  }
  // When a request that arrived `ago` ago reached the controller.
  Arrival arrived_ago(std::chrono::milliseconds ago) {
    return {clock_.now() - ago, clock_.steady_now() - ago};
  }
  // One periodic pass run on time, as the controller's ticker runs it.
  void tick() {
    hosts().observe_tick(clock_.steady_now(), clock_.steady_now());
    ctl_->tick();
  }
  HostState state_of(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) { return d.find_host(name)->state; });
  }
  std::optional<Host> stored_host(const std::string& name) {
    auto snap = store_.load();
    for (const auto& h : snap->hosts)
      if (h.name == name) return h;
    return std::nullopt;
  }
};

// ---- arrival time --------------------------------------------------------------

class ArrivalTest : public LivenessTest {
 protected:
  // Waits of a few seconds are not lag here: only the arrival rule is looked at.
  void configure() override { config_.liveness_lag_threshold = 20s; }
};

TEST_F(ArrivalTest, AHeartbeatCountsForWhenItArrivedNotWhenItWasProcessed) {
  host_up("node1");
  clock_.advance(1s);
  const Arrival at = Arrival::now(clock_);
  clock_.advance(4s);  // it waited 4 s before the controller got to it
  ASSERT_TRUE(beat("node1", at).ok());
  const Host h = *state_->host("node1");
  ASSERT_TRUE(h.last_heartbeat);
  EXPECT_EQ(*h.last_heartbeat, at.wall);
  // 6 s after it arrived (2 s after it was processed) the host is silent too long.
  clock_.advance(1s);
  tick();
  EXPECT_EQ(state_of("node1"), HostState::up);
  clock_.advance(1s);
  tick();
  EXPECT_EQ(state_of("node1"), HostState::unreachable);
}

TEST_F(ArrivalTest, AHeartbeatOvertakenByALaterOneDoesNotMoveTheTimeBack) {
  host_up("node1");
  clock_.advance(3s);
  const Arrival early = arrived_ago(2s);
  ASSERT_TRUE(beat("node1").ok());
  const auto latest = *state_->host("node1")->last_heartbeat;
  ASSERT_TRUE(beat("node1", early).ok());
  EXPECT_EQ(*state_->host("node1")->last_heartbeat, latest);
  clock_.advance(5s);  // 5 s after the later one, 7 s after the earlier one
  tick();
  EXPECT_EQ(state_of("node1"), HostState::up);
}

// ---- the controller's own lag ----------------------------------------------------

TEST_F(LivenessTest, ALateTickAfterAStallDoesNotBlameHostsHeardDuringIt) {
  for (const char* n : {"node1", "node2", "node3"}) host_up(n);
  const auto due = clock_.steady_now() + 1s;  // the next tick
  clock_.advance(60s);                        // the controller stalls for a minute
  // node1 and node2 sent heartbeats during the stall; they are processed only now.
  ASSERT_TRUE(beat("node1", arrived_ago(30s)).ok());
  ASSERT_TRUE(beat("node2", arrived_ago(5s)).ok());
  // The tick due a minute ago runs now.
  hosts().observe_tick(due, clock_.steady_now());
  ctl_->tick();
  for (const char* n : {"node1", "node2", "node3"}) EXPECT_EQ(state_of(n), HostState::up) << n;
  const auto status = hosts().liveness_status();
  EXPECT_TRUE(status.holding);
  EXPECT_DOUBLE_EQ(status.lag_seconds, 59.0);
  EXPECT_DOUBLE_EQ(status.lag_total_seconds, 59.0);  // the spans overlap: counted once
  EXPECT_FALSE(hosts().liveness_health()["healthy"].get<bool>());
  EXPECT_NE(hosts().liveness_metrics().find("kvmfleet_controller_lag_seconds 59\n"),
            std::string::npos);

  // From there on ticks run on time; node1 and node2 keep beating, node3 stays silent.
  // node3 was silent 60 s, 59 of them the controller's: 1 s counts. It turns
  // unreachable when 6 s count, and not before the grace after the lag ends.
  for (int k = 1; k <= 5; ++k) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node1").ok());
    ASSERT_TRUE(beat("node2").ok());
    tick();
    EXPECT_EQ(state_of("node1"), HostState::up);
    EXPECT_EQ(state_of("node2"), HostState::up);
    EXPECT_EQ(state_of("node3"), k < 5 ? HostState::up : HostState::unreachable) << "+" << k;
  }
  EXPECT_FALSE(hosts().liveness_status().holding);
  EXPECT_TRUE(hosts().liveness_health()["healthy"].get<bool>());
}

TEST_F(LivenessTest, WhileHeartbeatsWaitInTheControllerNoHostIsDeclared) {
  for (const char* n : {"node1", "node2"}) host_up(n);
  clock_.advance(5s);
  tick();
  // node1's heartbeat waited 2 s to be processed: the controller is behind, and node2's
  // may be waiting too.
  ASSERT_TRUE(beat("node1", arrived_ago(2s)).ok());
  clock_.advance(2s);  // node2 silent 7 s, 2 of them the controller's
  tick();
  EXPECT_EQ(state_of("node2"), HostState::up);
  EXPECT_TRUE(hosts().liveness_status().holding);
  clock_.advance(1s);  // 6 s count now, but within the grace (4 s) after the lag
  tick();
  EXPECT_EQ(state_of("node2"), HostState::up);
  clock_.advance(1s);  // the grace is over
  ASSERT_TRUE(beat("node1").ok());
  tick();
  EXPECT_FALSE(hosts().liveness_status().holding);
  EXPECT_EQ(state_of("node1"), HostState::up);
  EXPECT_EQ(state_of("node2"), HostState::unreachable);
}

TEST_F(LivenessTest, WhileHeartbeatsArriveLateEverywhereNoHostIsDeclared) {
  // Agents beat every 2 s; the controller is starved and reads each host's heartbeat
  // only every 5 s, so every heartbeat it sees comes 3 s late. node4 is silent: with
  // every other host late too, that is no evidence against it.
  const std::vector<std::string> late{"node1", "node2", "node3"};
  for (const char* n : {"node1", "node2", "node3", "node4"}) host_up(n);
  for (int s = 1; s <= 20; ++s) {
    clock_.advance(1s);
    if (s % 5 == 0) {
      for (const auto& n : late) ASSERT_TRUE(beat(n).ok());
    }
    tick();
    EXPECT_EQ(state_of("node4"), HostState::up) << "+" << s;
    EXPECT_TRUE(s < 5 || hosts().liveness_status().holding) << "+" << s;
  }
  // Heartbeats arrive on time again: node4's silence counts from here on.
  bool declared = false;
  for (int s = 21; s <= 40 && !declared; ++s) {
    clock_.advance(1s);
    for (const auto& n : late) ASSERT_TRUE(beat(n).ok());
    tick();
    declared = state_of("node4") == HostState::unreachable;
  }
  EXPECT_TRUE(declared);
  EXPECT_FALSE(hosts().liveness_status().holding);
  for (const auto& n : late) EXPECT_EQ(state_of(n), HostState::up) << n;
}

TEST_F(LivenessTest, ShortWaitsAreNotLag) {
  host_up("node1");
  host_up("node2");
  for (int i = 0; i < 6; ++i) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node1", arrived_ago(500ms)).ok());
    tick();
  }
  EXPECT_FALSE(hosts().liveness_status().holding);
  EXPECT_EQ(hosts().liveness_status().lag_total_seconds, 0.0);
  EXPECT_EQ(state_of("node2"), HostState::unreachable);
}

TEST_F(LivenessTest, TheTickerMeasuresHowLateItRuns) {
  host_up("node1");
  ctl_->start();
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  clock_.advance(30s);  // the first tick was due after 1 s: it runs 29 s late
  while (hosts().liveness_status().lag_total_seconds == 0 &&
         std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(1ms);
  ctl_->stop();  // the tick that saw the lag has ended
  EXPECT_DOUBLE_EQ(hosts().liveness_status().lag_total_seconds, 29.0);
  EXPECT_EQ(state_of("node1"), HostState::up);  // silent 30 s, 29 of them the controller's
}

// ---- mass-failure guard ----------------------------------------------------------

TEST_F(LivenessTest, MassFailureGuardTripsKeepsHostsFromDownAndReleases) {
  const std::vector<std::string> all{"node1", "node2", "node3", "node4", "node5"};
  for (const auto& n : all) host_up(n);
  const int commits = store_.commits;
  // node1..node3 fall silent together (their switch failed); node4 and node5 beat.
  for (int s = 1; s <= 6; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node4").ok());
    ASSERT_TRUE(beat("node5").ok());
    tick();
  }
  for (const char* n : {"node1", "node2", "node3"})
    EXPECT_EQ(state_of(n), HostState::unreachable) << n;  // still the truth we know
  EXPECT_TRUE(hosts().liveness_guard_active());
  EXPECT_EQ(hosts().liveness_status().guard_trips, 1u);
  EXPECT_TRUE(hosts().liveness_health()["guard_active"].get<bool>());
  EXPECT_NE(hosts().liveness_metrics().find("kvmfleet_liveness_guard_active 1\n"),
            std::string::npos);

  // Long past down_after: nobody becomes down while guarded.
  for (int s = 7; s <= 40; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node4").ok());
    ASSERT_TRUE(beat("node5").ok());
    tick();
  }
  for (const char* n : {"node1", "node2", "node3"})
    EXPECT_EQ(state_of(n), HostState::unreachable) << n;
  EXPECT_TRUE(hosts().liveness_guard_active());
  EXPECT_EQ(store_.commits, commits);                    // nothing reached the store
  EXPECT_EQ(hosts().liveness_status().guard_trips, 1u);  // tripped once, alerted once

  // The switch is back: node1 and node2 are heard. One host unreachable is no mass failure.
  ASSERT_TRUE(beat("node1").ok());
  ASSERT_TRUE(beat("node2").ok());
  tick();
  EXPECT_FALSE(hosts().liveness_guard_active());
  // node3, silent for 40 s, is down now, and that is persisted.
  EXPECT_EQ(state_of("node3"), HostState::down);
  ASSERT_TRUE(stored_host("node3"));
  EXPECT_EQ(stored_host("node3")->state, HostState::down);
  EXPECT_NE(hosts().liveness_metrics().find("kvmfleet_liveness_guard_trips_total 1\n"),
            std::string::npos);
}

TEST_F(LivenessTest, AFewSilentHostsAreNoMassFailure) {
  const std::vector<std::string> all{"node1", "node2", "node3", "node4", "node5", "node6", "node7"};
  for (const auto& n : all) host_up(n);
  // Two of seven (under 30 %, and under 3 hosts) fall silent: they go down as usual.
  for (int s = 1; s <= 31; ++s) {
    clock_.advance(1s);
    for (const auto& n : all)
      if (n != "node1" && n != "node2") {
        ASSERT_TRUE(beat(n).ok());
      }
    tick();
    if (s == 6) {
      EXPECT_EQ(state_of("node1"), HostState::unreachable);
      EXPECT_EQ(state_of("node2"), HostState::unreachable);
    }
    EXPECT_FALSE(hosts().liveness_guard_active()) << "+" << s;
  }
  EXPECT_EQ(state_of("node1"), HostState::down);
  EXPECT_EQ(state_of("node2"), HostState::down);
  EXPECT_EQ(hosts().liveness_status().guard_trips, 0u);
}

TEST_F(LivenessTest, HostsLostOutsideTheWindowDoNotTripTheGuard) {
  const std::vector<std::string> all{"node1", "node2", "node3", "node4", "node5", "node6"};
  for (const auto& n : all) host_up(n);
  // node1 then node2 then node3 fall silent, 70 s apart: each a failure of its own.
  std::set<std::string> silent;
  for (int s = 1; s <= 150; ++s) {
    if (s == 1) silent.insert("node1");
    if (s == 71) silent.insert("node2");
    if (s == 141) silent.insert("node3");
    clock_.advance(1s);
    for (const auto& n : all)
      if (!silent.count(n)) {
        ASSERT_TRUE(beat(n).ok());
      }
    tick();
    EXPECT_FALSE(hosts().liveness_guard_active()) << "+" << s;
  }
  EXPECT_EQ(state_of("node1"), HostState::down);
  EXPECT_EQ(state_of("node2"), HostState::down);
  EXPECT_EQ(state_of("node3"), HostState::unreachable);
}

// ---- the store -----------------------------------------------------------------

TEST_F(LivenessTest, AFlappingHostDoesNotWriteTheStore) {
  host_up("node1");
  host_up("node2");
  const int commits = store_.commits;
  for (int flap = 0; flap < 5; ++flap) {
    for (int s = 0; s < 7; ++s) {
      clock_.advance(1s);
      ASSERT_TRUE(beat("node2").ok());
      tick();
    }
    EXPECT_EQ(state_of("node1"), HostState::unreachable);
    ASSERT_TRUE(beat("node1").ok());
    EXPECT_EQ(state_of("node1"), HostState::up);
  }
  EXPECT_EQ(store_.commits, commits);
  // What the store holds is enough after a restart: node1 is up there, and a restarted
  // controller times it from its start.
  ASSERT_TRUE(stored_host("node1"));
  EXPECT_EQ(stored_host("node1")->state, HostState::up);
}

TEST_F(LivenessTest, AFlappingHostWithAVmDoesNotWriteTheStore) {
  host_up("node1");
  host_up("node2");
  Vm web1;
  web1.id = "00000000-0000-4000-8000-000000000001";
  web1.spec.name = "web1";
  web1.host = "node1";
  web1.state = VmState::running;
  web1.desired = DesiredState::running;
  web1.generation = 4;
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
                    b.put_vms.push_back(web1);
                    return {};
                  })
                  .ok());
  const std::vector<DomainStatus> runs{{web1.id, "web1", "running", true, 4, true}};
  ASSERT_TRUE(beat("node1", runs).ok());
  const int commits = store_.commits;
  for (int flap = 0; flap < 3; ++flap) {
    for (int s = 0; s < 7; ++s) {
      clock_.advance(1s);
      ASSERT_TRUE(beat("node2").ok());
      tick();
    }
    EXPECT_EQ(state_of("node1"), HostState::unreachable);
    EXPECT_EQ(vm("web1").state, VmState::unknown);  // nobody may assume it stopped
    ASSERT_TRUE(beat("node1", runs).ok());
    EXPECT_EQ(vm("web1").state, VmState::running);
    EXPECT_EQ(vm("web1").generation, 4);  // the record the store holds
  }
  EXPECT_EQ(store_.commits, commits);

  // Reported otherwise than it was (stopped meanwhile): the reconciler writes that.
  for (int s = 0; s < 7; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node2").ok());
    tick();
  }
  ASSERT_TRUE(beat("node1", {{web1.id, "web1", "stopped", true, 4, true}}).ok());
  EXPECT_EQ(vm("web1").state, VmState::stopped);
  EXPECT_GT(store_.commits, commits);
  auto snap = store_.load();
  ASSERT_EQ(snap->vms.size(), 1u);
  EXPECT_EQ(snap->vms[0].state, VmState::stopped);
}

TEST_F(LivenessTest, ADownHostsVmsAreWrittenUnknown) {
  host_up("node1");
  host_up("node2");
  Vm web1;
  web1.id = "00000000-0000-4000-8000-000000000001";
  web1.spec.name = "web1";
  web1.host = "node1";
  web1.state = VmState::running;
  web1.desired = DesiredState::running;
  ASSERT_TRUE(state_
                  ->update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
                    b.put_vms.push_back(web1);
                    return {};
                  })
                  .ok());
  for (int s = 0; s < 31; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node2").ok());
    tick();
  }
  EXPECT_EQ(state_of("node1"), HostState::down);
  auto snap = store_.load();
  ASSERT_EQ(snap->vms.size(), 1u);
  EXPECT_EQ(snap->vms[0].state, VmState::unknown);
}

TEST_F(LivenessTest, DownAndComingBackAreWritten) {
  host_up("node1");
  host_up("node2");
  for (int s = 0; s < 31; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node2").ok());
    tick();
  }
  EXPECT_EQ(state_of("node1"), HostState::down);
  EXPECT_EQ(stored_host("node1")->state, HostState::down);
  ASSERT_TRUE(beat("node1").ok());
  EXPECT_EQ(stored_host("node1")->state, HostState::up);
}

TEST_F(LivenessTest, AfterARestartASilentHostIsTimedFromTheStart) {
  host_up("node1");
  host_up("node2");
  for (int s = 0; s < 7; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node2").ok());
    tick();
  }
  ASSERT_EQ(state_of("node1"), HostState::unreachable);  // in memory only
  shutdown();
  clock_.advance(1min);
  boot();
  EXPECT_EQ(state_of("node1"), HostState::up);
  for (int s = 1; s <= 6; ++s) {
    clock_.advance(1s);
    ASSERT_TRUE(beat("node2").ok());
    tick();
    EXPECT_EQ(state_of("node1"), s < 6 ? HostState::up : HostState::unreachable) << "+" << s;
  }
}

// ---- managed domains the controller does not know ------------------------------

class CapturedLog {
 public:
  CapturedLog() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~CapturedLog() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::find(sinks.begin(), sinks.end(), sink_));
  }
  int count(const std::string& what) {
    const std::string text = out_.str();
    int n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

TEST_F(LivenessTest, ManagedDomainsUnknownToTheControllerAreReportedNotAdopted) {
  CapturedLog log;
  host_up("node1");
  const std::string stray = "00000000-0000-4000-8000-00000000abcd";
  const DomainStatus dom{stray, "ghost", "running", true, 3, true};
  const DomainStatus other{
      "00000000-0000-4000-8000-00000000abce", "mine", "running", false, 0, true};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(beat("node1", {dom, other}).ok());

  EXPECT_EQ(log.count(stray), 1);  // logged once, not per heartbeat
  const auto view = state_->read(
      [](const ClusterState::Data& d) { return api::host_view(*d.find_host("node1"), d); });
  ASSERT_EQ(view["unknown_domains"].size(), 1u);
  EXPECT_EQ(view["unknown_domains"][0]["uuid"], stray);
  EXPECT_EQ(view["unknown_domains"][0]["name"], "ghost");
  ASSERT_EQ(view["unmanaged_domains"].size(), 1u);
  EXPECT_EQ(view["unmanaged_domains"][0]["name"], "mine");
  EXPECT_EQ(hosts().liveness_status().unknown_managed_domains, 1);
  EXPECT_NE(hosts().liveness_metrics().find("kvmfleet_unknown_managed_domains 1\n"),
            std::string::npos);
  EXPECT_TRUE(agents_.calls().empty());  // nothing undefined, nothing adopted
  EXPECT_EQ(state_->read([](const ClusterState::Data& d) { return d.vms.size(); }), 0u);

  // Gone from the host: no longer counted; back again: reported again.
  ASSERT_TRUE(beat("node1", {other}).ok());
  EXPECT_EQ(hosts().liveness_status().unknown_managed_domains, 0);
  ASSERT_TRUE(beat("node1", {dom}).ok());
  EXPECT_EQ(log.count(stray), 2);
}

// ---- configuration -------------------------------------------------------------

TEST(LivenessConfigTest, KeysDefaultsAndBadValues) {
  auto c = ControllerConfig::from_json(nlohmann::json::object());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->liveness_lag_threshold, 1s);
  EXPECT_EQ(c->liveness_lag_grace, 4s);
  EXPECT_DOUBLE_EQ(c->liveness_guard_share, 0.3);
  EXPECT_EQ(c->liveness_guard_min_hosts, 3);
  EXPECT_EQ(c->liveness_guard_window, 60s);

  auto set = ControllerConfig::from_json({{"liveness_lag_threshold_ms", 2500},
                                          {"liveness_lag_grace_ms", 0},
                                          {"liveness_guard_share", 0.5},
                                          {"liveness_guard_min_hosts", 10},
                                          {"liveness_guard_window_ms", 120000}});
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->liveness_lag_threshold, 2500ms);
  EXPECT_EQ(set->liveness_lag_grace, 0ms);
  EXPECT_DOUBLE_EQ(set->liveness_guard_share, 0.5);
  EXPECT_EQ(set->liveness_guard_min_hosts, 10);
  EXPECT_EQ(set->liveness_guard_window, 120s);

  for (const auto& [key, value] :
       std::vector<std::pair<std::string, nlohmann::json>>{{"liveness_lag_threshold_ms", 0},
                                                           {"liveness_lag_grace_ms", -1},
                                                           {"liveness_guard_share", 0},
                                                           {"liveness_guard_share", 1.5},
                                                           {"liveness_guard_share", "half"},
                                                           {"liveness_guard_min_hosts", 0},
                                                           {"liveness_guard_window_ms", 10}}) {
    auto bad = ControllerConfig::from_json({{key, value}});
    ASSERT_FALSE(bad.ok()) << key << "=" << value.dump();
    EXPECT_NE(bad.error().message.find(key), std::string::npos) << bad.error().message;
  }
}

// ---- the rules as pure parts -----------------------------------------------------

TEST(ControllerLagTest, OverlappingSpansCountOnceInAnyOrder) {
  ControllerLag lag(1s, 4s);
  const Clock::steady_time_point t0{std::chrono::hours{1}};
  lag.observe(t0 + 50s, t0 + 60s);
  lag.observe(t0 + 1s, t0 + 60s);
  lag.observe(t0 + 70s, t0 + 70s + 500ms);  // under the threshold
  EXPECT_EQ(lag.lag_total(), 59s);
  EXPECT_EQ(lag.lagged_between(t0 + 30s, t0 + 100s), 30s);
  EXPECT_EQ(lag.lagged_between(t0, t0 + 1s), 0s);
  EXPECT_TRUE(lag.holding(t0 + 63s));
  EXPECT_FALSE(lag.holding(t0 + 64s));
  lag.observe(t0 + 80s, t0 + 90s);
  EXPECT_EQ(lag.lagged_between(t0, t0 + 100s), 69s);
  lag.forget_before(t0 + 75s);
  EXPECT_EQ(lag.lagged_between(t0, t0 + 100s), 10s);
  EXPECT_EQ(lag.lag_total(), 69s);
}

TEST(ArrivalGapsTest, TheMedianGapOfSeveralHostsBeyondTheIntervalIsLateness) {
  ArrivalGaps gaps(2s, 4s, 3);
  const Clock::steady_time_point t0{std::chrono::hours{1}};
  // On time: no lateness.
  for (const char* h : {"a", "b", "c", "d"}) gaps.arrived(h, t0, 2s);
  EXPECT_EQ(gaps.lateness(t0), 0s);
  // One host back after a long gap among hosts on time: its own absence, not lateness.
  gaps.arrived("e", t0 + 1s, 30s);
  EXPECT_EQ(gaps.lateness(t0 + 1s), 0s);
  // Most heartbeats 5 s apart: 3 s late.
  for (const char* h : {"a", "b", "c", "d", "e"}) gaps.arrived(h, t0 + 5s, 5s);
  EXPECT_EQ(gaps.lateness(t0 + 5s), 3s);
  // Once those leave the window, nothing is late any more.
  EXPECT_EQ(gaps.lateness(t0 + 10s), 0s);
}

TEST(ArrivalGapsTest, TooFewHostsSayNothing) {
  ArrivalGaps gaps(2s, 4s, 3);
  const Clock::steady_time_point t0{std::chrono::hours{1}};
  gaps.arrived("a", t0, 9s);
  gaps.arrived("b", t0, 9s);
  gaps.arrived("a", t0 + 1s, 9s);
  EXPECT_EQ(gaps.lateness(t0 + 1s), 0s);
  gaps.arrived("c", t0 + 1s, 9s);
  EXPECT_EQ(gaps.lateness(t0 + 1s), 7s);
  // A gap that is not one (a heartbeat overtaken by a later one) is not counted.
  gaps.arrived("d", t0 + 1s, -1s);
  gaps.arrived("d", t0 + 1s, 0s);
  EXPECT_EQ(gaps.lateness(t0 + 1s), 7s);
}

TEST(MassFailureGuardTest, TripsOnAShareWithinTheWindowAndReleasesWhenHeardAgain) {
  MassFailureGuard guard({0.3, 3, 60s});
  const Clock::steady_time_point t0{std::chrono::hours{1}};
  guard.turned_unreachable("a", t0);
  guard.turned_unreachable("b", t0 + 1s);
  EXPECT_FALSE(guard.evaluate(t0 + 1s, 8, 2));  // 2 < min_hosts
  guard.turned_unreachable("c", t0 + 2s);
  EXPECT_FALSE(guard.evaluate(t0 + 2s, 8, 3));  // 3 of 11: not more than 30 %
  guard.turned_unreachable("d", t0 + 3s);
  EXPECT_TRUE(guard.evaluate(t0 + 3s, 7, 4));  // 4 of 11
  EXPECT_TRUE(guard.active());
  EXPECT_FALSE(guard.evaluate(t0 + 4s, 7, 4));  // trips once
  EXPECT_TRUE(guard.active());
  guard.heard("a");
  EXPECT_FALSE(guard.evaluate(t0 + 5s, 8, 3));
  EXPECT_FALSE(guard.active());  // 3 of 11 unreachable: released
  EXPECT_EQ(guard.trips(), 1u);
}

}  // namespace
