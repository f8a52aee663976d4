#include "kvmfleet/controller/cluster_service.hpp"

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/controller/migration_planning.hpp"
#include "kvmfleet/controller/reconciler.hpp"
#include "kvmfleet/controller/vm_operations.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sys/stat.h>

namespace kvmfleet {

struct ClusterService::Waiters {
  struct Waiter {
    explicit Waiter(boost::asio::io_context& ioc) : timer(ioc) {}
    boost::asio::steady_timer timer;
    std::function<void(std::optional<Operation>)> done;
    std::atomic<bool> fired{false};
  };
  std::mutex mu;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Waiter>>> by_op;
};

ClusterService::ClusterService(ClusterState& state, OperationRunner& runner,
                               const ControllerConfig& config, const Clock& clock,
                               boost::asio::io_context& ioc)
    : state_(state), runner_(runner), config_(config), clock_(clock), ioc_(ioc),
      started_at_(clock.now()), waiters_(std::make_shared<Waiters>()) {
  std::weak_ptr<Waiters> weak = waiters_;
  state_.on_operation_change([this, weak](const Operation& op) {
    if (weak.lock()) notify(op);
  });
}

ClusterService::~ClusterService() = default;

// ---- auth -------------------------------------------------------------------

std::optional<Principal> ClusterService::authenticate(std::string_view bearer) const {
  if (bearer.empty() || bearer.size() > 256) return std::nullopt;
  const std::string hash = sha256_hex(bearer);
  return state_.read([&](const ClusterState::Data& d) -> std::optional<Principal> {
    const TokenRecord* t = d.find_token_by_hash(hash);
    if (!t || !constant_time_equal(t->hash, hash)) return std::nullopt;
    return Principal{t->id, t->name, t->role, t->host};
  });
}

Result<std::pair<TokenRecord, std::string>> ClusterService::create_token(const std::string& name,
                                                                         Role role) {
  if (auto st = check_name("name", name); !st) return st.take_error();
  if (role == Role::agent) return invalid("agent tokens are made by registering a host");
  TokenRecord rec;
  rec.id = new_uuid();
  rec.name = name;
  rec.role = role;
  const std::string secret = new_token();
  rec.hash = sha256_hex(secret);
  rec.created_at = clock_.now();
  auto st = state_.update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
    b.put_tokens.push_back(rec);
    return {};
  });
  if (!st) return st.take_error();
  return std::pair{rec, secret};
}

Status ClusterService::delete_token(const std::string& id) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    auto it = d.tokens.find(id);
    if (it == d.tokens.end()) return not_found("no such token", {{"id", id}});
    if (it->second.role == Role::agent)
      return conflict("agent tokens go away with their host (DELETE /v1/hosts/{name})");
    b.delete_tokens.push_back(id);
    return {};
  });
}

Status ClusterService::bootstrap_admin(const std::string& path) {
  const bool has_admin = state_.read([](const ClusterState::Data& d) {
    for (const auto& [_, t] : d.tokens)
      if (t.role == Role::admin) return true;
    return false;
  });
  if (has_admin) return {};
  auto created = create_token("admin", Role::admin);
  if (!created) return created.take_error();
  const std::string tmp = path + ".tmp";
  {
    const mode_t old = umask(077);
    std::ofstream out(tmp, std::ios::trunc);
    umask(old);
    out << created->second << "\n";
    if (!out.good()) return internal_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return internal_error("cannot write " + path);
  spdlog::info("wrote the first admin token to {}", path);
  return {};
}

// ---- hosts ------------------------------------------------------------------

Result<std::pair<Host, std::string>> ClusterService::register_host(const std::string& name,
                                                                   const std::string& agent_url) {
  if (auto st = check_name("name", name); !st) return st.take_error();
  Host h;
  h.name = name;
  h.agent_url = agent_url;
  h.state = HostState::down;
  h.agent_secret = new_token();
  h.created_at = clock_.now();
  TokenRecord rec;
  rec.id = new_uuid();
  rec.name = "host:" + name;
  rec.role = Role::agent;
  rec.host = name;
  rec.hash = sha256_hex(h.agent_secret);
  rec.created_at = h.created_at;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (d.find_host(name)) return conflict("host already registered", {{"host", name}});
    b.put_hosts.push_back(h);
    b.put_tokens.push_back(rec);
    return {};
  });
  if (!st) return st.take_error();
  return std::pair{h, h.agent_secret};
}

