#pragma once

#include "kvmfleet/controller/agent_api.hpp"

#include <map>
#include <mutex>
#include <vector>

namespace kvmfleet::doubles {

// AgentApi double: an in-memory "libvirt" per host, with a call log and injectable
// failures. shutdown() leaves the domain running unless `acpi_works` is set.
class FakeAgentApi final : public AgentApi {
 public:
  struct Call {
    std::string host, name, op_id, uuid;
  };

  Result<HostInventory> inventory(const Host& h) override {
    std::lock_guard lk(mu_);
    HostInventory inv;
    inv.hostname = h.name;
    for (auto& [uuid, d] : domains_[h.name]) inv.domains.push_back(d);
    return inv;
  }
  Result<DomainStatus> get_domain(const Host& h, const std::string& uuid) override {
    std::lock_guard lk(mu_);
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    return it->second;
  }
  Result<DomainStatus> define(const Host& h, const std::string& op, const DomainSpec& s) override {
    std::lock_guard lk(mu_);
    log(h, "define", op, s.uuid);
    if (auto e = injected("define")) return *e;
    auto& d = domains_[h.name][s.uuid];
    d.uuid = s.uuid;
    d.name = s.name;
    if (d.state.empty()) d.state = "stopped";
    d.managed = true;
    d.generation = s.generation;
    return d;
  }
  Result<DomainStatus> start(const Host& h, const std::string& op, const std::string& uuid) override {
    return act(h, "start", op, uuid, "running");
  }
  Result<DomainStatus> shutdown(const Host& h, const std::string& op, const std::string& uuid) override {
    return act(h, "shutdown", op, uuid, acpi_works ? "stopped" : "");
  }
  Result<DomainStatus> reboot(const Host& h, const std::string& op, const std::string& uuid) override {
    return act(h, "reboot", op, uuid, "running");
  }
  Result<DomainStatus> destroy(const Host& h, const std::string& op, const std::string& uuid) override {
    return act(h, "destroy", op, uuid, "stopped");
  }
  Status undefine(const Host& h, const std::string& op, const std::string& uuid, bool) override {
    std::lock_guard lk(mu_);
    log(h, "undefine", op, uuid);
    if (auto e = injected("undefine")) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it != m.end() && it->second.state == "running") return conflict("domain is running");
    m.erase(uuid);
    return {};
  }

  // Migration completes at once unless `hold_migrations`; the destination is found
  // by the address in the URI (see `address_of`).
  Result<MigrationStatus> migrate(const Host& src, const std::string& uuid,
                                  const MigrationRequest& req) override {
    std::lock_guard lk(mu_);
    log(src, "migrate", req.op_id, uuid);
    if (auto e = injected("migrate")) return *e;
    auto& m = domains_[src.name];
    if (!m.count(uuid)) return not_found("no domain");
    auto& st = migrations_[uuid];
    st = MigrationStatus{};
    st.op_id = req.op_id;
    st.state = MigrationState::running;
    st.data_total = 64 << 20;
    pending_dest_[uuid] = {src.name, req.destination_uri};
    if (!hold_migrations) complete_locked(uuid);
    return st;
  }
  Result<MigrationStatus> migration_status(const Host&, const std::string& uuid) override {
    std::lock_guard lk(mu_);
    return migrations_[uuid];
  }
  Result<MigrationStatus> abort_migration(const Host& src, const std::string& op,
                                          const std::string& uuid) override {
    std::lock_guard lk(mu_);
    log(src, "abort_migration", op, uuid);
    auto& st = migrations_[uuid];
    if (st.state == MigrationState::running) st.state = MigrationState::cancelled;
    return st;
  }
  void complete_migration(const std::string& uuid) {
    std::lock_guard lk(mu_);
    complete_locked(uuid);
  }
  // The source agent restarted: it no longer knows the migration (state none).
  void forget_migration(const std::string& uuid) {
    std::lock_guard lk(mu_);
    migrations_[uuid] = MigrationStatus{};
  }
  std::map<std::string, std::string> address_of;  // migration address → host name
  bool hold_migrations = false;

  // Test controls
  void fail_next(const std::string& call, Error e, int times = 1) {
    std::lock_guard lk(mu_);
    for (int i = 0; i < times; ++i) failures_[call].push_back(e);
  }
  std::vector<Call> calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }
  int count(const std::string& name) {
    std::lock_guard lk(mu_);
    int n = 0;
    for (auto& c : calls_) n += c.name == name;
    return n;
  }
  void set_state(const std::string& host, const std::string& uuid, const std::string& state) {
    std::lock_guard lk(mu_);
    domains_[host][uuid].state = state;
  }
  bool acpi_works = true;

 private:
  Result<DomainStatus> act(const Host& h, const char* name, const std::string& op,
                           const std::string& uuid, const std::string& next) {
    std::lock_guard lk(mu_);
    log(h, name, op, uuid);
    if (auto e = injected(name)) return *e;
    auto& m = domains_[h.name];
    auto it = m.find(uuid);
    if (it == m.end()) return not_found("no domain");
    if (!next.empty()) it->second.state = next;
    return it->second;
  }
  void log(const Host& h, const char* name, const std::string& op, const std::string& uuid) {
    calls_.push_back({h.name, name, op, uuid});
  }
  std::optional<Error> injected(const std::string& name) {
    auto& q = failures_[name];
    if (q.empty()) return std::nullopt;
    Error e = q.front();
    q.erase(q.begin());
    return e;
  }

  void complete_locked(const std::string& uuid) {
    auto [src, uri] = pending_dest_[uuid];
    std::string dest;
    for (auto& [addr, host] : address_of)
      if (uri.find("//" + addr + "/") != std::string::npos) dest = host;
    auto& st = migrations_[uuid];
    if (dest.empty()) {
      st.state = MigrationState::failed;
      st.error = unavailable("unknown destination " + uri);
      return;
    }
    domains_[dest][uuid] = domains_[src][uuid];
    domains_[src].erase(uuid);
    st.state = MigrationState::completed;
    st.data_processed = st.data_total;
  }

  std::mutex mu_;
  std::map<std::string, MigrationStatus> migrations_;
  std::map<std::string, std::pair<std::string, std::string>> pending_dest_;
  std::map<std::string, std::map<std::string, DomainStatus>> domains_;
  std::map<std::string, std::vector<Error>> failures_;
  std::vector<Call> calls_;
};

}  // namespace kvmfleet::doubles
