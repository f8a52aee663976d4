#include "kvmfleet/storage/storage_names.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace kvmfleet::storage {
namespace {

bool lvm_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '_' || c == '.' ||
         c == '-';
}

Status check_lvm_name(std::string_view field, std::string_view name) {
  if (name.empty()) return invalid(std::string(field) + " is empty");
  if (name.size() > 127) return invalid(std::string(field) + " is longer than 127 characters");
  if (name.front() == '-') return invalid(std::string(field) + " must not start with '-'");
  if (name == "." || name == "..") return invalid(std::string(field) + " must not be . or ..");
  for (char c : name) {
    if (!lvm_name_char(c)) {
      return invalid(std::string(field) + " may hold only letters, digits and + _ . -",
                     {{"field", std::string(field)}});
    }
  }
  return ok_status();
}

bool all_hex(std::string_view s) {
  for (char c : s) {
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) return false;
  }
  return true;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c)) == 0) return false;
  }
  return true;
}

// A DNS label: letters, digits, '-', not at either end, 1..63.
bool dns_label(std::string_view l) {
  if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
  for (char c : l) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-') return false;
  }
  return true;
}

template <typename F>
bool each_part(std::string_view s, char sep, F f) {
  while (true) {
    auto pos = s.find(sep);
    if (!f(s.substr(0, pos))) return false;
    if (pos == std::string_view::npos) return true;
    s.remove_prefix(pos + 1);
  }
}

bool ipv4(std::string_view s) {
  int parts = 0;
  bool ok = each_part(s, '.', [&](std::string_view p) {
    ++parts;
    if (!all_digits(p) || p.size() > 3 || (p.size() > 1 && p.front() == '0')) return false;
    int v = 0;
    std::from_chars(p.data(), p.data() + p.size(), v);
    return v <= 255;
  });
  return ok && parts == 4;
}

bool dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  return each_part(s, '.', dns_label);
}

bool ipv6(std::string_view s) {
  if (s.size() < 2 || s.size() > 45) return false;
  for (char c : s) {
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0 && c != ':' && c != '.') return false;
  }
  return s.find(':') != std::string_view::npos;
}

}  // namespace

Status check_vg_name(std::string_view name) {
  if (auto s = check_lvm_name("VG name", name); !s) return s;
  // LVM keeps /dev/VG for a VG; these would clash with what is already there.
  for (std::string_view reserved : {"lvm", "mapper", "disk", "block"}) {
    if (name == reserved) return invalid("VG name " + std::string(name) + " is reserved");
  }
  return ok_status();
}

Status check_lv_name(std::string_view name) {
  if (auto s = check_lvm_name("LV name", name); !s) return s;
  for (std::string_view prefix : {"snapshot", "pvmove"}) {
    if (name.substr(0, prefix.size()) == prefix) {
      return invalid("LV names starting with " + std::string(prefix) + " are reserved by LVM");
    }
  }
  if (name == "lvmlock") return invalid("LV name lvmlock is reserved by lvmlockd");
  static constexpr std::array<std::string_view, 12> kReservedParts{
      "_cdata",  "_cmeta", "_corig", "_mlog",  "_mimage",  "_pmspare",
      "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata"};
  for (auto part : kReservedParts) {
    if (name.find(part) != std::string_view::npos) {
      return invalid("LV names containing " + std::string(part) + " are reserved by LVM");
    }
  }
  return ok_status();
}

Status check_size_bytes(std::string_view field, std::uint64_t bytes) {
  if (bytes == 0) return invalid(std::string(field) + " must be greater than 0");
  if (bytes % 512 != 0) return invalid(std::string(field) + " must be a multiple of 512 bytes");
  if (bytes > kMaxVolumeBytes) {
    return invalid(std::string(field) + " must be at most " + std::to_string(kMaxVolumeBytes) +
                   " bytes");
  }
  return ok_status();
}

