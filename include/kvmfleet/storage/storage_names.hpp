#pragma once

// Checks on every name and number that may reach lvm2 or iscsiadm. They run before
// any program does: a refused value never reaches an argument vector.

#include <cstdint>
#include <string>
#include <string_view>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet::storage {

// LVM's own rules for VG and LV names: [a-zA-Z0-9+_.-], 1..127 characters, not
// starting with '-', not "." or "..". LV names additionally refuse LVM's reserved
// names ("snapshot", "pvmove") and prefixes ("snapshot", "pvmove") and the
// substrings LVM uses for hidden sub-LVs ("_cdata", "_cmeta", "_corig", "_mlog",
// "_mimage", "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin",
// "_vdata"), plus "lvmlock", the LV lvmlockd keeps its leases in.
Status check_vg_name(std::string_view name);
Status check_lv_name(std::string_view name);

// The largest volume kvmfleet asks LVM for (1 PiB): far above any shared LUN, far
// below where a byte count could overflow LVM's arithmetic.
inline constexpr std::uint64_t kMaxVolumeBytes = std::uint64_t{1} << 50;

// A volume or snapshot size: > 0, a multiple of 512, at most kMaxVolumeBytes.
Status check_size_bytes(std::string_view field, std::uint64_t bytes);

// iSCSI names (RFC 3720 3.2.6.3): "iqn." yyyy "-" mm "." reversed domain name,
// optionally ":" and an identifier; "eui." and 16 hex digits; "naa." and 16 or 32
// hex digits. At most 223 bytes, no whitespace or control characters.
Status check_iscsi_name(std::string_view name);

// An iSCSI portal: "host" or "host:port", where host is an IPv4 address, a DNS name
// or a bracketed IPv6 address and port is 1..65535. Returns the portal as host:port
// (3260 when no port was given), which is how iscsiadm prints it back.
Result<std::string> normalize_portal(std::string_view portal);

// A block device path that may go into an LVM filter or an argument vector: an
// absolute path under /dev/, made of [A-Za-z0-9/_.:+@=,#-], no "..", at most 4096
// bytes. ('|' and '"' would break LVM's filter syntax, so they are refused too.)
Status check_device_path(std::string_view path);

// A logical volume's device path in exactly the shape /dev/VG/LV, the VG and LV
// names passing check_vg_name and check_lv_name (so neither can be read as an
// option): its VG and LV names.
struct LvPath {
  std::string vg;
  std::string lv;
};
Result<LvPath> parse_lv_path(std::string_view path);

// A Fibre Channel (or any SCSI) LUN's WWID as /dev/disk/by-id names it: 1-64 hex
// digits, "0x" allowed (the wwn- form).
Status check_wwid(std::string_view wwid);

}  // namespace kvmfleet::storage
