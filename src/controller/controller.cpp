#include "kvmfleet/controller/controller.hpp"

#include "kvmfleet/console/http_agent_console.hpp"

#include "kvmfleet/ha/ha_operations.hpp"
#include "kvmfleet/migration/migration_operations.hpp"
#include "kvmfleet/network/network_operations.hpp"
#include "kvmfleet/shared_storage/storage_operations.hpp"
#include "kvmfleet/vms/vm_operations.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {

namespace {

constexpr std::chrono::seconds kTickInterval{1};

}  // namespace

Controller::Controller(ClusterState& state, AgentApi& agents, const ControllerConfig& config,
                       const Clock& clock, boost::asio::io_context& ioc,
                       std::shared_ptr<images::ImageTool> image_tool,
                       std::shared_ptr<console::AgentConsole> agent_console,
                       std::shared_ptr<fencing::FenceAgent> fence_agent)
    : state_(state),
      config_(config),
      clock_(clock),
      runner_(state, agents, config, clock),
      operations_(state, runner_, clock, ioc),
      tokens_(state, clock),
      hosts_(state, config, clock),
      vms_(state, operations_, config, clock),
      migration_(operations_, config),
      ha_(state, operations_, config, clock, [this] { return hosts_.liveness_guard_active(); }),
      storage_(operations_, clock),
      storage_monitor_(state, agents, config, clock, &storage_),
      networks_(operations_, state, clock, config.mac_prefix),
      image_tool_(image_tool ? std::move(image_tool)
                             : std::make_shared<images::QemuImgTool>(image_processes_)),
      images_(config.resolved_image_dir(), *image_tool_, clock),
      console_client_(config.agent_ca_file),
      agent_console_(agent_console ? std::move(agent_console)
                                   : std::make_shared<console::HttpAgentConsole>(
                                         ioc, console_client_, config.agent_ca_file)),
      console_(state, *agent_console_),
      fence_agent_(fence_agent ? std::move(fence_agent)
                               : std::make_shared<fencing::CommandFenceAgent>(fence_processes_)),
      fencing_(state, operations_, runner_, hosts_, *fence_agent_, clock) {
  register_vm_operations(runner_);
  register_migration_operations(runner_);
  register_ha_operations(runner_);
  register_storage_operations(runner_);
  register_network_operations(runner_);
}

Controller::~Controller() {
  stop();
}

void Controller::start() {
  runner_.start();
  storage_monitor_.start();
  fencing_.start();
  // Ticks are due on a fixed schedule from now; how late one runs is the controller's own
  // lag (a stall of the process, a pass that waited on a lock), which liveness does not
  // count against hosts. Ticks missed meanwhile are not made up.
  ticker_ = std::thread([this, due = clock_.steady_now() + kTickInterval]() mutable {
    while (clock_.sleep_until_steady(due, stop_ticking_)) {
      const auto ran = clock_.steady_now();
      hosts_.observe_tick(due, ran);
      tick();
      due += kTickInterval;
      if (due <= ran) due = ran + kTickInterval;
    }
  });
}

void Controller::stop() {
  stop_ticking_.raise();
  if (ticker_.joinable()) ticker_.join();
  storage_monitor_.stop();
  fencing_.stop();
  runner_.stop();
}

void Controller::tick() {
  hosts_.check_liveness();
  fencing_.tick();
  ha_.tick();
  if (auto st = operations_.prune(config_.operation_retention); !st)
    spdlog::warn("pruning finished operations failed: {}", st.error().message);
}

}  // namespace kvmfleet
