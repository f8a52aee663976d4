#pragma once

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace kvmfleet::contract {

// A real kvmfleet-controller on a loopback port chosen by the kernel, with its own
// temporary directory (config, database, bootstrap token, log). The destructor stops
// exactly that process, by its pid, and removes exactly that directory, so a failing
// test leaves nothing behind.
class ControllerProcess {
 public:
  // `config` is merged over the test's defaults (listen on 127.0.0.1:0, files in the
  // temporary directory).
  static Result<std::unique_ptr<ControllerProcess>> start(const std::string& binary,
                                                          const nlohmann::json& config);
  ~ControllerProcess();
  ControllerProcess(const ControllerProcess&) = delete;
  ControllerProcess& operator=(const ControllerProcess&) = delete;

  std::uint16_t port() const { return port_; }
  const std::string& admin_token() const { return admin_token_; }
  const std::string& dir() const { return dir_; }
  // What the controller has logged so far, for failure messages.
  std::string log() const;

 private:
  ControllerProcess() = default;
  Status wait_until_serving();

  SystemProcessRunner runner_;
  std::string dir_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string admin_token_;
};

}  // namespace kvmfleet::contract
