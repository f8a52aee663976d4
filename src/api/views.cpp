#include "kvmfleet/api/views.hpp"

#include "kvmfleet/model/json.hpp"

namespace kvmfleet::api {

using nlohmann::json;

namespace {
json name_or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}
}  // namespace

// Which parts of a VM's cloud-init are set, never their content (it may hold secrets).
static json cloud_init_view(const std::optional<CloudInit>& c) {
  if (!c) return nullptr;
  return {{"set", true},
          {"user_data", !c->user_data.empty()},
          {"meta_data", !c->meta_data.empty()},
          {"hostname", !c->hostname.empty()},
          {"network_config", !c->network_config.empty()},
          {"ssh_authorized_keys", c->ssh_authorized_keys.size()}};
}

json vm_view(const Vm& vm) {
  json boot = json::array();
  for (auto b : vm.spec.boot) boot.push_back(std::string(to_string(b)));
  json nics = json::array();
  for (const auto& n : vm.spec.nics)
    nics.push_back(
        {{"network", n.network}, {"mac", n.mac}, {"model", std::string(to_string(n.model))}});
  return {{"id", vm.id},
          {"name", vm.spec.name},
          {"vcpus", vm.spec.vcpus},
          {"memory_mib", vm.spec.memory_mib},
          {"disks", vm.spec.disks},
          {"host", name_or_null(vm.host)},
          {"pinned_host", name_or_null(vm.spec.pinned_host)},
          {"anti_affinity_group", name_or_null(vm.spec.anti_affinity_group)},
          {"ha",
           {{"enabled", vm.spec.ha.enabled},
            {"priority", vm.spec.ha.priority},
            {"max_restarts", vm.spec.ha.max_restarts},
            {"restarts", vm.ha_restarts.size()},
            {"last_restart",
             vm.ha_restarts.empty() ? json(nullptr) : json(format_time(vm.ha_restarts.back()))}}},
          {"nics", std::move(nics)},
          {"cdrom", vm.spec.cdrom ? json{{"image", vm.spec.cdrom->image}} : json(nullptr)},
          {"boot", boot},
          {"cloud_init", cloud_init_view(vm.spec.cloud_init)},
          {"desired_state", std::string(to_string(vm.desired))},
          {"state", std::string(to_string(vm.state))},
          {"generation", vm.generation},
          {"suspected_double_run",
           vm.double_run
               ? json{{"hosts", vm.double_run->hosts}, {"since", format_time(vm.double_run->since)}}
               : json(nullptr)},
          {"created_at", format_time(vm.created_at)},
          {"updated_at", format_time(vm.updated_at)}};
}

HostFacts host_facts(const Host& h, const ClusterState::Data& data) {
  HostFacts f{h, data.usage_of(h.name), {}};
  f.domain_known.reserve(h.inventory.domains.size());
  for (const auto& d : h.inventory.domains)
    f.domain_known.push_back(data.find_vm(d.uuid) != nullptr);
  return f;
}

json host_view(const HostFacts& f) {
  const Host& h = f.host;
  json unmanaged = json::array();
  // Domains with kvmfleet's metadata but of no VM the controller has (made by another
  // controller, or left from a VM whose record was lost): shown, never adopted or deleted.
  json unknown = json::array();
  for (std::size_t i = 0; i < h.inventory.domains.size(); ++i) {
    const auto& d = h.inventory.domains[i];
    if (i < f.domain_known.size() && f.domain_known[i]) continue;
    (d.managed ? unknown : unmanaged)
        .push_back({{"name", d.name}, {"uuid", d.uuid}, {"state", d.state}});
  }
  const auto& inv = h.inventory;
  return {
      {"name", h.name},
      {"state", std::string(to_string(h.state))},
      {"schedulable", h.schedulable},
      {"agent_url", h.agent_url},
      {"host_uuid", inv.host_uuid},
      {"hostname", inv.hostname},
      {"cpus", inv.cpus},
      {"cpu_model", inv.cpu_model},
      {"memory_total_mib", inv.memory_total_mib},
      {"memory_free_mib", inv.memory_free_mib},
      {"memory_allocated_mib", f.usage.memory_mib},
      {"vcpus_allocated", f.usage.vcpus},
      {"vm_count", f.usage.vm_count},
      {"libvirt_version", inv.libvirt_version},
      {"qemu_version", inv.qemu_version},
      {"domain_type", inv.domain_type},
      {"unmanaged_domains", unmanaged},
      {"unknown_domains", unknown},
      {"last_heartbeat", h.last_heartbeat ? json(format_time(*h.last_heartbeat)) : json(nullptr)},
      {"storage", h.storage},
      {"proven_down", h.proven_down ? json{{"kind", h.proven_down->kind},
                                           {"detail", h.proven_down->detail},
                                           {"by", h.proven_down->by},
                                           {"at", format_time(h.proven_down->at)}}
                                    : json(nullptr)},
      {"fencing", {{"devices", h.fence_devices.size()}}},
      {"created_at", format_time(h.created_at)}};
}

