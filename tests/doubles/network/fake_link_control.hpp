#pragma once

#include "kvmfleet/network/link_control.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kvmfleet::doubles {

// The double of network::LinkControl: a host's links in memory, changed the way the
// kernel would (adding an existing name fails, a VLAN needs its uplink, a link joins
// only a bridge), with every change logged.
class FakeLinkControl final : public network::LinkControl {
 public:
  Result<std::vector<HostLink>> links() override {
    std::lock_guard lk(mu_);
    if (fail_reads) return internal_error("ip failed");
    return links_;
  }
  Status add_vlan(const std::string& uplink, const std::string& name, int vlan_id) override {
    std::lock_guard lk(mu_);
    log("add_vlan " + name);
    if (find(name)) return conflict("File exists");
    if (!find(uplink)) return not_found("Cannot find device " + uplink);
    links_.push_back({name, LinkKind::vlan, find(uplink)->mtu, false, vlan_id, uplink, ""});
    return {};
  }
  Status add_bridge(const std::string& name) override {
    std::lock_guard lk(mu_);
    log("add_bridge " + name);
    if (find(name)) return conflict("File exists");
    links_.push_back({name, LinkKind::bridge, 1500, false, std::nullopt, "", ""});
    return {};
  }
  Status set_master(const std::string& link, const std::string& bridge) override {
    std::lock_guard lk(mu_);
    log("set_master " + link + " " + bridge);
    HostLink* l = find(link);
    HostLink* b = find(bridge);
    if (!l || !b) return not_found("Cannot find device");
    if (b->kind != LinkKind::bridge) return internal_error("not a bridge");
    l->master = bridge;
    return {};
  }
  Status set_mtu(const std::string& link, int mtu) override {
    std::lock_guard lk(mu_);
    log("set_mtu " + link + " " + std::to_string(mtu));
    HostLink* l = find(link);
    if (!l) return not_found("Cannot find device " + link);
    l->mtu = mtu;
    return {};
  }
  Status set_up(const std::string& link) override {
    std::lock_guard lk(mu_);
    log("set_up " + link);
    HostLink* l = find(link);
    if (!l) return not_found("Cannot find device " + link);
    l->up = true;
    return {};
  }

  void add(HostLink l) {
    std::lock_guard lk(mu_);
    links_.push_back(std::move(l));
  }
  std::vector<std::string> changes() {
    std::lock_guard lk(mu_);
    return changes_;
  }
  void clear_changes() {
    std::lock_guard lk(mu_);
    changes_.clear();
  }
  bool fail_reads = false;

 private:
  HostLink* find(const std::string& name) {
    auto it = std::find_if(links_.begin(), links_.end(),
                           [&](const HostLink& l) { return l.name == name; });
    return it == links_.end() ? nullptr : &*it;
  }
  void log(std::string s) { changes_.push_back(std::move(s)); }

  std::mutex mu_;
  std::vector<HostLink> links_;
  std::vector<std::string> changes_;
};

}  // namespace kvmfleet::doubles
