#include "kvmfleet/agent/libvirt_hypervisor.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "kvmfleet/agent/capabilities_xml.hpp"
#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/agent/storage_xml.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/storage/storage_names.hpp"
#include "libvirt/errors.hpp"
#include "libvirt/event_loop.hpp"
#include "libvirt/handles.hpp"

namespace kvmfleet::agent {
namespace {

using libvirt::ConnHandle;
using libvirt::CString;
using libvirt::DomainHandle;
using libvirt::guest_agent_unavailable;
using libvirt::is_guest_agent_unavailable;
using libvirt::last_libvirt_error;
using libvirt::last_libvirt_error_code;
using libvirt::PoolHandle;
using libvirt::VolHandle;

std::string vm_state_name(int state, int reason) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
      return "running";
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      return "paused";
    case VIR_DOMAIN_SHUTDOWN:
      return "shutting_down";
    case VIR_DOMAIN_SHUTOFF:
      return reason == VIR_DOMAIN_SHUTOFF_CRASHED ? "crashed" : "stopped";
    case VIR_DOMAIN_CRASHED:
      return "crashed";
    default:
      return "unknown";
  }
}

std::string version_string(unsigned long v) {
  return std::to_string(v / 1'000'000) + "." + std::to_string((v / 1'000) % 1'000) + "." +
         std::to_string(v % 1'000);
}

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
      return detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED ? "crashed" : "stopped";
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      return "shutting_down";
    case VIR_DOMAIN_EVENT_CRASHED:
      return "crashed";
    default:
      return std::nullopt;  // defined/undefined: the domain may be running or not
  }
}

// Per-domain serialization: two requests for one domain never interleave, requests for
// different domains run in parallel.
class KeyedMutex {
 public:
  std::shared_ptr<std::mutex> get(const std::string& key) {
    std::lock_guard lk(mu_);
    if (locks_.size() > 1024) {
      for (auto it = locks_.begin(); it != locks_.end();) {
        it = it->second.expired() ? locks_.erase(it) : std::next(it);
      }
    }
    auto& weak = locks_[key];
    auto m = weak.lock();
    if (!m) {
      m = std::make_shared<std::mutex>();
      weak = m;
    }
    return m;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<std::mutex>> locks_;
};

// State reachable from libvirt's callbacks. libvirt may invoke (or release) a callback
// after we deregistered it, so callbacks hold this through a shared_ptr of their own
// and the hypervisor marks it detached when it goes away.
struct Shared {
  explicit Shared(Clock& c) : clock(&c) {}
  Clock* clock;

  std::mutex subs_mu;
  std::map<std::uint64_t, EventCallback> subs;
  std::uint64_t next_id = 1;
  bool detached = false;

  std::mutex monitor_mu;
  std::condition_variable monitor_cv;
  bool check_requested = false;
  bool stopping = false;

  void request_check() {
    {
      std::lock_guard lk(monitor_mu);
      check_requested = true;
    }
    monitor_cv.notify_all();
  }

  void dispatch(LifecycleEvent event) {
    std::lock_guard lk(subs_mu);
    if (detached) return;
    event.at = clock->now();
    for (auto& [id, cb] : subs) {
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

using SharedRef = std::shared_ptr<Shared>;

void free_shared_ref(void* opaque) {
  delete static_cast<SharedRef*>(opaque);
}

int on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  const SharedRef& shared = *static_cast<SharedRef*>(opaque);
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
  shared->dispatch(std::move(e));
  return 0;
}

void on_close(virConnectPtr, int reason, void* opaque) {
  const SharedRef& shared = *static_cast<SharedRef*>(opaque);
  spdlog::warn("libvirt connection closed (reason {})", reason);
  shared->request_check();
}

bool same_request(const MigrationRequest& a, const MigrationRequest& b) {
  return a.destination_uri == b.destination_uri && a.migrate_uri == b.migrate_uri &&
         a.policy.max_downtime_ms == b.policy.max_downtime_ms &&
         a.policy.bandwidth_mib_s == b.policy.bandwidth_mib_s &&
         a.policy.auto_converge == b.policy.auto_converge &&
         a.policy.allow_post_copy == b.policy.allow_post_copy;
}

// Progress of the domain's current job into `s`; false when there is no job (it just
// ended) or libvirt cannot say.
// Reads libvirt's statistics of the domain's active job into `s`; false when no job
// runs. `operation` gets the job's kind (VIR_DOMAIN_JOB_OPERATION_*) when asked.
bool read_job_stats(virDomainPtr dom, MigrationStatus& s, int* operation = nullptr) {
  int type = VIR_DOMAIN_JOB_NONE;
  virTypedParameterPtr params = nullptr;
  int n = 0;
  if (virDomainGetJobStats(dom, &type, &params, &n, 0) < 0) return false;
  const bool active = type != VIR_DOMAIN_JOB_NONE;
  if (operation != nullptr) {
    *operation = VIR_DOMAIN_JOB_OPERATION_UNKNOWN;
    if (active) (void)virTypedParamsGetInt(params, n, VIR_DOMAIN_JOB_OPERATION, operation);
  }
  if (active) {
    auto get = [&](const char* field, std::int64_t& out) {
      unsigned long long v = 0;
      if (virTypedParamsGetULLong(params, n, field, &v) == 1) out = static_cast<std::int64_t>(v);
    };
    get(VIR_DOMAIN_JOB_DATA_TOTAL, s.data_total);
    get(VIR_DOMAIN_JOB_DATA_PROCESSED, s.data_processed);
    get(VIR_DOMAIN_JOB_DATA_REMAINING, s.data_remaining);
    get(VIR_DOMAIN_JOB_MEMORY_ITERATION, s.memory_iteration);
    get(VIR_DOMAIN_JOB_DOWNTIME, s.expected_downtime_ms);
    get(VIR_DOMAIN_JOB_TIME_ELAPSED, s.elapsed_ms);
  }
  virTypedParamsFree(params, n);
  return active;
}

// An outgoing migration libvirt carries for the domain, started by whichever agent
// process (one restarted since knows nothing of it): its statistics into `s`.
bool read_outgoing_migration(virDomainPtr dom, MigrationStatus& s) {
  int operation = VIR_DOMAIN_JOB_OPERATION_UNKNOWN;
  return read_job_stats(dom, s, &operation) && operation == VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT;
}

}  // namespace

struct LibvirtHypervisor::Impl {
  Impl(LibvirtOptions o, Clock& clock)
      : options(std::move(o)),
        shared(std::make_shared<Shared>(clock)),
        loop(libvirt::EventLoop::acquire()) {}

