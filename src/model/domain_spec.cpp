#include "kvmfleet/model/domain_spec.hpp"

namespace kvmfleet {
namespace {

std::string target_dev(DiskBus bus, std::size_t index) {
  // vda..vdz for virtio, sda..sdz for sata/scsi; the API caps disks at 16.
  const char prefix = bus == DiskBus::virtio ? 'v' : 's';
  std::string dev{prefix, 'd'};
  dev.push_back(static_cast<char>('a' + index));
  return dev;
}

}  // namespace

DomainSpec domain_spec_for(const Vm& vm, const std::string& domain_type) {
  DomainSpec s;
  s.uuid = vm.id;
  s.name = vm.spec.name;
  s.vcpus = vm.spec.vcpus;
  s.memory_mib = vm.spec.memory_mib;
  s.domain_type = domain_type;
  s.generation = vm.generation;
  std::size_t virtio = 0, scsi_like = 0;
  for (std::size_t i = 0; i < vm.spec.disks.size(); ++i) {
    const auto& d = vm.spec.disks[i];
    DomainDisk dd;
    if (!d.device.empty()) {
      dd.block_device = d.device;
    } else {
      // The VM id, not its name, keeps volumes of a deleted and re-created VM apart.
      dd.volume = vm.id + "-disk" + std::to_string(i) + ".qcow2";
    }
    dd.size_gib = d.size_gib;
    dd.bus = d.bus;
    dd.target_dev = target_dev(d.bus, d.bus == DiskBus::virtio ? virtio++ : scsi_like++);
    dd.image = d.image;
    dd.image_sha256 = d.image_sha256;
    dd.image_size = d.image_size;
    dd.image_format = d.image_format;
    s.disks.push_back(std::move(dd));
  }
  for (const auto& n : vm.spec.nics) s.nics.push_back({n.mac, n.bridge, n.model, n.mtu});
  s.cdrom = vm.spec.cdrom;
  s.boot = vm.spec.boot;
  s.cloud_init = vm.spec.cloud_init;
  return s;
}

}  // namespace kvmfleet
