#pragma once

// libvirt domain XML for kvmfleet's VMs. The writer produces a minimal,
// graphics-free definition; the reader recognizes kvmfleet's metadata element in any
// domain XML, which is how the agent tells its own domains from everyone else's.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"

namespace kvmfleet::agent {

inline constexpr const char* kMetadataNamespace = "https://kvmfleet.dev/xmlns/domain/1";
inline constexpr const char* kMetadataPrefix = "kvmfleet";

inline constexpr const char* kGuestAgentChannel = "org.qemu.guest_agent.0";

// `disk_sources[i]` is the file path of spec.disks[i] (the volume's path in the pool).
// A block-device disk (spec.disks[i].block_device) is written as
// <disk type='block'> with a raw, cache='none' driver and the device as its source;
// its entry in `disk_sources` is not used. Every domain gets the QEMU guest agent's
// virtio-serial channel, and a serial console on a pty (SeaBIOS writes to it too);
// with `console_log` (an absolute path) virtlogd keeps everything it shows in that
// file. The spec is validated first; an invalid spec is refused, never escaped.
//
// `media`: the files of the domain's CD-ROMs on this host, attached read-only on IDE
// (machine pc has no other CD-ROM bus): spec.cdrom's ISO as hdc, the cloud-init seed
// next. Each must be given when the spec has a cdrom or cloud_init. The boot order is
// spec.boot's; without one, disk then cdrom when the domain has a CD-ROM image.
struct BootMediaPaths {
  std::string cdrom;  // spec.cdrom's ISO
  std::string seed;   // the NoCloud seed made from spec.cloud_init
};
Result<std::string> write_domain_xml(const DomainSpec& spec,
                                     const std::vector<std::string>& disk_sources,
                                     const BootMediaPaths& media = {},
                                     const std::string& console_log = {});

struct DomainXmlInfo {
  std::string type;  // <domain type=...>
  std::string name;
  std::string uuid;
  bool managed = false;         // carries <kvmfleet:vm>
  std::string vm_id;            // its id attribute
  std::int64_t generation = 0;  // its generation attribute
  // <disk type='file'> source paths, in order: the only disks whose files kvmfleet
  // made (in the image pool) and may delete.
  std::vector<std::string> disk_sources;
  // <disk type='block'> source devices, in order: shared storage, never deleted or
  // wiped by the agent.
  std::vector<std::string> block_sources;
  // The files of its CD-ROMs (also in disk_sources, as files a migration cannot carry).
  std::vector<std::string> cdrom_sources;
  // The MAC address of each <interface>, in order, as libvirt wrote it.
  std::vector<std::string> nic_macs;
};

// One NIC as a device XML of its own (<interface type='bridge'>, as write_domain_xml
// writes it in a domain), for a hot plug. The NIC is validated first.
Result<std::string> write_interface_xml(const DomainNic& nic);
// The <interface> of a domain's XML whose MAC is `mac`, as a device XML of its own (what
// a detach hands libvirt); nullopt when it has none.
Result<std::optional<std::string>> interface_xml_of(std::string_view domain_xml,
                                                    std::string_view mac);
// kvmfleet's metadata element alone (<vm id generation>, without its namespace, which
// virDomainSetMetadata applies), for when a hot plug changes a domain's generation.
Result<std::string> write_metadata_xml(const std::string& uuid, std::int64_t generation);

// A domain's XML (libvirt's, as virDomainGetXMLDesc wrote it) with the source file of
// each CD-ROM in `moves` (its file here → its file elsewhere) replaced: the definition
// a migration's destination gets. A CD-ROM not named keeps its file; a move that names
// no CD-ROM of the domain is an internal error.
Result<std::string> rewrite_cdrom_sources(
    std::string_view xml, const std::vector<std::pair<std::string, std::string>>& moves);

// Reads any domain XML. Malformed metadata (a kvmfleet element without a valid id or
// generation) is an invalid_argument error, so it is never mistaken for either kind.
Result<DomainXmlInfo> read_domain_xml(std::string_view xml);

}  // namespace kvmfleet::agent