Status ClusterService::set_schedulable(const std::string& name, bool schedulable) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Host* h = d.find_host(name);
    if (!h) return not_found("no such host", {{"host", name}});
    if (h->schedulable == schedulable) return {};
    Host next = *h;
    next.schedulable = schedulable;
    b.put_hosts.push_back(std::move(next));
    return {};
  });
}

Status ClusterService::delete_host(const std::string& name) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (!d.find_host(name)) return not_found("no such host", {{"host", name}});
    std::vector<std::string> vms;
    for (const auto& [_, vm] : d.vms)
      if (vm.host == name) vms.push_back(vm.spec.name);
    if (!vms.empty())
      return conflict("host still has VMs; move or delete them first", {{"vms", vms}});
    b.delete_hosts.push_back(name);
    for (const auto& [id, t] : d.tokens)
      if (t.role == Role::agent && t.host == name) b.delete_tokens.push_back(id);
    return {};
  });
}

Status ClusterService::heartbeat(const Principal& who, const std::string& host,
                                 const std::string& agent_url, const HostInventory& inventory) {
  if (who.role != Role::agent || who.host != host)
    return Error(ErrorCode::permission_denied, "this credential does not speak for host " + host);
  const auto now = clock_.now();
  bool persist = false;
  auto st = state_.update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        Host next = *h;
        const bool material = h->state != HostState::up || h->agent_url != agent_url ||
                              h->inventory.host_uuid != inventory.host_uuid ||
                              h->inventory.cpus != inventory.cpus ||
                              h->inventory.memory_total_mib != inventory.memory_total_mib ||
                              h->inventory.libvirt_version != inventory.libvirt_version ||
                              h->inventory.qemu_version != inventory.qemu_version;
        if (h->state != HostState::up) spdlog::info("host {} is up", host);
        next.state = HostState::up;
        if (!agent_url.empty()) next.agent_url = agent_url;
        next.inventory = inventory;
        next.last_heartbeat = now;
        b.put_hosts.push_back(std::move(next));
        persist = material;
        return {};
      },
      false);
  if (!st) return st;
  // Host facts that matter across restarts are persisted; the heartbeat time is not.
  if (persist) {
    st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      if (const Host* h = d.find_host(host)) b.put_hosts.push_back(*h);
      return {};
    });
    if (!st) return st;
  }
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_host(d, host, inventory.domains, now, started_at_);
    return {};
  });
}

Status ClusterService::domain_events(const Principal& who, const std::string& host,
                                     const std::vector<DomainEvent>& events) {
  if (who.role != Role::agent || who.host != host)
    return Error(ErrorCode::permission_denied, "this credential does not speak for host " + host);
  // An event updates the host's last known domain list, then the same reconcile
  // as a heartbeat runs: one code path for "what is observed".
  std::vector<DomainStatus> domains;
  auto st = state_.update(
      [&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        Host next = *h;
        for (const auto& e : events) {
          auto it = std::find_if(next.inventory.domains.begin(), next.inventory.domains.end(),
                                 [&](const DomainStatus& s) { return s.uuid == e.uuid; });
          if (e.state == "undefined") {
            if (it != next.inventory.domains.end()) next.inventory.domains.erase(it);
            continue;
          }
          if (it == next.inventory.domains.end()) {
            DomainStatus s;
            s.uuid = e.uuid;
            s.name = e.name;
            s.managed = d.find_vm(e.uuid) != nullptr;
            next.inventory.domains.push_back(s);
            it = std::prev(next.inventory.domains.end());
          }
          it->state = e.state;
        }
        domains = next.inventory.domains;
        b.put_hosts.push_back(std::move(next));
        return {};
      },
      false);
  if (!st) return st;
  const auto now = clock_.now();
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_host(d, host, domains, now, started_at_);
    return {};
  });
}

