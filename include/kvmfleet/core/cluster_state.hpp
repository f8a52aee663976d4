#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"
#include "kvmfleet/store/store.hpp"

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace kvmfleet {

// The controller's working copy of the cluster. Reads come from memory; every
// change goes to the store first and reaches memory only once it is durable, so
// memory is never ahead of disk.
class ClusterState {
 public:
  struct Data {
    std::map<std::string, Host> hosts;                      // by name
    std::unordered_map<std::string, Vm> vms;                // by id
    std::map<std::string, std::string> vm_ids;              // name → id, ordered for listing
    std::unordered_map<std::string, Operation> operations;  // by id
    std::map<std::pair<std::string, std::string>, std::string>
        idempotency;                                      // (token id, key) → op id
    std::unordered_map<std::string, TokenRecord> tokens;  // by id
    std::map<std::string, StoragePool> pools;             // by name (also the VG's name)
    std::unordered_map<std::string, Volume> volumes;      // by id
    std::map<std::string, std::string> volume_ids;        // name → id, ordered for listing
    // Bumped whenever a VM is written or deleted: views made of VMs alone stay valid
    // while it is unchanged (heartbeats do not bump it).
    std::uint64_t vms_version = 0;

    const Vm* find_vm(const std::string& id_or_name) const;
    const Host* find_host(const std::string& name) const;
    const Operation* find_operation(const std::string& id) const;
    const TokenRecord* find_token_by_hash(const std::string& hash) const;
    const StoragePool* find_pool(const std::string& name) const;
    const Volume* find_volume(const std::string& id_or_name) const;
    // The volumes a VM's disks are (named by id or, in a spec not yet recorded, by
    // name), in disk order (missing ones left out).
    std::vector<const Volume*> volumes_of(const VmSpec& spec) const;
    std::vector<const Volume*> volumes_of(const Vm& vm) const { return volumes_of(vm.spec); }
    // Pools the VM's disks live in (each once).
    std::vector<std::string> pools_of(const VmSpec& spec) const;
    std::vector<std::string> pools_of(const Vm& vm) const { return pools_of(vm.spec); }
    // For the scheduler: host name → the ready pools it may use now.
    std::map<std::string, std::vector<std::string>> usable_pools_by_host() const;
    // The unfinished operation on a target, if any (one at a time per target).
    const Operation* active_operation_for(const std::string& target_id) const;
  };

  explicit ClusterState(Store& store) : store_(store) {}

  Status load();

  // Runs `read` under a shared lock.
  template <typename F>
  auto read(F&& read) const {
    std::shared_lock lk(mu_);
    return read(static_cast<const Data&>(data_));
  }

  // Copies of single records as they are now (nullopt when there is none): for code
  // that acts on a record outside the lock and re-reads it before each step.
  std::optional<Vm> vm(const std::string& id_or_name) const;
  std::optional<Host> host(const std::string& name) const;
  std::optional<Operation> operation(const std::string& id) const;
  std::optional<StoragePool> pool(const std::string& name) const;
  std::optional<Volume> volume(const std::string& id_or_name) const;

  // Check-then-write, atomically: `plan` sees the current data and fills a batch (or
  // returns an error, which changes nothing); the batch is committed to the store
  // and then applied to memory. With persist=false the batch only reaches memory
  // (for observations such as heartbeat times that need not survive a restart).
  Status update(const std::function<Status(const Data&, WriteBatch&)>& plan, bool persist = true);

  // Called (outside the lock) with every operation a committed batch wrote.
  void on_operation_change(std::function<void(const Operation&)> observer);
  // Called (outside the lock) with the VMs a batch persisted to the store: those it
  // wrote and the ids it deleted. Observers on several threads may see two batches in
  // either order; the VM's generation tells which is newer.
  using VmObserver =
      std::function<void(const std::vector<Vm>& put, const std::vector<std::string>& deleted)>;
  void on_vm_change(VmObserver observer);

  // Bumped on every applied change; lets readers cache derived views.
  std::uint64_t version() const;

 private:
  void apply(const WriteBatch& batch);

  Store& store_;
  mutable std::shared_mutex mu_;
  std::mutex commit_mu_;  // serializes writers, so plan+commit+apply is one step
  Data data_;
  std::uint64_t version_ = 0;
  std::vector<std::function<void(const Operation&)>> observers_;
  std::vector<VmObserver> vm_observers_;
};

// The scheduler's read-only view of the data: every host with its usable pools, every
// VM, and `also_counted` (VMs counted where they are going, e.g. migrations in flight).
scheduler::Snapshot scheduler_snapshot(const ClusterState::Data& d,
                                       std::vector<Vm> also_counted = {});

}  // namespace kvmfleet
