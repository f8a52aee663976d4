#pragma once

// The last migration of each domain started here (MigrationJob): starting one, its
// status, aborting it. A running one marks its domain busy: the per-domain lock is held
// only while a migration starts, so that status and abort calls answer while it runs,
// and the other calls of that domain check refuse_if_migrating instead.

#include <libvirt/libvirt.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "connection.hpp"
#include "domain_lookup.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/migration.hpp"
#include "migration_job.hpp"

namespace kvmfleet::agent::libvirt {

class Migrations {
 public:
  Migrations(Connection& connection, DomainLookup& domains, Clock& clock);
  // Waits for running migrations: their threads need libvirt's event loop and must end
  // before anything else goes.
  ~Migrations();
  Migrations(const Migrations&) = delete;
  Migrations& operator=(const Migrations&) = delete;

  // Called with the domain's lock held.
  Status refuse_if_migrating(const std::string& uuid);

  // Hypervisor::migrate once its arguments are valid, with the domain's lock held.
  Result<MigrationStatus> start(virConnectPtr c, const std::string& uuid,
                                const MigrationRequest& request);
  // Hypervisor::migration_status and abort_migration once the uuid is valid.
  Result<MigrationStatus> status(const std::string& uuid);
  Result<MigrationStatus> abort(const std::string& uuid);

 private:
  std::shared_ptr<MigrationJob> find(const std::string& uuid);

  Connection& connection_;
  DomainLookup& domains_;
  Clock& clock_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<MigrationJob>> jobs_;
};

}  // namespace kvmfleet::agent::libvirt
