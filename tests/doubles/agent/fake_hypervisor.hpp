#pragma once

// The double of agent::Hypervisor (include/kvmfleet/agent/hypervisor.hpp): domains in
// a map, calls counted, failures injectable.

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kvmfleet/agent/hypervisor.hpp"

namespace kvmfleet::doubles {

class FakeHypervisor final : public agent::Hypervisor {
 public:
  struct Domain {
    DomainSpec spec;
    std::string state = "stopped";
    bool guest_agent = true;  // a QEMU guest agent answers inside
    int filesystems = 2;      // what the guest agent would freeze
    int frozen = 0;
    std::map<std::string, std::uint64_t> disk_sizes;  // block device → what block_resize set
  };

  Result<HostInventory> inventory() override {
    std::lock_guard lk(mu_);
    ++calls["inventory"];
    if (auto e = take_failure()) return *e;
    HostInventory inv;
    inv.hostname = "fake-host";
    inv.cpus = 8;
    inv.memory_total_mib = 16'384;
    inv.memory_free_mib = 8'192;
    inv.domain_type = "kvm";
    for (const auto& [uuid, d] : domains) inv.domains.push_back(status_locked(uuid));
    return inv;
  }
  Result<std::vector<DomainStatus>> list_domains() override {
    std::lock_guard lk(mu_);
    std::vector<DomainStatus> out;
    for (const auto& [uuid, d] : domains) out.push_back(status_locked(uuid));
    return out;
  }
  Result<DomainStatus> get_domain(const std::string& uuid) override {
    std::lock_guard lk(mu_);
    ++calls["get"];
    if (auto e = take_failure()) return *e;
    if (!domains.count(uuid)) return not_found("no domain " + uuid);
    return status_locked(uuid);
  }
  Result<DomainStatus> define(const DomainSpec& spec) override {
    std::lock_guard lk(mu_);
    ++calls["define"];
    if (auto e = take_failure()) return *e;
    auto& d = domains[spec.uuid];
    d.spec = spec;
    return status_locked(spec.uuid);
  }
  Result<DomainStatus> start(const std::string& uuid) override {
    return set(uuid, "start", "running");
  }
  Result<DomainStatus> shutdown(const std::string& uuid) override {
    return set(uuid, "shutdown", "stopped");
  }
  Result<DomainStatus> reboot(const std::string& uuid) override {
    return set(uuid, "reboot", "running");
  }
  Result<DomainStatus> destroy(const std::string& uuid) override {
    return set(uuid, "destroy", "stopped");
  }
  Status undefine(const std::string& uuid, bool remove_volumes) override {
    std::lock_guard lk(mu_);
    ++calls["undefine"];
    last_remove_volumes = remove_volumes;
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return {};
    if (it->second.state == "running") return conflict("running");
    domains.erase(it);
    return {};
  }
  Result<int> fs_freeze(const std::string& uuid) override { return guest_fs(uuid, true); }
  Status block_resize(const std::string& uuid, const std::string& device,
                      std::uint64_t size_bytes) override {
    std::lock_guard lk(mu_);
    ++calls["block_resize"];
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return not_found("no domain " + uuid);
    auto& d = it->second;
    const bool has = std::any_of(d.spec.disks.begin(), d.spec.disks.end(),
                                 [&](const DomainDisk& k) { return k.block_device == device; });
    if (!has) return not_found("domain " + uuid + " has no disk on " + device);
    if (d.state != "running") return conflict("domain " + uuid + " is not running");
    d.disk_sizes[device] = size_bytes;
    return {};
  }
  Result<int> fs_thaw(const std::string& uuid) override { return guest_fs(uuid, false); }
  Result<MigrationStatus> migrate(const std::string& uuid, const MigrationRequest& r) override {
    std::lock_guard lk(mu_);
    ++calls["migrate"];
    if (auto e = take_failure()) return *e;
    if (auto it = migrations.find(uuid); it != migrations.end()) {
      auto& m = it->second;
      if (m.status.op_id == r.op_id) {
        if (m.request.destination_uri != r.destination_uri ||
            m.request.migrate_uri != r.migrate_uri ||
            m.request.policy.max_downtime_ms != r.policy.max_downtime_ms ||
            m.request.policy.bandwidth_mib_s != r.policy.bandwidth_mib_s ||
            m.request.policy.auto_converge != r.policy.auto_converge ||
            m.request.policy.allow_post_copy != r.policy.allow_post_copy ||
            m.request.media != r.media)
          return conflict("op_id was already used for a different migration");
        return m.status;
      }
      if (m.status.state == MigrationState::running) return conflict("migrating");
    }
    auto d = domains.find(uuid);
    if (d == domains.end()) return not_found("no domain " + uuid);
    if (d->second.state != "running") return conflict("not running");
    auto& m = migrations[uuid];
    m.request = r;
    m.status = {};
    m.status.state = MigrationState::running;
    m.status.op_id = r.op_id;
    ++migrations_started;
    return m.status;
  }
  Result<MigrationStatus> migration_status(const std::string& uuid) override {
    std::lock_guard lk(mu_);
    ++calls["migration_status"];
    if (auto e = take_failure()) return *e;
    if (auto it = migrations.find(uuid); it != migrations.end()) return it->second.status;
    if (!domains.count(uuid)) return not_found("no domain " + uuid);
    return MigrationStatus{};
  }
  Result<MigrationStatus> abort_migration(const std::string& uuid) override {
    std::lock_guard lk(mu_);
    ++calls["abort_migration"];
    if (auto e = take_failure()) return *e;
    auto it = migrations.find(uuid);
    if (it == migrations.end()) {
      if (!domains.count(uuid)) return not_found("no domain " + uuid);
      return conflict("no migration");
    }
    auto& s = it->second.status;
    if (s.state == MigrationState::running) {
      s.state = MigrationState::cancelled;
      s.error = Error{ErrorCode::cancelled, "migration aborted"};
    } else if (s.state == MigrationState::completed) {
      return conflict("completed");
    }
    return s;
  }
  // NICs: added to / removed from the domain's spec (its definition; the fake has no
  // separate live state), the generation set. `detach_pending` makes a detach of a
  // running domain answer as a guest that has not let the NIC go.
  Result<DomainStatus> attach_nic(const std::string& uuid, const DomainNic& nic,
                                  std::int64_t generation) override {
    std::lock_guard lk(mu_);
    ++calls["attach_nic"];
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return not_found("no domain " + uuid);
    auto& nics = it->second.spec.nics;
    if (std::none_of(nics.begin(), nics.end(),
                     [&](const DomainNic& n) { return n.mac == nic.mac; }))
      nics.push_back(nic);
    it->second.spec.generation = generation;
    return status_locked(uuid);
  }
  Result<DomainStatus> detach_nic(const std::string& uuid, const std::string& mac,
                                  std::int64_t generation) override {
    std::lock_guard lk(mu_);
    ++calls["detach_nic"];
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return not_found("no domain " + uuid);
    if (detach_pending && it->second.state == "running")
      return Error(ErrorCode::conflict, "the guest has not let the NIC go",
                   {{"reason", "detach_pending"}, {"mac", mac}});
    auto& nics = it->second.spec.nics;
    nics.erase(
        std::remove_if(nics.begin(), nics.end(), [&](const DomainNic& n) { return n.mac == mac; }),
        nics.end());
    it->second.spec.generation = generation;
    return status_locked(uuid);
  }
  bool detach_pending = false;

