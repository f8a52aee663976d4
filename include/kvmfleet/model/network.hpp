#pragma once

// Cluster-wide logical networks (docs/api.md, "Networks"): a network names the host
// bridge VM NICs are plugged into, and optionally the VLAN that the agent makes as a
// sub-interface of an uplink with the bridge over it. Hosts report their links in the
// inventory; a network is usable on a host whose report has what it needs.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

inline constexpr int kMinMtu = 576;
inline constexpr int kMaxMtu = 9216;
inline constexpr int kDefaultMtu = 1500;
inline constexpr int kMinVlan = 1;
inline constexpr int kMaxVlan = 4094;
inline constexpr std::size_t kMaxNics = 16;  // per VM

// A Linux interface name as `ip` and the kernel take it: 1-15 characters, none of them
// '/', ':', whitespace or a control character, not "." or "..", and not starting with
// '-' (an argument vector would read it as an option).
bool is_valid_interface_name(std::string_view name);
// invalid_argument naming `field`, with details.reason "invalid_interface_name".
Status check_interface_name(std::string_view field, std::string_view name);

// How a network reached one host when the controller last made it usable there.
struct NetworkHostStatus {
  bool ready = false;
  std::string error;  // why not, empty when ready
  Clock::time_point checked_at{};
  bool operator==(const NetworkHostStatus&) const = default;
};

struct Network {
  std::string name;  // kvmfleet name: [a-z0-9][a-z0-9-]{0,62}
  std::string bridge;
  std::optional<int> vlan;  // 1-4094; the agent makes <uplink>.<vlan> and the bridge
  std::string uplink;       // set exactly when vlan is
  int mtu = kDefaultMtu;
  std::map<std::string, NetworkHostStatus> hosts;  // by host name
  Clock::time_point created_at{};
  // The VLAN sub-interface's name, "<uplink>.<vlan>"; empty without a VLAN.
  std::string vlan_interface() const;
};

// The checks a network must pass to be recorded: name, bridge and uplink names, VLAN
// range, MTU bounds, an uplink exactly with a VLAN and a sub-interface name that fits.
// Errors are invalid_argument with a stable details.reason.
Status validate_network(const Network& n);
// The same without the name: what an agent, which is told no name, checks.
Status validate_network_links(const Network& n);

// MAC addresses of VM NICs. normalize_mac accepts six ':'-separated pairs of hex
// digits and gives them lowercase; nullopt for anything else.
std::optional<std::string> normalize_mac(std::string_view mac);
// A well-formed unicast address, not all zeros. invalid_argument naming `field` with
// details.reason "invalid_mac" otherwise.
Status check_mac(std::string_view field, std::string_view mac);
// A prefix for allocated MACs: three octets ("52:54:00"), unicast.
Status check_mac_prefix(std::string_view prefix);
// The first MAC under `prefix` not in `taken`, probing from `seed` (so that NICs made
// one after the other do not all get neighbouring addresses); nullopt when every one
// of the prefix's 2^24 addresses is taken.
template <typename Taken>
std::optional<std::string> allocate_mac(const std::string& prefix, const Taken& taken,
                                        std::uint32_t seed) {
  for (std::uint32_t i = 0; i < (1u << 24); ++i) {
    const std::uint32_t v = (seed + i) & 0xffffffu;
    std::string mac = prefix;
    for (int shift : {16, 8, 0}) {
      const char* hex = "0123456789abcdef";
      mac += ':';
      mac += hex[(v >> (shift + 4)) & 0xf];
      mac += hex[(v >> shift) & 0xf];
    }
    if (!taken.count(mac)) return mac;
  }
  return std::nullopt;
}

// A link as a host reports it (`ip -json link show`).
enum class LinkKind { bridge, vlan, other };
std::string_view to_string(LinkKind k);
std::optional<LinkKind> link_kind_from_string(std::string_view s);

struct HostLink {
  std::string name;
  LinkKind kind = LinkKind::other;
  int mtu = 0;
  bool up = false;
  std::optional<int> vlan_id;  // a VLAN's id
  std::string parent;          // a VLAN's lower link
  std::string master;          // the bridge this link is a port of
  bool operator==(const HostLink&) const = default;
};

// Whether a host that reported `links` may carry VM NICs of network `n` now: its
// bridge exists, is a bridge and is up, with an MTU at least the network's; for a
// VLAN network the sub-interface exists with the right id on the uplink, is up and is
// a port of the bridge. Empty when usable, else why not.
std::string network_unusable_reason(const Network& n, const std::vector<HostLink>& links);

}  // namespace kvmfleet
