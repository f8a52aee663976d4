#include "kvmfleet/controller/vm_operations.hpp"

#include "kvmfleet/controller/migration_planning.hpp"
#include "kvmfleet/controller/storage_operations.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/model/migration.hpp"

#include <spdlog/spdlog.h>

#include <thread>

namespace kvmfleet {
namespace {

struct Target {
  Vm vm;
  Host host;
};

// Re-reads the VM and its host: an operation never trusts what it saw when it was
// submitted.
Result<Target> load_target(OpContext& ctx, bool need_host_up = true) {
  const std::string id = ctx.op().target_id;
  auto t = ctx.state().read([&](const ClusterState::Data& d) -> Result<Target> {
    const Vm* vm = d.find_vm(id);
    if (!vm) return not_found("VM no longer exists", {{"vm", id}});
    if (vm->host.empty()) return conflict("VM has no host", {{"vm", id}});
    const Host* h = d.find_host(vm->host);
    if (!h) return conflict("VM's host is not registered", {{"vm", id}, {"host", vm->host}});
    return Target{*vm, *h};
  });
  if (!t) return t;
  if (need_host_up && t->host.state != HostState::up)
    return unavailable("host " + t->host.name + " is " + std::string(to_string(t->host.state)),
                       {{"host", t->host.name}});
  return t;
}

// Writes the VM as `mutate` leaves it, bumping its generation and timestamp.
Status save_vm(OpContext& ctx, const std::string& id, const std::function<void(Vm&)>& mutate) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Vm* cur = d.find_vm(id);
    if (!cur) return not_found("VM no longer exists", {{"vm", id}});
    Vm next = *cur;
    mutate(next);
    next.generation = cur->generation + 1;
    next.updated_at = ctx.clock().now();
    b.put_vms.push_back(std::move(next));
    return {};
  });
}

Status observe(OpContext& ctx, const std::string& id, const DomainStatus& dom) {
  const VmState s = vm_state_from_domain(dom.state);
  return save_vm(ctx, id, [&](Vm& vm) { vm.state = s; });
}

std::vector<VmVolume> volumes_of(OpContext& ctx, const Vm& vm) {
  return ctx.state().read([&](const ClusterState::Data& d) { return vm_volumes(d, vm); });
}

// Shared volumes follow the VM: exclusive on its host before it starts (refused by
// lvmlockd while another host holds them: the split-brain guard).
Status activate_for_start(OpContext& ctx, const Target& t) {
  const auto vols = volumes_of(ctx, t.vm);
  if (vols.empty()) return {};
  ctx.progress(25, "activating " + std::to_string(vols.size()) + " shared volume(s) exclusively on " +
                       t.host.name);
  return set_volume_activation(ctx, vols, t.host, LvMode::exclusive, "activate", true);
}

// ... and inactive once it has stopped. A failure leaves the LV active on this host
// only (still locked to it), so it is reported, not fatal.
void deactivate_after_stop(OpContext& ctx, const Target& t, const DomainStatus& dom) {
  if (vm_state_from_domain(dom.state) != VmState::stopped) return;
  const auto vols = volumes_of(ctx, t.vm);
  if (vols.empty()) return;
  if (auto st = set_volume_activation(ctx, vols, t.host, LvMode::inactive, "deactivate"); !st)
    ctx.result()["storage_warning"] = "shared volumes left active on " + t.host.name + ": " +
                                      st.error().message;
}

// The VM record is gone: its volumes are free again.
void release_volumes(const ClusterState::Data& d, WriteBatch& b, const std::string& vm_id) {
  for (const auto& [id, v] : d.volumes) {
    if (v.attached_to != vm_id) continue;
    Volume next = v;
    next.attached_to.clear();
    b.put_volumes.push_back(std::move(next));
  }
}

