#include "kvmfleet/core/operation_runner.hpp"

#include "kvmfleet/common/ids.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvmfleet {

ClusterState& OpContext::state() {
  return runner_.state_;
}
AgentApi& OpContext::agents() {
  return runner_.agents_;
}
const ControllerConfig& OpContext::config() {
  return runner_.config_;
}
const Clock& OpContext::clock() {
  return runner_.clock_;
}

void OpContext::progress(int percent, std::string step) {
  op_.progress = std::clamp(percent, 0, 100);
  op_.step = std::move(step);
  const std::string id = op_.id;
  const int p = op_.progress;
  const std::string s = op_.step;
  const nlohmann::json r = result();
  auto st = state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Operation* cur = d.find_operation(id);
    if (!cur || is_terminal(cur->state)) return {};
    Operation next = *cur;
    next.progress = p;
    next.step = s;
    next.result = r;
    b.put_operations.push_back(std::move(next));
    return {};
  });
  if (!st) spdlog::warn("operation {}: cannot record progress: {}", id, st.error().message);
}

void OpContext::unbind_result() {
  if (!result_source_) return;
  op_.result = result_source_();
  result_source_ = nullptr;
}

bool OpContext::cancel_requested() const {
  std::lock_guard lk(runner_.mu_);
  return runner_.cancel_requested_.count(op_.id) > 0;
}

std::string OpContext::step_id(std::string_view tag) const {
  return op_.id + ":" + std::string(tag);
}

bool OpContext::sleep_for(std::chrono::milliseconds d) {
  return runner_.clock_.sleep_for(d, interrupt_);
}

Result<Operation> OpContext::spawn(
    Operation child, const std::function<Status(const ClusterState::Data&, Operation&)>& plan) {
  child.id = new_uuid();
  child.state = OpState::pending;
  child.requested_by = op_.requested_by;
  child.requester_id = op_.requester_id;
  child.created_at = clock().now();
  auto st = state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    if (auto p = plan(d, child); !p) return p;
    b.put_operations.push_back(child);
    return {};
  });
  if (!st) return st.take_error();
  runner_.submit(child.id);
  return child;
}

Status OpContext::cancel(const std::string& op_id) {
  return runner_.cancel(op_id);
}

OperationRunner::OperationRunner(ClusterState& state, AgentApi& agents,
                                 const ControllerConfig& config, const Clock& clock)
    : state_(state), agents_(agents), config_(config), clock_(clock) {}

OperationRunner::~OperationRunner() {
  stop();
}

void OperationRunner::register_kind(std::string kind, OperationFn fn, AdmitFn admit) {
  if (admit) admits_[kind] = std::move(admit);
  kinds_[std::move(kind)] = std::move(fn);
}

void OperationRunner::start() {
  // Whatever a previous controller left pending or running is resumed, oldest first.
  auto unfinished = state_.read([](const ClusterState::Data& d) {
    std::vector<std::string> ids;
    for (const Operation* op : d.active_operations()) ids.push_back(op->id);
    return ids;
  });
  {
    std::lock_guard lk(mu_);
    stopping_ = false;
    for (auto& id : unfinished) queue_.push_back(id);
  }
  if (!unfinished.empty()) spdlog::info("resuming {} unfinished operation(s)", unfinished.size());
  for (int i = 0; i < config_.operation_workers; ++i) workers_.emplace_back([this] { worker(); });
}

void OperationRunner::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    for (auto& [_, i] : interrupts_) i.raise();
  }
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

void OperationRunner::submit(const std::string& op_id) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(op_id);
  }
  cv_.notify_all();
}

Status OperationRunner::cancel(const std::string& op_id) {
  bool was_queued = false;
  bool picked = false;
  {
    std::lock_guard lk(mu_);
    auto it = std::find(queue_.begin(), queue_.end(), op_id);
    if (it != queue_.end()) {
      queue_.erase(it);
      waiting_for_.erase(op_id);
      was_queued = true;
    }
    // A worker may have taken it but not yet marked it running: that one is asked
    // to stop, never declared cancelled behind the worker's back.
    picked = running_ops_.count(op_id) > 0;
    if (picked) request_cancel_locked(op_id);
  }
  if (picked) {
    cv_.notify_all();
    return {};
  }
  auto op = state_.read([&](const ClusterState::Data& d) -> std::optional<Operation> {
    const Operation* o = d.find_operation(op_id);
    return o ? std::optional<Operation>(*o) : std::nullopt;
  });
  if (!op) return not_found("no such operation", {{"id", op_id}});
  if (is_terminal(op->state))
    return conflict("operation already finished", {{"id", op_id}, {"state", to_string(op->state)}});
  if (was_queued || op->state == OpState::pending) {
    finish(op_id, OpState::cancelled, Error(ErrorCode::cancelled, "cancelled before it started"),
           op->result);
    return {};
  }
  {
    std::lock_guard lk(mu_);
    request_cancel_locked(op_id);
  }
  cv_.notify_all();
  return {};
}

void OperationRunner::request_cancel_locked(const std::string& op_id) {
  cancel_requested_.insert(op_id);
  if (auto it = interrupts_.find(op_id); it != interrupts_.end()) it->second.raise();
}

