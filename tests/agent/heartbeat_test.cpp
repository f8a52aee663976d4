#include "kvmfleet/agent/heartbeat.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kvmfleet/model/json.hpp"
#include "tests/doubles/agent/fake_hypervisor.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/http/fake_http_client.hpp"

namespace kvmfleet::agent {
namespace {

using doubles::FakeHttpClient;
using doubles::FakeHypervisor;
using nlohmann::json;

HeartbeatOptions options() {
  HeartbeatOptions o;
  o.host = "node1";
  o.agent_url = "http://127.0.0.1:7100";
  o.controller_url = "http://127.0.0.1:7000/";
  o.token = "kvf_tok";
  o.interval = std::chrono::milliseconds(60'000);
  return o;
}

LifecycleEvent event(const std::string& uuid, const std::string& reason, ManualClock& clock) {
  return {uuid, "vm-" + uuid, "running", reason, clock.now()};
}

TEST(Heartbeat, PostsInventoryWithTheHostToken) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;
  HeartbeatLoop loop(hv, reports, client, clock, options());
  client.push(http::ClientResponse{200, R"({"heartbeat_interval_ms": 2000})"});
  const ReportStamp before = reports.next();
  ASSERT_TRUE(loop.beat_once().ok());
  const ReportStamp after = reports.next();
  auto calls = client.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].url, "http://127.0.0.1:7000/v1/agent/heartbeat");
  EXPECT_EQ(calls[0].bearer, "kvf_tok");
  auto body = json::parse(calls[0].body);
  EXPECT_EQ(body["host"], "node1");
  EXPECT_EQ(body["agent_url"], "http://127.0.0.1:7100");
  EXPECT_EQ(body["inventory"].get<HostInventory>().hostname, "fake-host");
  // Stamped by the agent's one clock, between what it stamped before and after.
  const auto stamp = body["inventory"]["stamp"].get<ReportStamp>();
  EXPECT_EQ(stamp.agent, reports.run());
  EXPECT_TRUE(older_than(before, stamp));
  EXPECT_TRUE(older_than(stamp, after));
  // The controller sets the pace.
  EXPECT_EQ(loop.interval(), std::chrono::milliseconds(2000));
}

TEST(Heartbeat, ErrorsComeBackAsValues) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;
  HeartbeatLoop loop(hv, reports, client, clock, options());
  client.push(http::ClientResponse{
      401, R"({"error":{"code":"unauthenticated","message":"bad token","details":{}}})"});
  auto st = loop.beat_once();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::unauthenticated);
  client.push(unavailable("connection refused"));
  EXPECT_EQ(loop.beat_once().error().code, ErrorCode::unavailable);
  client.push(http::ClientResponse{502, "<html>bad gateway</html>"});
  EXPECT_EQ(loop.beat_once().error().code, ErrorCode::unavailable);
  // No heartbeat without an inventory: a host that cannot see libvirt is not "up".
  hv.fail_next(unavailable("libvirt down"));
  const auto before = client.calls().size();
  EXPECT_FALSE(loop.beat_once().ok());
  EXPECT_EQ(client.calls().size(), before);
}

TEST(Heartbeat, EventsAreBatchedAndKeptOnFailure) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;
  HeartbeatLoop loop(hv, reports, client, clock, options());
  loop.enqueue(event("a", "started:booted", clock));
  loop.enqueue(event("b", "stopped:destroyed", clock));
  client.push(unavailable("controller down"));
  ASSERT_FALSE(loop.flush_events().ok());
  EXPECT_EQ(loop.queued_events(), 2u);
  loop.enqueue(event("c", "defined:added", clock));
  ASSERT_TRUE(loop.flush_events().ok());
  EXPECT_EQ(loop.queued_events(), 0u);
  auto calls = client.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].url, "http://127.0.0.1:7000/v1/agent/events");
  auto body = json::parse(calls[1].body);
  EXPECT_EQ(body["host"], "node1");
  ASSERT_EQ(body["events"].size(), 3u);
  EXPECT_EQ(body["events"][0]["uuid"], "a");
  EXPECT_EQ(body["events"][1]["uuid"], "b");
  EXPECT_EQ(body["events"][2]["uuid"], "c");
  EXPECT_EQ(body["events"][0]["at"], format_time(clock.now()));
  auto first = body["events"][0].get<LifecycleEvent>();
  // Each stamped when it was queued, in order, by the agent's clock.
  std::vector<ReportStamp> stamps;
  for (const auto& e : body["events"]) stamps.push_back(e.at("stamp").get<ReportStamp>());
  EXPECT_EQ(stamps[0].agent, reports.run());
  EXPECT_TRUE(older_than(stamps[0], stamps[1]));
  EXPECT_TRUE(older_than(stamps[1], stamps[2]));
  first.stamp = {};
  EXPECT_EQ(first, event("a", "started:booted", clock));
  // Nothing queued: nothing sent.
  ASSERT_TRUE(loop.flush_events().ok());
  EXPECT_EQ(client.calls().size(), 2u);
}

