#pragma once

// A host's network links as the agent reads and changes them: the one interface over
// `ip` (iproute2), run by argument vector through the process runner. ensure_network
// builds a network's links on top of it; tests use tests/doubles/network.

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/network.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet::network {

class LinkControl {
 public:
  virtual ~LinkControl() = default;
  virtual Result<std::vector<HostLink>> links() = 0;
  // Each change names links already checked by check_interface_name.
  virtual Status add_vlan(const std::string& uplink, const std::string& name, int vlan_id) = 0;
  virtual Status add_bridge(const std::string& name) = 0;
  virtual Status set_master(const std::string& link, const std::string& bridge) = 0;
  virtual Status set_mtu(const std::string& link, int mtu) = 0;
  virtual Status set_up(const std::string& link) = 0;
};

// The real one: `ip -details -json link show` to read, `ip link add|set ...` to change.
class IpLinkControl final : public LinkControl {
 public:
  explicit IpLinkControl(ProcessRunner& runner, std::string ip_program = "ip")
      : runner_(runner), ip_(std::move(ip_program)) {}
  Result<std::vector<HostLink>> links() override;
  Status add_vlan(const std::string& uplink, const std::string& name, int vlan_id) override;
  Status add_bridge(const std::string& name) override;
  Status set_master(const std::string& link, const std::string& bridge) override;
  Status set_mtu(const std::string& link, int mtu) override;
  Status set_up(const std::string& link) override;

 private:
  Status ip(std::vector<std::string> args);
  ProcessRunner& runner_;
  std::string ip_;
};

// Parses what `ip -details -json link show` prints. A link whose name is not a valid
// interface name is left out (it cannot be a network's); JSON that is not a list of
// links is an internal error.
Result<std::vector<HostLink>> parse_ip_links(std::string_view text);

// Makes `n` usable through `links`, idempotently: for a VLAN network the sub-interface
// <uplink>.<vlan> and the bridge are made when missing, the sub-interface joins the
// bridge, both get the network's MTU and are set up; for a plain network the bridge
// must exist (not_found otherwise: a bridge is never made on a guess) and is set up.
// A link that exists under one of those names but is something else is a conflict
// with details.reason "link_mismatch". Returns the links it created.
Result<std::vector<std::string>> ensure_network(LinkControl& links, const Network& n);

}  // namespace kvmfleet::network