std::optional<Operation> OperationRunner::pick_locked(
    std::vector<std::pair<std::string, std::string>>& notes) {
  std::vector<Operation> running;
  if (!admits_.empty())
    for (const auto& [_, op] : running_) running.push_back(op);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    auto op = state_.read([&](const ClusterState::Data& d) -> std::optional<Operation> {
      const Operation* o = d.find_operation(*it);
      return o ? std::optional<Operation>(*o) : std::nullopt;
    });
    if (!op) {  // gone from the state: nothing to run
      waiting_for_.erase(*it);
      queue_.erase(it);
      return pick_locked(notes);
    }
    if (busy_targets_.count(op->target_id)) continue;
    if (auto a = admits_.find(op->kind); a != admits_.end()) {
      if (auto why = a->second(*op, running)) {
        auto& last = waiting_for_[op->id];
        if (last != *why) {
          last = *why;
          notes.emplace_back(op->id, *why);
        }
        continue;
      }
    }
    waiting_for_.erase(op->id);
    queue_.erase(it);
    return op;
  }
  return std::nullopt;
}

void OperationRunner::note_waiting(const std::string& op_id, const std::string& reason) {
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Operation* cur = d.find_operation(op_id);
    if (!cur || cur->state != OpState::pending) return {};
    Operation next = *cur;
    next.step = reason;
    b.put_operations.push_back(std::move(next));
    return {};
  });
  if (!st) spdlog::warn("operation {}: cannot record why it waits: {}", op_id, st.error().message);
}

void OperationRunner::worker() {
  std::unique_lock lk(mu_);
  while (true) {
    if (stopping_) return;
    std::vector<std::pair<std::string, std::string>> notes;
    auto picked = pick_locked(notes);
    if (!notes.empty()) {
      lk.unlock();
      for (const auto& [id, why] : notes) note_waiting(id, why);
      lk.lock();
    }
    if (!picked) {
      if (notes.empty()) cv_.wait(lk);
      continue;
    }
    const std::string id = picked->id;
    const std::string target = picked->target_id;
    busy_targets_.insert(target);
    running_ops_.insert(id);
    running_.emplace(id, std::move(*picked));
    Interrupt interrupt;
    interrupts_.emplace(id, interrupt);
    lk.unlock();
    execute(id, interrupt);
    lk.lock();
    busy_targets_.erase(target);
    running_ops_.erase(id);
    running_.erase(id);
    cancel_requested_.erase(id);
    interrupts_.erase(id);
    cv_.notify_all();
  }
}

void OperationRunner::execute(const std::string& op_id, const Interrupt& interrupt) {
  std::optional<Operation> op;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Operation* cur = d.find_operation(op_id);
    if (!cur || is_terminal(cur->state)) return {};
    Operation next = *cur;
    next.state = OpState::running;
    next.attempts += 1;
    if (!next.started_at) next.started_at = clock_.now();
    op = next;
    b.put_operations.push_back(std::move(next));
    return {};
  });
  if (!st) {
    spdlog::error("operation {}: cannot mark running: {}", op_id, st.error().message);
    return;
  }
  if (!op) return;  // finished or cancelled meanwhile
  auto kind = kinds_.find(op->kind);
  if (kind == kinds_.end()) {
    finish(op_id, OpState::failed, internal_error("no code for operation kind " + op->kind), {});
    return;
  }
  spdlog::info("operation {} {} on {} {}: running (attempt {})", op->id, op->kind, op->target_type,
               op->target_id, op->attempts);
  OpContext ctx(*this, *op, interrupt);
  Status result = internal_error("operation did not run");
  try {
    result = kind->second(ctx);
  } catch (const std::exception& e) {
    result = internal_error(std::string("operation failed unexpectedly: ") + e.what());
  }
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !result.ok() && result.error().code != ErrorCode::cancelled) {
      // Interrupted by shutdown: left running, so the next controller resumes it.
      spdlog::info("operation {}: interrupted by shutdown, will resume", op_id);
      return;
    }
  }
  if (result.ok()) {
    finish(op_id, OpState::succeeded, std::nullopt, ctx.result());
  } else {
    const bool cancelled = result.error().code == ErrorCode::cancelled;
    finish(op_id, cancelled ? OpState::cancelled : OpState::failed, result.error(), ctx.result());
  }
}

void OperationRunner::finish(const std::string& op_id, OpState final_state,
                             std::optional<Error> error, const nlohmann::json& result) {
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Operation* cur = d.find_operation(op_id);
    if (!cur || is_terminal(cur->state)) return {};
    Operation next = *cur;
    next.state = final_state;
    next.error = error;
    next.result = result;
    if (final_state == OpState::succeeded) {
      next.progress = 100;
      next.step = "done";
    }
    next.finished_at = clock_.now();
    b.put_operations.push_back(std::move(next));
    return {};
  });
  if (!st) {
    spdlog::error("operation {}: cannot record its end: {}", op_id, st.error().message);
    return;
  }
  if (error)
    spdlog::info("operation {}: {} ({}: {})", op_id, to_string(final_state), to_string(error->code),
                 error->message);
  else
    spdlog::info("operation {}: {}", op_id, to_string(final_state));
}

}  // namespace kvmfleet