// ---- VMs --------------------------------------------------------------------

namespace {

scheduler::Snapshot scheduler_snapshot(const ClusterState::Data& d) {
  std::vector<Host> hosts;
  std::vector<Vm> vms;
  for (const auto& [_, h] : d.hosts) hosts.push_back(h);
  for (const auto& [_, v] : d.vms) vms.push_back(v);
  auto snap = scheduler::snapshot_from(hosts, vms);
  scheduler::attach_pools(snap, d.usable_pools_by_host());
  return snap;
}

// Resolves a new VM's volume disks (by id or name) to the volumes, in disk order: each
// must exist, be ready and free, and be used once.
Result<std::vector<const Volume*>> free_volumes_of(const ClusterState::Data& d,
                                                   const VmSpec& spec) {
  std::vector<const Volume*> out;
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& disk = spec.disks[i];
    if (disk.volume.empty()) continue;
    const std::string field = "disks[" + std::to_string(i) + "].volume";
    const Volume* v = d.find_volume(disk.volume);
    if (!v) return invalid("no volume named " + disk.volume, {{"field", field}});
    if (std::find(out.begin(), out.end(), v) != out.end())
      return invalid("volume " + v->name + " is given twice", {{"field", field}});
    if (v->state != VolumeState::ready)
      return conflict("volume " + v->name + " is " + std::string(to_string(v->state)),
                      {{"field", field}, {"volume", v->name}});
    if (!v->attached_to.empty()) {
      const Vm* owner = d.find_vm(v->attached_to);
      return conflict("volume " + v->name + " is already a disk of VM " +
                          (owner ? owner->spec.name : v->attached_to),
                      {{"field", field}, {"volume", v->name}});
    }
    if (const Operation* busy = d.active_operation_for(v->id))
      return conflict("volume " + v->name + " has an operation in progress",
                      {{"field", field}, {"operation", busy->id}});
    out.push_back(v);
  }
  return out;
}

// Claims a new VM's volume disks for `vm` in batch `b` (see free_volumes_of), and
// records each disk by the volume's id and device.
Status claim_volumes(const ClusterState::Data& d, Vm& vm, WriteBatch& b) {
  auto vols = free_volumes_of(d, vm.spec);
  if (!vols) return vols.take_error();
  std::size_t next = 0;
  for (auto& disk : vm.spec.disks) {
    if (disk.volume.empty()) continue;
    const Volume* v = (*vols)[next++];
    disk.volume = v->id;
    disk.device = v->device();
    constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
    disk.size_gib = static_cast<std::int64_t>((v->size_bytes + kGiB - 1) / kGiB);
    Volume claimed = *v;
    claimed.attached_to = vm.id;
    b.put_volumes.push_back(std::move(claimed));
  }
  return {};
}

}  // namespace

Result<scheduler::Placement> ClusterService::place(const VmSpec& spec) const {
  return state_.read([&](const ClusterState::Data& d) -> Result<scheduler::Placement> {
    // The same volume checks as a create: a dry run that places a VM on a volume that
    // is missing or taken would promise what the create then refuses.
    if (auto vols = free_volumes_of(d, spec); !vols) return vols.take_error();
    scheduler::Request req{spec, {}, d.pools_of(spec)};
    return scheduler::place(scheduler_snapshot(d), req, config_.scheduler);
  });
}

Result<Submitted> ClusterService::submit(
    const Principal& who, Operation op, const SubmitOptions& opts,
    const std::function<Status(const ClusterState::Data&, WriteBatch&, Operation&)>& plan) {
  op.id = new_uuid();
  op.state = OpState::pending;
  op.idempotency_key = opts.idempotency_key;
  op.request_hash = opts.request_hash;
  op.requested_by = who.name;
  op.requester_id = who.token_id;
  op.created_at = clock_.now();
  std::optional<Operation> replay;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (!opts.idempotency_key.empty()) {
      auto it = d.idempotency.find({who.token_id, opts.idempotency_key});
      if (it != d.idempotency.end()) {
        const Operation* prev = d.find_operation(it->second);
        if (prev) {
          if (prev->request_hash != opts.request_hash)
            return conflict("Idempotency-Key was already used for a different request",
                            {{"operation", prev->id}});
          replay = *prev;
          return {};
        }
      }
    }
    if (auto pst = plan(d, b, op); !pst) return pst;
    b.put_operations.push_back(op);
    return {};
  });
  if (!st) return st.take_error();
  if (replay) return Submitted{*replay, true};
  runner_.submit(op.id);
  return Submitted{op, false};
}

