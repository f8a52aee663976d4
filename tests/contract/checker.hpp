#pragma once

// Runs tests/contract/openapi_check.py on api/openapi.yaml (paths from CMake).

#include "kvmfleet/common/process.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvmfleet::contract {

inline const std::string kSpec = KVMFLEET_OPENAPI_SPEC;
inline const std::string kRecordDir = KVMFLEET_CONTRACT_RECORD_DIR;

// Runs openapi_check.py with `args` after the spec.
inline ProcessOutput run_checker(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {KVMFLEET_PYTHON3, KVMFLEET_OPENAPI_CHECK, kSpec};
  argv.insert(argv.end(), args.begin(), args.end());
  SystemProcessRunner runner;
  RunOptions opts;
  opts.timeout = std::chrono::minutes(5);
  auto out = runner.run(argv, opts);
  if (!out) {
    ADD_FAILURE() << "cannot run openapi_check.py: " << out.error().message;
    return {};
  }
  return *out;
}

}  // namespace kvmfleet::contract
