#include "lifecycle_events.hpp"

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "domain_lookup.hpp"

namespace kvmfleet::agent::libvirt {

struct LifecycleEvents::Subscribers {
  explicit Subscribers(Clock& c) : clock(&c) {}
  Clock* clock;

  std::mutex mu;
  std::map<std::uint64_t, EventCallback> callbacks;
  std::uint64_t next_id = 1;
  bool detached = false;

  void dispatch(LifecycleEvent event) {
    std::lock_guard lk(mu);
    if (detached) return;
    event.at = clock->now();
    for (auto& [id, cb] : callbacks) {
      try {
        cb(event);
      } catch (const std::exception& e) {
        spdlog::error("lifecycle event subscriber {} threw: {}", id, e.what());
      } catch (...) {
        spdlog::error("lifecycle event subscriber {} threw", id);
      }
    }
  }
};

namespace {

using SubscribersRef = std::shared_ptr<LifecycleEvents::Subscribers>;

const char* event_name(int event) {
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
      return "defined";
    case VIR_DOMAIN_EVENT_UNDEFINED:
      return "undefined";
    case VIR_DOMAIN_EVENT_STARTED:
      return "started";
    case VIR_DOMAIN_EVENT_SUSPENDED:
      return "suspended";
    case VIR_DOMAIN_EVENT_RESUMED:
      return "resumed";
    case VIR_DOMAIN_EVENT_STOPPED:
      return "stopped";
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      return "shutdown";
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      return "pmsuspended";
    case VIR_DOMAIN_EVENT_CRASHED:
      return "crashed";
    default:
      return "unknown";
  }
}

const char* detail_name(int event, int detail) {
  auto pick = [detail](std::initializer_list<const char*> names) -> const char* {
    if (detail < 0 || static_cast<std::size_t>(detail) >= names.size()) return "unknown";
    return names.begin()[detail];
  };
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
      return pick({"added", "updated", "renamed", "from_snapshot"});
    case VIR_DOMAIN_EVENT_UNDEFINED:
      return pick({"removed", "renamed"});
    case VIR_DOMAIN_EVENT_STARTED:
      return pick({"booted", "migrated", "restored", "from_snapshot", "wakeup"});
    case VIR_DOMAIN_EVENT_SUSPENDED:
      return pick({"paused", "migrated", "ioerror", "watchdog", "restored", "from_snapshot",
                   "api_error", "postcopy", "postcopy_failed"});
    case VIR_DOMAIN_EVENT_RESUMED:
      return pick({"unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed"});
    case VIR_DOMAIN_EVENT_STOPPED:
      return pick(
          {"shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from_snapshot"});
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      return pick({"finished", "guest", "host"});
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      return pick({"memory", "disk"});
    case VIR_DOMAIN_EVENT_CRASHED:
      return pick({"panicked", "crashloaded"});
    default:
      return "unknown";
  }
}

// The state a domain is in after an event, where the event alone says so.
std::optional<std::string> state_after(int event, int detail) {
  switch (event) {
    case VIR_DOMAIN_EVENT_STARTED:
    case VIR_DOMAIN_EVENT_RESUMED:
      return "running";
    case VIR_DOMAIN_EVENT_SUSPENDED:
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      return "paused";
    case VIR_DOMAIN_EVENT_STOPPED:
      // A QEMU that died ("failed": killed, or it exited on an error) leaves the domain
      // shut off with the reason crashed, as virDomainGetState then says too.
      return detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED || detail == VIR_DOMAIN_EVENT_STOPPED_FAILED
                 ? "crashed"
                 : "stopped";
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      return "shutting_down";
    case VIR_DOMAIN_EVENT_CRASHED:
      return "crashed";
    default:
      return std::nullopt;  // defined/undefined: the domain may be running or not
  }
}

void free_subscribers_ref(void* opaque) {
  delete static_cast<SubscribersRef*>(opaque);
}

int on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  const SubscribersRef& subscribers = *static_cast<SubscribersRef*>(opaque);
  LifecycleEvent e;
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(dom, uuid) == 0) e.uuid = uuid;
  if (const char* name = virDomainGetName(dom)) e.name = name;
  e.reason = std::string(event_name(event)) + ":" + detail_name(event, detail);
  if (auto s = state_after(event, detail)) {
    e.state = *s;
  } else {
    int state = 0, reason = 0;
    // A domain that was undefined while stopped no longer exists: it is stopped for good.
    e.state =
        virDomainGetState(dom, &state, &reason, 0) == 0 ? vm_state_name(state, reason) : "stopped";
  }
  subscribers->dispatch(std::move(e));
  return 0;
}

}  // namespace

LifecycleEvents::LifecycleEvents(Clock& clock)
    : subscribers_(std::make_shared<Subscribers>(clock)) {}

LifecycleEvents::~LifecycleEvents() {
  std::lock_guard lk(subscribers_->mu);
  subscribers_->detached = true;
  subscribers_->callbacks.clear();
}

std::uint64_t LifecycleEvents::subscribe(EventCallback callback) {
  std::lock_guard lk(subscribers_->mu);
  const auto id = subscribers_->next_id++;
  subscribers_->callbacks.emplace(id, std::move(callback));
  return id;
}

void LifecycleEvents::unsubscribe(std::uint64_t id) {
  std::lock_guard lk(subscribers_->mu);
  subscribers_->callbacks.erase(id);
}

int LifecycleEvents::attach(virConnectPtr conn) {
  auto* ref = new SubscribersRef(subscribers_);
  const int id = virConnectDomainEventRegisterAny(conn, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                  VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), ref,
                                                  free_subscribers_ref);
  if (id < 0) delete ref;
  return id;
}

void LifecycleEvents::detach(virConnectPtr conn, int callback_id) {
  virConnectDomainEventDeregisterAny(conn, callback_id);
}

}  // namespace kvmfleet::agent::libvirt
