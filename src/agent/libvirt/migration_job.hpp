#pragma once

// One outgoing peer-to-peer live migration: the thread that runs it (virDomainMigrateToURI3
// blocks until the migration ends), the convergence ladder beside it, and its status
// and outcome. The thread has a connection of its own. Its elapsed time and every wait
// (the ladder's pace, a caller awaiting the outcome) are measured on the injected Clock's
// monotonic reading.

#include <libvirt/libvirt.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "handles.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/model/migration.hpp"

namespace kvmfleet::agent::libvirt {

class MigrationJob {
 public:
  MigrationJob(MigrationRequest request, Clock& clock);
  // Waits for the thread, which must have been started.
  ~MigrationJob();
  MigrationJob(const MigrationJob&) = delete;
  MigrationJob& operator=(const MigrationJob&) = delete;

  const MigrationRequest& request() const { return request_; }
  MigrationStatus status() const;

  // What the destination defines when it is not the source's own definition (empty:
  // the source's): a domain whose CD-ROMs are other files there.
  struct Definitions {
    std::string live;        // VIR_MIGRATE_PARAM_DEST_XML
    std::string persistent;  // VIR_MIGRATE_PARAM_PERSIST_XML
  };
  // Starts the thread, which owns `conn` and `dom` until the migration ends.
  void start(ConnHandle conn, DomainHandle dom, std::string uuid, Definitions defs = {});
  // Waits for the thread; the migration must have ended (or must end by itself).
  void join();

  // Waits until the outcome is recorded or `limit` has passed on the clock.
  void await_outcome(std::chrono::milliseconds limit);
  // Takes libvirt's progress figures (read_job_stats) while the migration runs; the
  // status as it is then.
  MigrationStatus take_progress(const MigrationStatus& stats);

  enum class AbortAsked { yes, completed, ended };
  // Marks a running migration as asked to stop; a completed one cannot be, an ended one
  // need not be.
  AbortAsked ask_abort();
  // libvirt did not take the abort: withdraws it while the migration still runs (true);
  // false when the migration ended meanwhile.
  bool withdraw_abort();

 private:
  void run(ConnHandle conn, DomainHandle dom, std::string uuid, Definitions defs);
  // Applies the convergence ladder (next_ladder_action) until the migration ends.
  void run_ladder(virDomainPtr dom, const std::string& what);

  const MigrationRequest request_;
  Clock& clock_;
  const Clock::steady_time_point started_;
  mutable std::mutex mu_;
  MigrationStatus status_;
  bool abort_requested_ = false;
  bool ladder_aborted_ = false;  // the convergence ladder ran out of time
  bool returned_ = false;        // virDomainMigrateToURI3 has returned
  // Raised when virDomainMigrateToURI3 returns: ends the ladder's wait.
  Interrupt returned_signal_;
  // Raised once the outcome is recorded: ends the waits of status and abort calls.
  Interrupt ended_;
  std::thread thread_;
};

// Reads libvirt's statistics of the domain's active job into `s`; false when no job
// runs (it just ended) or libvirt cannot say. `operation` gets the job's kind
// (VIR_DOMAIN_JOB_OPERATION_*) when asked.
bool read_job_stats(virDomainPtr dom, MigrationStatus& s, int* operation = nullptr);

// An outgoing migration libvirt carries for the domain, started by whichever agent
// process (one restarted since knows nothing of it): its statistics into `s`.
bool read_outgoing_migration(virDomainPtr dom, MigrationStatus& s);

}  // namespace kvmfleet::agent::libvirt
