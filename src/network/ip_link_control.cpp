#include "kvmfleet/network/link_control.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace kvmfleet::network {
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kIpTimeout{30};

Error ip_failed(const std::vector<std::string>& argv, const ProcessOutput& out) {
  std::string err = out.err.substr(0, 512);
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  nlohmann::json details = {{"argv", argv}, {"exit_code", out.exit_code}, {"stderr", err}};
  // `ip` says "Cannot find device" for a missing link: the caller's not_found.
  if (err.find("Cannot find device") != std::string::npos ||
      err.find("does not exist") != std::string::npos)
    return not_found(argv.size() > 1 ? "ip: " + err : "ip failed", std::move(details));
  if (err.find("File exists") != std::string::npos)
    return conflict("ip: " + err, std::move(details));
  return internal_error("ip failed: " + err, std::move(details));
}

}  // namespace

Result<std::vector<HostLink>> parse_ip_links(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array())
    return internal_error("ip -json link show printed something that is not a JSON array");
  std::vector<HostLink> out;
  for (const auto& e : j) {
    if (!e.is_object()) continue;
    auto name = e.find("ifname");
    if (name == e.end() || !name->is_string()) continue;
    HostLink l;
    l.name = name->get<std::string>();
    if (!is_valid_interface_name(l.name)) continue;
    if (auto m = e.find("mtu"); m != e.end() && m->is_number_integer()) l.mtu = m->get<int>();
    if (auto f = e.find("flags"); f != e.end() && f->is_array())
      l.up = std::any_of(f->begin(), f->end(),
                         [](const json& s) { return s.is_string() && s == "UP"; });
    if (auto m = e.find("master"); m != e.end() && m->is_string()) l.master = m->get<std::string>();
    if (auto p = e.find("link"); p != e.end() && p->is_string()) l.parent = p->get<std::string>();
    l.kind = LinkKind::other;
    if (auto info = e.find("linkinfo"); info != e.end() && info->is_object()) {
      const std::string kind = info->value("info_kind", "");
      if (kind == "bridge") l.kind = LinkKind::bridge;
      if (kind == "vlan") {
        l.kind = LinkKind::vlan;
        if (auto d = info->find("info_data"); d != info->end() && d->is_object()) {
          if (auto id = d->find("id"); id != d->end() && id->is_number_integer())
            l.vlan_id = id->get<int>();
        }
      }
    }
    // Only a VLAN's lower link is its parent; other kinds (veth peers) name theirs too.
    if (l.kind != LinkKind::vlan) l.parent.clear();
    if (!l.parent.empty() && !is_valid_interface_name(l.parent)) l.parent.clear();
    if (!l.master.empty() && !is_valid_interface_name(l.master)) l.master.clear();
    out.push_back(std::move(l));
  }
  return out;
}

Status IpLinkControl::ip(std::vector<std::string> args) {
  std::vector<std::string> argv{ip_};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.timeout = kIpTimeout;
  auto r = runner_.run(argv, o);
  if (!r) return r.take_error();
  if (!r->success()) return ip_failed(argv, *r);
  return {};
}

Result<std::vector<HostLink>> IpLinkControl::links() {
  const std::vector<std::string> argv{ip_, "-details", "-json", "link", "show"};
  RunOptions o;
  o.timeout = kIpTimeout;
  auto r = runner_.run(argv, o);
  if (!r) return r.take_error();
  if (!r->success()) return ip_failed(argv, *r);
  if (r->out_truncated) return internal_error("ip -json link show printed more than the limit");
  return parse_ip_links(r->out);
}

Status IpLinkControl::add_vlan(const std::string& uplink, const std::string& name, int vlan_id) {
  return ip(
      {"link", "add", "link", uplink, "name", name, "type", "vlan", "id", std::to_string(vlan_id)});
}
Status IpLinkControl::add_bridge(const std::string& name) {
  return ip({"link", "add", "name", name, "type", "bridge"});
}
Status IpLinkControl::set_master(const std::string& link, const std::string& bridge) {
  return ip({"link", "set", "dev", link, "master", bridge});
}
Status IpLinkControl::set_mtu(const std::string& link, int mtu) {
  return ip({"link", "set", "dev", link, "mtu", std::to_string(mtu)});
}
Status IpLinkControl::set_up(const std::string& link) {
  return ip({"link", "set", "dev", link, "up"});
}

}  // namespace kvmfleet::network
