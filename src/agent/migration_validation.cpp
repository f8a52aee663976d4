#include "kvmfleet/agent/migration_validation.hpp"

#include <algorithm>

#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::agent {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_ipv4(std::string_view s) {
  int parts = 0;
  while (true) {
    std::size_t n = 0;
    int value = 0;
    while (n < s.size() && is_digit(s[n])) {
      value = value * 10 + (s[n] - '0');
      if (++n > 3) return false;
    }
    // No empty parts, no leading zeros (some parsers read them as octal), 0-255.
    if (n == 0 || (n > 1 && s[0] == '0') || value > 255) return false;
    ++parts;
    s.remove_prefix(n);
    if (s.empty()) return parts == 4;
    if (s[0] != '.' || parts == 4) return false;
    s.remove_prefix(1);
  }
}

bool is_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  bool all_numeric = true;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t end = s.find('.', start);
    if (end == std::string_view::npos) end = s.size();
    const auto label = s.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label) {
      const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!alpha && !is_digit(c) && c != '-') return false;
      if (!is_digit(c) && c != '.') all_numeric = false;
    }
    start = end + 1;
  }
  // "10.0.0.256" is a bad address, not a name.
  return !all_numeric;
}

bool is_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || s[0] == '0') return false;
  int value = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    value = value * 10 + (c - '0');
  }
  return value >= 1 && value <= 65'535;
}

}  // namespace

bool is_valid_network_host(std::string_view host) {
  return is_ipv4(host) || is_dns_name(host);
}

bool is_valid_destination_uri(std::string_view uri) {
  constexpr std::string_view kSuffix = "/system";
  for (std::string_view scheme : {"qemu+tcp://", "qemu+tls://"}) {
    if (!uri.starts_with(scheme) || !uri.ends_with(kSuffix)) continue;
    if (uri.size() < scheme.size() + kSuffix.size()) return false;
    return is_valid_network_host(
        uri.substr(scheme.size(), uri.size() - scheme.size() - kSuffix.size()));
  }
  return false;
}

bool is_valid_migrate_uri(std::string_view uri) {
  constexpr std::string_view kScheme = "tcp://";
  if (!uri.starts_with(kScheme)) return false;
  auto rest = uri.substr(kScheme.size());
  if (auto colon = rest.find(':'); colon != std::string_view::npos) {
    if (!is_port(rest.substr(colon + 1))) return false;
    rest = rest.substr(0, colon);
  }
  return is_valid_network_host(rest);
}

Status validate_migration_request(const MigrationRequest& r) {
  if (!is_valid_destination_uri(r.destination_uri))
    return invalid("destination_uri must be qemu+tcp://HOST/system or qemu+tls://HOST/system",
                   {{"field", "destination_uri"}});
  if (!is_valid_migrate_uri(r.migrate_uri))
    return invalid("migrate_uri must be tcp://HOST or tcp://HOST:PORT", {{"field", "migrate_uri"}});
  if (r.policy.max_downtime_ms < kMinMaxDowntimeMs || r.policy.max_downtime_ms > kMaxMaxDowntimeMs)
    return invalid("max_downtime_ms must be between 1 and 600000", {{"field", "max_downtime_ms"}});
  if (r.policy.bandwidth_mib_s < 0 || r.policy.bandwidth_mib_s > kMaxBandwidthMibS)
    return invalid("bandwidth_mib_s must be between 0 and 100000", {{"field", "bandwidth_mib_s"}});
  if (r.policy.converge_timeout_s < 0 || r.policy.converge_timeout_s > kMaxConvergeTimeoutS)
    return invalid("converge_timeout_s must be between 0 and 86400",
                   {{"field", "converge_timeout_s"}});
  if (r.policy.downtime_ceiling_ms < r.policy.max_downtime_ms ||
      r.policy.downtime_ceiling_ms > kMaxMaxDowntimeMs)
    return invalid("downtime_ceiling_ms must be between max_downtime_ms and 600000",
                   {{"field", "downtime_ceiling_ms"}});
  return {};
}