Status create_vm(OpContext& ctx) {
  ctx.progress(10, "checking the target host");
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const std::string domain_type =
      t->host.inventory.domain_type.empty() ? "kvm" : t->host.inventory.domain_type;
  ctx.progress(30, "defining the domain on " + t->host.name);
  auto dom = ctx.with_retry(
      [&] { return ctx.agents().define(t->host, ctx.op().id, domain_spec_for(t->vm, domain_type)); });
  if (!dom) {
    Error e = dom.take_error();
    if (e.code != ErrorCode::unavailable) {
      // The agent refused for good: nothing is left defined, so the VM record goes too.
      (void)ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
        if (d.find_vm(t->vm.id)) b.delete_vms.push_back(t->vm.id);
        release_volumes(d, b, t->vm.id);
        return {};
      });
      e.details["rolled_back"] = true;
    }
    return e;
  }
  if (auto st = observe(ctx, t->vm.id, *dom); !st) return st;
  ctx.result()["host"] = t->host.name;
  if (ctx.op().params.value("start", false)) {
    if (auto st = activate_for_start(ctx, *t); !st) return st;
    ctx.progress(70, "starting the domain");
    auto started = ctx.with_retry([&] { return ctx.agents().start(t->host, ctx.op().id, t->vm.id); });
    if (!started) return started.take_error();
    return save_vm(ctx, t->vm.id, [&](Vm& vm) {
      vm.desired = DesiredState::running;
      vm.state = vm_state_from_domain(started->state);
    });
  }
  return {};
}

Status start_vm(OpContext& ctx) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  if (t->vm.state == VmState::pending) return conflict("VM is not defined on a host yet");
  if (auto st = activate_for_start(ctx, *t); !st) return st;
  ctx.progress(30, "starting the domain on " + t->host.name);
  auto dom = ctx.with_retry([&] { return ctx.agents().start(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  return save_vm(ctx, t->vm.id, [&](Vm& vm) {
    vm.desired = DesiredState::running;
    vm.state = vm_state_from_domain(dom->state);
  });
}

Status stop_vm(OpContext& ctx) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const auto& p = ctx.op().params;
  const int timeout_s = p.value("timeout_s", ctx.config().default_stop_timeout_s);
  const bool force = p.value("force", false);
  if (auto st = save_vm(ctx, t->vm.id, [](Vm& vm) { vm.desired = DesiredState::stopped; }); !st)
    return st;
  ctx.progress(20, "asking the guest to shut down (ACPI)");
  auto dom = ctx.with_retry([&] { return ctx.agents().shutdown(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (vm_state_from_domain(dom->state) != VmState::stopped) {
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (!ctx.sleep_for(std::chrono::milliseconds(500)))
      return Error(ErrorCode::cancelled, "stop cancelled; the guest may still be shutting down");
    auto cur = ctx.agents().get_domain(t->host, t->vm.id);
    if (cur) dom = std::move(cur);
  }
  if (vm_state_from_domain(dom->state) != VmState::stopped) {
    if (!force) {
      (void)observe(ctx, t->vm.id, *dom);
      return Error(ErrorCode::timeout,
                   "guest did not shut down within " + std::to_string(timeout_s) + " s",
                   {{"timeout_s", timeout_s}, {"hint", "retry with force=true to power it off"}});
    }
    ctx.progress(80, "guest did not shut down in time: powering off");
    dom = ctx.with_retry([&] { return ctx.agents().destroy(t->host, ctx.op().id, t->vm.id); });
    if (!dom) return dom.take_error();
    ctx.result()["forced"] = true;
  }
  deactivate_after_stop(ctx, *t, *dom);
  return observe(ctx, t->vm.id, *dom);
}

Status reboot_vm(OpContext& ctx) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  ctx.progress(30, "rebooting the guest");
  auto dom = ctx.with_retry([&] { return ctx.agents().reboot(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  return observe(ctx, t->vm.id, *dom);
}

Status destroy_vm(OpContext& ctx) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  if (auto st = save_vm(ctx, t->vm.id, [](Vm& vm) { vm.desired = DesiredState::stopped; }); !st)
    return st;
  ctx.progress(30, "powering off the domain");
  auto dom = ctx.with_retry([&] { return ctx.agents().destroy(t->host, ctx.op().id, t->vm.id); });
  if (!dom) return dom.take_error();
  deactivate_after_stop(ctx, *t, *dom);
  return observe(ctx, t->vm.id, *dom);
}

Status delete_vm(OpContext& ctx) {
  const std::string id = ctx.op().target_id;
  auto vm = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* v = d.find_vm(id);
    return v ? std::optional<Vm>(*v) : std::nullopt;
  });
  if (!vm) return {};  // already gone: deleting twice is harmless
  if (!vm->host.empty()) {
    auto t = load_target(ctx);
    if (!t) return t.take_error();
    if (ctx.op().params.value("force", false)) {
      ctx.progress(20, "powering off the domain");
      auto dom = ctx.with_retry([&] { return ctx.agents().destroy(t->host, ctx.op().id, id); });
      if (!dom && dom.error().code != ErrorCode::not_found) return dom.take_error();
    }
    ctx.progress(50, "undefining the domain and removing its local disks");
    auto st = ctx.with_retry([&] { return ctx.agents().undefine(t->host, ctx.op().id, id, true); });
    if (!st) return st;
    // Shared volumes outlive the VM: deactivated here, released below.
    if (const auto vols = volumes_of(ctx, t->vm); !vols.empty()) {
      if (auto off = set_volume_activation(ctx, vols, t->host, LvMode::inactive, "deactivate"); !off)
        return off;
    }
  }
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (d.find_vm(id)) b.delete_vms.push_back(id);
    release_volumes(d, b, id);
    return {};
  });
}

Result<Host> load_host(OpContext& ctx, const std::string& name) {
  auto h = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Host> {
    const Host* host = d.find_host(name);
    return host ? std::optional<Host>(*host) : std::nullopt;
  });
  if (!h) return conflict("host " + name + " is not registered", {{"host", name}});
  return *h;
}

