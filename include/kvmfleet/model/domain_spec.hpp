#pragma once

#include "kvmfleet/model/vm.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace kvmfleet {

// What the controller asks an agent to define: a VM spec resolved for one host.
struct DomainDisk {
  // Exactly one of these: a volume name in the agent's image pool, e.g.
  // "web1-disk0.qcow2" (the agent creates it), or the absolute path of a block device
  // on shared storage, e.g. "/dev/pool1/db-data" (raw, cache=none; the controller
  // activates it before the domain starts).
  std::string volume;
  std::string block_device;
  std::int64_t size_gib = 0;
  DiskBus bus = DiskBus::virtio;
  std::string target_dev;  // vda, sda, ...
  // An image-pool volume made from an image: the image the agent fetches from the
  // controller (checked against its SHA-256 and size) and copies into the volume.
  std::string image;
  std::string image_sha256;
  std::uint64_t image_size = 0;
  std::string image_format;  // raw or qcow2
  bool operator==(const DomainDisk&) const = default;
};

// A NIC on a host bridge (<interface type='bridge'>).
struct DomainNic {
  std::string mac;
  std::string bridge;
  NicModel model = NicModel::virtio;
  int mtu = 0;  // 0: the bridge's
  bool operator==(const DomainNic&) const = default;
};

struct DomainSpec {
  std::string uuid;
  std::string name;
  int vcpus = 1;
  std::int64_t memory_mib = 0;
  std::string domain_type = "kvm";  // "kvm" or "qemu" (TCG)
  std::int64_t generation = 1;
  std::vector<DomainDisk> disks;
  std::vector<DomainNic> nics;
  // An ISO image attached read-only (hdc on IDE), fetched as a disk's image is.
  std::optional<CdromSpec> cdrom;
  std::vector<BootDevice> boot;  // empty: disk, then cdrom
  // Made into a NoCloud seed ISO (label cidata) by the agent and attached as a second
  // CD-ROM (hdd), rebuilt wherever the domain is defined.
  std::optional<CloudInit> cloud_init;
  bool operator==(const DomainSpec&) const = default;
};

// Resolves a VM into the spec an agent defines (disk volume names, target devices).
DomainSpec domain_spec_for(const Vm& vm, const std::string& domain_type);

}  // namespace kvmfleet
