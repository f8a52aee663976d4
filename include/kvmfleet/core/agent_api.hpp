#pragma once

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/model/domain_spec.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/migration.hpp"
#include "kvmfleet/model/network.hpp"
#include "kvmfleet/model/storage.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvmfleet {

// A shared VG as one host's LVM reports it.
struct AgentVg {
  std::uint64_t size_bytes = 0;
  std::uint64_t free_bytes = 0;
};

// How an LV is active on one host (lvmlockd's lock there).
enum class LvMode { inactive, exclusive, shared };
std::string_view to_string(LvMode m);

// One LV as one host's LVM reports it.
struct AgentLv {
  std::string name;
  std::uint64_t size_bytes = 0;
  LvMode activation = LvMode::inactive;
  std::string origin;                  // a snapshot's origin LV
  std::optional<double> data_percent;  // a snapshot's COW fill
  bool snapshot_invalid = false;
  bool merging = false;
};

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
  // NIC hot plug: the NIC joins / leaves the domain's definition and, when it runs, the
  // guest; the domain takes `generation`. Repeats are harmless. A guest that has not
  // let a NIC go yet: conflict, details.reason "detach_pending".
  virtual Result<DomainStatus> attach_nic(const Host& host, const std::string& op_id,
                                          const std::string& uuid, const DomainNic& nic,
                                          std::int64_t generation) = 0;
  virtual Result<DomainStatus> detach_nic(const Host& host, const std::string& op_id,
                                          const std::string& uuid, const std::string& mac,
                                          std::int64_t generation) = 0;
  // A migration's destination makes the files of the domain's CD-ROMs (ISO fetched,
  // seed written) before the migration starts; their paths there.
  virtual Result<MigrationMedia> prepare_media(const Host& host, const std::string& op_id,
                                               const DomainSpec& spec) = 0;
  // Removes the domain's seed on a host it is not defined on, and the cached ISO of
  // `cdrom_sha256` (empty: none) unless a domain there uses it. Defined there: conflict.
  virtual Status remove_media(const Host& host, const std::string& op_id, const std::string& uuid,
                              const std::string& cdrom_sha256) = 0;
  // The QEMU guest agent freezes/thaws the guest's filesystems; conflict when the
  // guest has no guest agent answering. Returns how many filesystems.
  virtual Result<int> fs_freeze(const Host& host, const std::string& op_id,
                                const std::string& uuid) = 0;
  virtual Result<int> fs_thaw(const Host& host, const std::string& op_id,
                              const std::string& uuid) = 0;
  // A running domain's disk on block device `device` is now size_bytes long (after its
  // LV grew), so the guest sees it. Not running or migrating: conflict.
  virtual Status block_resize(const Host& host, const std::string& op_id, const std::string& uuid,
                              const std::string& device, std::uint64_t size_bytes) = 0;

  // Shared storage (docs/storage.md, "Agent API"): one backend call each.
  // The host's storage inventory (GET /agent/v1/storage): lock daemons, lockspaces,
  // iSCSI sessions, VGs, errors.
  virtual Result<nlohmann::json> storage_inventory(const Host& host) = 0;
  // SendTargets discovery of a portal (records the nodes a login needs); returns the
  // IQNs it offers.
  virtual Result<std::vector<std::string>> iscsi_discover(const Host& host,
                                                          const std::string& op_id,
                                                          const std::string& portal) = 0;
  // Logs in to an iSCSI target; returns the LUN's block device on that host.
  virtual Result<std::string> iscsi_login(const Host& host, const std::string& op_id,
                                          const IscsiPoolTarget& target) = 0;
  virtual Status iscsi_logout(const Host& host, const std::string& op_id,
                              const IscsiPoolTarget& target) = 0;
  // Attaches a pool's FC LUNs on the host: each WWID's device (its multipath map when
  // one holds it) joins LVM's filter. Returns the devices in WWID order; not_found
  // names a WWID the host does not see.
  virtual Result<std::vector<std::string>> fc_attach(const Host& host, const std::string& op_id,
                                                     const std::vector<std::string>& wwids) = 0;
  virtual Status vg_create(const Host& host, const std::string& op_id, const std::string& vg,
                           const std::vector<std::string>& devices) = 0;
  virtual Status vg_lockstart(const Host& host, const std::string& op_id,
                              const std::string& vg) = 0;
  // conflict while LVs of the VG are active on that host.
  virtual Status vg_lockstop(const Host& host, const std::string& op_id, const std::string& vg) = 0;
  virtual Result<AgentVg> vg_get(const Host& host, const std::string& vg) = 0;
  virtual Result<std::vector<AgentLv>> lv_list(const Host& host, const std::string& vg) = 0;
  virtual Status lv_create(const Host& host, const std::string& op_id, const std::string& vg,
                           const std::string& lv, std::uint64_t size_bytes) = 0;
  virtual Status lv_grow(const Host& host, const std::string& op_id, const std::string& vg,
                         const std::string& lv, std::uint64_t size_bytes) = 0;
  virtual Status lv_delete(const Host& host, const std::string& op_id, const std::string& vg,
                           const std::string& lv) = 0;
  // conflict when another host holds the LV's lock in a mode that excludes `mode`.
  virtual Status lv_activate(const Host& host, const std::string& op_id, const std::string& vg,
                             const std::string& lv, LvMode mode) = 0;
  virtual Status lv_snapshot(const Host& host, const std::string& op_id, const std::string& vg,
                             const std::string& origin, const std::string& snapshot,
                             std::uint64_t size_bytes) = 0;
  virtual Status lv_merge(const Host& host, const std::string& op_id, const std::string& vg,
                          const std::string& snapshot) = 0;

  // Networks: makes `network` usable on the host (its VLAN sub-interface and bridge
  // made when missing, MTU set, up). Returns the links it created (none when all were
  // there).
  virtual Result<std::vector<std::string>> network_ensure(const Host& host,
                                                          const std::string& op_id,
                                                          const Network& network) = 0;
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
  Result<DomainStatus> attach_nic(const Host& host, const std::string& op_id,
                                  const std::string& uuid, const DomainNic& nic,
                                  std::int64_t generation) override;
  Result<DomainStatus> detach_nic(const Host& host, const std::string& op_id,
                                  const std::string& uuid, const std::string& mac,
                                  std::int64_t generation) override;
  Result<MigrationMedia> prepare_media(const Host& host, const std::string& op_id,
                                       const DomainSpec& spec) override;
  Status remove_media(const Host& host, const std::string& op_id, const std::string& uuid,
                      const std::string& cdrom_sha256) override;
  Result<int> fs_freeze(const Host& host, const std::string& op_id,
                        const std::string& uuid) override;
  Result<int> fs_thaw(const Host& host, const std::string& op_id, const std::string& uuid) override;
  Status block_resize(const Host& host, const std::string& op_id, const std::string& uuid,
                      const std::string& device, std::uint64_t size_bytes) override;
  Result<nlohmann::json> storage_inventory(const Host& host) override;
  Result<std::vector<std::string>> iscsi_discover(const Host& host, const std::string& op_id,
                                                  const std::string& portal) override;
  Result<std::string> iscsi_login(const Host& host, const std::string& op_id,
                                  const IscsiPoolTarget& target) override;
  Status iscsi_logout(const Host& host, const std::string& op_id,
                      const IscsiPoolTarget& target) override;
  Result<std::vector<std::string>> fc_attach(const Host& host, const std::string& op_id,
                                             const std::vector<std::string>& wwids) override;
  Status vg_create(const Host& host, const std::string& op_id, const std::string& vg,
                   const std::vector<std::string>& devices) override;
  Status vg_lockstart(const Host& host, const std::string& op_id, const std::string& vg) override;
  Status vg_lockstop(const Host& host, const std::string& op_id, const std::string& vg) override;
  Result<AgentVg> vg_get(const Host& host, const std::string& vg) override;
  Result<std::vector<AgentLv>> lv_list(const Host& host, const std::string& vg) override;
  Status lv_create(const Host& host, const std::string& op_id, const std::string& vg,
                   const std::string& lv, std::uint64_t size_bytes) override;
  Status lv_grow(const Host& host, const std::string& op_id, const std::string& vg,
                 const std::string& lv, std::uint64_t size_bytes) override;
  Status lv_delete(const Host& host, const std::string& op_id, const std::string& vg,
                   const std::string& lv) override;
  Status lv_activate(const Host& host, const std::string& op_id, const std::string& vg,
                     const std::string& lv, LvMode mode) override;
  Status lv_snapshot(const Host& host, const std::string& op_id, const std::string& vg,
                     const std::string& origin, const std::string& snapshot,
                     std::uint64_t size_bytes) override;
  Status lv_merge(const Host& host, const std::string& op_id, const std::string& vg,
                  const std::string& snapshot) override;
  Result<std::vector<std::string>> network_ensure(const Host& host, const std::string& op_id,
                                                  const Network& network) override;

 private:
  http::Client& client_;
};

}  // namespace kvmfleet