TEST(Heartbeat, ThreadBeatsAtOnceAndPushesEventsImmediately) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;  // never advanced: the only beat due is the first one
  HeartbeatLoop loop(hv, reports, client, clock, options());
  loop.start();
  EXPECT_EQ(hv.subscribers(), 1u);
  ASSERT_TRUE(
      client.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/heartbeat"); }));
  hv.emit(event("u1", "started:booted", clock));
  ASSERT_TRUE(client.wait_for_call([](const auto& c) {
    return c.url.ends_with("/v1/agent/events") && c.body.find("u1") != std::string::npos;
  }));
  loop.stop();
  EXPECT_EQ(hv.subscribers(), 0u);
  loop.stop();  // idempotent
}

std::size_t count_calls(FakeHttpClient& client, std::string_view path) {
  const auto calls = client.calls();
  return static_cast<std::size_t>(std::count_if(
      calls.begin(), calls.end(), [&](const auto& c) { return c.url.ends_with(path); }));
}

// The loop waits on the injected clock: beats follow the interval in simulated time.
TEST(Heartbeat, BeatsEveryIntervalOfTheInjectedClock) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;
  HeartbeatLoop loop(hv, reports, client, clock, options());  // every 60 s
  const auto t0 = clock.now();
  loop.start();
  ASSERT_TRUE(
      client.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/heartbeat"); }));
  ASSERT_TRUE(clock.advance_until([&] { return count_calls(client, "/v1/agent/heartbeat") >= 3; },
                                  std::chrono::seconds(1)));
  const auto elapsed = clock.now() - t0;
  EXPECT_GE(elapsed, std::chrono::seconds(120));
  EXPECT_LT(elapsed, std::chrono::seconds(130));
  loop.stop();
  EXPECT_EQ(clock.sleepers(), 0u);
}

