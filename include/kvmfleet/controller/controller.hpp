#pragma once

// The controller assembled: one runner for every operation kind, one way to submit
// them (Operations), and a service per capability over the shared cluster state. The
// executable, the API and the tests build it the same way.

#include "kvmfleet/auth/token_service.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/console/agent_console.hpp"
#include "kvmfleet/console/console_service.hpp"
#include "kvmfleet/core/agent_api.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/core/operation_runner.hpp"
#include "kvmfleet/core/operations.hpp"
#include "kvmfleet/fencing/fence_agent.hpp"
#include "kvmfleet/fencing/fence_service.hpp"
#include "kvmfleet/ha/ha_service.hpp"
#include "kvmfleet/hosts/host_service.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/images/image_service.hpp"
#include "kvmfleet/images/image_tool.hpp"
#include "kvmfleet/migration/migration_service.hpp"
#include "kvmfleet/network/network_service.hpp"
#include "kvmfleet/shared_storage/storage_monitor.hpp"
#include "kvmfleet/shared_storage/storage_service.hpp"
#include "kvmfleet/vms/vm_service.hpp"

#include <boost/asio/io_context.hpp>

#include <memory>
#include <thread>

namespace kvmfleet {

class Controller {
 public:
  // `image_tool`: qemu-img for checking images; null: the real one. `agent_console`:
  // the agents' serial consoles; null: the real one (HttpAgentConsole on `ioc`).
  // `fence_agent`: runs fence agents; null: the real one (/usr/sbin/fence_*).
  Controller(ClusterState& state, AgentApi& agents, const ControllerConfig& config,
             const Clock& clock, boost::asio::io_context& ioc,
             std::shared_ptr<images::ImageTool> image_tool = nullptr,
             std::shared_ptr<console::AgentConsole> agent_console = nullptr,
             std::shared_ptr<fencing::FenceAgent> fence_agent = nullptr);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Runs the operations (resuming those a previous controller left unfinished), the
  // storage monitor's thread and a thread that ticks every second on the clock.
  void start();
  void stop();
  // Periodic work: host liveness, HA restarts, pruning of old finished operations. The ticker of
  // start() also tells HostService how late each tick runs (observe_tick).
  void tick();

  ClusterState& state() { return state_; }
  const ControllerConfig& config() const { return config_; }
  const Clock& clock() const { return clock_; }
  OperationRunner& runner() { return runner_; }
  Operations& operations() { return operations_; }
  TokenService& tokens() { return tokens_; }
  HostService& hosts() { return hosts_; }
  VmService& vms() { return vms_; }
  MigrationService& migration() { return migration_; }
  HaService& ha() { return ha_; }
  StorageService& storage() { return storage_; }
  StorageMonitor& storage_monitor() { return storage_monitor_; }
  NetworkService& networks() { return networks_; }
  images::ImageService& images() { return images_; }
  console::ConsoleService& console() { return console_; }
  fencing::FenceService& fencing() { return fencing_; }

 private:
  ClusterState& state_;
  const ControllerConfig& config_;
  const Clock& clock_;
  OperationRunner runner_;
  Operations operations_;
  TokenService tokens_;
  HostService hosts_;
  VmService vms_;
  MigrationService migration_;
  HaService ha_;
  StorageService storage_;
  StorageMonitor storage_monitor_;
  NetworkService networks_;
  SystemProcessRunner image_processes_;
  std::shared_ptr<images::ImageTool> image_tool_;
  images::ImageService images_;
  http::BeastClient console_client_;  // the real console link's log calls
  std::shared_ptr<console::AgentConsole> agent_console_;
  console::ConsoleService console_;
  SystemProcessRunner fence_processes_;
  std::shared_ptr<fencing::FenceAgent> fence_agent_;
  fencing::FenceService fencing_;
  Interrupt stop_ticking_;  // raised once, by stop()
  std::thread ticker_;
};

}  // namespace kvmfleet