  LibvirtOptions options;
  SharedRef shared;
  std::shared_ptr<libvirt::EventLoop> loop;

  mutable std::mutex conn_mu;
  virConnectPtr conn = nullptr;  // our reference; callers take their own with virConnectRef
  int lifecycle_id = -1;
  bool close_registered = false;
  std::string last_connect_error;

  std::mutex pool_mu;
  KeyedMutex domain_locks;
  std::thread monitor;

  // The last migration of each domain started here. A running one marks its domain
  // busy: the per-domain lock is held only while a migration starts, so that status
  // and abort calls answer while it runs, and the other calls check this instead.
  struct MigrationJob {
    MigrationRequest request;
    MigrationStatus status;  // guarded by mig_mu
    bool abort_requested = false;
    bool ladder_aborted = false;  // the convergence ladder ran out of time
    std::chrono::steady_clock::time_point started;
    std::thread thread;  // set and joined under the domain's lock
  };
  std::mutex mig_mu;
  std::condition_variable mig_cv;
  std::map<std::string, std::shared_ptr<MigrationJob>> migrations;

  std::shared_ptr<MigrationJob> find_migration(const std::string& uuid) {
    std::lock_guard lk(mig_mu);
    auto it = migrations.find(uuid);
    return it == migrations.end() ? nullptr : it->second;
  }

  // Called with the domain's lock held.
  Status refuse_if_migrating(const std::string& uuid) {
    std::lock_guard lk(mig_mu);
    auto it = migrations.find(uuid);
    if (it != migrations.end() && it->second->status.state == MigrationState::running)
      return conflict("domain " + uuid + " is migrating",
                      {{"uuid", uuid}, {"op_id", it->second->status.op_id}});
    return {};
  }