Result<Submitted> ClusterService::create_vm(const Principal& who, const VmSpec& spec, bool start,
                                            const SubmitOptions& opts) {
  Vm vm;
  vm.id = new_uuid();
  vm.spec = spec;
  vm.desired = start ? DesiredState::running : DesiredState::stopped;
  vm.state = VmState::pending;
  vm.created_at = vm.updated_at = clock_.now();
  Operation op;
  op.kind = op_kind::vm_create;
  op.target_type = "vm";
  op.target_id = vm.id;
  op.params = {{"name", spec.name}, {"start", start}};
  return submit(who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation&) -> Status {
    if (d.vm_ids.count(spec.name)) return conflict("a VM with this name exists", {{"name", spec.name}});
    // Placement is a pure function of the snapshot taken under the same lock that
    // commits it, so two concurrent creates cannot both take the last free memory.
    scheduler::Request req{spec, {}, d.pools_of(spec)};
    if (auto st = claim_volumes(d, vm, b); !st) return st;
    auto placement = scheduler::place(scheduler_snapshot(d), req, config_.scheduler);
    if (placement.host.empty()) {
      nlohmann::json reasons = nlohmann::json::object();
      for (const auto& v : placement.verdicts) reasons[v.host] = v.reason;
      return Error(ErrorCode::insufficient_capacity, "no host can take this VM",
                   {{"hosts", reasons}});
    }
    vm.host = placement.host;
    b.put_vms.push_back(vm);
    return {};
  });
}

Result<Submitted> ClusterService::vm_action(const Principal& who, const std::string& id_or_name,
                                            std::string_view kind, nlohmann::json params,
                                            const SubmitOptions& opts) {
  Operation op;
  op.kind = std::string(kind);
  op.target_type = "vm";
  op.params = std::move(params);
  return submit(who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
    const Vm* vm = d.find_vm(id_or_name);
    if (!vm) return not_found("no such VM", {{"vm", id_or_name}});
    const bool busy = d.active_operation_for(vm->id) != nullptr;
    if (kind == op_kind::vm_delete && !busy && !next.params.value("force", false) &&
        (vm->state == VmState::running || vm->state == VmState::paused ||
         vm->state == VmState::shutting_down))
      return conflict("VM is running; stop it first or delete with force=true",
                      {{"vm", vm->spec.name}, {"state", to_string(vm->state)}});
    if (kind != op_kind::vm_delete && !busy && vm->state == VmState::pending)
      return conflict("VM is not defined on a host yet", {{"vm", vm->spec.name}});
    // Its volumes' own operations (a snapshot, say) and the VM's do not overlap.
    for (const Volume* v : d.volumes_of(*vm))
      if (const Operation* other = d.active_operation_for(v->id))
        return conflict("volume " + v->name + " of the VM has an operation in progress",
                        {{"volume", v->name}, {"operation", other->id}, {"kind", other->kind}});
    // The operation names the VM by id, whatever the caller named it by.
    next.target_id = vm->id;
    return {};
  });
}

Result<Submitted> ClusterService::migrate_vm(const Principal& who, const std::string& id_or_name,
                                             const std::string& target_host,
                                             const MigrationPolicy& policy,
                                             const SubmitOptions& opts) {
  Operation op;
  op.kind = op_kind::vm_migrate;
  op.target_type = "vm";
  return submit(who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
    const Vm* vm = d.find_vm(id_or_name);
    if (!vm) return not_found("no such VM", {{"vm", id_or_name}});
    return plan_migration(d, config_.scheduler, *vm, target_host, policy, next);
  });
}

