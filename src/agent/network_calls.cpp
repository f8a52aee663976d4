// The agent's network calls (protocol.hpp, "Networks"): one LinkControl call each.
#include "call_handlers.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"

#include <limits>

namespace kvmfleet::agent::calls {

Result<PreparedCall> network_ensure(const CallContext& c) {
  constexpr auto kLow = std::numeric_limits<int>::min();
  constexpr auto kHigh = std::numeric_limits<int>::max();
  Network n;
  auto bridge = get_string(c.body, "bridge", true);
  if (!bridge) return bridge.take_error();
  n.bridge = *bridge;
  auto mtu = get_int(c.body, "mtu", true, 0, kLow, kHigh);
  if (!mtu) return mtu.take_error();
  n.mtu = static_cast<int>(*mtu);
  if (c.body.contains("vlan") && !c.body.at("vlan").is_null()) {
    auto vlan = get_int(c.body, "vlan", true, 0, kLow, kHigh);
    if (!vlan) return vlan.take_error();
    n.vlan = static_cast<int>(*vlan);
  }
  auto uplink = get_string(c.body, "uplink", false);
  if (!uplink) return uplink.take_error();
  n.uplink = *uplink;
  // Checked before `ip` ever sees a name (ensure_network checks again).
  if (auto st = validate_network_links(n); !st) return st.take_error();
  return PreparedCall{n.vlan ? n.vlan_interface() + " " + n.bridge : n.bridge,
                      [&links = *c.links, n] {
                        auto created = ensure_network(links, n);
                        if (!created) return http::error_response(created.error());
                        auto now = links.links();
                        if (!now) return http::error_response(now.error());
                        return ok_json({{"created", *created}, {"links", *now}});
                      }};
}

}  // namespace kvmfleet::agent::calls
