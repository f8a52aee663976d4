#include "kvmfleet/controller/cluster_state.hpp"

#include "kvmfleet/common/validate.hpp"

namespace kvmfleet {

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
  ++version_;
}

}  // namespace kvmfleet
