#pragma once

// Strict checks on a migration request. The URIs reach libvirt, which would happily
// follow a URI to any transport (ssh, unix sockets, other drivers): only the shapes
// kvmfleet uses pass, and they are checked before libvirt sees them.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/migration.hpp"

namespace kvmfleet::agent {

inline constexpr std::int64_t kMinMaxDowntimeMs = 1;
inline constexpr std::int64_t kMaxMaxDowntimeMs = 600'000;
inline constexpr std::int64_t kMaxBandwidthMibS = 100'000;
inline constexpr std::int64_t kMaxConvergeTimeoutS = 86'400;

// A dotted-quad IPv4 address or a DNS name (labels of [A-Za-z0-9-], no leading or
// trailing '-', at most 253 characters).
bool is_valid_network_host(std::string_view host);
// qemu+tcp://HOST/system or qemu+tls://HOST/system.
bool is_valid_destination_uri(std::string_view uri);
// tcp://HOST or tcp://HOST:PORT.
bool is_valid_migrate_uri(std::string_view uri);

Status validate_migration_request(const MigrationRequest& request);

// Whether a domain's disks (as its XML describes them) can be reached from the
// destination: a file disk lives in this host's image pool and is refused (conflict,
// details "disks"); block-device disks are shared storage (written with cache='none',
// which libvirt requires of a shared disk to call the migration safe) and pass.
// CD-ROMs are files too: each passes when `media` names its counterpart on the
// destination (the seed, <uuid>-seed.iso, by media.seed; the ISO by media.cdrom), else
// conflict with details.reason "boot_media_not_prepared". Returns each CD-ROM's file
// here and the destination's file for it, in the domain's order.
using CdromMoves = std::vector<std::pair<std::string, std::string>>;
Result<CdromMoves> check_disks_migrate_live(const std::string& uuid, const DomainXmlInfo& domain,
                                            const MigrationMedia& media = {});

// Parses the body of a migrate request (op_id is the caller's business): unknown
// fields, wrong types and out of range values are invalid_argument errors naming the
// field.
Result<MigrationRequest> parse_migration_request(const nlohmann::json& body);

}  // namespace kvmfleet::agent
