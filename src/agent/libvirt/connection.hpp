#pragma once

// The agent's libvirt connection, shared by every call (a libvirt connection is
// thread-safe). A monitor thread checks it every second, or at once when a call or
// libvirt's close callback saw it fail, and replaces a dead one with backoff. Its waits
// run on the injected Clock, so tests can pass a backoff in simulated time. Lifecycle
// events are registered on every connection it opens.

#include <libvirt/libvirt.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "handles.hpp"
#include "kvmfleet/agent/libvirt_hypervisor.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "lifecycle_events.hpp"

namespace kvmfleet::agent::libvirt {

class Connection {
 public:
  // Never fails: one attempt now, so that a working libvirt is usable as soon as this
  // returns; until one succeeds, acquire() answers unavailable.
  Connection(LibvirtOptions options, Clock& clock, LifecycleEvents& events);
  // Stops the monitor and closes the connection.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& uri() const { return options_.uri; }
  bool alive() const;
  // A reference to the current connection for one call, or unavailable.
  Result<ConnHandle> acquire();
  // The calling thread's last libvirt error, prefixed with `what`; a connection failure
  // also wakes the monitor.
  Error failed(std::string_view what);

  // What libvirt's close callback reaches (public only so that the C callback can name
  // it); it outlives the connection for the same reason as LifecycleEvents::Subscribers.
  struct Monitor;

 private:
  Status connect();
  void disconnect();
  void monitor_loop();

  LibvirtOptions options_;
  Clock& clock_;
  LifecycleEvents& events_;
  std::shared_ptr<Monitor> monitor_;

  mutable std::mutex mu_;
  virConnectPtr conn_ = nullptr;  // our reference; callers take their own with virConnectRef
  int lifecycle_id_ = -1;
  bool close_registered_ = false;
  std::string last_connect_error_;

  std::thread monitor_thread_;
};

}  // namespace kvmfleet::agent::libvirt
