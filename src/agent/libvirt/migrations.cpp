#include "migrations.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <vector>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/agent/migration_validation.hpp"

namespace kvmfleet::agent::libvirt {
namespace {

// How long a status call waits for the outcome of a migration that libvirt already
// calls ended (see status()), and how long an abort waits for libvirt to wind one down.
constexpr std::chrono::milliseconds kStatusAwaitsOutcome{200};
constexpr std::chrono::seconds kAbortAwaitsOutcome{20};

bool same_request(const MigrationRequest& a, const MigrationRequest& b) {
  return a.destination_uri == b.destination_uri && a.migrate_uri == b.migrate_uri &&
         a.policy.max_downtime_ms == b.policy.max_downtime_ms &&
         a.policy.bandwidth_mib_s == b.policy.bandwidth_mib_s &&
         a.policy.auto_converge == b.policy.auto_converge &&
         a.policy.allow_post_copy == b.policy.allow_post_copy && a.media == b.media;
}

}  // namespace

Migrations::Migrations(Connection& connection, DomainLookup& domains, Clock& clock)
    : connection_(connection), domains_(domains), clock_(clock) {}

Migrations::~Migrations() {
  std::vector<std::shared_ptr<MigrationJob>> jobs;
  {
    std::lock_guard lk(mu_);
    for (auto& [uuid, job] : jobs_) {
      if (job->status().state == MigrationState::running)
        spdlog::info("waiting for the migration of domain {} to end", uuid);
      jobs.push_back(job);
    }
  }
  for (auto& job : jobs) job->join();
}

std::shared_ptr<MigrationJob> Migrations::find(const std::string& uuid) {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(uuid);
  return it == jobs_.end() ? nullptr : it->second;
}

Status Migrations::refuse_if_migrating(const std::string& uuid) {
  std::lock_guard lk(mu_);
  auto it = jobs_.find(uuid);
  if (it == jobs_.end()) return {};
  const MigrationStatus s = it->second->status();
  if (s.state == MigrationState::running)
    return conflict("domain " + uuid + " is migrating", {{"uuid", uuid}, {"op_id", s.op_id}});
  return {};
}

Result<MigrationStatus> Migrations::start(virConnectPtr c, const std::string& uuid,
                                          const MigrationRequest& request) {
  std::shared_ptr<MigrationJob> previous = find(uuid);
  if (previous) {
    const MigrationStatus last = previous->status();
    if (previous->request().op_id == request.op_id) {
      if (!same_request(previous->request(), request))
        return conflict("op_id " + request.op_id + " was already used for a different migration",
                        {{"uuid", uuid}, {"op_id", request.op_id}});
      return last;
    }
    if (last.state == MigrationState::running)
      return conflict("domain " + uuid + " is migrating", {{"uuid", uuid}, {"op_id", last.op_id}});
  }
  auto m = domains_.lookup_managed(c, uuid);
  if (!m) return m.take_error();
  if (auto st = domains_.require_running(m->dom.get(), uuid); !st) return st.take_error();
  auto moves = check_disks_migrate_live(uuid, m->desc.info, request.media);
  if (!moves) return moves.take_error();
  // CD-ROMs: the destination's definitions, live and persistent, name its own files.
  MigrationJob::Definitions defs;
  if (!moves->empty()) {
    using Want = std::pair<unsigned, std::string*>;
    for (auto [flags, out] :
         {Want{0u, &defs.live},
          Want{static_cast<unsigned>(VIR_DOMAIN_XML_INACTIVE), &defs.persistent}}) {
      CString xml(virDomainGetXMLDesc(m->dom.get(), VIR_DOMAIN_XML_MIGRATABLE | flags));
      if (!xml) return connection_.failed("reading the definition of domain " + uuid);
      auto there = rewrite_cdrom_sources(xml.get(), *moves);
      if (!there) return there.take_error();
      *out = std::move(*there);
    }
  }

  // The migration blocks its connection's caller for its whole length: it gets a
  // connection of its own.
  ConnHandle conn(virConnectOpen(connection_.uri().c_str()));
  if (!conn) return connection_.failed("connecting to " + connection_.uri() + " to migrate");
  DomainHandle dom(virDomainLookupByUUIDString(conn.get(), uuid.c_str()));
  if (!dom) return connection_.failed("looking up domain " + uuid);
  if (virDomainMigrateSetMaxDowntime(
          dom.get(), static_cast<unsigned long long>(request.policy.max_downtime_ms), 0) < 0)
    return connection_.failed("setting the maximum downtime of domain " + uuid);

  // The previous migration has ended (checked above); its thread is finishing.
  if (previous) previous->join();
  auto job = std::make_shared<MigrationJob>(request, clock_);
  MigrationStatus first = job->status();
  {
    std::lock_guard lk(mu_);
    jobs_[uuid] = job;
  }
  spdlog::info("migrating domain {} to {} via {} (op {})", uuid, request.destination_uri,
               request.migrate_uri, request.op_id);
  job->start(std::move(conn), std::move(dom), uuid, std::move(defs));
  return first;
}

Result<MigrationStatus> Migrations::status(const std::string& uuid) {
  auto job = find(uuid);
  if (!job) {
    auto c = connection_.acquire();
    if (!c) return c.take_error();
    auto m = domains_.lookup_managed(c->get(), uuid);
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
  MigrationStatus now = job->status();
  if (now.state != MigrationState::running) return now;
  // Progress comes from libvirt; when it cannot say (the job is ending), the last
  // known figures stand. libvirt holds the query while the migration's last phase
  // runs and answers "no job" moments before the migration call returns: the outcome
  // is awaited that long, or the caller would only learn it at its next poll.
  MigrationStatus stats = now;
  bool fresh = false;
  if (auto c = connection_.acquire()) {
    DomainHandle dom(virDomainLookupByUUIDString(c->get(), uuid.c_str()));
    fresh = dom && read_job_stats(dom.get(), stats);
  }
  if (!fresh) {
    job->await_outcome(kStatusAwaitsOutcome);
    return job->status();
  }
  return job->take_progress(stats);
}

Result<MigrationStatus> Migrations::abort(const std::string& uuid) {
  auto job = find(uuid);
  auto c = connection_.acquire();
  if (!job) {
    if (!c) return c.take_error();
    auto m = domains_.lookup_managed(c->get(), uuid);
    if (!m) return m.take_error();
    // A migration an earlier agent process started is aborted all the same.
    MigrationStatus seen;
    if (!read_outgoing_migration(m->dom.get(), seen))
      return conflict("domain " + uuid + " has no migration to abort", {{"uuid", uuid}});
    if (virDomainAbortJob(m->dom.get()) < 0)
      return connection_.failed("aborting the migration of domain " + uuid);
    seen.state = MigrationState::cancelled;
    return seen;
  }
  switch (job->ask_abort()) {
    case MigrationJob::AbortAsked::yes:
      break;
    case MigrationJob::AbortAsked::completed:
      return conflict("the migration of domain " + uuid + " has completed", {{"uuid", uuid}});
    case MigrationJob::AbortAsked::ended:
      return job->status();
  }
  if (!c) return c.take_error();
  DomainHandle dom(virDomainLookupByUUIDString(c->get(), uuid.c_str()));
  if (!dom || virDomainAbortJob(dom.get()) < 0) {
    // It may have ended on its own in between: then its outcome is the answer.
    auto err = connection_.failed("aborting the migration of domain " + uuid);
    if (job->withdraw_abort()) return err;
    return job->status();
  }
  // The migration thread records the outcome once libvirt has wound the job down;
  // the wait only bounds how long this request may take.
  job->await_outcome(kAbortAwaitsOutcome);
  return job->status();
}

}  // namespace kvmfleet::agent::libvirt
