#pragma once

// kvmfleet's own daemons on a running kernel lab: a kvmfleet-controller on this
// machine inside the lab's network namespace (listening on the bridge address), and
// in each guest what a host of the cluster runs: the storage daemons (iscsid, wdmd,
// sanlock, lvmlockd), libvirtd with virtlogd, and a kvmfleet-agent. The guests run
// this machine's binaries over 9p, so the build tree must not be under /tmp or /run
// (each guest mounts its own tmpfs there).
//
// Cleanup: the controller is recorded in the lab's journal (KernelLab::spawn_in_netns),
// so down() and a later stale cleanup stop it by pid and start time. What runs inside
// a guest ends with that guest: teardown powers every recorded guest off, and the
// guest's PID 1 kills everything left before it does.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel_lab.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/client.hpp"

namespace kvmfleet::klab {

// An http::Client whose connections are made inside a network namespace: each
// request runs on a thread of its own that entered the namespace first (a network
// namespace is per thread), so this process reaches the lab's bridge and guests
// while the rest of it stays in the machine's namespace.
class NetnsHttpClient final : public http::Client {
 public:
  explicit NetnsHttpClient(std::string netns) : netns_(std::move(netns)) {}
  Result<http::ClientResponse> request(std::string_view method, const std::string& url,
                                       const std::string& bearer, const std::string& body,
                                       std::chrono::milliseconds timeout) override;

 private:
  std::string netns_;
  http::BeastClient inner_;
};

// Writes `content` to `path` inside the guest (through dd's stdin, never a shell),
// then sets its mode.
Status write_guest_file(KernelLab& lab, int guest, const std::string& path,
                        const std::string& content, const std::string& mode = "0644");

// Starts argv in the background inside the guest, in a session of its own, with its
// output in `log_path` (in the guest); returns its pid there.
Result<int> start_guest_background(KernelLab& lab, int guest, const std::vector<std::string>& argv,
                                   const std::string& log_path);

// Loads dm_snapshot, softdog, iscsi_tcp and sd_mod and starts iscsid, wdmd,
// `sanlock daemon -U root -G root` and `lvmlockd -g sanlock`; returns once
// LockDaemons sees all three lock daemons answer.
Status start_storage_daemons(KernelLab& lab, int guest);

// Writes /etc/libvirt/libvirtd.conf (a host_uuid of its own, TCP without auth on the
// guest's lab address: tests only) and qemu.conf (root, no dynamic ownership, no
// security driver, no namespaces, no cgroups), starts virtlogd and libvirtd --listen
// and waits until `virsh -c qemu:///system version` answers.
Status start_libvirtd(KernelLab& lab, int guest);

struct ControllerOptions {
  std::filesystem::path binary;  // kvmfleet-controller
  std::uint16_t port = 8400;
  // Merged over the configuration written for the lab (listen address and port,
  // database and token files in the lab's state dir, heartbeat times for TCG).
  nlohmann::json config = nlohmann::json::object();
};

// A kvmfleet-controller on this machine, in the lab's network namespace, listening
// on KernelLab::kBridgeAddress with its SQLite database in the lab's state dir.
class LabController {
 public:
  static Result<std::unique_ptr<LabController>> start(KernelLab& lab, ControllerOptions options);

  LabController(const LabController&) = delete;
  LabController& operator=(const LabController&) = delete;

  const std::string& url() const { return url_; }  // http://10.77.0.1:PORT
  const std::string& admin_token() const { return admin_token_; }
  const ProcessId& process() const { return process_; }
  std::filesystem::path log_path() const { return dir_ / "controller.log"; }
  std::string log_tail(std::size_t bytes = 6000) const;

  // One API call with the admin token; any status comes back as a value.
  Result<http::ClientResponse> request(std::string_view method, const std::string& path,
                                       const std::string& body = {},
                                       std::chrono::seconds timeout = std::chrono::seconds{30});
  // Polls GET /v1/operations/{id}?wait=N until the operation has ended (succeeded,
  // failed or cancelled) or `limit` passed (timeout, with the last answer).
  Result<nlohmann::json> wait_operation(const std::string& id, std::chrono::seconds limit);
  // POST /v1/hosts; returns the host's agent token.
  Result<std::string> register_host(const std::string& name, const std::string& agent_url);
  // Until GET /v1/hosts/NAME says "up" with a heartbeat.
  Result<nlohmann::json> wait_host_up(const std::string& name, std::chrono::seconds limit);

  // SIGTERM, then SIGKILL; the journal's record then finds it gone.
  void stop();

 private:
  LabController() = default;

  std::filesystem::path dir_;
  std::string url_;
  std::string admin_token_;
  ProcessId process_;
  std::unique_ptr<NetnsHttpClient> client_;
};

struct AgentOptions {
  std::filesystem::path binary;  // kvmfleet-agent
  std::string controller_url;
  std::string token;  // the host's agent token from POST /v1/hosts
  std::uint16_t port = 8401;
  int heartbeat_interval_ms = 2000;
  // The agent config's "storage" object; null: no shared storage.
  nlohmann::json storage;
};

// Writes /etc/kvmfleet/agent.json (host = the guest's hostname, listening and
// migrating on the guest's lab address) and its token file (0600) in the guest, starts
// kvmfleet-agent in the background (log /var/log/kvmfleet-agent.log) and waits until
// it answers GET /agent/v1/inventory. Returns its pid in the guest.
Result<int> start_agent(KernelLab& lab, int guest, const AgentOptions& options);

inline std::string agent_url(const KernelLab& lab, int guest, std::uint16_t port = 8401) {
  return "http://" + lab.guest(guest).address + ":" + std::to_string(port);
}

}  // namespace kvmfleet::klab
