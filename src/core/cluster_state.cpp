#include "kvmfleet/core/cluster_state.hpp"

#include "kvmfleet/common/validate.hpp"

#include <algorithm>
#include <string_view>

namespace kvmfleet {

namespace {
template <typename T>
std::optional<T> copy_of(const T* p) {
  return p ? std::optional<T>(*p) : std::nullopt;
}
}  // namespace

std::optional<Vm> ClusterState::vm(const std::string& id_or_name) const {
  return read([&](const Data& d) { return copy_of(d.find_vm(id_or_name)); });
}
std::optional<Host> ClusterState::host(const std::string& name) const {
  return read([&](const Data& d) { return copy_of(d.find_host(name)); });
}
std::optional<Operation> ClusterState::operation(const std::string& id) const {
  return read([&](const Data& d) { return copy_of(d.find_operation(id)); });
}
std::optional<Network> ClusterState::network(const std::string& name) const {
  return read([&](const Data& d) { return copy_of(d.find_network(name)); });
}

std::optional<StoragePool> ClusterState::pool(const std::string& name) const {
  return read([&](const Data& d) { return copy_of(d.find_pool(name)); });
}
std::optional<Volume> ClusterState::volume(const std::string& id_or_name) const {
  return read([&](const Data& d) { return copy_of(d.find_volume(id_or_name)); });
}

const Vm* ClusterState::Data::find_vm(const std::string& id_or_name) const {
  if (is_valid_uuid(id_or_name))
    if (const Vm* vm = vms.get(id_or_name)) return vm;
  auto n = vm_ids.find(id_or_name);
  return n == vm_ids.end() ? nullptr : vms.get(n->second);
}

const Host* ClusterState::Data::find_host(const std::string& name) const {
  return hosts.get(name);
}

const Operation* ClusterState::Data::find_operation(const std::string& id) const {
  return operations.get(id);
}

const TokenRecord* ClusterState::Data::find_token_by_hash(const std::string& hash) const {
  auto id = token_ids_.find(hash);
  return id == token_ids_.end() ? nullptr : tokens.get(id->second);
}

const Network* ClusterState::Data::find_network(const std::string& name) const {
  return networks.get(name);
}

const StoragePool* ClusterState::Data::find_pool(const std::string& name) const {
  return pools.get(name);
}

const Volume* ClusterState::Data::find_volume(const std::string& id_or_name) const {
  if (is_valid_uuid(id_or_name))
    if (const Volume* v = volumes.get(id_or_name)) return v;
  auto n = volume_ids.find(id_or_name);
  return n == volume_ids.end() ? nullptr : volumes.get(n->second);
}

std::vector<const Volume*> ClusterState::Data::volumes_of(const VmSpec& spec) const {
  std::vector<const Volume*> out;
  for (const auto& d : spec.disks) {
    if (d.volume.empty()) continue;
    if (const Volume* v = find_volume(d.volume)) out.push_back(v);
  }
  return out;
}

std::vector<std::string> ClusterState::Data::pools_of(const VmSpec& spec) const {
  std::vector<std::string> out;
  for (const Volume* v : volumes_of(spec))
    if (std::find(out.begin(), out.end(), v->pool) == out.end()) out.push_back(v->pool);
  return out;
}

std::map<std::string, std::vector<std::string>> ClusterState::Data::usable_pools_by_host() const {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [name, p] : pools) {
    if (p.state != PoolState::ready) continue;
    for (const auto& [host, _] : p.hosts)
      if (p.usable_on(host)) out[host].push_back(name);
  }
  return out;
}

std::map<std::string, std::vector<std::string>> ClusterState::Data::usable_networks_by_host()
    const {
  std::map<std::string, std::vector<std::string>> out;
  if (networks.empty()) return out;
  for (const auto& [host, h] : hosts) {
    if (h.state != HostState::up) continue;
    for (const auto& [name, n] : networks)
      if (network_unusable_reason(n, h.inventory.links).empty()) out[host].push_back(name);
  }
  return out;
}