  // The migration thread: virDomainMigrateToURI3 blocks until the migration ends.
  void run_migration(std::shared_ptr<MigrationJob> job, ConnHandle conn, DomainHandle dom,
                     std::string uuid) {
    const auto& r = job->request;
    virTypedParameterPtr params = nullptr;
    int n = 0, max = 0;
    bool ok = virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI,
                                      r.migrate_uri.c_str()) == 0;
    if (ok && r.policy.bandwidth_mib_s > 0)
      ok = virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH,
                                   static_cast<unsigned long long>(r.policy.bandwidth_mib_s)) == 0;
    unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST |
                     VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_ABORT_ON_ERROR;
    if (r.policy.auto_converge) flags |= VIR_MIGRATE_AUTO_CONVERGE;
    if (r.policy.allow_post_copy) flags |= VIR_MIGRATE_POSTCOPY;
    const std::string what = "migrating domain " + uuid + " to " + r.destination_uri;
    // The convergence ladder runs beside the blocking call, on a domain handle of the
    // same connection (libvirt allows job control calls while a job runs).
    bool finished = false;
    std::thread ladder;
    if (ok && r.policy.converge_timeout_s > 0) {
      virDomainRef(dom.get());
      ladder = std::thread([this, job, ladder_dom = DomainHandle(dom.get()), &finished, what] {
        run_ladder(*job, ladder_dom.get(), finished, what);
      });
    }
    int rc = -1;
    if (ok) rc = virDomainMigrateToURI3(dom.get(), r.destination_uri.c_str(), params,
                                        static_cast<unsigned>(n), flags);
    Error err = rc < 0 ? last_libvirt_error(what) : Error{};
    const int code = rc < 0 ? last_libvirt_error_code() : VIR_ERR_OK;
    {
      std::lock_guard lk(mig_mu);
      finished = true;
    }
    mig_cv.notify_all();
    if (ladder.joinable()) ladder.join();
    virTypedParamsFree(params, n);
    dom.reset();
    conn.reset();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - job->started);
    {
      std::lock_guard lk(mig_mu);
      auto& s = job->status;
      s.elapsed_ms = elapsed.count();
      if (rc == 0) {
        s.state = MigrationState::completed;
        if (s.data_total > 0) s.data_processed = s.data_total;
        s.data_remaining = 0;
        s.error.reset();
        spdlog::info("{}: completed in {} ms", what, s.elapsed_ms);
      } else if (job->ladder_aborted) {
        s.state = MigrationState::failed;
        s.error = Error{ErrorCode::timeout,
                        "migration did not converge within " +
                            std::to_string(r.policy.converge_timeout_s) + " s and was aborted",
                        {{"ladder_step", s.ladder_step}, {"downtime_limit_ms", s.downtime_limit_ms}}};
        spdlog::warn("{}: did not converge; aborted", what);
      } else if (job->abort_requested || code == VIR_ERR_OPERATION_ABORTED) {
        s.state = MigrationState::cancelled;
        s.error = Error{ErrorCode::cancelled, err.message, err.details};
        spdlog::info("{}: cancelled", what);
      } else {
        s.state = MigrationState::failed;
        s.error = err;
        spdlog::warn("{}: {}", what, err.message);
      }
    }
    mig_cv.notify_all();
  }

  // Applies the convergence ladder (next_ladder_action) until the migration ends.
  void run_ladder(MigrationJob& job, virDomainPtr dom, const bool& finished,
                  const std::string& what) {
    const auto& policy = job.request.policy;
    int steps = 0;
    std::unique_lock lk(mig_mu);
    job.status.downtime_limit_ms = policy.max_downtime_ms;
    while (!finished) {
      mig_cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return finished; });
      if (finished) break;
      const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - job.started)
                               .count();
      const LadderAction a = next_ladder_action(policy, elapsed, steps);
      if (a.step == 0) continue;
      steps = a.step;
      job.status.ladder_step = steps;
      lk.unlock();
      switch (a.kind) {
        case LadderAction::Kind::raise_downtime:
          if (virDomainMigrateSetMaxDowntime(dom, static_cast<unsigned long long>(a.downtime_ms), 0) < 0) {
            spdlog::warn("{}: raising the downtime failed: {}", what,
                         last_libvirt_error("set max downtime").message);
          } else {
            spdlog::info("{}: not converged after {} ms; maximum downtime now {} ms", what,
                         elapsed, a.downtime_ms);
            std::lock_guard g(mig_mu);
            job.status.downtime_limit_ms = a.downtime_ms;
          }
          break;
        case LadderAction::Kind::post_copy:
          spdlog::info("{}: not converged after {} ms; switching to post-copy", what, elapsed);
          if (virDomainMigrateStartPostCopy(dom, 0) < 0)
            spdlog::warn("{}: post-copy switch failed: {}", what,
                         last_libvirt_error("start post-copy").message);
          break;
        case LadderAction::Kind::abort: {
          {
            std::lock_guard g(mig_mu);
            if (finished) break;
            job.ladder_aborted = true;
          }
          spdlog::warn("{}: not converged after {} ms; aborting", what, elapsed);
          if (virDomainAbortJob(dom) < 0)
            spdlog::warn("{}: abort failed: {}", what, last_libvirt_error("abort").message);
          break;
        }
        case LadderAction::Kind::none:
          break;
      }
      lk.lock();
    }
  }

  // ---- connection ----------------------------------------------------------------

  Status connect() {
    virConnectPtr c = virConnectOpen(options.uri.c_str());
    if (!c) return last_libvirt_error("connecting to " + options.uri);
    ConnHandle guard(c);
    // Remote connections only; local drivers (test://) say they do not support it.
    if (virConnectSetKeepAlive(c, options.keepalive_interval_s, options.keepalive_count) < 0)
      spdlog::debug("libvirt keepalive not available on {}", options.uri);
    auto* close_ref = new SharedRef(shared);
    const bool close_ok =
        virConnectRegisterCloseCallback(c, on_close, close_ref, free_shared_ref) == 0;
    if (!close_ok) delete close_ref;
    auto* event_ref = new SharedRef(shared);
    const int id = virConnectDomainEventRegisterAny(c, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                    VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
                                                    event_ref, free_shared_ref);
    if (id < 0) {
      delete event_ref;
      auto err = last_libvirt_error("registering for lifecycle events on " + options.uri);
      if (close_ok) virConnectUnregisterCloseCallback(c, on_close);
      return err;
    }
    std::lock_guard lk(conn_mu);
    conn = guard.release();
    lifecycle_id = id;
    close_registered = close_ok;
    last_connect_error.clear();
    return {};
  }

  void disconnect() {
    virConnectPtr c = nullptr;
    int id = -1;
    bool close_cb = false;
    {
      std::lock_guard lk(conn_mu);
      std::swap(c, conn);
      std::swap(id, lifecycle_id);
      std::swap(close_cb, close_registered);
    }
    if (!c) return;
    // On a dead connection these fail; the callbacks' references are released with it.
    if (id >= 0) virConnectDomainEventDeregisterAny(c, id);
    if (close_cb) virConnectUnregisterCloseCallback(c, on_close);
    virConnectClose(c);
  }

  bool alive() const {
    std::lock_guard lk(conn_mu);
    return conn != nullptr && virConnectIsAlive(conn) == 1;
  }

  void monitor_loop() {
    auto backoff = options.reconnect_min;
    std::unique_lock lk(shared->monitor_mu);
    while (!shared->stopping) {
      shared->check_requested = false;
      lk.unlock();
      const bool ok = alive();
      lk.lock();
      if (ok) {
        backoff = options.reconnect_min;
        shared->monitor_cv.wait_for(lk, std::chrono::seconds(1),
                                    [&] { return shared->stopping || shared->check_requested; });
        continue;
      }
      lk.unlock();
      disconnect();
      auto st = connect();
      if (st) {
        spdlog::info("connected to libvirt at {}", options.uri);
      } else {
        spdlog::warn("{}; retrying in {} ms", st.error().message, backoff.count());
        std::lock_guard clk(conn_mu);
        last_connect_error = st.error().message;
      }
      lk.lock();
      if (st) continue;
      shared->monitor_cv.wait_for(lk, backoff, [&] { return shared->stopping; });
      backoff = std::min(backoff * 2, options.reconnect_max);
    }
  }

  // A reference to the current connection for one call, or unavailable.
  Result<ConnHandle> acquire() {
    std::lock_guard lk(conn_mu);
    if (!conn) {
      std::string msg = "not connected to libvirt at " + options.uri;
      if (!last_connect_error.empty()) msg += " (" + last_connect_error + ")";
      return unavailable(std::move(msg));
    }
    virConnectRef(conn);
    return ConnHandle(conn);
  }

  // The last libvirt error; a connection failure also wakes the monitor.
  Error failed(std::string_view what) {
    auto e = last_libvirt_error(what);
    if (e.code == ErrorCode::unavailable) shared->request_check();
    return e;
  }

  // ---- domains -------------------------------------------------------------------

  struct Described {
    DomainStatus status;
    DomainXmlInfo info;
  };

  Result<Described> describe(virDomainPtr dom) {
    Described d;
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    if (virDomainGetUUIDString(dom, uuid) < 0) return failed("reading a domain's uuid");
    d.status.uuid = uuid;
    const char* name = virDomainGetName(dom);
    if (!name) return failed("reading the name of domain " + d.status.uuid);
    d.status.name = name;
    int state = 0, reason = 0;
    if (virDomainGetState(dom, &state, &reason, 0) < 0)
      return failed("reading the state of domain " + d.status.uuid);
    d.status.state = vm_state_name(state, reason);
    const int persistent = virDomainIsPersistent(dom);
    if (persistent < 0) return failed("reading domain " + d.status.uuid);
    d.status.persistent = persistent == 1;
    // The inactive definition is what define() wrote; a running domain keeps its boot
    // time definition until restarted.
    CString xml(virDomainGetXMLDesc(dom, d.status.persistent ? VIR_DOMAIN_XML_INACTIVE : 0));
    if (!xml) return failed("reading the XML of domain " + d.status.uuid);
    auto info = read_domain_xml(xml.get());
    if (!info) {
      spdlog::warn("domain {}: {}; treating it as unmanaged", d.status.uuid, info.error().message);
      return d;
    }
    d.info = std::move(*info);
    // Metadata copied into a domain with another uuid does not make it ours.
    if (d.info.managed && d.info.vm_id == d.status.uuid) {
      d.status.managed = true;
      d.status.generation = d.info.generation;
    } else {
      d.info.managed = false;
    }
    return d;
  }

  Result<DomainHandle> lookup(virConnectPtr c, const std::string& uuid) {
    virDomainPtr d = virDomainLookupByUUIDString(c, uuid.c_str());
    if (!d) return failed("looking up domain " + uuid);
    return DomainHandle(d);
  }

  struct Managed {
    DomainHandle dom;
    Described desc;
  };

  // kvmfleet acts only on domains carrying its metadata.
  Result<Managed> lookup_managed(virConnectPtr c, const std::string& uuid) {
    auto dom = lookup(c, uuid);
    if (!dom) return dom.take_error();
    auto desc = describe(dom->get());
    if (!desc) return desc.take_error();
    if (!desc->status.managed)
      return conflict("domain " + uuid + " is not managed by kvmfleet", {{"uuid", uuid}});
    return Managed{std::move(*dom), std::move(*desc)};
  }

  Result<bool> is_active(virDomainPtr dom, const std::string& uuid) {
    const int a = virDomainIsActive(dom);
    if (a < 0) return failed("reading the state of domain " + uuid);
    return a == 1;
  }

  // Not running: conflict (what reboot, fsfreeze/fsthaw and block-resize need).
  Status require_running(virDomainPtr dom, const std::string& uuid) {
    auto active = is_active(dom, uuid);
    if (!active) return active.take_error();
    if (!*active) return conflict("domain " + uuid + " is not running", {{"uuid", uuid}});
    return {};
  }

  Result<DomainStatus> status(virDomainPtr dom) {
    auto d = describe(dom);
    if (!d) return d.take_error();
    return std::move(d->status);
  }

  // ---- storage -------------------------------------------------------------------

  Result<PoolHandle> ensure_pool(virConnectPtr c) {
    std::lock_guard lk(pool_mu);
    PoolHandle pool(virStoragePoolLookupByName(c, options.pool_name.c_str()));
    if (!pool) {
      if (last_libvirt_error_code() != VIR_ERR_NO_STORAGE_POOL)
        return failed("looking up storage pool " + options.pool_name);
      auto xml = write_dir_pool_xml(options.pool_name, options.pool_path);
      if (!xml) return xml.take_error();
      pool.reset(virStoragePoolDefineXML(c, xml->c_str(), 0));
      if (!pool) return failed("defining storage pool " + options.pool_name);
      if (virStoragePoolSetAutostart(pool.get(), 1) < 0)
        spdlog::warn(
            "{}", last_libvirt_error("marking pool " + options.pool_name + " autostart").message);
      spdlog::info("defined storage pool {} at {}", options.pool_name, options.pool_path);
    } else if (CString pxml(virStoragePoolGetXMLDesc(pool.get(), 0)); pxml) {
      if (auto path = read_pool_target_path(pxml.get()); path && *path != options.pool_path)
        spdlog::warn("storage pool {} is at {}, not the configured {}", options.pool_name, *path,
                     options.pool_path);
    }
    const int active = virStoragePoolIsActive(pool.get());
    if (active < 0) return failed("reading storage pool " + options.pool_name);
    if (active == 0) {
      // Build makes the directory; it fails harmlessly when the directory exists.
      if (virStoragePoolBuild(pool.get(), 0) < 0)
        spdlog::debug("{}", last_libvirt_error("building pool " + options.pool_name).message);
      if (virStoragePoolCreate(pool.get(), 0) < 0)
        return failed("starting storage pool " + options.pool_name);
    }
    return pool;
  }

  Result<std::string> ensure_volume(virStoragePoolPtr pool, const DomainDisk& disk) {
    VolHandle vol(virStorageVolLookupByName(pool, disk.volume.c_str()));
    if (!vol) {
      if (last_libvirt_error_code() != VIR_ERR_NO_STORAGE_VOL)
        return failed("looking up volume " + disk.volume);
      auto xml =
          write_qcow2_volume_xml(disk.volume, static_cast<std::uint64_t>(disk.size_gib) << 30);
      if (!xml) return xml.take_error();
      vol.reset(virStorageVolCreateXML(pool, xml->c_str(), 0));
      if (!vol) {
        auto err = failed("creating volume " + disk.volume);
        // The file may exist without the pool knowing it yet.
        if (virStoragePoolRefresh(pool, 0) == 0)
          vol.reset(virStorageVolLookupByName(pool, disk.volume.c_str()));
        if (!vol) return err;
      } else {
        spdlog::info("created volume {} ({} GiB)", disk.volume, disk.size_gib);
      }
    }
    CString path(virStorageVolGetPath(vol.get()));
    if (!path) return failed("reading the path of volume " + disk.volume);
    return std::string(path.get());
  }

  // Deletes the volumes of a domain: the files it referenced inside our pool, plus
  // any pool volume named after its uuid (covers a retry after the domain is gone).
  Status remove_volumes(virConnectPtr c, const std::string& uuid,
                        const std::vector<std::string>& sources) {
    std::lock_guard lk(pool_mu);
    PoolHandle pool(virStoragePoolLookupByName(c, options.pool_name.c_str()));
    if (!pool) {
      if (last_libvirt_error_code() == VIR_ERR_NO_STORAGE_POOL) return {};
      return failed("looking up storage pool " + options.pool_name);
    }
    if (virStoragePoolIsActive(pool.get()) != 1) return {};
    virStorageVolPtr* vols = nullptr;
    const int n = virStoragePoolListAllVolumes(pool.get(), &vols, 0);
    if (n < 0) return failed("listing volumes of pool " + options.pool_name);
    std::vector<VolHandle> all;
    for (int i = 0; i < n; ++i) all.emplace_back(vols[i]);
    std::free(vols);
    const std::string prefix = uuid + "-";
    for (auto& vol : all) {
      const char* name = virStorageVolGetName(vol.get());
      CString path(virStorageVolGetPath(vol.get()));
      const bool named_after = name && std::string_view(name).starts_with(prefix);
      const bool referenced =
          path && std::find(sources.begin(), sources.end(), path.get()) != sources.end();
      if (!named_after && !referenced) continue;
      if (virStorageVolDelete(vol.get(), 0) < 0)
        return failed("deleting volume " + std::string(name ? name : "?"));
      spdlog::info("deleted volume {}", name ? name : "?");
    }
    return {};
  }
};