// Records the move once the destination runs the VM: from here on it lives there.
Status adopt_on(OpContext& ctx, const std::string& id, const std::string& host) {
  return save_vm(ctx, id, [&](Vm& vm) {
    vm.host = host;
    vm.state = VmState::running;
    vm.desired = DesiredState::running;
  });
}

constexpr int kResolveRounds = 120;  // how long an unclear outcome is awaited: 2 min
constexpr std::chrono::milliseconds kResolveInterval{1000};

// How long a migration waits before asking the source agent again, given how long it
// has been waiting. A small guest moves in a second or two: a fixed 500 ms poll left the
// operation up to half a second behind libvirt (docs/benchmarks.md, "Live migration"),
// so the first seconds poll fast and longer migrations back off.
std::chrono::milliseconds migration_poll_interval(std::chrono::steady_clock::duration waited) {
  if (waited < std::chrono::seconds(5)) return std::chrono::milliseconds(100);
  if (waited < std::chrono::seconds(20)) return std::chrono::milliseconds(250);
  return std::chrono::milliseconds(500);
}

// Live migration from the VM's host to params.target_host, driven by the source
// agent. Safe to run again after a controller restart: it first asks both sides
// what they see and continues from there, so the VM never ends up started twice.
Status migrate_vm_core(OpContext& ctx, const std::vector<VmVolume>& vols) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const std::string target_name = ctx.op().params.value("target_host", "");
  const std::string uuid = t->vm.id;
  auto target = load_host(ctx, target_name);
  if (!target) return target.take_error();
  ctx.result()["source_host"] = t->host.name;
  ctx.result()["target_host"] = target_name;
  if (t->host.name == target_name) return {};  // already there (a resumed run)
  if (target->state != HostState::up)
    return unavailable("target host " + target_name + " is " + std::string(to_string(target->state)));
  if (target->inventory.migration_address.empty())
    return conflict("target host " + target_name + " takes no migrations (no migration_address)",
                    {{"host", target_name}});

  // What the hosts see now decides where to continue from.
  if (auto there = ctx.agents().get_domain(*target, uuid);
      there && vm_state_from_domain(there->state) == VmState::running) {
    auto here = ctx.agents().get_domain(t->host, uuid);
    if (!here || vm_state_from_domain(here->state) != VmState::running) {
      ctx.progress(100, "the VM already runs on " + target_name);
      return adopt_on(ctx, uuid, target_name);
    }
  }
  // The hosts decide how a migration ended, whatever the source agent could tell.
  // A running QEMU on the source means the VM stays there (libvirt resumes the
  // destination only once the source has stopped); the record moves only when the
  // destination runs it and the source has stopped or is gone. Anything else (a host
  // that cannot answer, a VM paused in transit) is no answer yet: wait for one.
  auto resolve = [&](Error reported) -> Status {
    reported.details["source_host"] = t->host.name;
    reported.details["target_host"] = target_name;
    // "running", another domain state, "absent", or empty when the host cannot say.
    auto probe = [&](const Host& h) -> std::string {
      auto d = ctx.agents().get_domain(h, uuid);
      if (d) return vm_state_from_domain(d->state) == VmState::running ? "running" : d->state;
      return d.error().code == ErrorCode::not_found ? "absent" : "";
    };
    std::string on_source, on_target;
    for (int round = 0; round < kResolveRounds; ++round) {
      if (round > 0) {
        ctx.progress(95, "migration ended (" + reported.message + "); waiting for " +
                             (on_source.empty() ? t->host.name : target_name) +
                             " to report where the VM runs");
        if (!ctx.sleep_for(kResolveInterval)) break;
      }
      on_source = probe(t->host);
      on_target = probe(*target);
      if (on_source == "running") {
        if (on_target == "running")
          return internal_error("the VM reports running on both " + t->host.name + " and " +
                                    target_name + "; left for the reconciler to fence",
                                reported.details);
        reported.message += "; the VM keeps running on " + t->host.name;
        return reported;
      }
      if (on_target == "running" && !on_source.empty()) {
        ctx.progress(100, "running on " + target_name);
        return adopt_on(ctx, uuid, target_name);
      }
    }
    reported.details["source_state"] = on_source.empty() ? "unknown" : on_source;
    reported.details["target_state"] = on_target.empty() ? "unknown" : on_target;
    if (on_target == "running") {  // the source never answered: the destination runs it
      ctx.progress(100, "running on " + target_name);
      return adopt_on(ctx, uuid, target_name);
    }
    return Error(ErrorCode::unavailable,
                 reported.message + "; neither host reports the VM running (source " +
                     reported.details["source_state"].get<std::string>() + ", target " +
                     reported.details["target_state"].get<std::string>() + ")",
                 reported.details);
  };

  auto status = ctx.agents().migration_status(t->host, uuid);
  // Ours, or one libvirt carries on for an agent that restarted (no op id then).
  const bool already_running = status && status->state == MigrationState::running &&
                               (status->op_id == ctx.op().id || status->op_id.empty());
  if (!already_running) {
    auto here = ctx.agents().get_domain(t->host, uuid);
    if (!here) return here.take_error();
    if (vm_state_from_domain(here->state) != VmState::running)
      return conflict("VM is not running on " + t->host.name + "; only running VMs migrate live",
                      {{"state", here->state}});
    MigrationRequest req;
    req.op_id = ctx.op().id;
    req.destination_uri = "qemu+tcp://" + target->inventory.migration_address + "/system";
    req.migrate_uri = "tcp://" + target->inventory.migration_address;
    req.policy = ctx.op().params.value("policy", nlohmann::json::object()).get<MigrationPolicy>();
    if (!vols.empty()) {
      // Both QEMUs hold the disks open while the guest moves: shared on both hosts
      // for the move only (exclusive again after, wherever the VM ended up).
      for (const auto& v : vols)
        if (!v.snapshots.empty())
          return conflict("volume " + v.name + " has COW snapshots, and lvmlockd cannot share " +
                              "an origin with snapshots between hosts; delete the snapshots " +
                              "or stop the VM and migrate it cold (the snapshots stay)",
                          {{"volume", v.name}, {"snapshots", v.snapshots}});
      // Recorded before the first lock changes, so that a resumed run settles them.
      ctx.result()["volumes_shared"] = true;
      ctx.progress(3, "activating shared volumes shared on " + t->host.name + " and " + target_name);
      if (auto st = set_volume_activation(ctx, vols, t->host, LvMode::shared, "source-shared"); !st)
        return st;
      if (auto st = set_volume_activation(ctx, vols, *target, LvMode::shared, "target-shared", true);
          !st)
        return st;
    }
    ctx.progress(5, "starting live migration " + t->host.name + " -> " + target_name);
    status = ctx.with_retry([&] { return ctx.agents().migrate(t->host, uuid, req); });
    if (!status) return status.take_error();
  }

  bool abort_sent = false;
  const auto polling_since = std::chrono::steady_clock::now();
  auto progress_recorded = polling_since;
  while (true) {
    if (!ctx.sleep_for(migration_poll_interval(std::chrono::steady_clock::now() - polling_since))) {
      // Woken early: a cancel aborts the libvirt job; a stopping controller leaves the
      // operation running for the next one to pick up.
      if (!ctx.cancel_requested()) return unavailable("controller stopping during migration");
      if (!abort_sent) {
        (void)ctx.agents().abort_migration(t->host, ctx.op().id, uuid);
        abort_sent = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    auto cur = ctx.agents().migration_status(t->host, uuid);
    if (!cur) {
      if (cur.error().code == ErrorCode::unavailable) continue;  // agent restarting: ask again
      // E.g. the source no longer knows the domain: it has left.
      return resolve(cur.error());
    }
    status = std::move(cur);
    auto& m = ctx.result()["migration"];
    m = *status;
    if (status->state == MigrationState::running) {
      // Recorded (a store write) at most every 500 ms, however often it polls.
      const auto now = std::chrono::steady_clock::now();
      if (now - progress_recorded < std::chrono::milliseconds(500)) continue;
      progress_recorded = now;
      const int pct = status->data_total > 0
                          ? static_cast<int>(5 + 90 * status->data_processed / status->data_total)
                          : 5;
      ctx.progress(std::min(pct, 95), "migrating: iteration " + std::to_string(status->memory_iteration) +
                                          ", " + std::to_string(status->data_remaining >> 20) +
                                          " MiB remaining");
      continue;
    }
    break;
  }
  if (status->state == MigrationState::completed) {
    // Trust, but verify: the destination must run it before the record moves.
    auto there = ctx.with_retry([&] { return ctx.agents().get_domain(*target, uuid); });
    if (!there || vm_state_from_domain(there->state) != VmState::running)
      return resolve(internal_error("migration reported complete but " + target_name +
                                    " does not run the VM"));
    ctx.progress(100, "running on " + target_name);
    return adopt_on(ctx, uuid, target_name);
  }
  if (status->state == MigrationState::cancelled || abort_sent)
    return resolve(Error(ErrorCode::cancelled, "migration cancelled"));
  if (status->state == MigrationState::none)  // the agent restarted and lost its outcome
    return resolve(Error(ErrorCode::unavailable, "the source agent lost track of the migration"));
  return resolve(status->error.value_or(internal_error("migration failed")));
}

// After a migration, the shared volumes become exclusive again on the host that runs
// the VM and inactive on the other. Only a definite outcome is acted on: while it is
// unclear where the VM runs, both hosts keep their shared locks (no third host can
// take the LVs meanwhile).
void settle_volumes(OpContext& ctx, const Vm& before, const std::vector<VmVolume>& vols) {
  const std::string source_name = ctx.op().params.value("source_host", "");
  const std::string target_name = ctx.op().params.value("target_host", "");
  if (vols.empty() || !ctx.result().value("volumes_shared", false) || source_name.empty() ||
      target_name.empty() || source_name == target_name)
    return;
  const auto now = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* vm = d.find_vm(before.id);
    return vm ? std::optional<Vm>(*vm) : std::nullopt;
  });
  auto source = load_host(ctx, source_name);
  auto target = load_host(ctx, target_name);
  if (!now || !source || !target) return;
  const Host* runs_on = nullptr;
  const Host* other = nullptr;
  if (now->host == target_name) {
    runs_on = &*target;
    other = &*source;
  } else if (auto here = ctx.agents().get_domain(*source, before.id);
             here && vm_state_from_domain(here->state) == VmState::running) {
    runs_on = &*source;
    other = &*target;
  } else {
    ctx.result()["storage_warning"] =
        "where the VM runs is unclear; its volumes stay shared on both hosts";
    return;
  }
  const bool moved = runs_on == &*target;
  auto off = set_volume_activation(ctx, vols, *other, LvMode::inactive,
                                   moved ? "source-inactive" : "target-inactive");
  Status ex = off ? set_volume_activation(ctx, vols, *runs_on, LvMode::exclusive,
                                          moved ? "target-exclusive" : "source-exclusive")
                  : Status{};
  if (!off || !ex) {
    const Error& e = !off ? off.error() : ex.error();
    ctx.result()["storage_warning"] = "volumes not settled after the migration: " + e.message;
    spdlog::warn("migration {}: volumes not settled: {}", ctx.op().id, e.message);
  }
}

