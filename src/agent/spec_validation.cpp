#include "kvmfleet/agent/spec_validation.hpp"

#include <algorithm>
#include <limits>
#include <set>
#include <string>

#include "kvmfleet/cloud_init/cloud_init.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/model/network.hpp"
#include "kvmfleet/storage/storage_names.hpp"

namespace kvmfleet::agent {
namespace {

bool lower_or_digit(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// An image as a domain refers to it: its name, SHA-256 and size from the controller.
Status check_image_ref(const std::string& where, const std::string& image,
                       const std::string& sha256, std::uint64_t size) {
  if (!is_valid_name(image))
    return invalid(where + ".image must be an image's name", {{"field", where + ".image"}});
  if (!is_sha256_hex(sha256))
    return invalid(where + ".image_sha256 must be 64 lowercase hex digits",
                   {{"field", where + ".image_sha256"}});
  if (size == 0)
    return invalid(where + ".image_size must be positive", {{"field", where + ".image_size"}});
  return {};
}

}  // namespace

bool is_valid_volume_name(std::string_view name) {
  constexpr std::string_view kSuffix = ".qcow2";
  if (name.size() <= kSuffix.size() || name.size() > 128 + kSuffix.size()) return false;
  if (name.substr(name.size() - kSuffix.size()) != kSuffix) return false;
  const auto stem = name.substr(0, name.size() - kSuffix.size());
  if (!lower_or_digit(stem.front())) return false;
  for (char c : stem) {
    if (!lower_or_digit(c) && c != '-') return false;
  }
  return true;
}

bool is_valid_target_dev(std::string_view dev, DiskBus bus) {
  const char prefix = bus == DiskBus::virtio ? 'v' : 's';
  return dev.size() == 3 && dev[0] == prefix && dev[1] == 'd' && dev[2] >= 'a' && dev[2] <= 'z';
}

Status validate_domain_spec(const DomainSpec& spec) {
  if (!is_valid_uuid(spec.uuid))
    return invalid("spec.uuid must be a lowercase canonical UUID", {{"field", "spec.uuid"}});
  if (auto st = check_name("spec.name", spec.name); !st) return st;
  if (spec.vcpus < 1 || spec.vcpus > kMaxVcpus)
    return invalid("spec.vcpus is out of range",
                   {{"field", "spec.vcpus"}, {"min", 1}, {"max", kMaxVcpus}});
  if (spec.memory_mib < kMinMemoryMib || spec.memory_mib > kMaxMemoryMib)
    return invalid("spec.memory_mib is out of range",
                   {{"field", "spec.memory_mib"}, {"min", kMinMemoryMib}, {"max", kMaxMemoryMib}});
  if (spec.domain_type != "kvm" && spec.domain_type != "qemu")
    return invalid("spec.domain_type must be kvm or qemu", {{"field", "spec.domain_type"}});
  if (spec.generation < 1)
    return invalid("spec.generation must be at least 1", {{"field", "spec.generation"}});
  if (spec.disks.size() > kMaxDisks)
    return invalid("too many disks", {{"field", "spec.disks"}, {"max", kMaxDisks}});
  std::set<std::string> volumes, devices, devs;
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = spec.disks[i];
    const std::string where = "spec.disks[" + std::to_string(i) + "]";
    if (d.volume.empty() == d.block_device.empty())
      return invalid(where + " must have exactly one of volume and block_device",
                     {{"field", where}});
    if (!d.block_device.empty()) {
      // Only a logical volume, as /dev/VG/LV: never a disk, a map or an option.
      if (auto lv = storage::parse_lv_path(d.block_device); !lv)
        return invalid(where + ".block_device: " + lv.error().message,
                       {{"field", where + ".block_device"}});
      // A shared device's size is the volume's business; 0 says "whatever it is".
      if (d.size_gib < 0 || d.size_gib > kMaxDiskGib)
        return invalid(where + ".size_gib is out of range",
                       {{"field", where + ".size_gib"}, {"min", 0}, {"max", kMaxDiskGib}});
      if (!devices.insert(d.block_device).second)
        return invalid(where + ".block_device is used twice", {{"field", where + ".block_device"}});
    } else {
      if (!is_valid_volume_name(d.volume))
        return invalid(where + ".volume must match [a-z0-9][a-z0-9-]{0,127}.qcow2",
                       {{"field", where + ".volume"}});
      if (d.size_gib < 1 || d.size_gib > kMaxDiskGib)
        return invalid(where + ".size_gib is out of range",
                       {{"field", where + ".size_gib"}, {"min", 1}, {"max", kMaxDiskGib}});
      if (!volumes.insert(d.volume).second)
        return invalid(where + ".volume is used twice", {{"field", where + ".volume"}});
    }
    if (!d.image.empty()) {
      if (!d.block_device.empty())
        return invalid(where + ": a disk from an image is an image-pool volume",
                       {{"field", where + ".image"}});
      if (auto st = check_image_ref(where, d.image, d.image_sha256, d.image_size); !st) return st;
      if (d.image_format != "raw" && d.image_format != "qcow2")
        return invalid(where + ".image_format must be raw or qcow2",
                       {{"field", where + ".image_format"}});
    }
    if (!is_valid_target_dev(d.target_dev, d.bus))
      return invalid(where + ".target_dev must be vd[a-z] for virtio, sd[a-z] otherwise",
                     {{"field", where + ".target_dev"}});
    if (!devs.insert(d.target_dev).second)
      return invalid(where + ".target_dev is used twice", {{"field", where + ".target_dev"}});
  }
  if (spec.cdrom)
    if (auto st = check_image_ref("spec.cdrom", spec.cdrom->image, spec.cdrom->image_sha256,
                                  spec.cdrom->image_size);
        !st)
      return st;
  if (spec.boot.size() > 3)
    return invalid("spec.boot has more than 3 devices", {{"field", "spec.boot"}});
  for (std::size_t i = 0; i < spec.boot.size(); ++i) {
    if (std::count(spec.boot.begin(), spec.boot.end(), spec.boot[i]) > 1)
      return invalid("spec.boot names a device twice",
                     {{"field", "spec.boot"}, {"reason", "bad_boot_order"}});
    if (spec.boot[i] == BootDevice::cdrom && !spec.cdrom)
      return invalid("spec.boot names cdrom; the domain has none",
                     {{"field", "spec.boot"}, {"reason", "bad_boot_order"}});
  }
  if (spec.cloud_init)
    if (auto st = cloud_init::check(*spec.cloud_init); !st) return st;
  if (spec.nics.size() > kMaxNics)
    return invalid("too many NICs", {{"field", "spec.nics"}, {"max", kMaxNics}});
  std::set<std::string> macs;
  for (std::size_t i = 0; i < spec.nics.size(); ++i) {
    const auto& n = spec.nics[i];
    const std::string where = "spec.nics[" + std::to_string(i) + "]";
    if (auto st = validate_domain_nic(n, where); !st) return st;
    if (!macs.insert(n.mac).second)
      return invalid(where + ".mac is used twice",
                     {{"field", where + ".mac"}, {"reason", "duplicate_mac"}});
  }
  return {};
}

Status validate_domain_nic(const DomainNic& n, const std::string& where) {
  if (auto st = check_mac(where + ".mac", n.mac); !st) return st;
  // Canonical form only: the same address spelled twice must not slip past the
  // duplicate check.
  if (normalize_mac(n.mac) != n.mac)
    return invalid(where + ".mac must be lowercase",
                   {{"field", where + ".mac"}, {"reason", "invalid_mac"}});
  if (auto st = check_interface_name(where + ".bridge", n.bridge); !st) return st;
  if (n.mtu != 0 && (n.mtu < kMinMtu || n.mtu > kMaxMtu))
    return invalid(where + ".mtu is out of range", {{"field", where + ".mtu"},
                                                    {"min", kMinMtu},
                                                    {"max", kMaxMtu},
                                                    {"reason", "mtu_out_of_range"}});
  return {};
}

Result<DomainNic> parse_domain_nic(const nlohmann::json& nj, const std::string& where) {
  if (!nj.is_object()) return invalid(where + " must be an object", {{"field", where}});
  if (auto st = check_known_fields(nj, {"mac", "bridge", "model", "mtu"}, where); !st)
    return st.take_error();
  DomainNic nic;
  auto mac = get_string(nj, "mac", true);
  if (!mac) return mac.take_error();
  nic.mac = std::move(*mac);
  auto bridge = get_string(nj, "bridge", true);
  if (!bridge) return bridge.take_error();
  nic.bridge = std::move(*bridge);
  auto model = get_string(nj, "model", false, "virtio");
  if (!model) return model.take_error();
  auto m = nic_model_from_string(*model);
  if (!m)
    return invalid(where + ".model must be virtio, e1000 or rtl8139",
                   {{"field", where + ".model"}, {"reason", "invalid_nic_model"}});
  nic.model = *m;
  auto mtu = get_int(nj, "mtu", false, 0, 0, kMaxMtu);
  if (!mtu) return mtu.take_error();
  nic.mtu = static_cast<int>(*mtu);
  return nic;
}

Result<DomainSpec> parse_domain_spec(const nlohmann::json& j) {
  if (auto st = check_known_fields(j,
                                   {"uuid", "name", "vcpus", "memory_mib", "domain_type",
                                    "generation", "disks", "nics", "cdrom", "boot", "cloud_init"},
                                   "spec");
      !st)
    return st.take_error();
  DomainSpec spec;
  auto uuid = get_string(j, "uuid", true);
  if (!uuid) return uuid.take_error();
  spec.uuid = std::move(*uuid);
  auto name = get_string(j, "name", true);
  if (!name) return name.take_error();
  spec.name = std::move(*name);
  auto vcpus = get_int(j, "vcpus", true, 1, 1, kMaxVcpus);
  if (!vcpus) return vcpus.take_error();
  spec.vcpus = static_cast<int>(*vcpus);
  auto memory = get_int(j, "memory_mib", true, 0, kMinMemoryMib, kMaxMemoryMib);
  if (!memory) return memory.take_error();
  spec.memory_mib = *memory;
  auto type = get_string(j, "domain_type", false, "kvm");
  if (!type) return type.take_error();
  spec.domain_type = std::move(*type);
  auto generation = get_int(j, "generation", false, 1, 1, std::numeric_limits<std::int64_t>::max());
  if (!generation) return generation.take_error();
  spec.generation = *generation;

  if (auto it = j.find("disks"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return invalid("spec.disks must be an array", {{"field", "spec.disks"}});
    if (it->size() > kMaxDisks)
      return invalid("too many disks", {{"field", "spec.disks"}, {"max", kMaxDisks}});
    for (const auto& dj : *it) {
      if (auto st = check_known_fields(dj,
                                       {"volume", "block_device", "size_gib", "bus", "target_dev",
                                        "image", "image_sha256", "image_size", "image_format"},
                                       "disk");
          !st)
        return st.take_error();
      DomainDisk disk;
      // Both keys may be present with one of them empty (the controller writes both);
      // validate_domain_spec checks that exactly one is set.
      auto volume = get_string(dj, "volume", false);
      if (!volume) return volume.take_error();
      disk.volume = std::move(*volume);
      auto device = get_string(dj, "block_device", false);
      if (!device) return device.take_error();
      disk.block_device = std::move(*device);
      auto size = get_int(dj, "size_gib", true, 0, 0, kMaxDiskGib);
      if (!size) return size.take_error();
      disk.size_gib = *size;
      auto bus = get_string(dj, "bus", false, "virtio");
      if (!bus) return bus.take_error();
      auto parsed_bus = disk_bus_from_string(*bus);
      if (!parsed_bus) return invalid("disk bus must be virtio, sata or scsi", {{"field", "bus"}});
      disk.bus = *parsed_bus;
      auto dev = get_string(dj, "target_dev", true);
      if (!dev) return dev.take_error();
      disk.target_dev = std::move(*dev);
      for (auto [key, out] :
           {std::pair{"image", &disk.image}, std::pair{"image_sha256", &disk.image_sha256},
            std::pair{"image_format", &disk.image_format}}) {
        auto v = get_string(dj, key, false);
        if (!v) return v.take_error();
        *out = std::move(*v);
      }
      auto image_size =
          get_int(dj, "image_size", false, 0, 0, std::numeric_limits<std::int64_t>::max());
      if (!image_size) return image_size.take_error();
      disk.image_size = static_cast<std::uint64_t>(*image_size);
      spec.disks.push_back(std::move(disk));
    }
  }
  if (auto it = j.find("nics"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return invalid("spec.nics must be an array", {{"field", "spec.nics"}});
    if (it->size() > kMaxNics)
      return invalid("too many NICs", {{"field", "spec.nics"}, {"max", kMaxNics}});
    for (std::size_t i = 0; i < it->size(); ++i) {
      auto nic = parse_domain_nic((*it)[i], "spec.nics[" + std::to_string(i) + "]");
      if (!nic) return nic.take_error();
      spec.nics.push_back(std::move(*nic));
    }
  }
  // cdrom, boot and cloud_init: their types here, their values in validate_domain_spec.
  try {
    if (auto it = j.find("cdrom"); it != j.end() && !it->is_null()) {
      if (!it->is_object() ||
          !check_known_fields(*it, {"image", "image_sha256", "image_size"}, "spec.cdrom"))
        return invalid("spec.cdrom must be {image, image_sha256, image_size}",
                       {{"field", "spec.cdrom"}});
      spec.cdrom = it->get<CdromSpec>();
    }
    if (auto it = j.find("boot"); it != j.end() && !it->is_null()) {
      if (!it->is_array()) return invalid("spec.boot must be an array", {{"field", "spec.boot"}});
      for (const auto& b : *it) {
        auto d = b.is_string() ? boot_device_from_string(b.get<std::string>()) : std::nullopt;
        if (!d)
          return invalid("spec.boot holds disk, cdrom or network",
                         {{"field", "spec.boot"}, {"reason", "bad_boot_order"}});
        spec.boot.push_back(*d);
      }
    }
    if (auto it = j.find("cloud_init"); it != j.end() && !it->is_null()) {
      if (!it->is_object() ||
          !check_known_fields(
              *it, {"user_data", "meta_data", "hostname", "network_config", "ssh_authorized_keys"},
              "spec.cloud_init"))
        return invalid("spec.cloud_init has unknown fields", {{"field", "spec.cloud_init"}});
      spec.cloud_init = it->get<CloudInit>();
    }
  } catch (const nlohmann::json::exception&) {
    return invalid("spec.cdrom, spec.boot or spec.cloud_init has a field of the wrong type");
  }
  if (auto st = validate_domain_spec(spec); !st) return st.take_error();
  return spec;
}

Status check_block_device_vgs(const DomainSpec& spec, const std::vector<std::string>& vgs) {
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = spec.disks[i];
    if (d.block_device.empty()) continue;
    const std::string field = "spec.disks[" + std::to_string(i) + "].block_device";
    auto lv = storage::parse_lv_path(d.block_device);
    if (!lv) return invalid(field + ": " + lv.error().message, {{"field", field}});
    if (std::find(vgs.begin(), vgs.end(), lv->vg) == vgs.end())
      return invalid(field + ": VG " + lv->vg + " is not one of this host's shared storage",
                     {{"field", field}});
  }
  return {};
}

}  // namespace kvmfleet::agent
