#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/core/records.hpp"
#include "kvmfleet/scheduler/scheduler.hpp"
#include "kvmfleet/store/store.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kvmfleet {

// The controller's working copy of the cluster. Reads come from memory; every
// change goes to the store first and reaches what readers see only once it is durable,
// so what readers see is never ahead of disk.
//
// Writers are grouped: each plans its batch against the data as it will be once every
// batch queued before it is durable, then the first writer to find no commit in
// progress commits every queued batch in one store transaction (one fsync for all of
// them) while the next writers plan and queue theirs. No lock that readers take is held
// across disk I/O: the readers' lock is taken only to apply durable batches to memory.
class ClusterState {
 public:
  // What a host's VMs ask of it: the sum over VMs recorded on it, whatever their power
  // state (a stopped VM may start again), as the scheduler counts them.
  struct HostUsage {
    std::int64_t memory_mib = 0;
    int vcpus = 0;
    int vm_count = 0;
    std::map<std::string, int> anti_affinity_groups;  // group → VMs of it on the host
  };

  // A batch whose records are shared, made once and applied to both views (records.hpp).
  struct SharedBatch {
    explicit SharedBatch(const WriteBatch& b);
    const WriteBatch& batch;
    std::vector<std::shared_ptr<const Host>> hosts;
    std::vector<std::shared_ptr<const Vm>> vms;
    std::vector<std::shared_ptr<const Operation>> operations;
    std::vector<std::shared_ptr<const TokenRecord>> tokens;
    std::vector<std::shared_ptr<const StoragePool>> pools;
    std::vector<std::shared_ptr<const Volume>> volumes;
    std::vector<std::shared_ptr<const Network>> networks;
  };

  struct Data {
    Records<Host, std::map> hosts;                      // by name
    Records<Vm, std::unordered_map> vms;                // by id
    std::map<std::string, std::string> vm_ids;          // name → id, ordered for listing
    Records<Operation, std::unordered_map> operations;  // by id
    std::map<std::pair<std::string, std::string>, std::string>
        idempotency;                                  // (token id, key) → op id
    Records<TokenRecord, std::unordered_map> tokens;  // by id
    Records<StoragePool, std::map> pools;             // by name (also the VG's name)
    Records<Volume, std::unordered_map> volumes;      // by id
    std::map<std::string, std::string> volume_ids;    // name → id, ordered for listing
    Records<Network, std::map> networks;              // by name
    // Bumped whenever a VM is written or deleted: views made of VMs alone stay valid
    // while it is unchanged (heartbeats do not bump it).
    std::uint64_t vms_version = 0;

    const Vm* find_vm(const std::string& id_or_name) const;
    const Host* find_host(const std::string& name) const;
    const Operation* find_operation(const std::string& id) const;
    const TokenRecord* find_token_by_hash(const std::string& hash) const;
    const StoragePool* find_pool(const std::string& name) const;
    const Volume* find_volume(const std::string& id_or_name) const;
    const Network* find_network(const std::string& name) const;
    // The volumes a VM's disks are (named by id or, in a spec not yet recorded, by
    // name), in disk order (missing ones left out).
    std::vector<const Volume*> volumes_of(const VmSpec& spec) const;
    std::vector<const Volume*> volumes_of(const Vm& vm) const { return volumes_of(vm.spec); }
    // Pools the VM's disks live in (each once).
    std::vector<std::string> pools_of(const VmSpec& spec) const;
    std::vector<std::string> pools_of(const Vm& vm) const { return pools_of(vm.spec); }
    // For the scheduler: host name → the ready pools it may use now.
    std::map<std::string, std::vector<std::string>> usable_pools_by_host() const;
    // For the scheduler: host name → the networks usable on it now (up, and its last
    // report has the network's links: network_unusable_reason).
    std::map<std::string, std::vector<std::string>> usable_networks_by_host() const;
    // The unfinished operation on a target, if any (one at a time per target; the
    // oldest if there were ever more).
    const Operation* active_operation_for(const std::string& target_id) const;
    // Every unfinished operation, oldest first.
    std::vector<const Operation*> active_operations() const;
    // The ids of the VMs recorded on `host` (empty set when none).
    const std::set<std::string>& vm_ids_on(const std::string& host) const;
    // The VMs with a suspected double run (Vm::double_run).
    const std::set<std::string>& double_runs() const { return double_runs_; }
    // The hosts whose last report has VM `id` running (empty set when none).
    const std::set<std::string>& hosts_running(const std::string& vm_id) const;
    // Capacity the VMs recorded on `host` take.
    const HostUsage& usage_of(const std::string& host) const;
    // The oldest last heartbeat among hosts recorded up (time_point::min() for an up
    // host never heard; nullopt when no host is up).
    std::optional<Clock::time_point> oldest_up_heartbeat() const;