LibvirtHypervisor::LibvirtHypervisor(LibvirtOptions options, Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {
  // One attempt now so that a working libvirt is usable as soon as this returns.
  if (auto st = impl_->connect(); !st) {
    spdlog::warn("{}; will keep retrying", st.error().message);
    std::lock_guard lk(impl_->conn_mu);
    impl_->last_connect_error = st.error().message;
  }
  impl_->monitor = std::thread([this] { impl_->monitor_loop(); });
}

LibvirtHypervisor::~LibvirtHypervisor() {
  // A migration thread is inside virDomainMigrateToURI3; it needs the event loop and
  // must end before anything else goes.
  std::vector<std::shared_ptr<Impl::MigrationJob>> jobs;
  {
    std::lock_guard lk(impl_->mig_mu);
    for (auto& [uuid, job] : impl_->migrations) {
      if (job->status.state == MigrationState::running)
        spdlog::info("waiting for the migration of domain {} to end", uuid);
      jobs.push_back(job);
    }
  }
  for (auto& job : jobs)
    if (job->thread.joinable()) job->thread.join();
  {
    std::lock_guard lk(impl_->shared->monitor_mu);
    impl_->shared->stopping = true;
  }
  impl_->shared->monitor_cv.notify_all();
  if (impl_->monitor.joinable()) impl_->monitor.join();
  impl_->disconnect();
  std::lock_guard lk(impl_->shared->subs_mu);
  impl_->shared->detached = true;
  impl_->shared->subs.clear();
}

bool LibvirtHypervisor::connected() const {
  return impl_->alive();
}

Result<HostInventory> LibvirtHypervisor::inventory() {
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  virConnectPtr conn = c->get();
  HostInventory inv;
  virNodeInfo node{};
  if (virNodeGetInfo(conn, &node) < 0) return impl_->failed("reading node info");
  inv.cpus = static_cast<int>(node.cpus);
  inv.memory_total_mib = static_cast<std::int64_t>(node.memory / 1024);
  const unsigned long long free_bytes = virNodeGetFreeMemory(conn);
  if (free_bytes == 0 && last_libvirt_error_code() != VIR_ERR_OK) {
    if (last_libvirt_error_code() != VIR_ERR_NO_SUPPORT)
      return impl_->failed("reading free memory");
    // Drivers without it (test://) report 0: the scheduler then sees no free memory.
  }
  inv.memory_free_mib = static_cast<std::int64_t>(free_bytes >> 20);
  unsigned long version = 0;
  if (virConnectGetLibVersion(conn, &version) < 0) return impl_->failed("reading libvirt version");
  inv.libvirt_version = version_string(version);
  if (virConnectGetVersion(conn, &version) < 0) return impl_->failed("reading hypervisor version");
  inv.qemu_version = version_string(version);
  CString hostname(virConnectGetHostname(conn));
  if (!hostname) return impl_->failed("reading hostname");
  inv.hostname = hostname.get();
  CString caps_xml(virConnectGetCapabilities(conn));
  if (!caps_xml) return impl_->failed("reading capabilities");
  auto caps = read_capabilities_xml(caps_xml.get());
  if (!caps) return internal_error("libvirt capabilities: " + caps.error().message);
  inv.host_uuid = caps->host_uuid;
  inv.cpu_model = caps->cpu_model;
  inv.domain_type = caps->domain_type;
  inv.migration_address = impl_->options.migration_address;
  auto domains = list_domains();
  if (!domains) return domains.take_error();
  inv.domains = std::move(*domains);
  return inv;
}

Result<std::vector<DomainStatus>> LibvirtHypervisor::list_domains() {
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  virDomainPtr* doms = nullptr;
  const int n = virConnectListAllDomains(c->get(), &doms, 0);
  if (n < 0) return impl_->failed("listing domains");
  std::vector<DomainHandle> handles;
  for (int i = 0; i < n; ++i) handles.emplace_back(doms[i]);
  std::free(doms);
  std::vector<DomainStatus> out;
  for (auto& d : handles) {
    auto st = impl_->status(d.get());
    if (!st) {
      // Undefined while we were listing it.
      if (st.error().code == ErrorCode::not_found) continue;
      return st.take_error();
    }
    out.push_back(std::move(*st));
  }
  std::sort(out.begin(), out.end(),
            [](const DomainStatus& a, const DomainStatus& b) { return a.uuid < b.uuid; });
  return out;
}

Result<DomainStatus> LibvirtHypervisor::get_domain(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto dom = impl_->lookup(c->get(), uuid);
  if (!dom) return dom.take_error();
  return impl_->status(dom->get());
}

Result<DomainStatus> LibvirtHypervisor::define(const DomainSpec& spec) {
  if (auto st = validate_domain_spec(spec); !st) return st.take_error();
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  virConnectPtr conn = c->get();
  auto lock = impl_->domain_locks.get(spec.uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(spec.uuid); !st) return st.take_error();

  // Image-pool volumes are made here; a block device is shared storage that the
  // controller activates before the domain starts, so it need not exist yet.
  std::vector<std::string> sources;
  const bool pool_disks = std::any_of(spec.disks.begin(), spec.disks.end(),
                                      [](const DomainDisk& d) { return d.block_device.empty(); });
  PoolHandle pool;
  if (pool_disks) {
    auto p = impl_->ensure_pool(conn);
    if (!p) return p.take_error();
    pool = std::move(*p);
  }
  for (const auto& disk : spec.disks) {
    if (!disk.block_device.empty()) {
      sources.push_back(disk.block_device);
      continue;
    }
    auto path = impl_->ensure_volume(pool.get(), disk);
    if (!path) return path.take_error();
    sources.push_back(std::move(*path));
  }

  if (DomainHandle existing{virDomainLookupByUUIDString(conn, spec.uuid.c_str())}) {
    auto desc = impl_->describe(existing.get());
    if (!desc) return desc.take_error();
    if (!desc->status.managed)
      return conflict("domain " + spec.uuid + " exists and is not managed by kvmfleet",
                      {{"uuid", spec.uuid}});
    if (desc->status.name != spec.name)
      return conflict(
          "domain " + spec.uuid + " is named " + desc->status.name + "; renaming is not supported",
          {{"uuid", spec.uuid}});
    if (desc->status.generation == spec.generation) return std::move(desc->status);
  } else if (last_libvirt_error_code() != VIR_ERR_NO_DOMAIN) {
    return impl_->failed("looking up domain " + spec.uuid);
  } else if (DomainHandle same_name{virDomainLookupByName(conn, spec.name.c_str())}) {
    return conflict("a domain named " + spec.name + " already exists with another uuid",
                    {{"name", spec.name}});
  }

  auto xml = write_domain_xml(spec, sources);
  if (!xml) return xml.take_error();
  DomainHandle dom(virDomainDefineXML(conn, xml->c_str()));
  if (!dom) return impl_->failed("defining domain " + spec.name);
  spdlog::info("defined domain {} ({}) generation {}", spec.name, spec.uuid, spec.generation);
  return impl_->status(dom.get());
}

Result<DomainStatus> LibvirtHypervisor::change_power(const std::string& uuid, PowerChange change) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  auto m = impl_->lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  auto active = impl_->is_active(m->dom.get(), uuid);
  if (!active) return active.take_error();
  const bool want_active = change == PowerChange::start;
  if (*active == want_active) return std::move(m->desc.status);
  int rc = 0;
  const char* verb = "";
  switch (change) {
    case PowerChange::start:
      rc = virDomainCreate(m->dom.get());
      verb = "starting";
      break;
    case PowerChange::shutdown:
      rc = virDomainShutdown(m->dom.get());
      verb = "shutting down";
      break;
    case PowerChange::destroy:
      rc = virDomainDestroy(m->dom.get());
      verb = "destroying";
      break;
  }
  if (rc < 0) {
    auto err = impl_->failed(std::string(verb) + " domain " + uuid);
    // Changed by someone else in between: the outcome asked for holds.
    if (auto now = impl_->is_active(m->dom.get(), uuid); !(now && *now == want_active)) return err;
  }
  return impl_->status(m->dom.get());
}

