#pragma once

#include "kvmfleet/store/store.hpp"
#include "tests/doubles/common/gate.hpp"

#include <map>
#include <mutex>

namespace kvmfleet::doubles {

// Store double: keeps records in maps; can be told to fail the next commits, and to
// hold commits until released (to see what writers do while one commit is in flight).
class MemoryStore final : public Store {
 public:
  Result<StoreSnapshot> load() override {
    std::lock_guard lk(mu_);
    StoreSnapshot s;
    for (auto& [_, h] : hosts_) s.hosts.push_back(h);
    for (auto& [_, v] : vms_) s.vms.push_back(v);
    for (auto& [_, o] : ops_) s.operations.push_back(o);
    for (auto& [_, t] : tokens_) s.tokens.push_back(t);
    for (auto& [_, p] : pools_) s.pools.push_back(p);
    for (auto& [_, n] : networks_) s.networks.push_back(n);
    for (auto& [_, v] : volumes_) s.volumes.push_back(v);
    return s;
  }
  Status commit_all(std::span<const WriteBatch* const> all) override {
    gate_.pass();
    std::lock_guard lk(mu_);
    ++commits;
    batches += static_cast<int>(all.size());
    if (fail_commits > 0) {
      --fail_commits;
      return unavailable("store offline (test)");
    }
    for (const WriteBatch* b : all) write(*b);
    return {};
  }
  // Commits wait from now on until release().
  void hold() { gate_.hold(); }
  void release() { gate_.release(); }
  // Blocks until `n` commits are waiting at the gate.
  void wait_for_waiting(int n) { gate_.wait_for_waiting(n); }
  int fail_commits = 0;
  int commits = 0;  // store transactions
  int batches = 0;  // batches they held

 private:
  void write(const WriteBatch& b) {
    for (auto& n : b.delete_hosts) hosts_.erase(n);
    for (auto& h : b.put_hosts) hosts_[h.name] = h;
    for (auto& id : b.delete_vms) vms_.erase(id);
    for (auto& v : b.put_vms) vms_[v.id] = v;
    for (auto& id : b.delete_operations) ops_.erase(id);
    for (auto& o : b.put_operations) ops_[o.id] = o;
    for (auto& id : b.delete_tokens) tokens_.erase(id);
    for (auto& t : b.put_tokens) tokens_[t.id] = t;
    for (auto& n : b.delete_pools) pools_.erase(n);
    for (auto& p : b.put_pools) pools_[p.name] = p;
    for (auto& n : b.delete_networks) networks_.erase(n);
    for (auto& n : b.put_networks) networks_[n.name] = n;
    for (auto& id : b.delete_volumes) volumes_.erase(id);
    for (auto& v : b.put_volumes) volumes_[v.id] = v;
  }

  Gate gate_;
  std::mutex mu_;
  std::map<std::string, Host> hosts_;
  std::map<std::string, Vm> vms_;
  std::map<std::string, Operation> ops_;
  std::map<std::string, TokenRecord> tokens_;
  std::map<std::string, StoragePool> pools_;
  std::map<std::string, Network> networks_;
  std::map<std::string, Volume> volumes_;
};

}  // namespace kvmfleet::doubles