    // Applies a batch to the records and keeps the indices below in step with them.
    // Records are changed only through here.
    void apply(const SharedBatch& batch);
    void apply(const WriteBatch& batch) { apply(SharedBatch(batch)); }

   private:
    void index_vm(const Vm& vm, int sign);
    void index_host(const Host& h, int sign);
    void index_operation(const Operation& op, int sign);

    // Indices, derived from the records above by apply() alone.
    std::unordered_map<std::string, std::set<std::pair<Clock::time_point, std::string>>>
        active_ops_;                                                  // target → (created, op id)
    std::set<std::pair<Clock::time_point, std::string>> active_all_;  // (created, op id)
    std::unordered_map<std::string, std::set<std::string>> vms_on_;   // host → VM ids
    std::unordered_map<std::string, HostUsage> usage_;                // host → usage
    std::unordered_map<std::string, std::set<std::string>> running_on_;  // VM id → hosts
    std::set<std::string> double_runs_;                                  // VM ids
    std::unordered_map<std::string, std::string> token_ids_;             // hash → token id
    std::set<std::pair<Clock::time_point, std::string>> up_heartbeats_;  // (last, host)
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
  std::optional<Network> network(const std::string& name) const;

  // Check-then-write, atomically: `plan` sees the data with every earlier write applied
  // (durable or queued to be) and fills a batch (or returns an error, which changes
  // nothing); the batch is committed to the store and then applied to what readers
  // see. Returns once that happened, or with the error that made the commit fail (then
  // the batches queued with it fail too, having been planned on top of it). With
  // persist=false the batch only reaches memory (for observations such as heartbeat
  // times that need not survive a restart), in order behind the writes before it.
  Status update(const std::function<Status(const Data&, WriteBatch&)>& plan, bool persist = true);

  // How many store transactions committed how many batches (group commit at work).
  struct CommitStats {
    std::uint64_t transactions = 0;
    std::uint64_t batches = 0;
  };
  CommitStats commit_stats() const;
  // Batches planned and waiting for their commit (the one in flight not counted).
  std::size_t queued_batches() const;

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
  struct Pending {
    WriteBatch batch;
    std::optional<SharedBatch> shared;  // batch's records, as both views hold them
    bool persist = true;
    bool done = false;
    Status status;
  };
  // Commits the queued batches (the caller is the one flushing); commit_lk is held on
  // entry and exit, released across the store's I/O.
  void flush(std::unique_lock<std::mutex>& commit_lk);

  Store& store_;
  mutable std::shared_mutex mu_;  // readers; taken exclusively only to apply durable batches
  Data data_;                     // durable: what readers see
  std::uint64_t version_ = 0;

  mutable std::mutex commit_mu_;  // writers: working_, queue_, flushing_, stats_
  std::condition_variable flushed_;
  Data working_;  // data_ plus every queued batch: what writers plan against
  std::deque<std::shared_ptr<Pending>> queue_;
  bool flushing_ = false;
  CommitStats stats_;
  std::vector<std::function<void(const Operation&)>> observers_;
  std::vector<VmObserver> vm_observers_;
};

// The scheduler's read-only view of the data: every host with its usable pools, every
// VM, and `also_counted` (VMs counted where they are going, e.g. migrations in flight).
scheduler::Snapshot scheduler_snapshot(const ClusterState::Data& d,
                                       std::vector<Vm> also_counted = {});

}  // namespace kvmfleet