Result<DomainStatus> LibvirtHypervisor::start(const std::string& uuid) {
  return change_power(uuid, PowerChange::start);
}

Result<DomainStatus> LibvirtHypervisor::shutdown(const std::string& uuid) {
  // ACPI request only: the guest may take its time or ignore it; the controller
  // decides how long to wait and whether to force.
  return change_power(uuid, PowerChange::shutdown);
}

Result<DomainStatus> LibvirtHypervisor::reboot(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  auto m = impl_->lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->require_running(m->dom.get(), uuid); !st) return st.take_error();
  if (virDomainReboot(m->dom.get(), 0) < 0) return impl_->failed("rebooting domain " + uuid);
  return impl_->status(m->dom.get());
}

Result<DomainStatus> LibvirtHypervisor::destroy(const std::string& uuid) {
  return change_power(uuid, PowerChange::destroy);
}

Status LibvirtHypervisor::undefine(const std::string& uuid, bool remove_volumes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  std::vector<std::string> sources;
  auto m = impl_->lookup_managed(c->get(), uuid);
  if (m) {
    auto active = impl_->is_active(m->dom.get(), uuid);
    if (!active) return active.take_error();
    if (*active)
      return conflict("domain " + uuid + " is running; destroy it first", {{"uuid", uuid}});
    sources = m->desc.info.disk_sources;
    // Leftover managed-save images, snapshot and checkpoint metadata would otherwise
    // make libvirt refuse. Drivers without checkpoints (test://) reject that flag.
    constexpr unsigned kBase =
        VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
    int rc = virDomainUndefineFlags(m->dom.get(), kBase | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA);
    if (rc < 0 && last_libvirt_error_code() == VIR_ERR_INVALID_ARG)
      rc = virDomainUndefineFlags(m->dom.get(), kBase);
    if (rc < 0 && last_libvirt_error_code() != VIR_ERR_NO_DOMAIN)
      return impl_->failed("undefining domain " + uuid);
    spdlog::info("undefined domain {}", uuid);
  } else if (m.error().code != ErrorCode::not_found) {
    return m.take_error();
  }
  if (remove_volumes) return impl_->remove_volumes(c->get(), uuid, sources);
  return {};
}

