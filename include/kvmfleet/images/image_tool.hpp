#pragma once

// qemu-img, behind one interface: what an image file is (its format, its size, whether
// it refers to any other file), read without trusting the file.

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace kvmfleet::images {

class ImageTool {
 public:
  virtual ~ImageTool() = default;
  // What `qemu-img info --output=json` prints for the file at `path` (an absolute path
  // kvmfleet made), unparsed: check_image_info reads it.
  virtual Result<std::string> info_json(const std::string& path) = 0;
};

// The real one: qemu-img run by argument vector through the process runner. qemu-img
// info opens an image without its backing chain, so a crafted image cannot make it
// read another file; check_image_info then refuses any image that refers to one.
class QemuImgTool final : public ImageTool {
 public:
  explicit QemuImgTool(ProcessRunner& runner) : runner_(runner) {}
  Result<std::string> info_json(const std::string& path) override;

 private:
  ProcessRunner& runner_;
};

// An image as kvmfleet accepts it.
struct ImageInfo {
  std::string format;  // raw, qcow2 or iso (raw with an ISO 9660 signature)
  std::uint64_t virtual_size = 0;
};

// Reads qemu-img info's JSON. Only raw and qcow2 are accepted, and nothing that refers
// to another file: a backing file, an external data file, any child but the image's own
// file. Refusals are invalid_argument with a stable details.reason: unreadable_image,
// unsupported_format, backing_file, data_file, external_reference, encrypted, corrupt,
// unsupported_feature. `iso_signature`: the file carries ISO 9660's signature (see
// has_iso9660_signature), which makes a raw image an iso.
Result<ImageInfo> check_image_info(std::string_view json_text, bool iso_signature);

// Whether the file at `path` has "CD001" at byte 32769, ISO 9660's first volume
// descriptor.
bool has_iso9660_signature(const std::string& path);

}  // namespace kvmfleet::images