  // Boot media: the files "made" for each uuid, under /fake/pool (seeds) and
  // /fake/pool/cache (ISOs by SHA-256).
  Result<MigrationMedia> prepare_media(const DomainSpec& spec) override {
    std::lock_guard lk(mu_);
    ++calls["prepare_media"];
    if (auto e = take_failure()) return *e;
    MigrationMedia m;
    if (spec.cdrom) m.cdrom = "/fake/pool/cache/" + spec.cdrom->image_sha256 + ".img";
    if (spec.cloud_init) m.seed = "/fake/pool/" + spec.uuid + "-seed.iso";
    if (!m.empty()) media_files[spec.uuid] = m;
    return m;
  }
  Result<std::vector<std::string>> remove_media(const std::string& uuid,
                                                const std::string& cdrom_sha256) override {
    std::lock_guard lk(mu_);
    ++calls["remove_media"];
    if (auto e = take_failure()) return *e;
    if (domains.count(uuid)) return conflict("domain " + uuid + " is defined on this host");
    std::vector<std::string> removed;
    if (auto it = media_files.find(uuid); it != media_files.end()) {
      if (!it->second.seed.empty()) removed.push_back(it->second.seed);
      if (!cdrom_sha256.empty() && it->second.cdrom.find(cdrom_sha256) != std::string::npos)
        removed.push_back(it->second.cdrom);
      media_files.erase(it);
    }
    return removed;
  }
  std::map<std::string, MigrationMedia> media_files;  // by uuid

  // Ends the running migration of `uuid` as libvirt would have.
  void finish_migration(const std::string& uuid, MigrationState state) {
    std::lock_guard lk(mu_);
    auto& m = migrations.at(uuid);
    m.status.state = state;
    if (state == MigrationState::completed) domains.erase(uuid);
    if (state == MigrationState::failed) m.status.error = Error{ErrorCode::internal, "failed"};
  }