Status check_iscsi_name(std::string_view name) {
  if (name.empty() || name.size() > 223) return invalid("iSCSI name must be 1..223 bytes");
  for (char c : name) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return invalid("iSCSI name holds whitespace or control characters");
    }
  }
  auto starts = [&](std::string_view p) { return name.substr(0, p.size()) == p; };
  if (starts("eui.")) {
    auto hex = name.substr(4);
    if (hex.size() == 16 && all_hex(hex)) return ok_status();
    return invalid("eui. names need exactly 16 hex digits");
  }
  if (starts("naa.")) {
    auto hex = name.substr(4);
    if ((hex.size() == 16 || hex.size() == 32) && all_hex(hex)) return ok_status();
    return invalid("naa. names need 16 or 32 hex digits");
  }
  if (!starts("iqn.")) return invalid("iSCSI name must start with iqn., eui. or naa.");
  // iqn.yyyy-mm.reversed.domain[:identifier]
  auto rest = name.substr(4);
  if (rest.size() < 8 || !all_digits(rest.substr(0, 4)) || rest[4] != '-' ||
      !all_digits(rest.substr(5, 2)) || rest[7] != '.') {
    return invalid("an IQN must start with iqn.yyyy-mm.");
  }
  int month = (rest[5] - '0') * 10 + (rest[6] - '0');
  if (month < 1 || month > 12) return invalid("an IQN's month must be 01..12");
  rest.remove_prefix(8);
  auto colon = rest.find(':');
  auto domain = rest.substr(0, colon);
  // The naming authority is a reversed DNS name; RFC 3720 names are lowercase.
  for (char c : domain) {
    if (std::isupper(static_cast<unsigned char>(c)) != 0) {
      return invalid("an IQN's naming authority must be lowercase");
    }
  }
  if (!dns_name(domain)) return invalid("an IQN needs a reversed domain name after the date");
  if (colon != std::string_view::npos) {
    auto id = rest.substr(colon + 1);
    if (id.empty()) return invalid("an IQN's identifier after ':' is empty");
    for (char c : id) {
      if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '.' && c != ':' &&
          c != '_') {
        return invalid("an IQN's identifier may hold only letters, digits and - . : _");
      }
    }
  }
  return ok_status();
}

Result<std::string> normalize_portal(std::string_view portal) {
  if (portal.empty() || portal.size() > 300) return invalid("portal must be host[:port]");
  std::string_view host = portal;
  std::string_view port;
  bool bracketed = false;
  if (portal.front() == '[') {
    auto close = portal.find(']');
    if (close == std::string_view::npos) return invalid("portal: unclosed '['");
    host = portal.substr(1, close - 1);
    bracketed = true;
    auto after = portal.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("portal: expected ':' after ']'");
      port = after.substr(1);
      if (port.empty()) return invalid("portal: empty port");
    }
    if (!ipv6(host)) return invalid("portal: bad IPv6 address");
  } else {
    auto colon = portal.rfind(':');
    if (colon != std::string_view::npos) {
      host = portal.substr(0, colon);
      port = portal.substr(colon + 1);
      if (port.empty()) return invalid("portal: empty port");
    }
    if (!ipv4(host) && !(dns_name(host) && !all_digits(host.substr(host.rfind('.') + 1)))) {
      return invalid("portal: host must be an IPv4 address, a DNS name or [IPv6]");
    }
  }
  int port_number = 3260;
  if (!port.empty()) {
    if (!all_digits(port) || port.size() > 5) return invalid("portal: port must be 1..65535");
    std::from_chars(port.data(), port.data() + port.size(), port_number);
    if (port_number < 1 || port_number > 65535) return invalid("portal: port must be 1..65535");
  }
  std::string out = bracketed ? "[" + std::string(host) + "]" : std::string(host);
  return out + ":" + std::to_string(port_number);
}

Status check_wwid(std::string_view wwid) {
  const bool ok = !wwid.empty() && wwid.size() <= 64 &&
                  std::all_of(wwid.begin(), wwid.end(),
                              [](unsigned char ch) { return std::isxdigit(ch) != 0 || ch == 'x'; });
  if (!ok) return invalid("a WWID is 1-64 hex digits (\"0x\" allowed)");
  return {};
}

Status check_device_path(std::string_view path) {
  if (path.size() < 6 || path.size() > 4096 || path.substr(0, 5) != "/dev/") {
    return invalid("device path must be an absolute path under /dev/");
  }
  for (char c : path) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) != 0;
    for (char allowed : std::string_view("/_.:+@=,#-")) ok = ok || c == allowed;
    if (!ok) return invalid("device path holds a character LVM's filter cannot take");
  }
  if (path.find("..") != std::string_view::npos || path.find("//") != std::string_view::npos ||
      path.back() == '/') {
    return invalid("device path must be a plain path (no '..', '//' or trailing '/')");
  }
  return ok_status();
}

Result<LvPath> parse_lv_path(std::string_view path) {
  constexpr std::string_view kDev = "/dev/";
  if (!path.starts_with(kDev)) return invalid("device must be /dev/VG/LV");
  const std::string_view rest = path.substr(kDev.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return invalid("device must be /dev/VG/LV");
  const std::string_view vg = rest.substr(0, slash), lv = rest.substr(slash + 1);
  if (auto s = check_vg_name(vg); !s)
    return invalid("device must be /dev/VG/LV: " + s.error().message);
  if (auto s = check_lv_name(lv); !s)
    return invalid("device must be /dev/VG/LV: " + s.error().message);
  return LvPath{std::string(vg), std::string(lv)};
}

}  // namespace kvmfleet::storage