// A stopped VM moves to params.target_host: its definition goes there and leaves the
// source; its shared volumes are inactive, so the next start activates them on the
// target. The source host must be up and confirm the domain is not running: a VM is
// never defined to run in two places while one of them might still run it. Each step
// can be repeated, so a resumed run finishes the move.
Status cold_move_vm(OpContext& ctx) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const std::string target_name = ctx.op().params.value("target_host", "");
  const std::string uuid = t->vm.id;
  ctx.result()["mode"] = "cold";
  ctx.result()["source_host"] = t->host.name;
  ctx.result()["target_host"] = target_name;
  if (t->host.name == target_name) return {};  // moved already (a resumed run)
  auto target = load_host(ctx, target_name);
  if (!target) return target.take_error();
  if (target->state != HostState::up)
    return unavailable("target host " + target_name + " is " + std::string(to_string(target->state)),
                       {{"host", target_name}});

  ctx.progress(10, "checking that the VM is stopped on " + t->host.name);
  auto here = ctx.with_retry([&] { return ctx.agents().get_domain(t->host, uuid); });
  if (!here && here.error().code != ErrorCode::not_found) return here.take_error();
  if (here) {
    const VmState s = vm_state_from_domain(here->state);
    if (s != VmState::stopped && s != VmState::crashed)
      return conflict("VM is " + here->state + " on " + t->host.name + "; stop it before moving it",
                      {{"vm", t->vm.spec.name}, {"host", t->host.name}, {"state", here->state}});
  }
  // A guest that powered itself off may have left its LVs active here.
  if (const auto vols = volumes_of(ctx, t->vm); !vols.empty()) {
    ctx.progress(25, "making sure the shared volumes are inactive on " + t->host.name);
    if (auto st = set_volume_activation(ctx, vols, t->host, LvMode::inactive, "deactivate"); !st)
      return st;
  }
  const std::string domain_type =
      target->inventory.domain_type.empty() ? "kvm" : target->inventory.domain_type;
  ctx.progress(40, "defining the domain on " + target_name);
  auto defined = ctx.with_retry(
      [&] { return ctx.agents().define(*target, ctx.op().id, domain_spec_for(t->vm, domain_type)); });
  if (!defined) return defined.take_error();
  ctx.progress(70, "undefining the domain on " + t->host.name);
  auto gone = ctx.with_retry([&] { return ctx.agents().undefine(t->host, ctx.op().id, uuid, false); });
  if (!gone) {
    Error e = gone.take_error();
    e.message = "the VM is defined on " + target_name + " but could not be undefined on " +
                t->host.name + " (it stays recorded there): " + e.message;
    e.details["remains"] = {{"defined_on", {t->host.name, target_name}}};
    return e;
  }
  ctx.progress(90, "recording the VM on " + target_name);
  return save_vm(ctx, uuid, [&](Vm& vm) {
    vm.host = target_name;
    vm.state = vm_state_from_domain(defined->state);
  });
}

