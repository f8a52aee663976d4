#pragma once

// What a domain boots from besides blank disks (docs/images.md): disks made from the
// controller's images, an ISO as a CD-ROM, and a cloud-init NoCloud seed. The image's
// data comes from the controller in pieces (ImageSource), is checked against the
// SHA-256 and size in the domain's spec and kept once per image in the image pool's
// cache; disks are made from it and seeds are written by programs run by argument
// vector (DiskTool). Each file appears under its final name only once it is complete.

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace kvmfleet::http {
class Client;
}

namespace kvmfleet::agent {

// Pieces of a ready image's data.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // Up to `length` bytes of the image's data from `offset` (fewer only at its end).
  virtual Result<std::string> read(const std::string& image, std::uint64_t offset,
                                   std::size_t length) = 0;
};

// The controller's GET /v1/agent/images/{image}/data?offset=&length=, with this host's
// agent token.
class ControllerImageSource final : public ImageSource {
 public:
  ControllerImageSource(http::Client& client, std::string controller_url, std::string token);
  Result<std::string> read(const std::string& image, std::uint64_t offset,
                           std::size_t length) override;

 private:
  http::Client& client_;
  std::string controller_url_;
  std::string token_;
};

// The programs that make disks and seeds.
class DiskTool {
 public:
  virtual ~DiskTool() = default;
  // A new qcow2 at `target` holding the image at `source` (format raw or qcow2, given:
  // never probed), grown to `size_bytes`.
  virtual Status make_disk(const std::string& source, const std::string& format,
                           const std::string& target, std::uint64_t size_bytes) = 0;
  // An ISO 9660 (Joliet + Rock Ridge) at `target`, volume label `label`, holding the
  // files named in `files` (absolute paths) at its root.
  virtual Status make_iso(const std::string& label, const std::vector<std::string>& files,
                          const std::string& target) = 0;
};

// qemu-img convert + resize, and genisoimage.
class CommandDiskTool final : public DiskTool {
 public:
  explicit CommandDiskTool(ProcessRunner& runner) : runner_(runner) {}
  Status make_disk(const std::string& source, const std::string& format, const std::string& target,
                   std::uint64_t size_bytes) override;
  Status make_iso(const std::string& label, const std::vector<std::string>& files,
                  const std::string& target) override;

 private:
  ProcessRunner& runner_;
};

// Images fetched once per host: <dir>/<sha256>.img, mode 0600.
class ImageCache {
 public:
  ImageCache(std::string dir, ImageSource& source, std::size_t piece_bytes = 4u << 20);
  // The path of the image's data, fetched now when missing: pieces written to a .part
  // file as they come and hashed on the way; kept only when its size and SHA-256 are
  // the ones given (else unavailable, details.reason image_checksum_mismatch, and
  // nothing is kept).
  Result<std::string> ensure(const std::string& image, const std::string& sha256,
                             std::uint64_t size);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  ImageSource& source_;
  std::size_t piece_bytes_;
  std::mutex mu_;  // one fetch at a time: two domains from one image fetch it once
};

class BootMedia {
 public:
  BootMedia(std::string pool_dir, ImageCache& cache, DiskTool& tool);
  // Makes `path` from the disk's image unless it exists: the image fetched, then
  // converted into `path`.part and renamed.
  Status make_disk(const DomainDisk& disk, const std::string& path);
  // The cached ISO of the domain's CD-ROM.
  Result<std::string> cdrom(const CdromSpec& cdrom);
  // Writes the domain's NoCloud seed (label cidata: user-data, meta-data and
  // network-config when given) to <pool>/<uuid>-seed.iso, anew each time (the spec is
  // the truth on every host), and returns its path. Files are 0600 and removed.
  Result<std::string> make_seed(const DomainSpec& spec);
  static std::string seed_name(const std::string& uuid) { return uuid + "-seed.iso"; }
  // Where the seed of `uuid` and the cached ISO of `sha256` are on this host.
  std::string seed_path(const std::string& uuid) const { return pool_dir_ + "/" + seed_name(uuid); }
  std::string cached_image_path(const std::string& sha256) const {
    return cache_.dir() + "/" + sha256 + ".img";
  }

 private:
  std::string pool_dir_;
  ImageCache& cache_;
  DiskTool& tool_;
};

}  // namespace kvmfleet::agent