const Operation* ClusterState::Data::active_operation_for(const std::string& target_id) const {
  auto it = active_ops_.find(target_id);
  if (it == active_ops_.end() || it->second.empty()) return nullptr;
  return find_operation(it->second.begin()->second);
}

std::vector<const Operation*> ClusterState::Data::active_operations() const {
  std::vector<const Operation*> out;
  out.reserve(active_all_.size());
  for (const auto& [_, id] : active_all_)
    if (const Operation* op = find_operation(id)) out.push_back(op);
  return out;
}

namespace {
const std::set<std::string> kNoIds;
const ClusterState::HostUsage kNoUsage;
}  // namespace

const std::set<std::string>& ClusterState::Data::vm_ids_on(const std::string& host) const {
  auto it = vms_on_.find(host);
  return it == vms_on_.end() ? kNoIds : it->second;
}

const std::set<std::string>& ClusterState::Data::hosts_running(const std::string& vm_id) const {
  auto it = running_on_.find(vm_id);
  return it == running_on_.end() ? kNoIds : it->second;
}

const ClusterState::HostUsage& ClusterState::Data::usage_of(const std::string& host) const {
  auto it = usage_.find(host);
  return it == usage_.end() ? kNoUsage : it->second;
}

std::optional<Clock::time_point> ClusterState::Data::oldest_up_heartbeat() const {
  if (up_heartbeats_.empty()) return std::nullopt;
  return up_heartbeats_.begin()->first;
}

void ClusterState::Data::index_vm(const Vm& vm, int sign) {
  if (vm.double_run) {
    if (sign > 0)
      double_runs_.insert(vm.id);
    else
      double_runs_.erase(vm.id);
  }
  if (vm.host.empty()) return;
  if (sign > 0)
    vms_on_[vm.host].insert(vm.id);
  else if (auto it = vms_on_.find(vm.host); it != vms_on_.end()) {
    it->second.erase(vm.id);
    if (it->second.empty()) vms_on_.erase(it);
  }
  HostUsage& u = usage_[vm.host];
  u.memory_mib += sign * vm.spec.memory_mib;
  u.vcpus += sign * vm.spec.vcpus;
  u.vm_count += sign;
  if (const auto& g = vm.spec.anti_affinity_group; !g.empty()) {
    if ((u.anti_affinity_groups[g] += sign) <= 0) u.anti_affinity_groups.erase(g);
  }
  if (u.vm_count <= 0) usage_.erase(vm.host);
}

void ClusterState::Data::index_host(const Host& h, int sign) {
  for (const auto& d : h.inventory.domains) {
    if (vm_state_from_domain(d.state) != VmState::running) continue;
    if (sign > 0)
      running_on_[d.uuid].insert(h.name);
    else if (auto it = running_on_.find(d.uuid); it != running_on_.end()) {
      it->second.erase(h.name);
      if (it->second.empty()) running_on_.erase(it);
    }
  }
  if (h.state != HostState::up) return;
  const std::pair key{h.last_heartbeat.value_or(Clock::time_point::min()), h.name};
  if (sign > 0)
    up_heartbeats_.insert(key);
  else
    up_heartbeats_.erase(key);
}

void ClusterState::Data::index_operation(const Operation& op, int sign) {
  if (!op.idempotency_key.empty()) {
    if (sign > 0)
      idempotency[{op.requester_id, op.idempotency_key}] = op.id;
    else
      idempotency.erase({op.requester_id, op.idempotency_key});
  }
  if (is_terminal(op.state)) return;
  const std::pair key{op.created_at, op.id};
  if (sign > 0) {
    active_ops_[op.target_id].insert(key);
    active_all_.insert(key);
    return;
  }
  active_all_.erase(key);
  if (auto it = active_ops_.find(op.target_id); it != active_ops_.end()) {
    it->second.erase(key);
    if (it->second.empty()) active_ops_.erase(it);
  }
}

namespace {
template <typename T>
std::vector<std::shared_ptr<const T>> share_all(const std::vector<T>& records) {
  std::vector<std::shared_ptr<const T>> out;
  out.reserve(records.size());
  for (const auto& r : records) out.push_back(std::make_shared<const T>(r));
  return out;
}
}  // namespace

