#pragma once

// Keeps the controller informed: a heartbeat with the full inventory every interval
// (the controller's reconciler is level-triggered, so this alone is enough to converge)
// and lifecycle events as soon as they happen (so it need not wait for the next beat).
//
// Two senders, each on a thread of its own: heartbeats go out on their schedule and
// never wait behind events, so a burst of events or a slow events POST cannot make a
// live host look dead; events are batched, queued (bounded) and retried with backoff,
// so a failing heartbeat loses none. Given two clients (the agent gives each sender a
// keep-alive client of its own), the two never share a connection either. Every wait
// is on the injected Clock.

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/agent/report_clock.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/network/link_control.hpp"

namespace kvmfleet::agent {

struct HeartbeatOptions {
  std::string host;            // this host's name
  std::string agent_url;       // where the controller reaches this agent
  std::string controller_url;  // e.g. http://127.0.0.1:7000
  std::string token;           // the host's token
  std::chrono::milliseconds interval{5'000};
  std::chrono::milliseconds request_timeout{5'000};
  std::size_t max_queued_events = 10'000;
  std::size_t max_events_per_post = 500;
  // The host's links for the inventory; null reports none.
  network::LinkControl* links = nullptr;
};

class HeartbeatLoop {
 public:
  // Both senders on one client, which must take concurrent calls.
  // `reports` stamps heartbeats and events (the agent's one ReportClock).
  HeartbeatLoop(Hypervisor& hypervisor, ReportClock& reports, http::Client& client, Clock& clock,
                HeartbeatOptions options);
  // Heartbeats on `heartbeat_client`, events on `events_client`.
  HeartbeatLoop(Hypervisor& hypervisor, ReportClock& reports, http::Client& heartbeat_client,
                http::Client& events_client, Clock& clock, HeartbeatOptions options);
  ~HeartbeatLoop();
  HeartbeatLoop(const HeartbeatLoop&) = delete;
  HeartbeatLoop& operator=(const HeartbeatLoop&) = delete;

  // Subscribes to lifecycle events and starts the two threads; the first heartbeat
  // goes out at once.
  void start();
  // Unsubscribes and joins the threads (a POST in flight ends first, within its
  // timeout). Idempotent.
  void stop();

  // One heartbeat, on the caller's thread and the heartbeat client. The controller's
  // answer may change the interval.
  Status beat_once();
  // Posts the queued events, on the caller's thread and the events client, in batches
  // of at most max_events_per_post. On failure the batch goes back to the front of the
  // queue, so order is kept.
  Status flush_events();
  void enqueue(LifecycleEvent event);

  std::chrono::milliseconds interval() const;
  std::size_t queued_events() const;

 private:
  void run_heartbeats();
  void run_events();
  Result<nlohmann::json> post(http::Client& client, std::string_view path,
                              const nlohmann::json& body);

  Hypervisor& hv_;
  ReportClock& reports_;
  http::Client& heartbeat_client_;
  http::Client& events_client_;
  Clock& clock_;
  HeartbeatOptions options_;

  mutable std::mutex mu_;
  std::deque<LifecycleEvent> events_;
  std::chrono::milliseconds interval_;
  // Ends the heartbeat sender's wait: raised by stop() only.
  Interrupt stop_;
  // Ends the events sender's wait: raised by stop(), and by a new event (which then
  // replaces it with a fresh one for the next wait).
  Interrupt wake_;
  bool started_ = false;
  bool stopping_ = false;
  std::optional<std::uint64_t> subscription_;
  std::thread heartbeat_thread_;
  std::thread events_thread_;
  std::mutex send_mu_;  // one events POST at a time keeps their order
};

}  // namespace kvmfleet::agent