Status migrate_vm(OpContext& ctx) {
  if (ctx.op().params.value("mode", "live") == "cold") return cold_move_vm(ctx);
  const auto before = ctx.state().read([&](const ClusterState::Data& d) -> std::optional<Vm> {
    const Vm* vm = d.find_vm(ctx.op().target_id);
    return vm ? std::optional<Vm>(*vm) : std::nullopt;
  });
  const auto vols = before ? volumes_of(ctx, *before) : std::vector<VmVolume>{};
  Status st = migrate_vm_core(ctx, vols);
  if (before) settle_volumes(ctx, *before, vols);
  return st;
}

}  // namespace

VmState vm_state_from_domain(const std::string& s) {
  if (auto v = vm_state_from_string(s)) return *v;
  return VmState::unknown;
}

void register_vm_operations(OperationRunner& runner) {
  runner.register_kind(std::string(op_kind::vm_create), create_vm);
  runner.register_kind(std::string(op_kind::vm_start), start_vm);
  runner.register_kind(std::string(op_kind::vm_stop), stop_vm);
  runner.register_kind(std::string(op_kind::vm_reboot), reboot_vm);
  runner.register_kind(std::string(op_kind::vm_destroy), destroy_vm);
  runner.register_kind(std::string(op_kind::vm_delete), delete_vm);
  runner.register_kind(
      std::string(op_kind::vm_migrate), migrate_vm,
      [&config = runner.config()](const Operation& op, const std::vector<Operation>& running) {
        return migration_slot_refusal(op, running, config.migrations_per_host);
      });
}

}  // namespace kvmfleet
