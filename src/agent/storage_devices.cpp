#include "kvmfleet/agent/storage_devices.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

namespace kvmfleet::agent {

nlohmann::json LunDevice::to_json() const {
  nlohmann::json j = {{"device", device}};
  if (!map.empty()) {
    j["path_device"] = path_device;
    j["multipath_map"] = map;
  }
  if (!multipath_unused.empty()) j["multipath_unused"] = multipath_unused;
  return j;
}

Result<std::string> resolve_device_link(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_symlink(path, ec)) {
    if (std::filesystem::exists(path, ec)) return path;
    return not_found(path + " does not exist");
  }
  auto target = std::filesystem::canonical(path, ec);
  if (ec) return not_found("cannot resolve " + path + ": " + ec.message());
  return target.string();
}

LunDevice lun_device_to_use(StorageBackend& st, const std::string& path_device,
                            std::chrono::milliseconds wait) {
  LunDevice out{path_device, path_device, {}, {}};
  if (st.multipath == nullptr) return out;
  auto disk = st.resolve_device ? st.resolve_device(path_device) : resolve_device_link(path_device);
  if (!disk) {
    out.multipath_unused = disk.error().message;
    spdlog::warn("multipath: using {} as it is: {}", path_device, out.multipath_unused);
    return out;
  }
  std::chrono::milliseconds waited{0};
  while (true) {
    auto map = st.multipath->map_with_path(*disk);
    if (map) {
      out.device = map->device();
      out.map = map->name;
      spdlog::info("multipath: {} ({}) is a path of map {} ({} of {} paths healthy)", path_device,
                   *disk, map->name, map->healthy_paths(), map->paths.size());
      return out;
    }
    if (map.error().code != ErrorCode::not_found) {
      out.multipath_unused = "multipathd did not answer: " + map.error().message;
      spdlog::warn("multipath: using the single path {}: {}", path_device, out.multipath_unused);
      return out;
    }
    if (waited >= wait) break;
    const auto step = std::min(st.lun_poll, wait - waited);
    st.clock.sleep_for(step);
    waited += step;
  }
  spdlog::info("multipath: no map holds {} ({}); using the single path", path_device, *disk);
  return out;
}

std::vector<std::string> add_session_luns(StorageBackend& st) {
  std::vector<std::string> added;
  auto sessions = st.iscsi.sessions();
  if (!sessions) {
    spdlog::warn("cannot list iSCSI sessions: {}", sessions.error().message);
    return added;
  }
  for (const auto& session : *sessions) {
    for (const auto& l : session.luns) {
      if (l.disk.empty()) continue;
      // Two sessions to one LUN share its map: it joins once.
      const auto use = lun_device_to_use(st, l.disk, std::chrono::milliseconds{0});
      if (std::find(added.begin(), added.end(), use.device) != added.end()) continue;
      if (auto s = st.lvm.add_device(use.device); !s) {
        spdlog::warn("cannot add {} to LVM's devices: {}", use.device, s.error().message);
        continue;
      }
      added.push_back(use.device);
    }
  }
  return added;
}

}  // namespace kvmfleet::agent
