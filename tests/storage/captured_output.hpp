#pragma once

// Outputs the real tools printed in the kernel lab, stored as data/NAME.{out,err,rc}.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "kvmfleet/common/process.hpp"

namespace kvmfleet::storage::testing {

inline std::string read_data(const std::string& file) {
  std::ifstream in(std::string(KVMFLEET_STORAGE_TEST_DATA) + "/" + file, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing test data " << file;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline ProcessOutput captured(const std::string& name) {
  ProcessOutput o;
  o.out = read_data(name + ".out");
  o.err = read_data(name + ".err");
  o.exit_code = std::stoi(read_data(name + ".rc"));
  return o;
}

}  // namespace kvmfleet::storage::testing
