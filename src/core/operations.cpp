#include "kvmfleet/core/operations.hpp"

#include "kvmfleet/common/ids.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace kvmfleet {

struct Operations::Waiters {
  struct Waiter {
    explicit Waiter(boost::asio::io_context& ioc) : timer(ioc) {}
    boost::asio::steady_timer timer;
    std::function<void(std::optional<Operation>)> done;
    std::atomic<bool> fired{false};
  };
  std::mutex mu;
  std::unordered_map<std::string, std::vector<std::shared_ptr<Waiter>>> by_op;
};

Operations::Operations(ClusterState& state, OperationRunner& runner, const Clock& clock,
                       boost::asio::io_context& ioc)
    : state_(state),
      runner_(runner),
      clock_(clock),
      ioc_(ioc),
      waiters_(std::make_shared<Waiters>()) {
  std::weak_ptr<Waiters> weak = waiters_;
  state_.on_operation_change([this, weak](const Operation& op) {
    if (weak.lock()) notify(op);
  });
}

Operations::~Operations() = default;

Result<Submitted> Operations::submit(const Principal& who, Operation op, const SubmitOptions& opts,
                                     const Plan& plan) {
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

Status Operations::cancel(const std::string& id) {
  return runner_.cancel(id);
}

void Operations::wait(const std::string& id, std::chrono::milliseconds timeout,
                      std::function<void(std::optional<Operation>)> done) {
  auto current = [this, id]() { return state_.operation(id); };
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

void Operations::notify(const Operation& op) {
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

Status Operations::prune(std::chrono::milliseconds retention) {
  const auto horizon = clock_.now() - retention;
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    for (const auto& [id, op] : d.operations)
      if (is_terminal(op.state) && op.finished_at && *op.finished_at < horizon)
        b.delete_operations.push_back(id);
    return {};
  });
}

}  // namespace kvmfleet
