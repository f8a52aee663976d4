#include "kvmfleet/agent/heartbeat.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet::agent {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr milliseconds kMinInterval{100};
constexpr milliseconds kMaxInterval{300'000};
constexpr milliseconds kFirstEventRetry{200};

std::string trim_slash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

}  // namespace

HeartbeatLoop::HeartbeatLoop(Hypervisor& hypervisor, ReportClock& reports, http::Client& client,
                             Clock& clock, HeartbeatOptions options)
    : HeartbeatLoop(hypervisor, reports, client, client, clock, std::move(options)) {}

HeartbeatLoop::HeartbeatLoop(Hypervisor& hypervisor, ReportClock& reports,
                             http::Client& heartbeat_client, http::Client& events_client,
                             Clock& clock, HeartbeatOptions options)
    : hv_(hypervisor),
      reports_(reports),
      heartbeat_client_(heartbeat_client),
      events_client_(events_client),
      clock_(clock),
      options_(std::move(options)),
      interval_(std::clamp(options_.interval, kMinInterval, kMaxInterval)) {
  options_.controller_url = trim_slash(options_.controller_url);
}

HeartbeatLoop::~HeartbeatLoop() {
  stop();
}

void HeartbeatLoop::start() {
  {
    std::lock_guard lk(mu_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  // Subscribed without holding mu_: event delivery takes the hypervisor's lock, then
  // mu_ (in enqueue), so holding mu_ here would invert that order.
  const auto id = hv_.subscribe([this](const LifecycleEvent& e) { enqueue(e); });
  std::lock_guard lk(mu_);
  subscription_ = id;
  heartbeat_thread_ = std::thread([this] { run_heartbeats(); });
  events_thread_ = std::thread([this] { run_events(); });
}

void HeartbeatLoop::stop() {
  std::optional<std::uint64_t> sub;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    stop_.raise();
    wake_.raise();
    std::swap(sub, subscription_);
  }
  // After this no callback is running or will run, so `this` is safe to destroy.
  if (sub) hv_.unsubscribe(*sub);
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (events_thread_.joinable()) events_thread_.join();
}

void HeartbeatLoop::enqueue(LifecycleEvent event) {
  event.stamp = reports_.next();
  {
    std::lock_guard lk(mu_);
    if (events_.size() >= options_.max_queued_events) {
      // Heartbeats carry the full state anyway; an old event is the cheapest loss.
      events_.pop_front();
      spdlog::warn("lifecycle event queue full; dropped the oldest event");
    }
    events_.push_back(std::move(event));
    wake_.raise();
    wake_ = Interrupt{};
  }
}

std::chrono::milliseconds HeartbeatLoop::interval() const {
  std::lock_guard lk(mu_);
  return interval_;
}

std::size_t HeartbeatLoop::queued_events() const {
  std::lock_guard lk(mu_);
  return events_.size();
}

Result<json> HeartbeatLoop::post(http::Client& client, std::string_view path, const json& body) {
  const std::string url = options_.controller_url + std::string(path);
  auto res = client.request("POST", url, options_.token,
                            body.dump(-1, ' ', false, json::error_handler_t::replace),
                            options_.request_timeout);
  if (!res) return res.take_error();
  const json parsed = json::parse(res->body, nullptr, false);
  if (res->status / 100 != 2) {
    if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error"))
      return Error::from_json(parsed);
    return unavailable("controller answered HTTP " + std::to_string(res->status), {{"url", url}});
  }
  if (parsed.is_discarded()) return json::object();
  return parsed;
}

Status HeartbeatLoop::beat_once() {
  // Taken before the domains are listed: an answer the agent gave while they were being
  // listed is later than this heartbeat, whatever the order in which the two arrive.
  const ReportStamp stamp = reports_.next();
  auto inv = hv_.inventory();
  if (!inv) return inv.take_error();
  inv->stamp = stamp;
  if (options_.links) {
    // Without links the controller sees no network as usable here: a failure to read
    // them is logged, and the heartbeat still goes out.
    if (auto links = options_.links->links())
      inv->links = std::move(*links);
    else
      spdlog::warn("cannot read the host's links: {}", links.error().brief());
  }
  const json body = {
      {"host", options_.host}, {"agent_url", options_.agent_url}, {"inventory", *inv}};
  auto answer = post(heartbeat_client_, agent_protocol::kHeartbeatPath, body);
  if (!answer) return answer.take_error();
  if (auto it = answer->find("heartbeat_interval_ms");
      it != answer->end() && it->is_number_integer()) {
    const milliseconds wanted{it->get<std::int64_t>()};
    std::lock_guard lk(mu_);
    interval_ = std::clamp(wanted, kMinInterval, kMaxInterval);
  }
  return {};
}

Status HeartbeatLoop::flush_events() {
  std::lock_guard send(send_mu_);
  for (;;) {
    std::vector<LifecycleEvent> batch;
    {
      std::lock_guard lk(mu_);
      const auto n = std::min(events_.size(), options_.max_events_per_post);
      if (n == 0) return {};
      batch.assign(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(n));
      events_.erase(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    auto answer = post(events_client_, agent_protocol::kEventsPath,
                       {{"host", options_.host}, {"events", batch}});
    if (!answer) {
      std::lock_guard lk(mu_);
      // Back at the front, in order, for the next attempt.
      events_.insert(events_.begin(), batch.begin(), batch.end());
      while (events_.size() > options_.max_queued_events) events_.pop_front();
      return answer.take_error();
    }
  }
}

// The heartbeat sender. A beat is due one interval after the previous one began, so
// a slow answer does not stretch the gap the controller sees; after a beat that took
// longer than that, the next one waits kMinInterval.
void HeartbeatLoop::run_heartbeats() {
  auto next_beat = clock_.steady_now();
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
    }
    if (clock_.steady_now() < next_beat) {
      clock_.sleep_until_steady(next_beat, stop_);
      continue;
    }
    const auto began = clock_.steady_now();
    if (auto st = beat_once(); !st) spdlog::warn("heartbeat failed: {}", st.error().message);
    next_beat = std::max(began + interval(), clock_.steady_now() + kMinInterval);
  }
}

// The events sender: posts as soon as events are queued; after a failure, waits a
// backoff (doubling up to the heartbeat interval) before the next attempt.
void HeartbeatLoop::run_events() {
  auto retry_at = clock_.steady_now();
  milliseconds backoff = kFirstEventRetry;
  std::unique_lock lk(mu_);
  while (!stopping_) {
    const auto now = clock_.steady_now();
    if (events_.empty() || now < retry_at) {
      // With nothing queued, the wait ends with the next event.
      const auto wake_at = events_.empty() ? now + interval_ : retry_at;
      // An event queued from here on raises this very flag, so none is missed.
      const Interrupt woken = wake_;
      lk.unlock();
      clock_.sleep_until_steady(wake_at, woken);
      lk.lock();
      continue;
    }
    lk.unlock();
    if (auto st = flush_events(); !st) {
      spdlog::warn("sending lifecycle events failed: {}", st.error().message);
      retry_at = clock_.steady_now() + backoff;
      backoff = std::min(backoff * 2, interval());
    } else {
      backoff = kFirstEventRetry;
    }
    lk.lock();
  }
}

}  // namespace kvmfleet::agent
