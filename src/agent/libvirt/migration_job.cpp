#include "migration_job.hpp"

#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include "errors.hpp"

namespace kvmfleet::agent::libvirt {

namespace {

// How often the convergence ladder looks at a running migration.
constexpr std::chrono::milliseconds kLadderTick{200};

std::int64_t milliseconds_between(Clock::steady_time_point from, Clock::steady_time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

}  // namespace

MigrationJob::MigrationJob(MigrationRequest request, Clock& clock)
    : request_(std::move(request)), clock_(clock), started_(clock.steady_now()) {
  status_.state = MigrationState::running;
  status_.op_id = request_.op_id;
}

MigrationJob::~MigrationJob() {
  join();
}

MigrationStatus MigrationJob::status() const {
  std::lock_guard lk(mu_);
  return status_;
}

void MigrationJob::start(ConnHandle conn, DomainHandle dom, std::string uuid, Definitions defs) {
  thread_ = std::thread([this, conn = std::move(conn), dom = std::move(dom), uuid = std::move(uuid),
                         defs = std::move(defs)]() mutable {
    run(std::move(conn), std::move(dom), std::move(uuid), std::move(defs));
  });
}

void MigrationJob::join() {
  if (thread_.joinable()) thread_.join();
}

void MigrationJob::await_outcome(std::chrono::milliseconds limit) {
  clock_.sleep_for(limit, ended_);
}

MigrationStatus MigrationJob::take_progress(const MigrationStatus& stats) {
  std::lock_guard lk(mu_);
  if (status_.state == MigrationState::running) {
    status_.data_total = stats.data_total;
    status_.data_processed = stats.data_processed;
    status_.data_remaining = stats.data_remaining;
    status_.memory_iteration = stats.memory_iteration;
    status_.expected_downtime_ms = stats.expected_downtime_ms;
    status_.elapsed_ms = stats.elapsed_ms;
  }
  return status_;
}

MigrationJob::AbortAsked MigrationJob::ask_abort() {
  std::lock_guard lk(mu_);
  switch (status_.state) {
    case MigrationState::running:
      abort_requested_ = true;
      return AbortAsked::yes;
    case MigrationState::completed:
      return AbortAsked::completed;
    default:
      return AbortAsked::ended;
  }
}

bool MigrationJob::withdraw_abort() {
  std::lock_guard lk(mu_);
  if (status_.state != MigrationState::running) return false;
  abort_requested_ = false;
  return true;
}

void MigrationJob::run(ConnHandle conn, DomainHandle dom, std::string uuid, Definitions defs) {
  const auto& r = request_;
  virTypedParameterPtr params = nullptr;
  int n = 0, max = 0;
  bool ok =
      virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, r.migrate_uri.c_str()) == 0;
  if (ok && r.policy.bandwidth_mib_s > 0)
    ok = virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH,
                                 static_cast<unsigned long long>(r.policy.bandwidth_mib_s)) == 0;
  if (ok && !defs.live.empty())
    ok = virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_DEST_XML,
                                 defs.live.c_str()) == 0;
  if (ok && !defs.persistent.empty())
    ok = virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_PERSIST_XML,
                                 defs.persistent.c_str()) == 0;
  unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST |
                   VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_ABORT_ON_ERROR;
  if (r.policy.auto_converge) flags |= VIR_MIGRATE_AUTO_CONVERGE;
  if (r.policy.allow_post_copy) flags |= VIR_MIGRATE_POSTCOPY;
  const std::string what = "migrating domain " + uuid + " to " + r.destination_uri;
  // The convergence ladder runs beside the blocking call, on a domain handle of the
  // same connection (libvirt allows job control calls while a job runs).
  std::thread ladder;
  if (ok && r.policy.converge_timeout_s > 0) {
    virDomainRef(dom.get());
    ladder = std::thread(
        [this, ladder_dom = DomainHandle(dom.get()), what] { run_ladder(ladder_dom.get(), what); });
  }
  int rc = -1;
  if (ok)
    rc = virDomainMigrateToURI3(dom.get(), r.destination_uri.c_str(), params,
                                static_cast<unsigned>(n), flags);
  Error err = rc < 0 ? last_libvirt_error(what) : Error{};
  const int code = rc < 0 ? last_libvirt_error_code() : VIR_ERR_OK;
  {
    std::lock_guard lk(mu_);
    returned_ = true;
  }
  returned_signal_.raise();
  if (ladder.joinable()) ladder.join();
  virTypedParamsFree(params, n);
  dom.reset();
  conn.reset();
  const std::int64_t elapsed_ms = milliseconds_between(started_, clock_.steady_now());
  {
    std::lock_guard lk(mu_);
    auto& s = status_;
    s.elapsed_ms = elapsed_ms;
    if (rc == 0) {
      s.state = MigrationState::completed;
      if (s.data_total > 0) s.data_processed = s.data_total;
      s.data_remaining = 0;
      s.error.reset();
      spdlog::info("{}: completed in {} ms", what, s.elapsed_ms);
    } else if (ladder_aborted_) {
      s.state = MigrationState::failed;
      s.error = Error{ErrorCode::timeout,
                      "migration did not converge within " +
                          std::to_string(r.policy.converge_timeout_s) + " s and was aborted",
                      {{"ladder_step", s.ladder_step}, {"downtime_limit_ms", s.downtime_limit_ms}}};
      spdlog::warn("{}: did not converge; aborted", what);
    } else if (abort_requested_ || code == VIR_ERR_OPERATION_ABORTED) {
      s.state = MigrationState::cancelled;
      s.error = Error{ErrorCode::cancelled, err.message, err.details};
      spdlog::info("{}: cancelled", what);
    } else {
      s.state = MigrationState::failed;
      s.error = err;
      spdlog::warn("{}: {}", what, err.message);
    }
  }
  ended_.raise();
}

