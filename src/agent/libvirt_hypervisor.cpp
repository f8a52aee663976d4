#include "kvmfleet/agent/libvirt_hypervisor.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/validate.hpp"
#include "libvirt/block_resize.hpp"
#include "libvirt/connection.hpp"
#include "libvirt/domain_locks.hpp"
#include "libvirt/domain_lookup.hpp"
#include "libvirt/errors.hpp"
#include "libvirt/event_loop.hpp"
#include "libvirt/guest_agent.hpp"
#include "libvirt/handles.hpp"
#include "libvirt/host_inventory.hpp"
#include "libvirt/image_pool.hpp"
#include "libvirt/lifecycle_events.hpp"

namespace kvmfleet::agent {

namespace {

using libvirt::ConnHandle;
using libvirt::DomainHandle;
using libvirt::last_libvirt_error;
using libvirt::last_libvirt_error_code;

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

// The parts, in the order they are built; they go in reverse, after the destructor has
// waited for the migrations: the monitor stops and the connection closes, then
// subscribers are dropped, and the event loop goes last: it must be registered before
// the first connection opens and outlive the last.
struct LibvirtHypervisor::Impl {
  Impl(LibvirtOptions o, Clock& clock)
      : options(std::move(o)),
        loop(libvirt::EventLoop::acquire()),
        events(clock),
        connection(options, clock, events),
        domains(connection),
        pool(options.pool_name, options.pool_path, connection),
        guest_agent(connection, options.guest_agent_timeout_s) {}

