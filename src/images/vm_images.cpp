#include "kvmfleet/images/vm_images.hpp"

namespace kvmfleet::images {
namespace {

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

Result<Image> ready_image(const ImageService& images, const std::string& name,
                          const std::string& field) {
  auto image = images.get(name);
  if (!image)
    return not_found("no such image",
                     {{"image", name}, {"field", field}, {"reason", "unknown_image"}});
  if (image->state != ImageState::ready)
    return conflict("image has no data yet", {{"image", name},
                                              {"field", field},
                                              {"reason", "image_not_ready"},
                                              {"state", std::string(to_string(image->state))}});
  return image;
}

}  // namespace

Status resolve_vm_images(const ImageService& images, VmSpec& spec) {
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    auto& d = spec.disks[i];
    if (d.image.empty()) continue;
    const std::string field = "disks[" + std::to_string(i) + "].image";
    auto image = ready_image(images, d.image, field);
    if (!image) return image.take_error();
    if (image->format == "iso")
      return invalid("an ISO image is a CD-ROM, not a disk: use cdrom",
                     {{"image", d.image}, {"field", field}, {"reason", "image_format"}});
    const auto image_gib = static_cast<std::int64_t>((image->virtual_size + kGiB - 1) / kGiB);
    if (d.size_gib == 0) {
      d.size_gib = std::max<std::int64_t>(image_gib, 1);
    } else if (static_cast<std::uint64_t>(d.size_gib) * kGiB < image->virtual_size) {
      return invalid("size_gib is smaller than the image",
                     {{"image", d.image},
                      {"field", "disks[" + std::to_string(i) + "].size_gib"},
                      {"reason", "disk_smaller_than_image"},
                      {"virtual_size", image->virtual_size}});
    }
    d.image_sha256 = image->sha256;
    d.image_size = image->size;
    d.image_format = image->format;
  }
  if (spec.cdrom) {
    auto image = ready_image(images, spec.cdrom->image, "cdrom.image");
    if (!image) return image.take_error();
    if (image->format != "iso")
      return invalid(
          "the CD-ROM must be an ISO image",
          {{"image", spec.cdrom->image}, {"field", "cdrom.image"}, {"reason", "image_format"}});
    spec.cdrom->image_sha256 = image->sha256;
    spec.cdrom->image_size = image->size;
  }
  return {};
}

bool uses_image(const VmSpec& spec, const std::string& image) {
  for (const auto& d : spec.disks)
    if (d.image == image) return true;
  return spec.cdrom && spec.cdrom->image == image;
}

}  // namespace kvmfleet::images
