#pragma once

// Which device a LUN is used through: its dm-multipath map where multipathd holds
// it in one (StorageBackend::multipath set), else the device of its single path.
// That device is what an iSCSI login answers and what joins LVM's device filter
// (docs/storage.md, "Multipath").

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "kvmfleet/agent/storage_backend.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent {

struct LunDevice {
  std::string device;       // the device to use: "/dev/mapper/NAME" or path_device
  std::string path_device;  // the LUN over one path ("/dev/disk/by-path/…", "/dev/sdX")
  std::string map;          // the dm-multipath map's name; empty when device is the path
  // Multipath is configured but was not used, and why (multipathd not answering, a
  // device link that resolves to nothing). Empty otherwise.
  std::string multipath_unused;

  // {"device"}, plus "path_device" and "multipath_map" when a map is used, or
  // "multipath_unused" when it could not be.
  nlohmann::json to_json() const;
};

// The device to use for the LUN whose single-path device is `path_device`.
// Without multipath configured: path_device. With it, the disk behind the link is
// looked up in multipathd's maps every `lun_poll` for up to `wait` (multipathd
// builds a map a moment after the path appears). No map by then: path_device (a
// single path with find_multipaths). Never fails: multipath trouble is logged and
// named in multipath_unused, and path_device is used.
LunDevice lun_device_to_use(StorageBackend& storage, const std::string& path_device,
                            std::chrono::milliseconds wait);

// Adds the LUNs of the host's current iSCSI sessions to LVM's device filter, each
// through its multipath map when one holds it (agent start-up: sessions logged in
// before a restart, or by open-iscsi at boot). Returns the devices added.
std::vector<std::string> add_session_luns(StorageBackend& storage);

// The disk a device link names: /dev/disk/by-path/… → /dev/sdX
// (std::filesystem::canonical); a path that is no link is itself.
Result<std::string> resolve_device_link(const std::string& path);

}  // namespace kvmfleet::agent
