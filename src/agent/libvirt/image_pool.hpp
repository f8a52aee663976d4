#pragma once

// The image pool: a libvirt directory pool on this host that holds the qcow2 volumes of
// domains' local disks. It is defined and started on first use. Block-device disks
// (shared volumes) are never its business: they are only referenced.

#include <libvirt/libvirt.h>

#include <mutex>
#include <string>
#include <vector>

#include "connection.hpp"
#include "handles.hpp"
#include "kvmfleet/agent/boot_media.hpp"
#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"

namespace kvmfleet::agent::libvirt {

class ImagePool {
 public:
  // `media`: makes disks from images, CD-ROMs and seeds; null: a domain that needs them
  // is refused.
  ImagePool(std::string name, std::string path, Connection& connection, BootMedia* media);

  // The source of each disk of `spec`, in its order: the path of its image-pool volume,
  // made now when missing (from its image when it has one), or its block device as it
  // is (it need not exist yet).
  Result<std::vector<std::string>> disk_sources(virConnectPtr c, const DomainSpec& spec);

  // The files of the domain's CD-ROMs: its ISO fetched when missing, its cloud-init
  // seed written anew.
  Result<BootMediaPaths> boot_media(virConnectPtr c, const DomainSpec& spec);

  // Removes the seed of `uuid` and the file `cdrom` (a cached ISO; empty: none) when
  // they exist; the paths removed. The caller has checked that nothing uses them.
  Result<std::vector<std::string>> remove_media(virConnectPtr c, const std::string& uuid,
                                                const std::string& cdrom);
  // Where this host keeps the cached ISO of `sha256`; empty without boot media.
  std::string cached_image_path(const std::string& sha256) const {
    return media_ ? media_->cached_image_path(sha256) : std::string();
  }

  // Deletes the volumes of a domain: the files it referenced inside the pool, plus any
  // pool volume named after its uuid (covers a retry after the domain is gone).
  Status remove_volumes(virConnectPtr c, const std::string& uuid,
                        const std::vector<std::string>& sources);

 private:
  Result<PoolHandle> ensure_pool(virConnectPtr c);
  Result<std::string> ensure_volume(virStoragePoolPtr pool, const DomainDisk& disk);

  std::string name_;
  std::string path_;
  Connection& connection_;
  BootMedia* media_;
  // Defining, starting and listing the pool are not safe to interleave.
  std::mutex mu_;
};

}  // namespace kvmfleet::agent::libvirt
