#include "kvmfleet/model/network.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"

#include <algorithm>
#include <stdexcept>

namespace kvmfleet {
namespace {

using nlohmann::json;

// The kernel's limit (IFNAMSIZ - 1).
constexpr std::size_t kMaxInterfaceName = 15;

Error bad(std::string message, std::string_view field, std::string_view reason) {
  return invalid(std::move(message),
                 {{"field", std::string(field)}, {"reason", std::string(reason)}});
}

const HostLink* find_link(const std::vector<HostLink>& links, const std::string& name) {
  auto it =
      std::find_if(links.begin(), links.end(), [&](const HostLink& l) { return l.name == name; });
  return it == links.end() ? nullptr : &*it;
}

}  // namespace

bool is_valid_interface_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxInterfaceName) return false;
  if (name == "." || name == ".." || name.front() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    // Printable ASCII only: no whitespace, no control characters, no bytes a terminal
    // or a log would show differently; '/' and ':' the kernel or `ip` refuse or read
    // as an alias.
    return u > 0x20 && u < 0x7f && c != '/' && c != ':' && c != '"' && c != '\'' && c != '\\';
  });
}

Status check_interface_name(std::string_view field, std::string_view name) {
  if (is_valid_interface_name(name)) return {};
  return bad(std::string(field) +
                 " must be a Linux interface name: 1-15 printable characters, no '/', ':', "
                 "quotes or whitespace, not '.' or '..', not starting with '-'",
             field, "invalid_interface_name");
}

std::string Network::vlan_interface() const {
  return vlan ? uplink + "." + std::to_string(*vlan) : std::string();
}

Status validate_network(const Network& n) {
  if (!is_valid_name(n.name))
    return bad("name must match [a-z0-9][a-z0-9-]{0,62}", "name", "invalid_name");
  return validate_network_links(n);
}

Status validate_network_links(const Network& n) {
  if (auto st = check_interface_name("bridge", n.bridge); !st) return st;
  if (n.mtu < kMinMtu || n.mtu > kMaxMtu)
    return bad("mtu must be " + std::to_string(kMinMtu) + "-" + std::to_string(kMaxMtu), "mtu",
               "mtu_out_of_range");
  if (!n.vlan) {
    if (!n.uplink.empty())
      return bad("uplink is only for a VLAN network: give vlan too", "uplink",
                 "uplink_without_vlan");
    return {};
  }
  if (*n.vlan < kMinVlan || *n.vlan > kMaxVlan)
    return bad("vlan must be " + std::to_string(kMinVlan) + "-" + std::to_string(kMaxVlan), "vlan",
               "vlan_out_of_range");
  if (n.uplink.empty())
    return bad("a VLAN network needs the uplink its sub-interface is made on", "uplink",
               "vlan_without_uplink");
  if (auto st = check_interface_name("uplink", n.uplink); !st) return st;
  if (n.uplink == n.bridge)
    return bad("uplink and bridge must differ", "bridge", "bridge_is_uplink");
  const std::string sub = n.vlan_interface();
  if (sub.size() > kMaxInterfaceName)
    return bad("the VLAN sub-interface name " + sub + " is longer than 15 characters", "uplink",
               "vlan_interface_name_too_long");
  if (sub == n.bridge)
    return bad("bridge must not be the VLAN sub-interface " + sub, "bridge", "bridge_is_uplink");
  return {};
}

std::string_view to_string(NicModel m) {
  switch (m) {
    case NicModel::virtio:
      return "virtio";
    case NicModel::e1000:
      return "e1000";
    case NicModel::rtl8139:
      return "rtl8139";
  }
  return "virtio";
}

std::optional<NicModel> nic_model_from_string(std::string_view s) {
  if (s == "virtio") return NicModel::virtio;
  if (s == "e1000") return NicModel::e1000;
  if (s == "rtl8139") return NicModel::rtl8139;
  return std::nullopt;
}