Result<CdromMoves> check_disks_migrate_live(const std::string& uuid, const DomainXmlInfo& domain,
                                            const MigrationMedia& media) {
  const auto is_cdrom = [&](const std::string& path) {
    return std::find(domain.cdrom_sources.begin(), domain.cdrom_sources.end(), path) !=
           domain.cdrom_sources.end();
  };
  nlohmann::json local = nlohmann::json::array();
  for (const auto& path : domain.disk_sources)
    if (!is_cdrom(path)) local.push_back(path);
  if (local.empty()) {
    CdromMoves moves;
    nlohmann::json missing = nlohmann::json::array();
    const std::string seed_suffix = "/" + uuid + "-seed.iso";
    for (const auto& path : domain.cdrom_sources) {
      const bool seed = path.ends_with(seed_suffix);
      const std::string& there = seed ? media.seed : media.cdrom;
      if (there.empty())
        missing.push_back(path);
      else
        moves.emplace_back(path, there);
    }
    if (missing.empty()) return moves;
    return conflict("domain " + uuid +
                        "'s CD-ROMs are files of this host; the destination must prepare "
                        "them first (media_prepare) and the request name them",
                    {{"uuid", uuid}, {"reason", "boot_media_not_prepared"}, {"cdroms", missing}});
  }
  return conflict("domain " + uuid +
                      " has disks in this host's image pool, which no other host can reach; "
                      "only domains whose disks are block devices on shared storage (or that "
                      "have no disks) migrate live",
                  {{"uuid", uuid}, {"disks", std::move(local)}});
}

namespace {

// A CD-ROM's file on the destination, as its agent answered: absolute and printable.
bool is_media_path(std::string_view p) {
  if (p.empty() || p.front() != '/' || p.size() > 4096) return false;
  for (unsigned char c : p)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

Result<MigrationRequest> parse_migration_request(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, agent_protocol::kMigrate.fields); !st)
    return st.take_error();
  MigrationRequest r;
  auto dest = get_string(body, "destination_uri", true);
  if (!dest) return dest.take_error();
  r.destination_uri = std::move(*dest);
  auto mig = get_string(body, "migrate_uri", true);
  if (!mig) return mig.take_error();
  r.migrate_uri = std::move(*mig);
  const MigrationPolicy defaults;
  auto downtime = get_int(body, "max_downtime_ms", false, defaults.max_downtime_ms,
                          kMinMaxDowntimeMs, kMaxMaxDowntimeMs);
  if (!downtime) return downtime.take_error();
  r.policy.max_downtime_ms = *downtime;
  auto bw = get_int(body, "bandwidth_mib_s", false, defaults.bandwidth_mib_s, 0, kMaxBandwidthMibS);
  if (!bw) return bw.take_error();
  r.policy.bandwidth_mib_s = *bw;
  auto ac = get_bool(body, "auto_converge", defaults.auto_converge);
  if (!ac) return ac.take_error();
  r.policy.auto_converge = *ac;
  auto pc = get_bool(body, "allow_post_copy", defaults.allow_post_copy);
  if (!pc) return pc.take_error();
  r.policy.allow_post_copy = *pc;
  auto budget = get_int(body, "converge_timeout_s", false, defaults.converge_timeout_s, 0,
                        kMaxConvergeTimeoutS);
  if (!budget) return budget.take_error();
  r.policy.converge_timeout_s = *budget;
  // Unless given, the ceiling is never below the downtime asked for.
  auto ceiling = get_int(body, "downtime_ceiling_ms", false,
                         std::max(defaults.downtime_ceiling_ms, r.policy.max_downtime_ms),
                         kMinMaxDowntimeMs, kMaxMaxDowntimeMs);
  if (!ceiling) return ceiling.take_error();
  r.policy.downtime_ceiling_ms = *ceiling;
  for (auto [field, out] : {std::pair<const char*, std::string*>{"cdrom_path", &r.media.cdrom},
                            std::pair<const char*, std::string*>{"seed_path", &r.media.seed}}) {
    auto path = get_string(body, field, false);
    if (!path) return path.take_error();
    if (!path->empty() && !is_media_path(*path))
      return invalid(std::string(field) + " must be an absolute path", {{"field", field}});
    *out = std::move(*path);
  }
  if (auto st = validate_migration_request(r); !st) return st.take_error();
  return r;
}

}  // namespace kvmfleet::agent
