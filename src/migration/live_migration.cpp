// vm.migrate of a running VM: a live migration from the VM's host to
// params.target_host, driven by the source agent, and how its outcome is decided.
#include "migration_steps.hpp"

#include "kvmfleet/migration/migration_planning.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/vms/vm_steps.hpp"

namespace kvmfleet {
namespace {

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

}  // namespace

Status migrate_live(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r,
                    const std::vector<VmVolume>& vols) {
  auto t = load_target(ctx);
  if (!t) return t.take_error();
  const std::string& target_name = p.target_host;
  const std::string uuid = t->vm.id;
  auto target = load_host(ctx, target_name);
  if (!target) return target.take_error();
  r.source_host = t->host.name;
  r.target_host = target_name;
  if (t->host.name == target_name) return {};  // already there (a resumed run)
  if (target->state != HostState::up)
    return unavailable("target host " + target_name + " is " +
                       std::string(to_string(target->state)));
  if (auto st = check_live_destination(*target); !st) return st;

  // What the hosts see now decides where to continue from.
  if (auto there = ctx.agents().get_domain(*target, uuid);
      there && vm_state_from_domain(there->state) == VmState::running) {
    auto here = ctx.agents().get_domain(t->host, uuid);
    if (!here || vm_state_from_domain(here->state) != VmState::running) {
      ctx.progress(100, "the VM already runs on " + target_name);
      return adopt_on(ctx, uuid, target_name, *there,
                      here ? answer_from(t->host.name, *here) : HostAnswer{t->host.name, {}, {}});
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
    // "running", another domain state, "absent", or empty when the host cannot say;
    // the answer itself in `answer` (none when absent or unanswered).
    auto probe = [&](const Host& h, std::optional<DomainStatus>& answer) -> std::string {
      auto d = ctx.agents().get_domain(h, uuid);
      answer.reset();
      if (d) {
        answer = *d;
        return vm_state_from_domain(d->state) == VmState::running ? "running" : d->state;
      }
      return d.error().code == ErrorCode::not_found ? "absent" : "";
    };
    // What the source said, for the record: its domain, or none (absent, or unanswered).
    auto source_answer = [&](const std::optional<DomainStatus>& answer) {
      return answer ? answer_from(t->host.name, *answer) : HostAnswer{t->host.name, {}, {}};
    };
    std::string on_source, on_target;
    std::optional<DomainStatus> source_dom, target_dom;
    for (int round = 0; round < kResolveRounds; ++round) {
      if (round > 0) {
        ctx.progress(95, "migration ended (" + reported.message + "); waiting for " +
                             (on_source.empty() ? t->host.name : target_name) +
                             " to report where the VM runs");
        if (!ctx.sleep_for(kResolveInterval)) break;
      }
      on_source = probe(t->host, source_dom);
      on_target = probe(*target, target_dom);
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
        return adopt_on(ctx, uuid, target_name, *target_dom, source_answer(source_dom));
      }
    }
    reported.details["source_state"] = on_source.empty() ? "unknown" : on_source;
    reported.details["target_state"] = on_target.empty() ? "unknown" : on_target;
    if (on_target == "running") {  // the source never answered: the destination runs it
      ctx.progress(100, "running on " + target_name);
      return adopt_on(ctx, uuid, target_name, *target_dom, source_answer(source_dom));
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
    req.policy = p.policy;
    if (auto st = prepare_media_for_move(ctx, r, t->vm, *target, req); !st) return st;
    if (auto st = share_volumes_for_move(ctx, r, t->vm, vols, t->host, *target); !st) return st;
    ctx.progress(5, "starting live migration " + t->host.name + " -> " + target_name);
    status = ctx.with_retry([&] { return ctx.agents().migrate(t->host, uuid, req); });
    if (!status) return status.take_error();
  }

  bool abort_sent = false;
  const auto polling_since = ctx.clock().steady_now();
  auto progress_recorded = polling_since;
  while (true) {
    if (!ctx.sleep_for(migration_poll_interval(ctx.clock().steady_now() - polling_since))) {
      // Woken early: a cancel aborts the libvirt job; a stopping controller leaves the
      // operation running for the next one to pick up.
      if (!ctx.cancel_requested()) return unavailable("controller stopping during migration");
      if (!abort_sent) {
        (void)ctx.agents().abort_migration(t->host, ctx.op().id, uuid);
        abort_sent = true;
      } else {
        ctx.clock().sleep_for(std::chrono::milliseconds(500));
      }
    }
    auto cur = ctx.agents().migration_status(t->host, uuid);
    if (!cur) {
      if (cur.error().code == ErrorCode::unavailable) continue;  // agent restarting: ask again
      // E.g. the source no longer knows the domain: it has left.
      return resolve(cur.error());
    }
    status = std::move(cur);
    r.migration = *status;
    if (status->state == MigrationState::running) {
      // Recorded (a store write) at most every 500 ms, however often it polls.
      const auto now = ctx.clock().steady_now();
      if (now - progress_recorded < std::chrono::milliseconds(500)) continue;
      progress_recorded = now;
      const int pct = status->data_total > 0
                          ? static_cast<int>(5 + 90 * status->data_processed / status->data_total)
                          : 5;
      ctx.progress(std::min(pct, 95),
                   "migrating: iteration " + std::to_string(status->memory_iteration) + ", " +
                       std::to_string(status->data_remaining >> 20) + " MiB remaining");
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
    // The source answered "completed" once libvirt had undefined the domain there.
    return adopt_on(ctx, uuid, target_name, *there, HostAnswer{t->host.name, {}, status->stamp});
  }
  if (status->state == MigrationState::cancelled || abort_sent)
    return resolve(Error(ErrorCode::cancelled, "migration cancelled"));
  if (status->state == MigrationState::none)  // the agent restarted and lost its outcome
    return resolve(Error(ErrorCode::unavailable, "the source agent lost track of the migration"));
  return resolve(status->error.value_or(internal_error("migration failed")));
}

}  // namespace kvmfleet
