#include "block_resize.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "kvmfleet/storage/storage_names.hpp"

namespace kvmfleet::agent::libvirt {

Status check_block_resize(const std::string& device, std::uint64_t size_bytes) {
  if (auto st = storage::check_device_path(device); !st) return st;
  if (size_bytes == 0 || size_bytes % 512 != 0)
    return invalid("size_bytes must be a positive multiple of 512", {{"field", "size_bytes"}});
  return {};
}

Status resize_block_disk(Connection& connection, DomainLookup& domains, const Managed& domain,
                         const std::string& uuid, const std::string& device,
                         std::uint64_t size_bytes) {
  const auto& sources = domain.desc.info.block_sources;
  if (std::find(sources.begin(), sources.end(), device) == sources.end())
    return not_found("domain " + uuid + " has no disk on " + device,
                     {{"uuid", uuid}, {"device", device}});
  if (auto st = domains.require_running(domain.dom.get(), uuid); !st) return st.take_error();
  if (virDomainBlockResize(domain.dom.get(), device.c_str(), size_bytes,
                           VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0)
    return connection.failed("resizing disk " + device + " of domain " + uuid);
  spdlog::info("domain {}: disk {} is now {} bytes", uuid, device, size_bytes);
  return {};
}

}  // namespace kvmfleet::agent::libvirt