// Events that could not be sent are tried again after a backoff on the same clock.
TEST(Heartbeat, RetriesEventsAfterABackoffOfTheInjectedClock) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;
  HeartbeatLoop loop(hv, reports, client, clock, options());
  client.push(http::ClientResponse{200, "{}"});       // the first heartbeat
  client.push(unavailable("controller restarting"));  // the first events POST
  const auto t0 = clock.now();
  loop.start();
  ASSERT_TRUE(
      client.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/heartbeat"); }));
  hv.emit(event("u1", "started:booted", clock));
  ASSERT_TRUE(
      client.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/events"); }));
  ASSERT_TRUE(clock.advance_until([&] { return count_calls(client, "/v1/agent/events") >= 2; },
                                  std::chrono::milliseconds(50)));
  EXPECT_GE(clock.now() - t0, std::chrono::milliseconds(200));
  EXPECT_LT(clock.now() - t0, std::chrono::seconds(60));  // well before the next beat
  EXPECT_EQ(count_calls(client, "/v1/agent/heartbeat"), 1u);
  ASSERT_TRUE(clock.advance_until([&] { return loop.queued_events() == 0; },
                                  std::chrono::milliseconds(50)));
  loop.stop();
}

// The uuids of the events in the bodies of `calls`, in order.
std::vector<std::string> event_uuids(const std::vector<FakeHttpClient::Call>& calls) {
  std::vector<std::string> out;
  for (const auto& c : calls) {
    const json body = json::parse(c.body);
    for (const auto& e : body["events"]) out.push_back(e["uuid"]);
  }
  return out;
}

// An events POST that hangs (a controller slow to answer) does not hold up a beat:
// heartbeats keep their schedule, and the queue keeps filling meanwhile.
TEST(Heartbeat, BeatsOnScheduleWhileAnEventsPostHangs) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient client;
  ManualClock clock;
  client.hold("/v1/agent/events");
  HeartbeatLoop loop(hv, reports, client, clock, options());  // every 60 s
  const auto t0 = clock.steady_now();
  loop.start();
  ASSERT_TRUE(
      client.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/heartbeat"); }));
  hv.emit(event("u1", "started:booted", clock));
  ASSERT_TRUE(
      client.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/events"); }));
  // The events POST is in flight and stays so; three more beats come on time.
  ASSERT_TRUE(clock.advance_until([&] { return count_calls(client, "/v1/agent/heartbeat") >= 4; },
                                  std::chrono::seconds(1)));
  const auto elapsed = clock.steady_now() - t0;
  EXPECT_GE(elapsed, std::chrono::seconds(180));
  EXPECT_LT(elapsed, std::chrono::seconds(190));
  EXPECT_EQ(count_calls(client, "/v1/agent/events"), 1u);
  hv.emit(event("u2", "stopped:destroyed", clock));
  EXPECT_EQ(loop.queued_events(), 1u);
  client.release();
  ASSERT_TRUE(client.wait_for_call([](const auto& c) {
    return c.url.ends_with("/v1/agent/events") && c.body.find("u2") != std::string::npos;
  }));
  loop.stop();
  EXPECT_EQ(clock.sleepers(), 0u);
}

// The other way round: a heartbeat that hangs does not hold up the events.
TEST(Heartbeat, EventsGoOutWhileAHeartbeatHangs) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient beats;
  FakeHttpClient events;
  ManualClock clock;
  beats.hold("/v1/agent/heartbeat");
  HeartbeatLoop loop(hv, reports, beats, events, clock, options());
  loop.start();
  ASSERT_TRUE(
      beats.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/heartbeat"); }));
  hv.emit(event("u1", "started:booted", clock));
  ASSERT_TRUE(events.wait_for_call([](const auto& c) {
    return c.url.ends_with("/v1/agent/events") && c.body.find("u1") != std::string::npos;
  }));
  EXPECT_EQ(beats.calls().size(), 1u);
  EXPECT_EQ(events.calls().size(), 1u);
  beats.release();
  loop.stop();
}

// Failed events POSTs and failed heartbeats lose no event: each batch is sent again
// after a backoff, and the controller receives every event once, in order.
TEST(Heartbeat, EventsSurviveFailedPostsInOrder) {
  FakeHypervisor hv;
  ReportClock reports;
  FakeHttpClient beats;
  FakeHttpClient events;
  ManualClock clock;
  auto o = options();
  o.max_events_per_post = 2;
  for (int i = 0; i < 3; ++i) beats.push(unavailable("controller down"));
  events.push(unavailable("controller restarting"));
  events.push(http::ClientResponse{503, "<html>unavailable</html>"});
  HeartbeatLoop loop(hv, reports, beats, events, clock, o);
  for (const char* uuid : {"a", "b", "c", "d", "e"})
    loop.enqueue(event(uuid, "defined:added", clock));
  loop.start();
  ASSERT_TRUE(
      events.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/events"); }));
  hv.emit(event("f", "started:booted", clock));
  // Two failed attempts, then three batches of at most two.
  ASSERT_TRUE(clock.advance_until([&] { return events.calls().size() >= 5; },
                                  std::chrono::milliseconds(50)));
  EXPECT_EQ(loop.queued_events(), 0u);
  const auto calls = events.calls();
  ASSERT_EQ(calls.size(), 5u);
  const std::vector<std::string> first{"a", "b"};
  EXPECT_EQ(event_uuids({calls[0]}), first);
  EXPECT_EQ(event_uuids({calls[1]}), first);
  const std::vector<FakeHttpClient::Call> delivered(calls.begin() + 2, calls.end());
  const std::vector<std::string> all{"a", "b", "c", "d", "e", "f"};
  EXPECT_EQ(event_uuids(delivered), all);
  // Heartbeats failed meanwhile and went on, on their own client.
  ASSERT_TRUE(
      beats.wait_for_call([](const auto& c) { return c.url.ends_with("/v1/agent/heartbeat"); }));
  EXPECT_EQ(count_calls(beats, "/v1/agent/events"), 0u);
  EXPECT_EQ(count_calls(events, "/v1/agent/heartbeat"), 0u);
  loop.stop();
}

}  // namespace
}  // namespace kvmfleet::agent