ClusterState::SharedBatch::SharedBatch(const WriteBatch& b)
    : batch(b),
      hosts(share_all(b.put_hosts)),
      vms(share_all(b.put_vms)),
      operations(share_all(b.put_operations)),
      tokens(share_all(b.put_tokens)),
      pools(share_all(b.put_pools)),
      volumes(share_all(b.put_volumes)),
      networks(share_all(b.put_networks)) {}

void ClusterState::Data::apply(const SharedBatch& s) {
  const WriteBatch& b = s.batch;
  for (const auto& name : b.delete_hosts) {
    const Host* h = hosts.get(name);
    if (!h) continue;
    index_host(*h, -1);
    hosts.erase(name);
  }
  for (const auto& h : s.hosts) {
    if (const Host* old = hosts.get(h->name)) index_host(*old, -1);
    hosts.put(h->name, h);
    index_host(*h, +1);
  }
  for (const auto& id : b.delete_vms) {
    const Vm* vm = vms.get(id);
    if (!vm) continue;
    index_vm(*vm, -1);
    vm_ids.erase(vm->spec.name);
    vms.erase(id);
  }
  if (!b.put_vms.empty() || !b.delete_vms.empty()) ++vms_version;
  for (const auto& vm : s.vms) {
    if (const Vm* old = vms.get(vm->id)) {
      index_vm(*old, -1);
      if (old->spec.name != vm->spec.name) vm_ids.erase(old->spec.name);
    }
    vms.put(vm->id, vm);
    vm_ids[vm->spec.name] = vm->id;
    index_vm(*vm, +1);
  }
  for (const auto& id : b.delete_operations) {
    const Operation* op = operations.get(id);
    if (!op) continue;
    index_operation(*op, -1);
    operations.erase(id);
  }
  for (const auto& op : s.operations) {
    if (const Operation* old = operations.get(op->id)) index_operation(*old, -1);
    operations.put(op->id, op);
    index_operation(*op, +1);
  }
  for (const auto& id : b.delete_tokens) {
    const TokenRecord* t = tokens.get(id);
    if (!t) continue;
    token_ids_.erase(t->hash);
    tokens.erase(id);
  }
  for (const auto& t : s.tokens) {
    if (const TokenRecord* old = tokens.get(t->id)) token_ids_.erase(old->hash);
    tokens.put(t->id, t);
    token_ids_[t->hash] = t->id;
  }
  for (const auto& name : b.delete_pools) pools.erase(name);
  for (const auto& name : b.delete_networks) networks.erase(name);
  for (const auto& n : s.networks) networks.put(n->name, n);
  for (const auto& p : s.pools) pools.put(p->name, p);
  for (const auto& id : b.delete_volumes) {
    const Volume* v = volumes.get(id);
    if (!v) continue;
    volume_ids.erase(v->name);
    volumes.erase(id);
  }
  for (const auto& v : s.volumes) {
    if (const Volume* old = volumes.get(v->id); old && old->name != v->name)
      volume_ids.erase(old->name);
    volumes.put(v->id, v);
    volume_ids[v->name] = v->id;
  }
}

Status ClusterState::load() {
  auto snap = store_.load();
  if (!snap) return snap.take_error();
  WriteBatch b;
  b.put_hosts = std::move(snap->hosts);
  b.put_vms = std::move(snap->vms);
  b.put_operations = std::move(snap->operations);
  b.put_tokens = std::move(snap->tokens);
  b.put_pools = std::move(snap->pools);
  b.put_volumes = std::move(snap->volumes);
  b.put_networks = std::move(snap->networks);
  std::lock_guard commit_lk(commit_mu_);
  std::unique_lock lk(mu_);
  data_ = Data{};
  data_.apply(b);
  ++version_;
  working_ = data_;
  return {};
}

