#include "kvmfleet/core/cluster_state.hpp"

#include "kvmfleet/common/validate.hpp"

#include <algorithm>

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
std::optional<StoragePool> ClusterState::pool(const std::string& name) const {
  return read([&](const Data& d) { return copy_of(d.find_pool(name)); });
}
std::optional<Volume> ClusterState::volume(const std::string& id_or_name) const {
  return read([&](const Data& d) { return copy_of(d.find_volume(id_or_name)); });
}

const Vm* ClusterState::Data::find_vm(const std::string& id_or_name) const {
  if (is_valid_uuid(id_or_name)) {
    auto it = vms.find(id_or_name);
    if (it != vms.end()) return &it->second;
  }
  auto n = vm_ids.find(id_or_name);
  if (n == vm_ids.end()) return nullptr;
  auto it = vms.find(n->second);
  return it == vms.end() ? nullptr : &it->second;
}

const Host* ClusterState::Data::find_host(const std::string& name) const {
  auto it = hosts.find(name);
  return it == hosts.end() ? nullptr : &it->second;
}

const Operation* ClusterState::Data::find_operation(const std::string& id) const {
  auto it = operations.find(id);
  return it == operations.end() ? nullptr : &it->second;
}

const TokenRecord* ClusterState::Data::find_token_by_hash(const std::string& hash) const {
  for (const auto& [_, t] : tokens)
    if (t.hash == hash) return &t;
  return nullptr;
}

const StoragePool* ClusterState::Data::find_pool(const std::string& name) const {
  auto it = pools.find(name);
  return it == pools.end() ? nullptr : &it->second;
}

const Volume* ClusterState::Data::find_volume(const std::string& id_or_name) const {
  if (is_valid_uuid(id_or_name)) {
    auto it = volumes.find(id_or_name);
    if (it != volumes.end()) return &it->second;
  }
  auto n = volume_ids.find(id_or_name);
  if (n == volume_ids.end()) return nullptr;
  auto it = volumes.find(n->second);
  return it == volumes.end() ? nullptr : &it->second;
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

const Operation* ClusterState::Data::active_operation_for(const std::string& target_id) const {
  const Operation* oldest = nullptr;
  for (const auto& [_, op] : operations) {
    if (op.target_id != target_id || is_terminal(op.state)) continue;
    if (!oldest || op.created_at < oldest->created_at) oldest = &op;
  }
  return oldest;
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
  std::unique_lock lk(mu_);
  data_ = Data{};
  apply(b);
  return {};
}

Status ClusterState::update(const std::function<Status(const Data&, WriteBatch&)>& plan,
                            bool persist) {
  WriteBatch batch;
  {
    std::lock_guard commit_lk(commit_mu_);
    {
      // Writers are serialized by commit_mu_, so the data cannot change between
      // planning under the shared lock and applying under the exclusive one.
      std::shared_lock lk(mu_);
      if (auto st = plan(data_, batch); !st) return st;
    }
    if (batch.empty()) return {};
    if (persist) {
      if (auto st = store_.commit(batch); !st) return st;
    }
    std::unique_lock lk(mu_);
    apply(batch);
  }
  for (const auto& op : batch.put_operations)
    for (const auto& obs : observers_) obs(op);
  if (persist && (!batch.put_vms.empty() || !batch.delete_vms.empty()))
    for (const auto& obs : vm_observers_) obs(batch.put_vms, batch.delete_vms);
  return {};
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

void ClusterState::apply(const WriteBatch& b) {
  for (const auto& name : b.delete_hosts) data_.hosts.erase(name);
  for (const auto& h : b.put_hosts) data_.hosts[h.name] = h;
  for (const auto& id : b.delete_vms) {
    auto it = data_.vms.find(id);
    if (it == data_.vms.end()) continue;
    data_.vm_ids.erase(it->second.spec.name);
    data_.vms.erase(it);
  }
  if (!b.put_vms.empty() || !b.delete_vms.empty()) ++data_.vms_version;
  for (const auto& vm : b.put_vms) {
    auto it = data_.vms.find(vm.id);
    if (it != data_.vms.end() && it->second.spec.name != vm.spec.name)
      data_.vm_ids.erase(it->second.spec.name);
    data_.vms[vm.id] = vm;
    data_.vm_ids[vm.spec.name] = vm.id;
  }
  for (const auto& id : b.delete_operations) {
    auto it = data_.operations.find(id);
    if (it == data_.operations.end()) continue;
    if (!it->second.idempotency_key.empty())
      data_.idempotency.erase({it->second.requester_id, it->second.idempotency_key});
    data_.operations.erase(it);
  }
  for (const auto& op : b.put_operations) {
    data_.operations[op.id] = op;
    if (!op.idempotency_key.empty())
      data_.idempotency[{op.requester_id, op.idempotency_key}] = op.id;
  }
  for (const auto& id : b.delete_tokens) data_.tokens.erase(id);
  for (const auto& t : b.put_tokens) data_.tokens[t.id] = t;
  for (const auto& name : b.delete_pools) data_.pools.erase(name);
  for (const auto& p : b.put_pools) data_.pools[p.name] = p;
  for (const auto& id : b.delete_volumes) {
    auto it = data_.volumes.find(id);
    if (it == data_.volumes.end()) continue;
    data_.volume_ids.erase(it->second.name);
    data_.volumes.erase(it);
  }
  for (const auto& v : b.put_volumes) {
    auto it = data_.volumes.find(v.id);
    if (it != data_.volumes.end() && it->second.name != v.name)
      data_.volume_ids.erase(it->second.name);
    data_.volumes[v.id] = v;
    data_.volume_ids[v.name] = v.id;
  }
  ++version_;
}

scheduler::Snapshot scheduler_snapshot(const ClusterState::Data& d, std::vector<Vm> also_counted) {
  std::vector<Host> hosts;
  std::vector<Vm> vms;
  for (const auto& [_, h] : d.hosts) hosts.push_back(h);
  for (const auto& [_, v] : d.vms) vms.push_back(v);
  for (auto& v : also_counted) vms.push_back(std::move(v));
  auto snap = scheduler::snapshot_from(hosts, vms);
  scheduler::attach_pools(snap, d.usable_pools_by_host());
  return snap;
}

}  // namespace kvmfleet
