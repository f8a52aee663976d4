#pragma once

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/controller/agent_api.hpp"
#include "kvmfleet/controller/cluster_state.hpp"
#include "kvmfleet/controller/config.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace kvmfleet {

class OperationRunner;

// What an operation's code may use while it runs.
class OpContext {
 public:
  OpContext(OperationRunner& runner, Operation op) : runner_(runner), op_(std::move(op)) {}
  const Operation& op() const { return op_; }
  ClusterState& state();
  AgentApi& agents();
  const ControllerConfig& config();
  const Clock& clock();
  // Records progress; persisted so a poller (and a restarted controller) sees it.
  void progress(int percent, std::string step);
  bool cancel_requested() const;
  // Sleeps, returning false early if the runner is stopping or the op is cancelled.
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
  nlohmann::json& result() { return op_.result; }

 private:
  OperationRunner& runner_;
  Operation op_;
};

// Code that carries out one kind of operation: check preconditions (changing
// nothing), then execute. It must be safe to run again from the start after a
// controller restart, since agent calls are idempotent by operation id.
using OperationFn = std::function<Status(OpContext&)>;

// Runs persisted operations on worker threads, one at a time per target, oldest
// first. On start it picks up every operation a previous controller left unfinished.
class OperationRunner {
 public:
  OperationRunner(ClusterState& state, AgentApi& agents, const ControllerConfig& config,
                  const Clock& clock);
  ~OperationRunner();

  void register_kind(std::string kind, OperationFn fn);
  void start();
  void stop();
  // The operation is already persisted as pending.
  void submit(const std::string& op_id);
  // Pending: becomes cancelled at once. Running: asks it to stop at its next check.
  Status cancel(const std::string& op_id);

 private:
  friend class OpContext;
  void worker();
  void execute(const std::string& op_id);
  void finish(const std::string& op_id, OpState state, std::optional<Error> error,
              const nlohmann::json& result);

  ClusterState& state_;
  AgentApi& agents_;
  const ControllerConfig& config_;
  const Clock& clock_;
  std::map<std::string, OperationFn> kinds_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> busy_targets_;
  std::set<std::string> running_ops_;  // taken by a worker
  std::set<std::string> cancel_requested_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace kvmfleet
