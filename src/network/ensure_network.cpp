#include "kvmfleet/network/link_control.hpp"

#include <algorithm>

namespace kvmfleet::network {
namespace {

const HostLink* find(const std::vector<HostLink>& links, const std::string& name) {
  auto it =
      std::find_if(links.begin(), links.end(), [&](const HostLink& l) { return l.name == name; });
  return it == links.end() ? nullptr : &*it;
}

Error mismatch(const std::string& message, const std::string& link) {
  return conflict(message, {{"link", link}, {"reason", "link_mismatch"}});
}

}  // namespace

Result<std::vector<std::string>> ensure_network(LinkControl& control, const Network& n) {
  if (auto st = validate_network_links(n); !st) return st.take_error();
  auto links = control.links();
  if (!links) return links.take_error();
  std::vector<std::string> created;

  const HostLink* br = find(*links, n.bridge);
  if (br && br->kind != LinkKind::bridge)
    return mismatch(n.bridge + " exists and is not a bridge", n.bridge);
  if (!n.vlan) {
    if (!br)
      return not_found("bridge " + n.bridge + " does not exist on this host",
                       {{"link", n.bridge}, {"reason", "bridge_missing"}});
    // A plain network's bridge is the host's own (made with its uplink by whoever set
    // the host up): kvmfleet only brings it up, and leaves its MTU alone.
    if (!br->up)
      if (auto st = control.set_up(n.bridge); !st) return st.take_error();
    return created;
  }

  const std::string sub = n.vlan_interface();
  const HostLink* up = find(*links, n.uplink);
  if (!up)
    return not_found("uplink " + n.uplink + " does not exist on this host",
                     {{"link", n.uplink}, {"reason", "uplink_missing"}});
  const HostLink* v = find(*links, sub);
  if (v && (v->kind != LinkKind::vlan || v->vlan_id != n.vlan || v->parent != n.uplink))
    return mismatch(sub + " exists and is not VLAN " + std::to_string(*n.vlan) + " on " + n.uplink,
                    sub);
  if (v && !v->master.empty() && v->master != n.bridge)
    return mismatch(sub + " is a port of bridge " + v->master, sub);

  // The uplink carries the VLAN's frames with their tag: it needs at least the MTU.
  if (up->mtu < n.mtu)
    if (auto st = control.set_mtu(n.uplink, n.mtu); !st) return st.take_error();
  if (!up->up)
    if (auto st = control.set_up(n.uplink); !st) return st.take_error();
  if (!v) {
    if (auto st = control.add_vlan(n.uplink, sub, *n.vlan); !st) return st.take_error();
    created.push_back(sub);
  }
  if (!br) {
    if (auto st = control.add_bridge(n.bridge); !st) return st.take_error();
    created.push_back(n.bridge);
  }
  if (!v || v->mtu != n.mtu)
    if (auto st = control.set_mtu(sub, n.mtu); !st) return st.take_error();
  if (!v || v->master != n.bridge)
    if (auto st = control.set_master(sub, n.bridge); !st) return st.take_error();
  // A bridge takes the smallest MTU of its ports; set it after the port joined.
  if (!br || br->mtu != n.mtu)
    if (auto st = control.set_mtu(n.bridge, n.mtu); !st) return st.take_error();
  if (!v || !v->up)
    if (auto st = control.set_up(sub); !st) return st.take_error();
  if (!br || !br->up)
    if (auto st = control.set_up(n.bridge); !st) return st.take_error();
  return created;
}

}  // namespace kvmfleet::network
