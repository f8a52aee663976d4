#pragma once

// A one-host kvmfleet cluster made of the real binaries: a private libvirtd in its
// own mount + UTS namespace (scripts/lab-host-init.sh), kvmfleet-agent inside that
// namespace, kvmfleet-controller beside it. Everything it starts is recorded and
// stopped by pid when it goes away, also when a test fails.

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/http/client.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace kvmfleet::e2e {

class Cluster {
 public:
  // `guest_accelerator`: the agent's setting ("auto": KVM where /dev/kvm works; "tcg").
  explicit Cluster(std::string guest_accelerator = "auto");
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Brings up libvirtd, controller, host registration and agent; errors name the step.
  Status start();

  Status start_controller();
  void kill_controller(int signal);
  Status start_agent();
  void kill_agent(int signal);

  // Calls the API with the admin token; the body of any status is returned.
  Result<http::ClientResponse> api(const std::string& method, const std::string& path,
                                   const std::string& body = {}, int timeout_s = 30);
  Result<nlohmann::json> api_json(const std::string& method, const std::string& path,
                                  const std::string& body = {}, int timeout_s = 30);
  // Runs argv inside the host's mount + UTS namespace (virsh sees its libvirtd).
  Result<ProcessOutput> in_host(std::vector<std::string> argv);
  // `virsh domstate NAME` as libvirt itself reports it ("running", "shut off", ...).
  std::string domstate(const std::string& name);
  // PID of the QEMU process of a running domain, from libvirt's pid file; 0 if none.
  pid_t qemu_pid(const std::string& name);
  // Waits until the host reports up with a heartbeat newer than now.
  Status wait_host_heartbeat(int timeout_s = 60);

  const std::string& host() const { return host_; }
  const std::string& url() const { return url_; }
  const std::string& admin_token() const { return admin_token_; }
  // Whether guests run under KVM (the agent is not held to TCG and /dev/kvm exists).
  bool kvm() const;

 private:
  void stop_all();

  SystemProcessRunner runner_;
  http::BeastClient client_;
  std::string dir_;
  std::string host_ = "e2e";
  std::string guest_accelerator_;
  std::string url_;
  std::uint16_t port_ = 0, agent_port_ = 0;
  std::string admin_token_;
  pid_t ns_pid_ = 0, controller_pid_ = 0, agent_pid_ = 0;
};

}  // namespace kvmfleet::e2e