void MigrationJob::run_ladder(virDomainPtr dom, const std::string& what) {
  const auto& policy = request_.policy;
  int steps = 0;
  std::unique_lock lk(mu_);
  status_.downtime_limit_ms = policy.max_downtime_ms;
  while (!returned_) {
    lk.unlock();
    clock_.sleep_for(kLadderTick, returned_signal_);
    lk.lock();
    if (returned_) break;
    const std::int64_t elapsed = milliseconds_between(started_, clock_.steady_now());
    const LadderAction a = next_ladder_action(policy, elapsed, steps);
    if (a.step == 0) continue;
    steps = a.step;
    status_.ladder_step = steps;
    lk.unlock();
    switch (a.kind) {
      case LadderAction::Kind::raise_downtime: {
        const auto downtime_ms = static_cast<unsigned long long>(a.downtime_ms);
        if (virDomainMigrateSetMaxDowntime(dom, downtime_ms, 0) < 0) {
          spdlog::warn("{}: raising the downtime failed: {}", what,
                       last_libvirt_error("set max downtime").message);
        } else {
          spdlog::info("{}: not converged after {} ms; maximum downtime now {} ms", what, elapsed,
                       a.downtime_ms);
          std::lock_guard g(mu_);
          status_.downtime_limit_ms = a.downtime_ms;
        }
        break;
      }
      case LadderAction::Kind::post_copy:
        spdlog::info("{}: not converged after {} ms; switching to post-copy", what, elapsed);
        if (virDomainMigrateStartPostCopy(dom, 0) < 0)
          spdlog::warn("{}: post-copy switch failed: {}", what,
                       last_libvirt_error("start post-copy").message);
        break;
      case LadderAction::Kind::abort: {
        {
          std::lock_guard g(mu_);
          if (returned_) break;
          ladder_aborted_ = true;
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

bool read_job_stats(virDomainPtr dom, MigrationStatus& s, int* operation) {
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

bool read_outgoing_migration(virDomainPtr dom, MigrationStatus& s) {
  int operation = VIR_DOMAIN_JOB_OPERATION_UNKNOWN;
  return read_job_stats(dom, s, &operation) && operation == VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT;
}

}  // namespace kvmfleet::agent::libvirt