Status ClusterState::update(const std::function<Status(const Data&, WriteBatch&)>& plan,
                            bool persist) {
  auto mine = std::make_shared<Pending>();
  mine->persist = persist;
  {
    std::unique_lock commit_lk(commit_mu_);
    if (auto st = plan(working_, mine->batch); !st) return st;
    if (mine->batch.empty()) return {};
    mine->shared.emplace(mine->batch);
    working_.apply(*mine->shared);
    queue_.push_back(mine);
    // Whoever finds no commit in progress commits everything queued, its own batch
    // included; the others wait for theirs to be among what a commit took.
    while (!mine->done) {
      if (flushing_)
        flushed_.wait(commit_lk);
      else
        flush(commit_lk);
    }
    if (!mine->status) return mine->status;
  }
  const WriteBatch& batch = mine->batch;
  for (const auto& op : batch.put_operations)
    for (const auto& obs : observers_) obs(op);
  if (persist && (!batch.put_vms.empty() || !batch.delete_vms.empty()))
    for (const auto& obs : vm_observers_) obs(batch.put_vms, batch.delete_vms);
  return {};
}

void ClusterState::flush(std::unique_lock<std::mutex>& commit_lk) {
  flushing_ = true;
  std::vector<std::shared_ptr<Pending>> taken(queue_.begin(), queue_.end());
  queue_.clear();
  commit_lk.unlock();

  std::vector<const WriteBatch*> durable;
  for (const auto& p : taken)
    if (p->persist) durable.push_back(&p->batch);
  Status st;
  if (!durable.empty()) st = store_.commit_all(durable);
  if (st) {
    std::unique_lock lk(mu_);
    for (const auto& p : taken) data_.apply(*p->shared);
    ++version_;
  }

  commit_lk.lock();
  if (!durable.empty()) {
    ++stats_.transactions;
    stats_.batches += durable.size();
  }
  if (!st) {
    // The queued batches were planned on top of the ones that failed: they fail too,
    // and writers plan again from what is durable.
    for (const auto& p : queue_) taken.push_back(p);
    queue_.clear();
    working_ = data_;
  }
  for (const auto& p : taken) {
    p->status = st;
    p->done = true;
  }
  flushing_ = false;
  flushed_.notify_all();
}

ClusterState::CommitStats ClusterState::commit_stats() const {
  std::lock_guard lk(commit_mu_);
  return stats_;
}

std::size_t ClusterState::queued_batches() const {
  std::lock_guard lk(commit_mu_);
  return queue_.size();
}

void ClusterState::on_operation_change(std::function<void(const Operation&)> observer) {
  std::unique_lock lk(mu_);
  observers_.push_back(std::move(observer));
}

void ClusterState::on_vm_change(VmObserver observer) {
  std::unique_lock lk(mu_);
  vm_observers_.push_back(std::move(observer));
}

std::uint64_t ClusterState::version() const {
  std::shared_lock lk(mu_);
  return version_;
}

scheduler::Snapshot scheduler_snapshot(const ClusterState::Data& d, std::vector<Vm> also_counted) {
  // From the usage index: O(hosts), not O(VMs).
  scheduler::Snapshot snap;
  snap.hosts.reserve(d.hosts.size());
  std::unordered_map<std::string_view, std::size_t> by_name;
  for (const auto& [name, h] : d.hosts) {
    scheduler::HostView v = scheduler::host_view(h);
    const auto& u = d.usage_of(name);
    v.allocated_memory_mib = u.memory_mib;
    v.allocated_vcpus = u.vcpus;
    for (const auto& [group, _] : u.anti_affinity_groups) v.anti_affinity_groups.push_back(group);
    by_name.emplace(name, snap.hosts.size());
    snap.hosts.push_back(std::move(v));
  }
  for (const auto& vm : also_counted)
    if (auto it = by_name.find(vm.host); it != by_name.end())
      scheduler::count_vm(snap.hosts[it->second], vm.spec);
  scheduler::attach_pools(snap, d.usable_pools_by_host());
  scheduler::attach_networks(snap, d.usable_networks_by_host());
  return snap;
}

}  // namespace kvmfleet
