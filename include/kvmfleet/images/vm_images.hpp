#pragma once

// The images a VM is made from (its disks' and its CD-ROM's), resolved against the
// controller's image records when the VM is created: each must exist and be ready, and
// of the right kind; its SHA-256 and size go into the VM's spec so the host that fetches
// it can check what it got.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/images/image_service.hpp"
#include "kvmfleet/model/vm.hpp"

namespace kvmfleet::images {

// Refusals: not_found (details.reason unknown_image), conflict (image_not_ready),
// invalid_argument (image_format: an ISO as a disk or a disk image as the CD-ROM;
// disk_smaller_than_image: size_gib below the image's virtual size). A disk from an
// image without size_gib gets the image's virtual size, rounded up to whole GiB.
Status resolve_vm_images(const ImageService& images, VmSpec& spec);

// Whether a VM's disks or CD-ROM are made from the image. Such an image is not deleted
// (409, details.reason image_in_use): any host that defines the VM later (a cold move,
// an HA restart) fetches it again.
bool uses_image(const VmSpec& spec, const std::string& image);

}  // namespace kvmfleet::images