Result<int> LibvirtHypervisor::fs_freeze(const std::string& uuid) {
  return guest_filesystems(uuid, true);
}

Result<int> LibvirtHypervisor::fs_thaw(const std::string& uuid) {
  return guest_filesystems(uuid, false);
}

Result<int> LibvirtHypervisor::guest_filesystems(const std::string& uuid, bool freeze) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  // A thaw must always be possible: it is how a frozen guest gets its disks back.
  if (freeze) {
    if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  }
  auto m = impl_->lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->require_running(m->dom.get(), uuid); !st) return st.take_error();
  // libvirt's default is to wait for the guest agent for minutes (or forever); a guest
  // without one must not hold the request that long. Drivers without the call (test://)
  // keep their own behaviour.
  if (virDomainAgentSetResponseTimeout(m->dom.get(), impl_->options.guest_agent_timeout_s, 0) < 0 &&
      last_libvirt_error_code() != VIR_ERR_NO_SUPPORT)
    spdlog::debug("{}", last_libvirt_error("setting the guest agent timeout of " + uuid).message);
  const char* verb = freeze ? "freezing" : "thawing";
  const int n = freeze ? virDomainFSFreeze(m->dom.get(), nullptr, 0, 0)
                       : virDomainFSThaw(m->dom.get(), nullptr, 0, 0);
  if (n < 0) {
    const std::string what = std::string(verb) + " the filesystems of domain " + uuid;
    auto err = last_libvirt_error(what);
    // The guest's agent, not libvirt's connection: no reconnect for that.
    if (is_guest_agent_unavailable(last_libvirt_error_code(), err.message))
      return guest_agent_unavailable(uuid, std::move(err));
    return impl_->failed(what);
  }
  spdlog::info("{} domain {}: {} filesystem(s)", freeze ? "froze" : "thawed", uuid, n);
  return n;
}

