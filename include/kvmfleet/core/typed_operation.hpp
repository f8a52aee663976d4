#pragma once

// Operations with typed params and results. Each kind has a params struct, which names
// its kind (`static constexpr std::string_view kind`), and a result struct, both with
// strict JSON (model/strict_json.hpp), declared in the capability's folder
// (vms/vm_params.hpp, migration/migration_params.hpp, shared_storage/storage_params.hpp).
// An operation is stored with both as JSON, in the shape the API shows; the code of a
// kind reads its params and records its result only through the structs.

#include "kvmfleet/core/operation_runner.hpp"

#include <exception>
#include <string>
#include <utility>

namespace kvmfleet {

// The stored params of `op` as the kind's struct; params that do not parse (a record
// written by something else, or damaged) are an internal error naming the operation.
template <typename P>
Result<P> params_of(const Operation& op) {
  try {
    return op.params.get<P>();
  } catch (const std::exception& e) {
    return internal_error(
        "the stored params of operation " + op.id + " (" + op.kind + ") do not parse: " + e.what(),
        {{"operation", op.id}, {"kind", op.kind}});
  }
}

// The stored result of `op` as the kind's struct: what an earlier run recorded.
template <typename R>
Result<R> result_of(const Operation& op) {
  try {
    return op.result.get<R>();
  } catch (const std::exception& e) {
    return internal_error("the stored result of operation " + op.id + " (" + op.kind +
                              ") does not parse: " + e.what(),
                          {{"operation", op.id}, {"kind", op.kind}});
  }
}

// Makes `op` an operation of the params' kind, with these params.
template <typename P>
void set_params(Operation& op, const P& params) {
  op.kind = std::string(P::kind);
  op.params = params;
}

// The code of one kind: its params as submitted, its result as recorded so far (empty
// on a first run, what an earlier run recorded on a resumed one), to update as it goes.
template <typename P, typename R>
using TypedOperationFn = Status (*)(OpContext&, const P&, R&);

// Registers `fn` as the code of P::kind. Before it runs, the stored params and result
// are parsed (an operation whose params do not parse fails with an internal error, it
// never reaches `fn`); while it runs, progress() records the result as `fn` leaves it,
// and the operation ends with it.
template <typename P, typename R>
void register_operation(OperationRunner& runner, TypedOperationFn<P, R> fn, AdmitFn admit = {}) {
  runner.register_kind(
      std::string(P::kind),
      [fn](OpContext& ctx) -> Status {
        auto params = params_of<P>(ctx.op());
        if (!params) return params.take_error();
        auto recorded = result_of<R>(ctx.op());
        if (!recorded) return recorded.take_error();
        R result = std::move(*recorded);
        ctx.bind_result([&result] { return nlohmann::json(result); });
        struct Unbind {
          OpContext& ctx;
          ~Unbind() { ctx.unbind_result(); }
        } unbind{ctx};
        return fn(ctx, *params, result);
      },
      std::move(admit));
}

}  // namespace kvmfleet
