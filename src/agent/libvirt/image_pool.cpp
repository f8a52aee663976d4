#include "image_pool.hpp"

#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "errors.hpp"
#include "kvmfleet/agent/storage_xml.hpp"

namespace kvmfleet::agent::libvirt {

ImagePool::ImagePool(std::string name, std::string path, Connection& connection, BootMedia* media)
    : name_(std::move(name)), path_(std::move(path)), connection_(connection), media_(media) {}

Result<BootMediaPaths> ImagePool::boot_media(virConnectPtr c, const DomainSpec& spec) {
  BootMediaPaths paths;
  if (!spec.cdrom && !spec.cloud_init) return paths;
  if (!media_)
    return invalid("this host makes no CD-ROMs or cloud-init seeds (no controller link)",
                   {{"field", "spec"}});
  auto pool = ensure_pool(c);  // the directory the seed goes in
  if (!pool) return pool.take_error();
  if (spec.cdrom) {
    auto iso = media_->cdrom(*spec.cdrom);
    if (!iso) return iso.take_error();
    paths.cdrom = std::move(*iso);
  }
  if (spec.cloud_init) {
    auto seed = media_->make_seed(spec);
    if (!seed) return seed.take_error();
    paths.seed = std::move(*seed);
    // So that undefining with its volumes finds it as one of the domain's.
    if (virStoragePoolRefresh(pool->get(), 0) < 0)
      spdlog::debug("{}", last_libvirt_error("refreshing pool " + name_).message);
  }
  return paths;
}

Result<std::vector<std::string>> ImagePool::remove_media(virConnectPtr c, const std::string& uuid,
                                                         const std::string& cdrom) {
  std::vector<std::string> removed;
  if (!media_) return removed;
  bool seed_removed = false;
  for (const std::string& path : {media_->seed_path(uuid), cdrom}) {
    if (path.empty()) continue;
    if (::unlink(path.c_str()) == 0) {
      spdlog::info("removed {}", path);
      seed_removed = seed_removed || path == media_->seed_path(uuid);
      removed.push_back(path);
    } else if (errno != ENOENT) {
      return internal_error("cannot remove " + path + ": " + std::strerror(errno));
    }
  }
  // The seed was one of the pool's volumes: the pool forgets it.
  if (seed_removed) {
    std::lock_guard lk(mu_);
    if (PoolHandle pool(virStoragePoolLookupByName(c, name_.c_str()));
        pool && virStoragePoolIsActive(pool.get()) == 1 && virStoragePoolRefresh(pool.get(), 0) < 0)
      spdlog::debug("{}", last_libvirt_error("refreshing pool " + name_).message);
  }
  return removed;
}

Result<std::vector<std::string>> ImagePool::disk_sources(virConnectPtr c, const DomainSpec& spec) {
  std::vector<std::string> sources;
  const bool pool_disks = std::any_of(spec.disks.begin(), spec.disks.end(),
                                      [](const DomainDisk& d) { return d.block_device.empty(); });
  PoolHandle pool;
  if (pool_disks) {
    auto p = ensure_pool(c);
    if (!p) return p.take_error();
    pool = std::move(*p);
  }
  for (const auto& disk : spec.disks) {
    if (!disk.block_device.empty()) {
      sources.push_back(disk.block_device);
      continue;
    }
    auto path = ensure_volume(pool.get(), disk);
    if (!path) return path.take_error();
    sources.push_back(std::move(*path));
  }
  return sources;
}

Result<PoolHandle> ImagePool::ensure_pool(virConnectPtr c) {
  std::lock_guard lk(mu_);
  PoolHandle pool(virStoragePoolLookupByName(c, name_.c_str()));
  if (!pool) {
    if (last_libvirt_error_code() != VIR_ERR_NO_STORAGE_POOL)
      return connection_.failed("looking up storage pool " + name_);
    auto xml = write_dir_pool_xml(name_, path_);
    if (!xml) return xml.take_error();
    pool.reset(virStoragePoolDefineXML(c, xml->c_str(), 0));
    if (!pool) return connection_.failed("defining storage pool " + name_);
    if (virStoragePoolSetAutostart(pool.get(), 1) < 0)
      spdlog::warn("{}", last_libvirt_error("marking pool " + name_ + " autostart").message);
    spdlog::info("defined storage pool {} at {}", name_, path_);
  } else if (CString pxml(virStoragePoolGetXMLDesc(pool.get(), 0)); pxml) {
    if (auto path = read_pool_target_path(pxml.get()); path && *path != path_)
      spdlog::warn("storage pool {} is at {}, not the configured {}", name_, *path, path_);
  }
  const int active = virStoragePoolIsActive(pool.get());
  if (active < 0) return connection_.failed("reading storage pool " + name_);
  if (active == 0) {
    // Build makes the directory; it fails harmlessly when the directory exists.
    if (virStoragePoolBuild(pool.get(), 0) < 0)
      spdlog::debug("{}", last_libvirt_error("building pool " + name_).message);
    if (virStoragePoolCreate(pool.get(), 0) < 0)
      return connection_.failed("starting storage pool " + name_);
  }
  return pool;
}

Result<std::string> ImagePool::ensure_volume(virStoragePoolPtr pool, const DomainDisk& disk) {
  VolHandle vol(virStorageVolLookupByName(pool, disk.volume.c_str()));
  if (!vol && !disk.image.empty()) {
    if (last_libvirt_error_code() != VIR_ERR_NO_STORAGE_VOL)
      return connection_.failed("looking up volume " + disk.volume);
    if (!media_)
      return invalid("this host makes no disks from images (no controller link)",
                     {{"field", "spec.disks"}});
    // Made beside the pool's back, under its final name only once complete; the pool
    // then learns of it.
    if (auto st = media_->make_disk(disk, path_ + "/" + disk.volume); !st) return st.take_error();
    if (virStoragePoolRefresh(pool, 0) < 0) return connection_.failed("refreshing pool " + name_);
    vol.reset(virStorageVolLookupByName(pool, disk.volume.c_str()));
    if (!vol) return connection_.failed("looking up volume " + disk.volume);
  }
  if (!vol) {
    if (last_libvirt_error_code() != VIR_ERR_NO_STORAGE_VOL)
      return connection_.failed("looking up volume " + disk.volume);
    auto xml = write_qcow2_volume_xml(disk.volume, static_cast<std::uint64_t>(disk.size_gib) << 30);
    if (!xml) return xml.take_error();
    vol.reset(virStorageVolCreateXML(pool, xml->c_str(), 0));
    if (!vol) {
      auto err = connection_.failed("creating volume " + disk.volume);
      // The file may exist without the pool knowing it yet.
      if (virStoragePoolRefresh(pool, 0) == 0)
        vol.reset(virStorageVolLookupByName(pool, disk.volume.c_str()));
      if (!vol) return err;
    } else {
      spdlog::info("created volume {} ({} GiB)", disk.volume, disk.size_gib);
    }
  }
  CString path(virStorageVolGetPath(vol.get()));
  if (!path) return connection_.failed("reading the path of volume " + disk.volume);
  return std::string(path.get());
}

Status ImagePool::remove_volumes(virConnectPtr c, const std::string& uuid,
                                 const std::vector<std::string>& sources) {
  std::lock_guard lk(mu_);
  PoolHandle pool(virStoragePoolLookupByName(c, name_.c_str()));
  if (!pool) {
    if (last_libvirt_error_code() == VIR_ERR_NO_STORAGE_POOL) return {};
    return connection_.failed("looking up storage pool " + name_);
  }
  if (virStoragePoolIsActive(pool.get()) != 1) return {};
  virStorageVolPtr* vols = nullptr;
  const int n = virStoragePoolListAllVolumes(pool.get(), &vols, 0);
  if (n < 0) return connection_.failed("listing volumes of pool " + name_);
  std::vector<VolHandle> all;
  for (int i = 0; i < n; ++i) all.emplace_back(vols[i]);
  std::free(vols);
  const std::string prefix = uuid + "-";
  for (auto& vol : all) {
    const char* name = virStorageVolGetName(vol.get());
    CString path(virStorageVolGetPath(vol.get()));
    const bool named_after = name && std::string_view(name).starts_with(prefix);
    const bool referenced =
        path && std::find(sources.begin(), sources.end(), path.get()) != sources.end();
    if (!named_after && !referenced) continue;
    if (virStorageVolDelete(vol.get(), 0) < 0)
      return connection_.failed("deleting volume " + std::string(name ? name : "?"));
    spdlog::info("deleted volume {}", name ? name : "?");
  }
  return {};
}

}  // namespace kvmfleet::agent::libvirt