Status LibvirtHypervisor::block_resize(const std::string& uuid, const std::string& device,
                                       std::uint64_t size_bytes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (auto st = storage::check_device_path(device); !st) return st;
  if (size_bytes == 0 || size_bytes % 512 != 0)
    return invalid("size_bytes must be a positive multiple of 512", {{"field", "size_bytes"}});
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st;
  auto m = impl_->lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  const auto& sources = m->desc.info.block_sources;
  if (std::find(sources.begin(), sources.end(), device) == sources.end())
    return not_found("domain " + uuid + " has no disk on " + device,
                     {{"uuid", uuid}, {"device", device}});
  if (auto st = impl_->require_running(m->dom.get(), uuid); !st) return st.take_error();
  if (virDomainBlockResize(m->dom.get(), device.c_str(), size_bytes,
                           VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0)
    return impl_->failed("resizing disk " + device + " of domain " + uuid);
  spdlog::info("domain {}: disk {} is now {} bytes", uuid, device, size_bytes);
  return {};
}

Result<MigrationStatus> LibvirtHypervisor::migrate(const std::string& uuid,
                                                   const MigrationRequest& request) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (request.op_id.empty()) return invalid("op_id is required", {{"field", "op_id"}});
  if (auto st = validate_migration_request(request); !st) return st.take_error();
  auto c = impl_->acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  std::shared_ptr<Impl::MigrationJob> previous = impl_->find_migration(uuid);
  if (previous) {
    std::lock_guard lk(impl_->mig_mu);
    if (previous->request.op_id == request.op_id) {
      if (!same_request(previous->request, request))
        return conflict("op_id " + request.op_id + " was already used for a different migration",
                        {{"uuid", uuid}, {"op_id", request.op_id}});
      return previous->status;
    }
    if (previous->status.state == MigrationState::running)
      return conflict("domain " + uuid + " is migrating",
                      {{"uuid", uuid}, {"op_id", previous->status.op_id}});
  }
  auto m = impl_->lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->require_running(m->dom.get(), uuid); !st) return st.take_error();
  if (auto st = check_disks_migrate_live(uuid, m->desc.info); !st) return st.take_error();

  // The migration blocks its connection's caller for its whole length: it gets a
  // connection of its own.
  ConnHandle conn(virConnectOpen(impl_->options.uri.c_str()));
  if (!conn) return impl_->failed("connecting to " + impl_->options.uri + " to migrate");
  DomainHandle dom(virDomainLookupByUUIDString(conn.get(), uuid.c_str()));
  if (!dom) return impl_->failed("looking up domain " + uuid);
  if (virDomainMigrateSetMaxDowntime(dom.get(),
                                     static_cast<unsigned long long>(request.policy.max_downtime_ms),
                                     0) < 0)
    return impl_->failed("setting the maximum downtime of domain " + uuid);

  // The previous migration has ended (checked above); its thread is finishing.
  if (previous && previous->thread.joinable()) previous->thread.join();
  auto job = std::make_shared<Impl::MigrationJob>();
  job->request = request;
  job->status.state = MigrationState::running;
  job->status.op_id = request.op_id;
  job->started = std::chrono::steady_clock::now();
  MigrationStatus first = job->status;
  {
    std::lock_guard lk(impl_->mig_mu);
    impl_->migrations[uuid] = job;
  }
  spdlog::info("migrating domain {} to {} via {} (op {})", uuid, request.destination_uri,
               request.migrate_uri, request.op_id);
  job->thread = std::thread([impl = impl_.get(), job, conn = std::move(conn),
                             dom = std::move(dom), uuid]() mutable {
    impl->run_migration(std::move(job), std::move(conn), std::move(dom), std::move(uuid));
  });
  return first;
}

