#pragma once

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/model/domain_spec.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/migration.hpp"

#include <string>

namespace kvmfleet {

// The controller's view of one agent's RPC surface (agent/protocol.hpp). Every call
// that changes something carries the operation id so that a retry is harmless.
class AgentApi {
 public:
  virtual ~AgentApi() = default;
  virtual Result<HostInventory> inventory(const Host& host) = 0;
  virtual Result<DomainStatus> get_domain(const Host& host, const std::string& uuid) = 0;
  virtual Result<DomainStatus> define(const Host& host, const std::string& op_id,
                                      const DomainSpec& spec) = 0;
  virtual Result<DomainStatus> start(const Host& host, const std::string& op_id,
                                     const std::string& uuid) = 0;
  virtual Result<DomainStatus> shutdown(const Host& host, const std::string& op_id,
                                        const std::string& uuid) = 0;
  virtual Result<DomainStatus> reboot(const Host& host, const std::string& op_id,
                                      const std::string& uuid) = 0;
  virtual Result<DomainStatus> destroy(const Host& host, const std::string& op_id,
                                       const std::string& uuid) = 0;
  virtual Status undefine(const Host& host, const std::string& op_id, const std::string& uuid,
                          bool remove_volumes) = 0;
  // Live migration, driven from the source host's agent.
  virtual Result<MigrationStatus> migrate(const Host& source, const std::string& uuid,
                                          const MigrationRequest& request) = 0;
  virtual Result<MigrationStatus> migration_status(const Host& source, const std::string& uuid) = 0;
  virtual Result<MigrationStatus> abort_migration(const Host& source, const std::string& op_id,
                                                  const std::string& uuid) = 0;
};

// The real implementation: JSON over HTTP(S) with the host's own credential.
class HttpAgentApi final : public AgentApi {
 public:
  explicit HttpAgentApi(http::Client& client) : client_(client) {}
  Result<HostInventory> inventory(const Host& host) override;
  Result<DomainStatus> get_domain(const Host& host, const std::string& uuid) override;
  Result<DomainStatus> define(const Host& host, const std::string& op_id,
                              const DomainSpec& spec) override;
  Result<DomainStatus> start(const Host& host, const std::string& op_id,
                             const std::string& uuid) override;
  Result<DomainStatus> shutdown(const Host& host, const std::string& op_id,
                                const std::string& uuid) override;
  Result<DomainStatus> reboot(const Host& host, const std::string& op_id,
                              const std::string& uuid) override;
  Result<DomainStatus> destroy(const Host& host, const std::string& op_id,
                               const std::string& uuid) override;
  Status undefine(const Host& host, const std::string& op_id, const std::string& uuid,
                  bool remove_volumes) override;
  Result<MigrationStatus> migrate(const Host& source, const std::string& uuid,
                                  const MigrationRequest& request) override;
  Result<MigrationStatus> migration_status(const Host& source, const std::string& uuid) override;
  Result<MigrationStatus> abort_migration(const Host& source, const std::string& op_id,
                                          const std::string& uuid) override;

 private:
  http::Client& client_;
};

}  // namespace kvmfleet
