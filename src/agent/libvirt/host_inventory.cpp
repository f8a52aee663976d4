#include "host_inventory.hpp"

#include <libvirt/virterror.h>

#include <string>

#include "errors.hpp"
#include "handles.hpp"
#include "kvmfleet/agent/capabilities_xml.hpp"

namespace kvmfleet::agent::libvirt {
namespace {

std::string version_string(unsigned long v) {
  return std::to_string(v / 1'000'000) + "." + std::to_string((v / 1'000) % 1'000) + "." +
         std::to_string(v % 1'000);
}

}  // namespace

Result<HostInventory> read_host_inventory(Connection& connection, virConnectPtr conn) {
  HostInventory inv;
  virNodeInfo node{};
  if (virNodeGetInfo(conn, &node) < 0) return connection.failed("reading node info");
  inv.cpus = static_cast<int>(node.cpus);
  inv.memory_total_mib = static_cast<std::int64_t>(node.memory / 1024);
  const unsigned long long free_bytes = virNodeGetFreeMemory(conn);
  if (free_bytes == 0 && last_libvirt_error_code() != VIR_ERR_OK) {
    if (last_libvirt_error_code() != VIR_ERR_NO_SUPPORT)
      return connection.failed("reading free memory");
    // Drivers without it (test://) report 0: the scheduler then sees no free memory.
  }
  inv.memory_free_mib = static_cast<std::int64_t>(free_bytes >> 20);
  unsigned long version = 0;
  if (virConnectGetLibVersion(conn, &version) < 0)
    return connection.failed("reading libvirt version");
  inv.libvirt_version = version_string(version);
  if (virConnectGetVersion(conn, &version) < 0)
    return connection.failed("reading hypervisor version");
  inv.qemu_version = version_string(version);
  CString hostname(virConnectGetHostname(conn));
  if (!hostname) return connection.failed("reading hostname");
  inv.hostname = hostname.get();
  CString caps_xml(virConnectGetCapabilities(conn));
  if (!caps_xml) return connection.failed("reading capabilities");
  auto caps = read_capabilities_xml(caps_xml.get());
  if (!caps) return internal_error("libvirt capabilities: " + caps.error().message);
  inv.host_uuid = caps->host_uuid;
  inv.cpu_model = caps->cpu_model;
  inv.domain_type = caps->domain_type;
  return inv;
}

}  // namespace kvmfleet::agent::libvirt
