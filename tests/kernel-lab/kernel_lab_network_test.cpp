// The agent's VLAN networks on a kernel with VLAN support: one TCG guest running
// Debian's kernel loads 8021q and runs the network lab test (tests/lab/network_lab_test.cpp,
// built on this machine and seen by the guest over 9p), whose VLAN case makes the
// sub-interface and its bridge with the real `ip` in a network namespace it creates
// and removes, and checks that a second call changes nothing.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "kernel_lab.hpp"
#include "kernel_lab_test_support.hpp"

namespace kvmfleet::klab {
namespace {

using testing_support::runs_ok;

TEST(KernelLabNetwork, VlanSubInterfaceAndBridgeAreMadeForRealAndIdempotently) {
  LabOptions options;
  options.name = "ctest-network";
  options.guests = 1;
  auto made = KernelLab::up(options);
  ASSERT_TRUE(made.ok()) << made.error().message;
  std::unique_ptr<KernelLab> lab = std::move(*made);
  std::printf("[   INFO   ] guest runs kernel %s under TCG\n", lab->kernel_version().c_str());
  EXPECT_TRUE(runs_ok(*lab, 1, {"modprobe", "8021q"}));
  ProcessOutput out;
  EXPECT_TRUE(
      runs_ok(*lab, 1,
              {KVMFLEET_NETWORK_LAB_TESTS,
               "--gtest_filter=NetworkLabTest.AVlanNetworkIsMadeForRealOnceAndThenLeftAsItIs"},
              &out, std::chrono::seconds{300}))
      << lab->console_tail(1);
  // It ran, and was not skipped for want of VLAN support.
  EXPECT_NE(out.out.find("[  PASSED  ] 1 test"), std::string::npos) << out.out;
  EXPECT_EQ(out.out.find("SKIPPED"), std::string::npos) << out.out;
  const auto down = lab->down();
  EXPECT_TRUE(down.ok()) << down.error().message;
}

}  // namespace
}  // namespace kvmfleet::klab