json host_view(const Host& h, const ClusterState::Data& data) {
  return host_view(host_facts(h, data));
}

json operation_view(const Operation& op) {
  json j = op;
  j.erase("request_hash");
  j.erase("requester_id");
  return j;
}

json token_view(const TokenRecord& t) {
  return {{"id", t.id},
          {"name", t.name},
          {"role", std::string(to_string(t.role))},
          {"host", name_or_null(t.host)},
          {"created_at", format_time(t.created_at)}};
}

json placement_view(const scheduler::Placement& p) {
  json hosts = json::array();
  for (const auto& v : p.verdicts) {
    json h = {{"host", v.host}, {"feasible", v.feasible}};
    if (v.feasible) {
      h["scores"] = v.scores;
      h["total"] = v.total;
    } else {
      h["filter"] = v.filter;
      h["reason"] = v.reason;
    }
    hosts.push_back(std::move(h));
  }
  return {{"host", p.host.empty() ? json(nullptr) : json(p.host)}, {"hosts", hosts}};
}

}  // namespace kvmfleet::api

namespace kvmfleet::api {

json pool_view(const StoragePool& p, const ClusterState::Data& data) {
  json targets = json::array();
  for (const auto& t : p.targets)
    targets.push_back(
        {{"portal", t.portal}, {"iqn", t.iqn}, {"lun", t.lun}, {"chap", !t.chap_username.empty()}});
  json hosts = json::object();
  for (const auto& [name, s] : p.hosts)
    hosts[name] = {{"connected", s.connected},
                   {"devices", s.devices},
                   {"lockspace_started", s.lockspace_started},
                   {"usable", p.usable_on(name)},
                   {"error", name_or_null(s.error)},
                   {"checked_at", format_time(s.checked_at)}};
  int volumes = 0;
  for (const auto& [_, v] : data.volumes) volumes += v.pool == p.name;
  json j = {{"name", p.name},
            {"type", std::string(to_string(p.type))},
            {"vg", p.vg()},
            {"state", std::string(to_string(p.state))},
            {"size_bytes", p.size_bytes},
            {"free_bytes", p.free_bytes},
            {"volume_count", volumes},
            {"hosts", std::move(hosts)},
            {"all_hosts", p.all_hosts},
            {"created_at", format_time(p.created_at)},
            {"updated_at", format_time(p.updated_at)}};
  if (p.type == PoolType::iscsi)
    j["targets"] = std::move(targets);
  else
    j["wwids"] = p.wwids;
  return j;
}

json snapshot_view(const Snapshot& s, const Volume& v) {
  return {{"id", s.id},
          {"name", s.name},
          {"volume", v.name},
          {"volume_id", v.id},
          {"lv", s.lv},
          {"size_bytes", s.size_bytes},
          {"consistency", std::string(to_string(s.consistency))},
          {"fill_percent", s.fill_percent ? json(*s.fill_percent) : json(nullptr)},
          {"invalid", s.invalid},
          {"merge_pending", s.merge_pending},
          {"created_at", format_time(s.created_at)}};
}

json volume_view(const Volume& v, const ClusterState::Data& data) {
  json attached_name = nullptr;
  if (const Vm* vm = v.attached_to.empty() ? nullptr : data.find_vm(v.attached_to))
    attached_name = vm->spec.name;
  json snaps = json::array();
  for (const auto& s : v.snapshots) snaps.push_back(snapshot_view(s, v));
  return {{"id", v.id},
          {"name", v.name},
          {"pool", v.pool},
          {"device", v.device()},
          {"size_bytes", v.size_bytes},
          {"state", std::string(to_string(v.state))},
          {"attached_to", name_or_null(v.attached_to)},
          {"attached_vm_name", std::move(attached_name)},
          {"snapshots", std::move(snaps)},
          {"created_at", format_time(v.created_at)},
          {"updated_at", format_time(v.updated_at)}};
}

}  // namespace kvmfleet::api