namespace {

// Octets written as two hex digits separated by ':', lowercased; nullopt otherwise.
std::optional<std::string> normalize_octets(std::string_view s, std::size_t octets) {
  if (s.size() != octets * 3 - 1) return std::nullopt;
  std::string out(s);
  for (std::size_t i = 0; i < out.size(); ++i) {
    char& c = out[i];
    if (i % 3 == 2) {
      if (c != ':') return std::nullopt;
      continue;
    }
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return out;
}

bool first_octet_multicast(const std::string& mac) {
  const int v = std::stoi(mac.substr(0, 2), nullptr, 16);
  return (v & 1) != 0;
}

}  // namespace

std::optional<std::string> normalize_mac(std::string_view mac) {
  return normalize_octets(mac, 6);
}

Status check_mac(std::string_view field, std::string_view mac) {
  const auto m = normalize_mac(mac);
  if (!m)
    return bad(std::string(field) + " must be a MAC address like 52:54:00:12:34:56", field,
               "invalid_mac");
  if (first_octet_multicast(*m))
    return bad(std::string(field) + " is a multicast address; a NIC needs a unicast one", field,
               "invalid_mac");
  if (*m == "00:00:00:00:00:00")
    return bad(std::string(field) + " must not be all zeros", field, "invalid_mac");
  return {};
}

Status check_mac_prefix(std::string_view prefix) {
  const auto p = normalize_octets(prefix, 3);
  if (!p || first_octet_multicast(*p))
    return bad("mac_prefix must be three octets of a unicast address, like 52:54:00", "mac_prefix",
               "invalid_mac");
  return {};
}

std::string_view to_string(LinkKind k) {
  switch (k) {
    case LinkKind::bridge:
      return "bridge";
    case LinkKind::vlan:
      return "vlan";
    case LinkKind::other:
      return "other";
  }
  return "other";
}

std::optional<LinkKind> link_kind_from_string(std::string_view s) {
  if (s == "bridge") return LinkKind::bridge;
  if (s == "vlan") return LinkKind::vlan;
  if (s == "other") return LinkKind::other;
  return std::nullopt;
}

std::string network_unusable_reason(const Network& n, const std::vector<HostLink>& links) {
  const HostLink* br = find_link(links, n.bridge);
  if (!br) return "no link " + n.bridge;
  if (br->kind != LinkKind::bridge) return n.bridge + " is not a bridge";
  if (!br->up) return "bridge " + n.bridge + " is down";
  if (br->mtu < n.mtu)
    return "bridge " + n.bridge + " has MTU " + std::to_string(br->mtu) + ", below " +
           std::to_string(n.mtu);
  if (!n.vlan) return {};
  const std::string sub = n.vlan_interface();
  const HostLink* v = find_link(links, sub);
  if (!v) return "no VLAN interface " + sub;
  if (v->kind != LinkKind::vlan || v->vlan_id != n.vlan || v->parent != n.uplink)
    return sub + " is not VLAN " + std::to_string(*n.vlan) + " on " + n.uplink;
  if (!v->up) return sub + " is down";
  if (v->master != n.bridge) return sub + " is not a port of bridge " + n.bridge;
  return {};
}

void to_json(json& j, const NetworkHostStatus& s) {
  j = {{"ready", s.ready}, {"error", s.error}, {"checked_at", format_time(s.checked_at)}};
}
void from_json(const json& j, NetworkHostStatus& s) {
  s.ready = j.value("ready", false);
  s.error = j.value("error", "");
  s.checked_at = {};
  if (j.contains("checked_at") && j.at("checked_at").is_string()) {
    auto t = parse_time(j.at("checked_at").get<std::string>());
    if (!t) throw std::invalid_argument("bad time in checked_at");
    s.checked_at = *t;
  }
}

void to_json(json& j, const Network& n) {
  j = {{"name", n.name},
       {"bridge", n.bridge},
       {"vlan", n.vlan ? json(*n.vlan) : json(nullptr)},
       {"uplink", n.uplink},
       {"mtu", n.mtu},
       {"hosts", n.hosts},
       {"created_at", format_time(n.created_at)}};
}
void from_json(const json& j, Network& n) {
  n.name = j.at("name").get<std::string>();
  n.bridge = j.at("bridge").get<std::string>();
  n.vlan.reset();
  if (j.contains("vlan") && !j.at("vlan").is_null()) n.vlan = j.at("vlan").get<int>();
  n.uplink = j.value("uplink", "");
  n.mtu = j.value("mtu", kDefaultMtu);
  n.hosts = j.value("hosts", std::map<std::string, NetworkHostStatus>{});
  n.created_at = {};
  if (j.contains("created_at") && j.at("created_at").is_string()) {
    auto t = parse_time(j.at("created_at").get<std::string>());
    if (!t) throw std::invalid_argument("bad time in created_at");
    n.created_at = *t;
  }
}

// Links arrive from agents: a link that does not have this shape makes the heartbeat
// malformed (400), never a half-read link.
void to_json(json& j, const HostLink& l) {
  j = {{"name", l.name},
       {"kind", std::string(to_string(l.kind))},
       {"mtu", l.mtu},
       {"up", l.up},
       {"vlan_id", l.vlan_id ? json(*l.vlan_id) : json(nullptr)},
       {"parent", l.parent},
       {"master", l.master}};
}
void from_json(const json& j, HostLink& l) {
  l.name = j.at("name").get<std::string>();
  if (!is_valid_interface_name(l.name)) throw std::invalid_argument("bad link name");
  const auto kind = link_kind_from_string(j.at("kind").get<std::string>());
  if (!kind) throw std::invalid_argument("bad link kind");
  l.kind = *kind;
  l.mtu = j.value("mtu", 0);
  l.up = j.value("up", false);
  l.vlan_id.reset();
  if (j.contains("vlan_id") && !j.at("vlan_id").is_null()) l.vlan_id = j.at("vlan_id").get<int>();
  l.parent = j.value("parent", "");
  l.master = j.value("master", "");
}

}  // namespace kvmfleet
