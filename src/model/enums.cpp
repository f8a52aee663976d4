#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/vm.hpp"

#include <array>
#include <utility>

namespace kvmfleet {
namespace {

template <typename E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& table, E v) {
  for (const auto& [e, n] : table)
    if (e == v) return n;
  return "unknown";
}

template <typename E, std::size_t N>
std::optional<E> parse(const std::array<std::pair<E, std::string_view>, N>& table,
                       std::string_view s) {
  for (const auto& [e, n] : table)
    if (n == s) return e;
  return std::nullopt;
}

constexpr std::array<std::pair<DesiredState, std::string_view>, 2> kDesired{
    {{DesiredState::running, "running"}, {DesiredState::stopped, "stopped"}}};
constexpr std::array<std::pair<VmState, std::string_view>, 7> kVmState{
    {{VmState::pending, "pending"},
     {VmState::stopped, "stopped"},
     {VmState::running, "running"},
     {VmState::paused, "paused"},
     {VmState::shutting_down, "shutting_down"},
     {VmState::crashed, "crashed"},
     {VmState::unknown, "unknown"}}};
constexpr std::array<std::pair<DiskBus, std::string_view>, 3> kBus{
    {{DiskBus::virtio, "virtio"}, {DiskBus::sata, "sata"}, {DiskBus::scsi, "scsi"}}};
constexpr std::array<std::pair<BootDevice, std::string_view>, 3> kBoot{
    {{BootDevice::disk, "disk"}, {BootDevice::cdrom, "cdrom"}, {BootDevice::network, "network"}}};
constexpr std::array<std::pair<HostState, std::string_view>, 5> kHost{
    {{HostState::up, "up"},
     {HostState::unreachable, "unreachable"},
     {HostState::down, "down"},
     {HostState::fencing, "fencing"},
     {HostState::fenced, "fenced"}}};
constexpr std::array<std::pair<OpState, std::string_view>, 5> kOp{
    {{OpState::pending, "pending"},
     {OpState::running, "running"},
     {OpState::succeeded, "succeeded"},
     {OpState::failed, "failed"},
     {OpState::cancelled, "cancelled"}}};

}  // namespace

std::string_view to_string(DesiredState s) {
  return name_of(kDesired, s);
}
std::string_view to_string(VmState s) {
  return name_of(kVmState, s);
}
std::string_view to_string(DiskBus b) {
  return name_of(kBus, b);
}
std::string_view to_string(BootDevice b) {
  return name_of(kBoot, b);
}
std::optional<BootDevice> boot_device_from_string(std::string_view s) {
  return parse(kBoot, s);
}
std::string_view to_string(HostState s) {
  return name_of(kHost, s);
}
std::string_view to_string(OpState s) {
  return name_of(kOp, s);
}
std::optional<DesiredState> desired_state_from_string(std::string_view s) {
  return parse(kDesired, s);
}
std::optional<VmState> vm_state_from_string(std::string_view s) {
  return parse(kVmState, s);
}
VmState vm_state_from_domain(std::string_view s) {
  return vm_state_from_string(s).value_or(VmState::unknown);
}
std::optional<DiskBus> disk_bus_from_string(std::string_view s) {
  return parse(kBus, s);
}
std::optional<HostState> host_state_from_string(std::string_view s) {
  return parse(kHost, s);
}
std::optional<OpState> op_state_from_string(std::string_view s) {
  return parse(kOp, s);
}

bool older_than(const ReportStamp& report, const ReportStamp& known) {
  return !report.empty() && report.agent == known.agent && report.seq < known.seq;
}

}  // namespace kvmfleet
