#include "connection.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "errors.hpp"

namespace kvmfleet::agent::libvirt {

struct Connection::Monitor {
  std::mutex mu;
  // Raised for good when the connection goes; ends every wait of the monitor.
  Interrupt stop;
  // Ends the monitor's current wait between checks: a new flag for each wait, since
  // raising one is for good.
  Interrupt check;

  void request_check() {
    std::lock_guard lk(mu);
    check.raise();
  }
};

namespace {

// How often a live connection is checked when nothing reported it failing.
constexpr std::chrono::seconds kCheckInterval{1};

using MonitorRef = std::shared_ptr<Connection::Monitor>;

void free_monitor_ref(void* opaque) {
  delete static_cast<MonitorRef*>(opaque);
}

void on_close(virConnectPtr, int reason, void* opaque) {
  const MonitorRef& monitor = *static_cast<MonitorRef*>(opaque);
  spdlog::warn("libvirt connection closed (reason {})", reason);
  monitor->request_check();
}

}  // namespace

Connection::Connection(LibvirtOptions options, Clock& clock, LifecycleEvents& events)
    : options_(std::move(options)),
      clock_(clock),
      events_(events),
      monitor_(std::make_shared<Monitor>()) {
  if (auto st = connect(); !st) {
    spdlog::warn("{}; will keep retrying", st.error().message);
    std::lock_guard lk(mu_);
    last_connect_error_ = st.error().message;
  }
  monitor_thread_ = std::thread([this] { monitor_loop(); });
}

Connection::~Connection() {
  {
    std::lock_guard lk(monitor_->mu);
    monitor_->stop.raise();
    monitor_->check.raise();
  }
  if (monitor_thread_.joinable()) monitor_thread_.join();
  disconnect();
}

Status Connection::connect() {
  virConnectPtr c = virConnectOpen(options_.uri.c_str());
  if (!c) return last_libvirt_error("connecting to " + options_.uri);
  ConnHandle guard(c);
  // Remote connections only; local drivers (test://) say they do not support it.
  if (virConnectSetKeepAlive(c, options_.keepalive_interval_s, options_.keepalive_count) < 0)
    spdlog::debug("libvirt keepalive not available on {}", options_.uri);
  auto* close_ref = new MonitorRef(monitor_);
  const bool close_ok =
      virConnectRegisterCloseCallback(c, on_close, close_ref, free_monitor_ref) == 0;
  if (!close_ok) delete close_ref;
  const int id = events_.attach(c);
  if (id < 0) {
    auto err = last_libvirt_error("registering for lifecycle events on " + options_.uri);
    if (close_ok) virConnectUnregisterCloseCallback(c, on_close);
    return err;
  }
  std::lock_guard lk(mu_);
  conn_ = guard.release();
  lifecycle_id_ = id;
  close_registered_ = close_ok;
  last_connect_error_.clear();
  return {};
}

void Connection::disconnect() {
  virConnectPtr c = nullptr;
  int id = -1;
  bool close_cb = false;
  {
    std::lock_guard lk(mu_);
    std::swap(c, conn_);
    std::swap(id, lifecycle_id_);
    std::swap(close_cb, close_registered_);
  }
  if (!c) return;
  // On a dead connection these fail; the callbacks' references are released with it.
  if (id >= 0) LifecycleEvents::detach(c, id);
  if (close_cb) virConnectUnregisterCloseCallback(c, on_close);
  virConnectClose(c);
}

bool Connection::alive() const {
  std::lock_guard lk(mu_);
  return conn_ != nullptr && virConnectIsAlive(conn_) == 1;
}

void Connection::monitor_loop() {
  auto backoff = options_.reconnect_min;
  for (;;) {
    Interrupt check;
    {
      std::lock_guard lk(monitor_->mu);
      if (monitor_->stop.raised()) return;
      // A check asked for from here on ends the wait below at once; one asked for
      // before is answered by the look that follows.
      monitor_->check = check;
    }
    if (alive()) {
      backoff = options_.reconnect_min;
      clock_.sleep_for(kCheckInterval, check);
      continue;
    }
    disconnect();
    auto st = connect();
    if (st) {
      spdlog::info("connected to libvirt at {}", options_.uri);
      continue;
    }
    spdlog::warn("{}; retrying in {} ms", st.error().message, backoff.count());
    {
      std::lock_guard lk(mu_);
      last_connect_error_ = st.error().message;
    }
    // Only stopping cuts the backoff short: calls failing meanwhile ask for checks,
    // and answering them would turn the backoff into a busy loop.
    clock_.sleep_for(backoff, monitor_->stop);
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

Result<ConnHandle> Connection::acquire() {
  std::lock_guard lk(mu_);
  if (!conn_) {
    std::string msg = "not connected to libvirt at " + options_.uri;
    if (!last_connect_error_.empty()) msg += " (" + last_connect_error_ + ")";
    return unavailable(std::move(msg));
  }
  virConnectRef(conn_);
  return ConnHandle(conn_);
}

Error Connection::failed(std::string_view what) {
  auto e = last_libvirt_error(what);
  if (e.code == ErrorCode::unavailable) monitor_->request_check();
  return e;
}

}  // namespace kvmfleet::agent::libvirt