Result<Submitted> ClusterService::set_maintenance(const Principal& who, const std::string& host,
                                                  bool enabled, const MigrationPolicy& policy,
                                                  const SubmitOptions& opts) {
  Operation op;
  op.kind = op_kind::host_maintenance;
  op.target_type = "host";
  return submit(who, op, opts, [&](const ClusterState::Data& d, WriteBatch& b, Operation& next) -> Status {
    const Host* h = d.find_host(host);
    if (!h) return not_found("no such host", {{"host", host}});
    if (const Operation* other = d.active_operation_for(h->name))
      return conflict("host has an operation in progress; cancel it or wait for it",
                      {{"host", host}, {"operation", other->id}, {"kind", other->kind}});
    if (enabled && h->state != HostState::up) {
      bool running = false;
      for (const auto& [_, vm] : d.vms) running |= vm.host == host && vm.state == VmState::running;
      if (running)
        return conflict("host is " + std::string(to_string(h->state)) +
                            "; its VMs can be moved live only from a host that is up",
                        {{"host", host}});
    }
    // Unschedulable with the request itself: nothing is placed there from now on.
    if (enabled && h->schedulable) {
      Host cordoned = *h;
      cordoned.schedulable = false;
      b.put_hosts.push_back(std::move(cordoned));
    }
    next.target_id = h->name;
    next.params = {{"enabled", enabled}};
    if (enabled) next.params["policy"] = policy;
    return {};
  });
}

// ---- operations -------------------------------------------------------------

Status ClusterService::cancel_operation(const std::string& id) { return runner_.cancel(id); }

void ClusterService::wait_operation(const std::string& id, std::chrono::milliseconds timeout,
                                    std::function<void(std::optional<Operation>)> done) {
  auto current = [this, id]() {
    return state_.read([&](const ClusterState::Data& d) -> std::optional<Operation> {
      const Operation* o = d.find_operation(id);
      return o ? std::optional<Operation>(*o) : std::nullopt;
    });
  };
  auto now = current();
  if (!now || is_terminal(now->state) || timeout.count() <= 0) return done(now);
  auto w = std::make_shared<Waiters::Waiter>(ioc_);
  w->done = std::move(done);
  {
    std::lock_guard lk(waiters_->mu);
    waiters_->by_op[id].push_back(w);
  }
  // It may have finished between the read above and the registration.
  now = current();
  if (now && is_terminal(now->state)) {
    if (!w->fired.exchange(true)) w->done(now);
    return;
  }
  w->timer.expires_after(timeout);
  std::weak_ptr<Waiters> weak = waiters_;
  w->timer.async_wait([w, weak, current, id](const boost::system::error_code&) {
    if (w->fired.exchange(true)) return;
    if (auto ws = weak.lock()) {
      std::lock_guard lk(ws->mu);
      auto& v = ws->by_op[id];
      v.erase(std::remove(v.begin(), v.end(), w), v.end());
      if (v.empty()) ws->by_op.erase(id);
    }
    w->done(current());
  });
}

void ClusterService::notify(const Operation& op) {
  if (!is_terminal(op.state)) return;
  std::vector<std::shared_ptr<Waiters::Waiter>> ready;
  {
    std::lock_guard lk(waiters_->mu);
    auto it = waiters_->by_op.find(op.id);
    if (it == waiters_->by_op.end()) return;
    ready = std::move(it->second);
    waiters_->by_op.erase(it);
  }
  for (auto& w : ready) {
    if (w->fired.exchange(true)) continue;
    boost::asio::post(ioc_, [w, op] {
      w->timer.cancel();
      w->done(op);
    });
  }
}

void ClusterService::tick() {
  const auto now = clock_.now();
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    b = reconcile_liveness(d, now, started_at_, config_.unreachable_after,
                           config_.down_after);
    const auto horizon = now - config_.operation_retention;
    for (const auto& [id, op] : d.operations)
      if (is_terminal(op.state) && op.finished_at && *op.finished_at < horizon)
        b.delete_operations.push_back(id);
    return {};
  });
  if (!st) spdlog::warn("liveness pass failed: {}", st.error().message);
}

}  // namespace kvmfleet
