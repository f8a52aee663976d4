#pragma once

// Operations with typed params and results. Each kind has a params struct, which names
// its kind (`static constexpr std::string_view kind`), and a result struct, both with
// strict JSON (model/strict_json.hpp), declared in the capability's folder
// (vms/vm_params.hpp, migration/migration_params.hpp, shared_storage/storage_params.hpp).
// An operation is stored with both as JSON, in the shape the API shows.

#include "kvmfleet/core/operation_runner.hpp"

#include <exception>
#include <string>

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

}  // namespace kvmfleet
