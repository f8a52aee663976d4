#pragma once

// A BMC for a lab host: OpenIPMI's ipmi_sim serving IPMI 2.0 on a loopback UDP port,
// whose chassis power control is this object. `status` answers whether the host is on
// (`is_on`); `off` calls `power_off` (e.g. killing every process of a lab host's
// namespaces) and answers once it has returned; `on` calls `power_on`. The real
// fence_ipmilan talks to it as to any BMC. Everything it writes is in `dir`; ipmi_sim is
// stopped by its recorded pid.
//
// ipmi_sim runs a script for each chassis request; the script hands the request to this
// object through files in `dir` (request, then done) and waits for the answer, so what a
// power change does is ordinary C++ of the test.

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

namespace kvmfleet::lab {

struct BmcPower {
  std::function<bool()> is_on;
  std::function<void()> power_off;
  std::function<void()> power_on;
};

class IpmiBmc {
 public:
  static constexpr const char* kIpmiSim = "/usr/bin/ipmi_sim";
  static constexpr const char* kUser = "admin";

  // Starts ipmi_sim on 127.0.0.1 and waits until it answers. `password` is the admin
  // user's.
  static Result<std::unique_ptr<IpmiBmc>> start(ProcessRunner& runner,
                                                const std::filesystem::path& dir,
                                                const std::string& password, BmcPower power);
  ~IpmiBmc();
  IpmiBmc(const IpmiBmc&) = delete;
  IpmiBmc& operator=(const IpmiBmc&) = delete;

  int port() const { return port_; }
  // fence_ipmilan's options for this BMC (ip, ipport, username, password, lanplus, cipher).
  std::map<std::string, std::string> fence_options(const std::string& password) const;
  // The chassis requests seen so far ("get power", "set power 0", ...), one per line.
  std::string requests() const;

 private:
  IpmiBmc(ProcessRunner& runner, std::filesystem::path dir, BmcPower power)
      : runner_(runner), dir_(std::move(dir)), power_(std::move(power)) {}
  void serve();

  ProcessRunner& runner_;
  std::filesystem::path dir_;
  BmcPower power_;
  int port_ = -1;
  pid_t sim_ = -1;
  std::atomic<bool> stop_{false};
  std::thread server_;
};

}  // namespace kvmfleet::lab
