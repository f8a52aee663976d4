// NIC hot plug requests (docs/api.md, "NICs of a VM"): a NIC is checked as a create
// checks its NICs, and against the VM's host as the scheduler sees it, under the same
// lock that records its operation. The work is vm_nic_operations.cpp's.
#include "kvmfleet/network/network_service.hpp"

#include "kvmfleet/core/typed_operation.hpp"
#include "kvmfleet/network/network_params.hpp"
#include "kvmfleet/network/vm_nics.hpp"

#include <algorithm>
#include <functional>

namespace kvmfleet {
namespace {

// What every NIC change asks of the VM: a single copy, running or stopped on a host
// that is up, and no other operation on it.
Result<const Vm*> nic_target(const ClusterState::Data& d, const std::string& id_or_name) {
  const Vm* vm = d.find_vm(id_or_name);
  if (!vm) return not_found("no such VM", {{"vm", id_or_name}});
  if (vm->double_run)
    return conflict("the VM may be running on more than one host",
                    {{"vm", vm->spec.name}, {"reason", "suspected_double_run"}});
  if (const Operation* busy = d.active_operation_for(vm->id))
    return conflict("VM has an operation in progress",
                    {{"vm", vm->spec.name}, {"operation", busy->id}, {"kind", busy->kind}});
  if (vm->state != VmState::running && vm->state != VmState::stopped)
    return conflict(
        "NICs change on a running or a stopped VM; it is " + std::string(to_string(vm->state)),
        {{"vm", vm->spec.name}, {"state", to_string(vm->state)}});
  const Host* host = d.find_host(vm->host);
  if (!host || host->state != HostState::up)
    return conflict("the VM's host " + vm->host + " is not up",
                    {{"vm", vm->spec.name}, {"host", vm->host}});
  return vm;
}

// MACs that NICs being added now will take (their VMs do not have them yet).
std::set<std::string> macs_being_added(const ClusterState::Data& d) {
  std::set<std::string> out;
  for (const Operation* op : d.active_operations())
    if (op->kind == op_kind::vm_nic_add)
      if (auto p = params_of<VmNicAddParams>(*op)) out.insert(p->nic.mac);
  return out;
}

// An error about a create's NIC list, said of the one NIC of a request ("nics[0].mac" is
// "mac").
Error without_index(Error e) {
  constexpr std::string_view kPrefix = "nics[0].";
  if (auto f = e.details.find("field"); f != e.details.end() && f->is_string()) {
    std::string field = f->get<std::string>();
    if (field.starts_with(kPrefix)) field = field.substr(kPrefix.size());
    if (field == "nics[0]") field = "body";
    e.details["field"] = field;
  }
  if (e.message.starts_with(kPrefix)) e.message = e.message.substr(kPrefix.size());
  return e;
}

}  // namespace

Result<NicSpec> parse_nic(const nlohmann::json& body) {
  if (!body.is_object()) return invalid("the body must be a NIC object", {{"field", "body"}});
  auto nics = parse_nics(nlohmann::json::array({body}));
  if (!nics) return without_index(nics.take_error());
  return std::move(nics->front());
}

Result<Submitted> NetworkService::add_nic(const Principal& who, const std::string& vm_name,
                                          const NicSpec& nic, const SubmitOptions& opts) {
  Operation op;
  op.target_type = "vm";
  op.kind = VmNicAddParams::kind;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        auto vm = nic_target(d, vm_name);
        if (!vm) return vm.take_error();
        if ((*vm)->spec.nics.size() >= kMaxNics)
          return conflict(
              "the VM has 16 NICs, the most it may have",
              {{"vm", (*vm)->spec.name}, {"max", kMaxNics}, {"reason", "too_many_nics"}});
        // The checks of a create: the network exists, the MAC is free (or one is
        // allocated); and MACs of NICs being added elsewhere count as taken.
        Vm probe;
        probe.id = (*vm)->id;
        probe.spec.nics = {nic};
        const bool given = !nic.mac.empty();
        if (auto st = resolve_nics(d, probe, mac_prefix_); !st)
          return without_index(st.take_error());
        NicSpec resolved = probe.spec.nics.front();
        const auto pending = macs_being_added(d);
        if (pending.count(resolved.mac)) {
          if (given)
            return conflict("MAC " + resolved.mac + " is being added to another VM",
                            {{"mac", resolved.mac}, {"reason", "mac_in_use"}});
          auto taken = macs_in_use(d);
          taken.insert(pending.begin(), pending.end());
          auto mac = allocate_mac(mac_prefix_, taken,
                                  static_cast<std::uint32_t>(std::hash<std::string>{}(
                                      (*vm)->id + "/" + std::to_string(taken.size()))));
          if (!mac)
            return Error(ErrorCode::insufficient_capacity,
                         "every MAC address under " + mac_prefix_ + " is taken",
                         {{"mac_prefix", mac_prefix_}, {"reason", "macs_exhausted"}});
          resolved.mac = *mac;
        }
        // The scheduler's rule for the host: the network usable there now.
        const auto usable = d.usable_networks_by_host();
        const auto it = usable.find((*vm)->host);
        if (it == usable.end() ||
            std::find(it->second.begin(), it->second.end(), resolved.network) == it->second.end())
          return conflict(
              "network '" + resolved.network + "' is not usable on the VM's host " + (*vm)->host,
              {{"vm", (*vm)->spec.name},
               {"host", (*vm)->host},
               {"network", resolved.network},
               {"reason", "network_unusable_on_host"}});
        next.target_id = (*vm)->id;
        set_params(next, VmNicAddParams{resolved});
        next.result = VmNicResult{resolved.mac, (*vm)->host, std::nullopt};
        return {};
      });
}

Result<Submitted> NetworkService::remove_nic(const Principal& who, const std::string& vm_name,
                                             const std::string& mac, const SubmitOptions& opts) {
  const auto normal = normalize_mac(mac);
  if (!normal || !check_mac("mac", *normal))
    return invalid("mac must be a MAC address like 52:54:00:12:34:56",
                   {{"field", "mac"}, {"reason", "invalid_mac"}});
  Operation op;
  op.target_type = "vm";
  op.kind = VmNicRemoveParams::kind;
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        auto vm = nic_target(d, vm_name);
        if (!vm) return vm.take_error();
        const auto& nics = (*vm)->spec.nics;
        if (std::none_of(nics.begin(), nics.end(),
                         [&](const NicSpec& n) { return n.mac == *normal; }))
          return not_found("the VM has no NIC " + *normal,
                           {{"vm", (*vm)->spec.name}, {"mac", *normal}, {"reason", "unknown_nic"}});
        next.target_id = (*vm)->id;
        set_params(next, VmNicRemoveParams{*normal});
        next.result = VmNicResult{*normal, (*vm)->host, std::nullopt};
        return {};
      });
}

}  // namespace kvmfleet
