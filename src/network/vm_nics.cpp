#include "kvmfleet/network/vm_nics.hpp"

#include "kvmfleet/common/validate.hpp"

#include <algorithm>
#include <functional>

namespace kvmfleet {

Result<std::vector<NicSpec>> parse_nics(const nlohmann::json& nics) {
  if (!nics.is_array()) return invalid("nics must be an array", {{"field", "nics"}});
  if (nics.size() > kMaxNics)
    return invalid("at most 16 NICs", {{"field", "nics"}, {"max", kMaxNics}});
  std::vector<NicSpec> out;
  std::set<std::string> macs;
  for (std::size_t i = 0; i < nics.size(); ++i) {
    const auto& j = nics[i];
    const std::string where = "nics[" + std::to_string(i) + "]";
    if (!j.is_object()) return invalid(where + " must be an object", {{"field", where}});
    if (auto st = check_known_fields(j, {"network", "mac", "model"}, where); !st)
      return st.take_error();
    NicSpec nic;
    auto network = get_string(j, "network", true);
    if (!network) {
      Error e = network.take_error();
      e.details["field"] = where + ".network";
      return e;
    }
    if (!is_valid_name(*network))
      return invalid(where + ".network must be a network's name",
                     {{"field", where + ".network"}, {"reason", "invalid_name"}});
    nic.network = *network;
    auto mac = get_string(j, "mac", false);
    if (!mac) {
      Error e = mac.take_error();
      e.details["field"] = where + ".mac";
      return e;
    }
    if (j.contains("mac")) {
      if (auto st = check_mac(where + ".mac", *mac); !st) return st.take_error();
      nic.mac = *normalize_mac(*mac);
      if (!macs.insert(nic.mac).second)
        return invalid(where + ".mac is given to two NICs",
                       {{"field", where + ".mac"}, {"reason", "duplicate_mac"}});
    }
    auto model = get_string(j, "model", false, "virtio");
    if (!model) {
      Error e = model.take_error();
      e.details["field"] = where + ".model";
      return e;
    }
    const auto m = nic_model_from_string(*model);
    if (!m)
      return invalid(where + ".model must be virtio, e1000 or rtl8139",
                     {{"field", where + ".model"}, {"reason", "invalid_nic_model"}});
    nic.model = *m;
    out.push_back(std::move(nic));
  }
  return out;
}

std::set<std::string> macs_in_use(const ClusterState::Data& d) {
  std::set<std::string> out;
  for (const auto& [_, vm] : d.vms)
    for (const auto& n : vm.spec.nics) out.insert(n.mac);
  return out;
}

Status resolve_nics(const ClusterState::Data& d, Vm& vm, const std::string& mac_prefix) {
  if (vm.spec.nics.empty()) return {};
  if (vm.spec.nics.size() > kMaxNics)
    return invalid("at most 16 NICs", {{"field", "nics"}, {"max", kMaxNics}});
  auto taken = macs_in_use(d);
  std::set<std::string> own;
  for (std::size_t i = 0; i < vm.spec.nics.size(); ++i) {
    auto& nic = vm.spec.nics[i];
    if (nic.mac.empty()) continue;
    // Whoever built the spec, the MAC is checked and kept in one spelling here, so that
    // the same address never passes twice.
    const std::string field = "nics[" + std::to_string(i) + "].mac";
    if (auto st = check_mac(field, nic.mac); !st) return st;
    nic.mac = *normalize_mac(nic.mac);
    if (!own.insert(nic.mac).second)
      return invalid(field + " is given to two NICs",
                     {{"field", field}, {"reason", "duplicate_mac"}});
    if (taken.count(nic.mac)) {
      // Which VM has it, for the error: the caller may well own that VM.
      std::string owner;
      for (const auto& [_, other] : d.vms)
        for (const auto& n : other.spec.nics)
          if (n.mac == nic.mac) owner = other.spec.name;
      return conflict("MAC " + nic.mac + " is taken",
                      {{"mac", nic.mac}, {"vm", owner}, {"reason", "mac_in_use"}});
    }
  }
  taken.insert(own.begin(), own.end());
  for (std::size_t i = 0; i < vm.spec.nics.size(); ++i) {
    auto& nic = vm.spec.nics[i];
    const Network* n = d.find_network(nic.network);
    if (!n)
      return not_found("no such network: " + nic.network,
                       {{"network", nic.network},
                        {"field", "nics[" + std::to_string(i) + "].network"},
                        {"reason", "unknown_network"}});
    nic.bridge = n->bridge;
    nic.mtu = n->mtu;
    if (nic.mac.empty()) {
      const auto seed =
          static_cast<std::uint32_t>(std::hash<std::string>{}(vm.id + "/" + std::to_string(i)));
      auto mac = allocate_mac(mac_prefix, taken, seed);
      if (!mac)
        return Error(ErrorCode::insufficient_capacity,
                     "every MAC address under " + mac_prefix + " is taken",
                     {{"mac_prefix", mac_prefix}, {"reason", "macs_exhausted"}});
      nic.mac = *mac;
      taken.insert(nic.mac);
    }
  }
  return {};
}

std::vector<std::string> networks_of(const VmSpec& spec) {
  std::vector<std::string> out;
  for (const auto& n : spec.nics)
    if (std::find(out.begin(), out.end(), n.network) == out.end()) out.push_back(n.network);
  return out;
}

}  // namespace kvmfleet
