#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/agent_api.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kvmfleet {

class OperationRunner;

// What an operation's code may use while it runs.
class OpContext {
 public:
  OpContext(OperationRunner& runner, Operation op, Interrupt interrupt)
      : runner_(runner), op_(std::move(op)), interrupt_(std::move(interrupt)) {}
  const Operation& op() const { return op_; }
  // The op id for one step's agent call. The agent remembers an op id per call path
  // and refuses the same id with another body, so every step of an operation that
  // may call one path twice gets its own id: "<operation>:<tag>".
  std::string step_id(std::string_view tag) const;
  ClusterState& state();
  AgentApi& agents();
  const ControllerConfig& config();
  const Clock& clock();
  // Records progress; persisted so a poller (and a restarted controller) sees it.
  void progress(int percent, std::string step);
  bool cancel_requested() const;
  // Sleeps on the injected clock, returning false early if the runner is stopping or
  // the op is cancelled.
  bool sleep_for(std::chrono::milliseconds d);
  // Calls `fn` until it succeeds or fails with something other than `unavailable`,
  // at most config().agent_retry_attempts times with backoff.
  template <typename F>
  auto with_retry(F&& fn) -> decltype(fn()) {
    auto delay = config().agent_retry_backoff;
    for (int attempt = 1;; ++attempt) {
      auto r = fn();
      if (r.ok() || r.error().code != ErrorCode::unavailable ||
          attempt >= config().agent_retry_attempts)
        return r;
      if (!sleep_for(delay)) return r;
      delay = std::min(delay * 2, std::chrono::milliseconds{10'000});
    }
  }
  // The result as it stands, in the stored form: what progress() persists along with
  // the percentage, so a poller (and a resumed run) sees partial results such as a
  // drain's per-VM outcomes, and what the operation ends with. An operation's code
  // records its result through its kind's typed struct (typed_operation.hpp), which
  // binds it here for the run.
  nlohmann::json result() const { return result_source_ ? result_source_() : op_.result; }
  void bind_result(std::function<nlohmann::json()> source) { result_source_ = std::move(source); }
  // Keeps the bound result's last rendering and unbinds it.
  void unbind_result();
  // Persists a new pending operation (kind, target and params set by `plan`, which
  // may refuse) and queues it: how an operation starts others (a drain its
  // migrations). The child is attributed to this operation's requester.
  Result<Operation> spawn(Operation child,
                          const std::function<Status(const ClusterState::Data&, Operation&)>& plan);
  // Asks another operation to stop, as DELETE /v1/operations/{id} does.
  Status cancel(const std::string& op_id);

 private:
  OperationRunner& runner_;
  Operation op_;
  Interrupt interrupt_;  // raised when the runner stops or the op is cancelled
  std::function<nlohmann::json()> result_source_;  // the typed result, while bound
};

// Code that carries out one kind of operation: check preconditions (changing
// nothing), then execute. It must be safe to run again from the start after a
// controller restart, since agent calls are idempotent by operation id.
using OperationFn = std::function<Status(OpContext&)>;

// Whether a queued operation may start now, given the operations running: nothing
// when it may, else why it waits (shown as its step while it is queued).
using AdmitFn = std::function<std::optional<std::string>(const Operation& candidate,
                                                         const std::vector<Operation>& running)>;

// Runs persisted operations on worker threads, one at a time per target, oldest
// first. On start it picks up every operation a previous controller left unfinished.
class OperationRunner {
 public:
  OperationRunner(ClusterState& state, AgentApi& agents, const ControllerConfig& config,
                  const Clock& clock);
  ~OperationRunner();

  void register_kind(std::string kind, OperationFn fn, AdmitFn admit = {});
  const ControllerConfig& config() const { return config_; }
  void start();
  void stop();
  // The operation is already persisted as pending.
  void submit(const std::string& op_id);
  // Pending: becomes cancelled at once. Running: asks it to stop at its next check.
  Status cancel(const std::string& op_id);

 private:
  friend class OpContext;
  void worker();
  // Under mu_: the first queued operation whose target is free and that its kind
  // admits. Refusal reasons that changed are added to `notes` (op id, reason).
  std::optional<Operation> pick_locked(std::vector<std::pair<std::string, std::string>>& notes);
  void note_waiting(const std::string& op_id, const std::string& reason);
  void execute(const std::string& op_id, const Interrupt& interrupt);
  void request_cancel_locked(const std::string& op_id);
  void finish(const std::string& op_id, OpState state, std::optional<Error> error,
              const nlohmann::json& result);

  ClusterState& state_;
  AgentApi& agents_;
  const ControllerConfig& config_;
  const Clock& clock_;
  std::map<std::string, OperationFn> kinds_;
  std::map<std::string, AdmitFn> admits_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> busy_targets_;
  std::set<std::string> running_ops_;               // taken by a worker
  std::map<std::string, Operation> running_;        // their operations, for admission
  std::map<std::string, std::string> waiting_for_;  // queued op → why it waits
  std::set<std::string> cancel_requested_;
  std::map<std::string, Interrupt> interrupts_;  // of the running ops' sleeps
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace kvmfleet