  // Console: each open session records what the guest was sent; push_console() plays
  // guest output to the newest session, end_console() ends it as libvirt would.
  struct FakeConsole final : agent::ConsoleStream {
    std::mutex mu;
    std::vector<std::string> written;
    bool closed = false;
    agent::ConsoleSink sink;
    void write(std::string bytes) override {
      std::lock_guard lk(mu);
      if (!closed) written.push_back(std::move(bytes));
    }
    void close() override {
      std::lock_guard lk(mu);
      closed = true;
    }
  };
  Result<std::shared_ptr<agent::ConsoleStream>> open_console(const std::string& uuid,
                                                             agent::ConsoleSink sink) override {
    std::lock_guard lk(mu_);
    ++calls["open_console"];
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return not_found("no domain " + uuid);
    if (it->second.state != "running") return conflict("domain is not running");
    if (console) console->closed = true;
    console = std::make_shared<FakeConsole>();
    console->sink = std::move(sink);
    return std::shared_ptr<agent::ConsoleStream>(console);
  }
  void push_console(const std::string& bytes) {
    auto c = console;
    if (c && !c->closed && c->sink.on_data) c->sink.on_data(bytes);
  }
  void end_console(const std::string& reason) {
    auto c = console;
    if (c && !c->closed && c->sink.on_end) {
      c->closed = true;
      c->sink.on_end(reason);
    }
  }
  Result<std::string> console_log(const std::string& uuid, std::size_t max_bytes) override {
    std::lock_guard lk(mu_);
    ++calls["console_log"];
    last_console_log_max = max_bytes;
    if (auto e = take_failure()) return *e;
    if (!domains.count(uuid)) return not_found("no domain " + uuid);
    const std::string& log = console_logs[uuid];
    return log.size() > max_bytes ? log.substr(log.size() - max_bytes) : log;
  }
  std::shared_ptr<FakeConsole> console;
  std::map<std::string, std::string> console_logs;  // by uuid
  std::size_t last_console_log_max = 0;

  std::uint64_t subscribe(agent::EventCallback cb) override {
    std::lock_guard lk(mu_);
    subs[next_id] = std::move(cb);
    return next_id++;
  }
  void unsubscribe(std::uint64_t id) override {
    std::lock_guard lk(mu_);
    subs.erase(id);
  }

  // Delivers an event to subscribers, as the hypervisor's event thread would.
  void emit(const agent::LifecycleEvent& e) {
    std::lock_guard lk(mu_);
    for (auto& [id, cb] : subs) cb(e);
  }
  void fail_next(Error e) {
    std::lock_guard lk(mu_);
    failure = std::move(e);
  }
  int count(const std::string& call) {
    std::lock_guard lk(mu_);
    return calls[call];
  }
  std::size_t subscribers() {
    std::lock_guard lk(mu_);
    return subs.size();
  }

  std::map<std::string, Domain> domains;
  std::map<std::string, int> calls;
  struct Migration {
    MigrationRequest request;
    MigrationStatus status;
  };
  std::map<std::string, Migration> migrations;
  int migrations_started = 0;
  std::optional<bool> last_remove_volumes;

 private:
  std::optional<Error> take_failure() {
    std::optional<Error> e;
    std::swap(e, failure);
    return e;
  }
  DomainStatus status_locked(const std::string& uuid) {
    const auto& d = domains.at(uuid);
    return {uuid, d.spec.name, d.state, true, d.spec.generation, true};
  }
  Result<int> guest_fs(const std::string& uuid, bool freeze) {
    std::lock_guard lk(mu_);
    ++calls[freeze ? "fs_freeze" : "fs_thaw"];
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return not_found("no domain " + uuid);
    auto& d = it->second;
    if (d.state != "running") return conflict("domain " + uuid + " is not running");
    if (!d.guest_agent)
      return Error{ErrorCode::conflict,
                   "domain " + uuid + " has no QEMU guest agent answering",
                   {{"reason", "guest_agent_unavailable"}, {"uuid", uuid}}};
    if (freeze) {
      d.frozen = d.filesystems;
      return d.frozen;
    }
    const int thawed = d.frozen;
    d.frozen = 0;
    return thawed;
  }
  Result<DomainStatus> set(const std::string& uuid, const std::string& call, const char* state) {
    std::lock_guard lk(mu_);
    ++calls[call];
    if (auto e = take_failure()) return *e;
    auto it = domains.find(uuid);
    if (it == domains.end()) return not_found("no domain " + uuid);
    it->second.state = state;
    return status_locked(uuid);
  }

  std::mutex mu_;
  std::optional<Error> failure;
  std::map<std::uint64_t, agent::EventCallback> subs;
  std::uint64_t next_id = 1;
};

}  // namespace kvmfleet::doubles