Result<MigrationStatus> LibvirtHypervisor::migration_status(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto job = impl_->find_migration(uuid);
  if (!job) {
    auto c = impl_->acquire();
    if (!c) return c.take_error();
    auto m = impl_->lookup_managed(c->get(), uuid);
    if (!m) return m.take_error();
    // No migration of ours, but libvirt may be carrying one that an earlier agent
    // process started (it was restarted meanwhile): report it, with no op id.
    MigrationStatus seen;
    if (read_outgoing_migration(m->dom.get(), seen)) {
      seen.state = MigrationState::running;
      return seen;
    }
    return MigrationStatus{};
  }
  MigrationStatus now;
  {
    std::lock_guard lk(impl_->mig_mu);
    now = job->status;
  }
  if (now.state != MigrationState::running) return now;
  // Progress comes from libvirt; when it cannot say (the job is ending), the last
  // known figures stand. libvirt holds the query while the migration's last phase
  // runs and answers "no job" moments before the migration call returns: the outcome
  // is awaited that long, or the caller would only learn it at its next poll.
  MigrationStatus stats = now;
  bool fresh = false;
  if (auto c = impl_->acquire()) {
    DomainHandle dom(virDomainLookupByUUIDString(c->get(), uuid.c_str()));
    fresh = dom && read_job_stats(dom.get(), stats);
  }
  std::unique_lock lk(impl_->mig_mu);
  auto& s = job->status;
  if (!fresh)
    impl_->mig_cv.wait_for(lk, std::chrono::milliseconds(200),
                           [&] { return s.state != MigrationState::running; });
  if (fresh && s.state == MigrationState::running) {
    s.data_total = stats.data_total;
    s.data_processed = stats.data_processed;
    s.data_remaining = stats.data_remaining;
    s.memory_iteration = stats.memory_iteration;
    s.expected_downtime_ms = stats.expected_downtime_ms;
    s.elapsed_ms = stats.elapsed_ms;
  }
  return s;
}

Result<MigrationStatus> LibvirtHypervisor::abort_migration(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto job = impl_->find_migration(uuid);
  auto c = impl_->acquire();
  if (!job) {
    if (!c) return c.take_error();
    auto m = impl_->lookup_managed(c->get(), uuid);
    if (!m) return m.take_error();
    // A migration an earlier agent process started is aborted all the same.
    MigrationStatus seen;
    if (!read_outgoing_migration(m->dom.get(), seen))
      return conflict("domain " + uuid + " has no migration to abort", {{"uuid", uuid}});
    if (virDomainAbortJob(m->dom.get()) < 0)
      return impl_->failed("aborting the migration of domain " + uuid);
    seen.state = MigrationState::cancelled;
    return seen;
  }
  {
    std::lock_guard lk(impl_->mig_mu);
    switch (job->status.state) {
      case MigrationState::running:
        job->abort_requested = true;
        break;
      case MigrationState::completed:
        return conflict("the migration of domain " + uuid + " has completed", {{"uuid", uuid}});
      default:
        return job->status;
    }
  }
  if (!c) return c.take_error();
  DomainHandle dom(virDomainLookupByUUIDString(c->get(), uuid.c_str()));
  if (!dom || virDomainAbortJob(dom.get()) < 0) {
    // It may have ended on its own in between: then its outcome is the answer.
    auto err = impl_->failed("aborting the migration of domain " + uuid);
    std::lock_guard lk(impl_->mig_mu);
    if (job->status.state == MigrationState::running) {
      job->abort_requested = false;
      return err;
    }
    return job->status;
  }
  // The migration thread records the outcome once libvirt has wound the job down;
  // the wait only bounds how long this request may take.
  std::unique_lock lk(impl_->mig_mu);
  impl_->mig_cv.wait_for(lk, std::chrono::seconds(20),
                         [&] { return job->status.state != MigrationState::running; });
  return job->status;
}

std::uint64_t LibvirtHypervisor::subscribe(EventCallback callback) {
  std::lock_guard lk(impl_->shared->subs_mu);
  const auto id = impl_->shared->next_id++;
  impl_->shared->subs.emplace(id, std::move(callback));
  return id;
}

void LibvirtHypervisor::unsubscribe(std::uint64_t id) {
  std::lock_guard lk(impl_->shared->subs_mu);
  impl_->shared->subs.erase(id);
}

}  // namespace kvmfleet::agent
