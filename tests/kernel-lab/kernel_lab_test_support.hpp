#pragma once

// Helpers the kernel-lab test binaries share: run a program in a guest and turn
// its outcome into a gtest assertion that shows what the guest printed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "kernel_lab.hpp"

namespace kvmfleet::klab::testing_support {

inline std::string describe(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

inline Result<ProcessOutput> run_in(KernelLab& lab, int guest, const std::vector<std::string>& argv,
                                    std::chrono::seconds timeout = std::chrono::seconds{180},
                                    std::optional<std::string> input = std::nullopt) {
  RunOptions o;
  o.timeout = timeout;
  o.input = std::move(input);
  return lab.exec(guest, argv, o);
}

// Success: the program ran in the guest and exited 0. `out` receives what it printed.
inline ::testing::AssertionResult runs_ok(KernelLab& lab, int guest,
                                          const std::vector<std::string>& argv,
                                          ProcessOutput* out = nullptr,
                                          std::chrono::seconds timeout = std::chrono::seconds{180},
                                          std::optional<std::string> input = std::nullopt) {
  auto r = run_in(lab, guest, argv, timeout, std::move(input));
  if (!r.ok()) {
    return ::testing::AssertionFailure() << "node" << guest << ": " << describe(argv) << ": "
                                         << to_string(r.error().code) << ": " << r.error().message;
  }
  if (out != nullptr) *out = *r;
  if (r->exit_code != 0) {
    return ::testing::AssertionFailure()
           << "node" << guest << ": " << describe(argv) << " exited " << r->exit_code
           << "\nstdout: " << r->out << "\nstderr: " << r->err;
  }
  return ::testing::AssertionSuccess();
}

// Success: the program ran in the guest and exited non-zero (a refusal the test wants).
inline ::testing::AssertionResult runs_and_fails(
    KernelLab& lab, int guest, const std::vector<std::string>& argv, ProcessOutput* out,
    std::chrono::seconds timeout = std::chrono::seconds{180}) {
  auto r = run_in(lab, guest, argv, timeout);
  if (!r.ok()) {
    return ::testing::AssertionFailure() << "node" << guest << ": " << describe(argv) << ": "
                                         << to_string(r.error().code) << ": " << r.error().message;
  }
  if (out != nullptr) *out = *r;
  if (r->exit_code == 0) {
    return ::testing::AssertionFailure() << "node" << guest << ": " << describe(argv)
                                         << " succeeded but must fail\nstdout: " << r->out;
  }
  return ::testing::AssertionSuccess();
}

// What a failed step leaves to look at: each guest's links with their counters,
// addresses and neighbours, and the end of its kernel console.
inline std::string guest_report(KernelLab& lab) {
  std::string report;
  for (int g = 1; g <= lab.guest_count(); ++g) {
    report += "--- node" + std::to_string(g) + "\n";
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{"ip", "-s", "link"}, {"ip", "-br", "addr"}, {"ip", "neigh"}}) {
      auto r = run_in(lab, g, argv, std::chrono::seconds{20});
      report += "$ " + describe(argv) + "\n" +
                (r.ok() ? r->out + r->err : "(" + r.error().message + ")\n");
    }
    report +=
        "--- node" + std::to_string(g) + " console (end)\n" + lab.console_tail(g, 3000) + "\n";
  }
  return report;
}

// Timings go to the test's output and its XML properties, never into an assertion.
inline void report_time(const std::string& what, std::chrono::steady_clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  std::printf("[   TIME   ] %s: %lld ms\n", what.c_str(), static_cast<long long>(ms));
  std::fflush(stdout);
  ::testing::Test::RecordProperty(what, std::to_string(ms));
}

}  // namespace kvmfleet::klab::testing_support
