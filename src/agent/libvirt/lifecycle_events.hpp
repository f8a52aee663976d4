#pragma once

// Lifecycle events: libvirt's domain lifecycle callback, turned into LifecycleEvent and
// handed to the hypervisor's subscribers on libvirt's event loop thread. They are
// pushed as they happen; nothing polls.

#include <libvirt/libvirt.h>

#include <cstdint>
#include <memory>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/common/clock.hpp"

namespace kvmfleet::agent::libvirt {

class LifecycleEvents {
 public:
  // Events are stamped with `clock`'s time when they arrive.
  explicit LifecycleEvents(Clock& clock);
  // Drops every subscriber: a callback libvirt still delivers afterwards goes nowhere.
  ~LifecycleEvents();
  LifecycleEvents(const LifecycleEvents&) = delete;
  LifecycleEvents& operator=(const LifecycleEvents&) = delete;

  std::uint64_t subscribe(EventCallback callback);
  // When it returns, that callback is not running and will not run again.
  void unsubscribe(std::uint64_t id);

  // Registers for lifecycle events on `conn` (each new connection needs it): libvirt's
  // callback id, or -1 with libvirt's error left for the caller to read.
  int attach(virConnectPtr conn);
  // Undoes attach(); fails harmlessly on a dead connection.
  static void detach(virConnectPtr conn, int callback_id);

  // What libvirt's callback reaches (public only so that the C callback can name it).
  // libvirt may invoke (or release) a callback after it was deregistered, so the
  // callback holds this through a shared_ptr of its own.
  struct Subscribers;

 private:
  std::shared_ptr<Subscribers> subscribers_;
};

}  // namespace kvmfleet::agent::libvirt