  LibvirtOptions options;
  std::shared_ptr<libvirt::EventLoop> loop;
  libvirt::LifecycleEvents events;
  libvirt::Connection connection;
  libvirt::DomainLookup domains;
  libvirt::DomainLocks domain_locks;
  libvirt::ImagePool pool;
  libvirt::GuestAgent guest_agent;

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
    if (ok)
      rc = virDomainMigrateToURI3(dom.get(), r.destination_uri.c_str(), params,
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
        s.error =
            Error{ErrorCode::timeout,
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
          if (virDomainMigrateSetMaxDowntime(dom, static_cast<unsigned long long>(a.downtime_ms),
                                             0) < 0) {
            spdlog::warn("{}: raising the downtime failed: {}", what,
                         last_libvirt_error("set max downtime").message);
          } else {
            spdlog::info("{}: not converged after {} ms; maximum downtime now {} ms", what, elapsed,
                         a.downtime_ms);
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
};

LibvirtHypervisor::LibvirtHypervisor(LibvirtOptions options, Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

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
}

bool LibvirtHypervisor::connected() const {
  return impl_->connection.alive();
}

Result<HostInventory> LibvirtHypervisor::inventory() {
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto inv = libvirt::read_host_inventory(impl_->connection, c->get());
  if (!inv) return inv.take_error();
  inv->migration_address = impl_->options.migration_address;
  auto domains = list_domains();
  if (!domains) return domains.take_error();
  inv->domains = std::move(*domains);
  return inv;
}

Result<std::vector<DomainStatus>> LibvirtHypervisor::list_domains() {
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  virDomainPtr* doms = nullptr;
  const int n = virConnectListAllDomains(c->get(), &doms, 0);
  if (n < 0) return impl_->connection.failed("listing domains");
  std::vector<DomainHandle> handles;
  for (int i = 0; i < n; ++i) handles.emplace_back(doms[i]);
  std::free(doms);
  std::vector<DomainStatus> out;
  for (auto& d : handles) {
    auto st = impl_->domains.status(d.get());
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
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto dom = impl_->domains.lookup(c->get(), uuid);
  if (!dom) return dom.take_error();
  return impl_->domains.status(dom->get());
}

Result<DomainStatus> LibvirtHypervisor::define(const DomainSpec& spec) {
  if (auto st = validate_domain_spec(spec); !st) return st.take_error();
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  virConnectPtr conn = c->get();
  auto lock = impl_->domain_locks.get(spec.uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(spec.uuid); !st) return st.take_error();

  // Image-pool volumes are made here; a block device is shared storage that the
  // controller activates before the domain starts, so it need not exist yet.
  auto sources = impl_->pool.disk_sources(conn, spec);
  if (!sources) return sources.take_error();

  if (DomainHandle existing{virDomainLookupByUUIDString(conn, spec.uuid.c_str())}) {
    auto desc = impl_->domains.describe(existing.get());
    if (!desc) return desc.take_error();
    if (!desc->status.managed)
      return conflict("domain " + spec.uuid + " exists and is not managed by kvmfleet",
                      {{"uuid", spec.uuid}});
    if (desc->status.name != spec.name)
      return conflict(
          "domain " + spec.uuid + " is named " + desc->status.name + "; renaming is not supported",
          {{"uuid", spec.uuid}});
    if (desc->status.generation == spec.generation) return std::move(desc->status);
  } else if (libvirt::last_libvirt_error_code() != VIR_ERR_NO_DOMAIN) {
    return impl_->connection.failed("looking up domain " + spec.uuid);
  } else if (DomainHandle same_name{virDomainLookupByName(conn, spec.name.c_str())}) {
    return conflict("a domain named " + spec.name + " already exists with another uuid",
                    {{"name", spec.name}});
  }

  auto xml = write_domain_xml(spec, *sources);
  if (!xml) return xml.take_error();
  DomainHandle dom(virDomainDefineXML(conn, xml->c_str()));
  if (!dom) return impl_->connection.failed("defining domain " + spec.name);
  spdlog::info("defined domain {} ({}) generation {}", spec.name, spec.uuid, spec.generation);
  return impl_->domains.status(dom.get());
}

Result<DomainStatus> LibvirtHypervisor::change_power(const std::string& uuid, PowerChange change) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  auto active = impl_->domains.is_active(m->dom.get(), uuid);
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
    auto err = impl_->connection.failed(std::string(verb) + " domain " + uuid);
    // Changed by someone else in between: the outcome asked for holds.
    if (auto now = impl_->domains.is_active(m->dom.get(), uuid); !(now && *now == want_active))
      return err;
  }
  return impl_->domains.status(m->dom.get());
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
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->domains.require_running(m->dom.get(), uuid); !st) return st.take_error();
  if (virDomainReboot(m->dom.get(), 0) < 0)
    return impl_->connection.failed("rebooting domain " + uuid);
  return impl_->domains.status(m->dom.get());
}

Result<DomainStatus> LibvirtHypervisor::destroy(const std::string& uuid) {
  return change_power(uuid, PowerChange::destroy);
}

Status LibvirtHypervisor::undefine(const std::string& uuid, bool remove_volumes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  std::vector<std::string> sources;
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (m) {
    auto active = impl_->domains.is_active(m->dom.get(), uuid);
    if (!active) return active.take_error();
    if (*active)
      return conflict("domain " + uuid + " is running; destroy it first", {{"uuid", uuid}});
    sources = m->desc.info.disk_sources;
    // Leftover managed-save images, snapshot and checkpoint metadata would otherwise
    // make libvirt refuse. Drivers without checkpoints (test://) reject that flag.
    constexpr unsigned kBase =
        VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
    int rc = virDomainUndefineFlags(m->dom.get(), kBase | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA);
    if (rc < 0 && libvirt::last_libvirt_error_code() == VIR_ERR_INVALID_ARG)
      rc = virDomainUndefineFlags(m->dom.get(), kBase);
    if (rc < 0 && libvirt::last_libvirt_error_code() != VIR_ERR_NO_DOMAIN)
      return impl_->connection.failed("undefining domain " + uuid);
    spdlog::info("undefined domain {}", uuid);
  } else if (m.error().code != ErrorCode::not_found) {
    return m.take_error();
  }
  if (remove_volumes) return impl_->pool.remove_volumes(c->get(), uuid, sources);
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
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  // A thaw must always be possible: it is how a frozen guest gets its disks back.
  if (freeze) {
    if (auto st = impl_->refuse_if_migrating(uuid); !st) return st.take_error();
  }
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->domains.require_running(m->dom.get(), uuid); !st) return st.take_error();
  return freeze ? impl_->guest_agent.freeze(m->dom.get(), uuid)
                : impl_->guest_agent.thaw(m->dom.get(), uuid);
}

Status LibvirtHypervisor::block_resize(const std::string& uuid, const std::string& device,
                                       std::uint64_t size_bytes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (auto st = libvirt::check_block_resize(device, size_bytes); !st) return st;
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->refuse_if_migrating(uuid); !st) return st;
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  return libvirt::resize_block_disk(impl_->connection, impl_->domains, *m, uuid, device,
                                    size_bytes);
}

Result<MigrationStatus> LibvirtHypervisor::migrate(const std::string& uuid,
                                                   const MigrationRequest& request) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (request.op_id.empty()) return invalid("op_id is required", {{"field", "op_id"}});
  if (auto st = validate_migration_request(request); !st) return st.take_error();
  auto c = impl_->connection.acquire();
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
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->domains.require_running(m->dom.get(), uuid); !st) return st.take_error();
  if (auto st = check_disks_migrate_live(uuid, m->desc.info); !st) return st.take_error();

  // The migration blocks its connection's caller for its whole length: it gets a
  // connection of its own.
  ConnHandle conn(virConnectOpen(impl_->connection.uri().c_str()));
  if (!conn)
    return impl_->connection.failed("connecting to " + impl_->connection.uri() + " to migrate");
  DomainHandle dom(virDomainLookupByUUIDString(conn.get(), uuid.c_str()));
  if (!dom) return impl_->connection.failed("looking up domain " + uuid);
  if (virDomainMigrateSetMaxDowntime(
          dom.get(), static_cast<unsigned long long>(request.policy.max_downtime_ms), 0) < 0)
    return impl_->connection.failed("setting the maximum downtime of domain " + uuid);

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
  job->thread = std::thread(
      [impl = impl_.get(), job, conn = std::move(conn), dom = std::move(dom), uuid]() mutable {
        impl->run_migration(std::move(job), std::move(conn), std::move(dom), std::move(uuid));
      });
  return first;
}

Result<MigrationStatus> LibvirtHypervisor::migration_status(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto job = impl_->find_migration(uuid);
  if (!job) {
    auto c = impl_->connection.acquire();
    if (!c) return c.take_error();
    auto m = impl_->domains.lookup_managed(c->get(), uuid);
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
  if (auto c = impl_->connection.acquire()) {
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
  auto c = impl_->connection.acquire();
  if (!job) {
    if (!c) return c.take_error();
    auto m = impl_->domains.lookup_managed(c->get(), uuid);
    if (!m) return m.take_error();
    // A migration an earlier agent process started is aborted all the same.
    MigrationStatus seen;
    if (!read_outgoing_migration(m->dom.get(), seen))
      return conflict("domain " + uuid + " has no migration to abort", {{"uuid", uuid}});
    if (virDomainAbortJob(m->dom.get()) < 0)
      return impl_->connection.failed("aborting the migration of domain " + uuid);
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
    auto err = impl_->connection.failed("aborting the migration of domain " + uuid);
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
  return impl_->events.subscribe(std::move(callback));
}

void LibvirtHypervisor::unsubscribe(std::uint64_t id) {
  impl_->events.unsubscribe(id);
}

}  // namespace kvmfleet::agent
