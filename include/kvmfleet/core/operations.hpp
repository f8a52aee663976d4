#pragma once

// The one way every capability submits an operation: the caller's identity, the
// Idempotency-Key, a check-then-write plan run under the state's lock, the operation
// persisted as pending and handed to the runner. Also how a caller cancels one, waits
// for one to end, and how old finished ones are pruned.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/operation_runner.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace kvmfleet {

// Who is calling, as the API authenticated them.
struct Principal {
  std::string token_id;
  std::string name;
  Role role = Role::viewer;
  std::string host;  // agents only
};

struct SubmitOptions {
  std::string idempotency_key;  // empty: none
  std::string request_hash;     // of method + path + body
};

// The submission was new, or a retry that found the operation of the first try.
struct Submitted {
  Operation operation;
  bool replayed = false;
};

class Operations {
 public:
  // Checks preconditions against the data (changing nothing when it refuses), fills
  // the operation (target, params) and may add writes that belong with it (a new VM's
  // record, say) to the batch.
  using Plan = std::function<Status(const ClusterState::Data&, WriteBatch&, Operation&)>;

  Operations(ClusterState& state, OperationRunner& runner, const Clock& clock,
             boost::asio::io_context& ioc);
  ~Operations();
  Operations(const Operations&) = delete;
  Operations& operator=(const Operations&) = delete;

  // `op` has its kind (and whatever the plan does not set); the id, requester, times
  // and state are set here. A retry with the same Idempotency-Key and request returns
  // the first operation; the same key with another request is a conflict.
  Result<Submitted> submit(const Principal& who, Operation op, const SubmitOptions& opts,
                           const Plan& plan);
  // Pending: cancelled at once. Running: asked to stop at its next check.
  Status cancel(const std::string& id);
  // Calls `done` once, when the operation ends or `timeout` passes, with its latest
  // state (nullopt if it vanished). Does not block: the wait is a timer of the API's
  // event loop.
  void wait(const std::string& id, std::chrono::milliseconds timeout,
            std::function<void(std::optional<Operation>)> done);
  // Forgets finished operations older than `retention`.
  Status prune(std::chrono::milliseconds retention);

 private:
  void notify(const Operation& op);

  ClusterState& state_;
  OperationRunner& runner_;
  const Clock& clock_;
  boost::asio::io_context& ioc_;
  struct Waiters;
  std::shared_ptr<Waiters> waiters_;
};

}  // namespace kvmfleet
