#include "kvmfleet/model/json.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>

namespace kvmfleet {
namespace {

using nlohmann::json;

json time_or_null(const std::optional<Clock::time_point>& t) {
  return t ? json(format_time(*t)) : json(nullptr);
}

Clock::time_point time_from(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return {};
  auto t = parse_time(j.at(key).get<std::string>());
  if (!t) throw std::invalid_argument(std::string("bad time in ") + key);
  return *t;
}

std::optional<Clock::time_point> opt_time_from(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return time_from(j, key);
}

template <typename E, typename F>
E enum_from(const json& j, const char* key, F parse, E fallback) {
  if (!j.contains(key)) return fallback;
  auto v = parse(j.at(key).template get<std::string>());
  if (!v) throw std::invalid_argument(std::string("bad value for ") + key);
  return *v;
}

}  // namespace

void to_json(json& j, const NicSpec& n) {
  j = {{"network", n.network},
       {"mac", n.mac},
       {"model", std::string(to_string(n.model))},
       {"bridge", n.bridge},
       {"mtu", n.mtu}};
}
void from_json(const json& j, NicSpec& n) {
  n.network = j.at("network").get<std::string>();
  n.mac = j.at("mac").get<std::string>();
  n.model = enum_from(j, "model", nic_model_from_string, NicModel::virtio);
  n.bridge = j.value("bridge", std::string{});
  n.mtu = j.value("mtu", 0);
}

void to_json(json& j, const DomainNic& n) {
  j = {{"mac", n.mac},
       {"bridge", n.bridge},
       {"model", std::string(to_string(n.model))},
       {"mtu", n.mtu}};
}
void from_json(const json& j, DomainNic& n) {
  n.mac = j.at("mac").get<std::string>();
  n.bridge = j.at("bridge").get<std::string>();
  n.model = enum_from(j, "model", nic_model_from_string, NicModel::virtio);
  n.mtu = j.value("mtu", 0);
}

static void put_image(json& j, const std::string& image, const std::string& sha256,
                      std::uint64_t size) {
  if (image.empty()) return;
  j["image"] = image;
  j["image_sha256"] = sha256;
  j["image_size"] = size;
}
template <typename T>
void get_image(const json& j, T& t) {
  t.image = j.value("image", std::string{});
  t.image_sha256 = j.value("image_sha256", std::string{});
  t.image_size = j.value("image_size", std::uint64_t{0});
}

static std::vector<BootDevice> boot_from(const json& j) {
  std::vector<BootDevice> boot;
  if (!j.contains("boot")) return boot;
  for (const auto& b : j.at("boot")) {
    auto d = boot_device_from_string(b.get<std::string>());
    if (!d) throw std::invalid_argument("bad boot device");
    boot.push_back(*d);
  }
  return boot;
}
static json boot_json(const std::vector<BootDevice>& boot) {
  json a = json::array();
  for (auto b : boot) a.push_back(std::string(to_string(b)));
  return a;
}

void to_json(json& j, const CdromSpec& c) {
  j = json::object();
  put_image(j, c.image, c.image_sha256, c.image_size);
}
void from_json(const json& j, CdromSpec& c) {
  get_image(j, c);
}

void to_json(json& j, const CloudInit& c) {
  j = {{"user_data", c.user_data},
       {"meta_data", c.meta_data},
       {"hostname", c.hostname},
       {"network_config", c.network_config},
       {"ssh_authorized_keys", c.ssh_authorized_keys}};
}
void from_json(const json& j, CloudInit& c) {
  c.user_data = j.value("user_data", std::string{});
  c.meta_data = j.value("meta_data", std::string{});
  c.hostname = j.value("hostname", std::string{});
  c.network_config = j.value("network_config", std::string{});
  c.ssh_authorized_keys = j.value("ssh_authorized_keys", std::vector<std::string>{});
}

void to_json(json& j, const DiskSpec& d) {
  j = {{"size_gib", d.size_gib}, {"bus", std::string(to_string(d.bus))}};
  if (!d.volume.empty()) {
    j["volume"] = d.volume;
    j["device"] = d.device;
  }
  put_image(j, d.image, d.image_sha256, d.image_size);
  if (!d.image.empty()) j["image_format"] = d.image_format;
}
void from_json(const json& j, DiskSpec& d) {
  d.size_gib = j.at("size_gib").get<std::int64_t>();
  d.bus = enum_from(j, "bus", disk_bus_from_string, DiskBus::virtio);
  d.volume = j.value("volume", std::string{});
  d.device = j.value("device", std::string{});
  get_image(j, d);
  d.image_format = j.value("image_format", std::string{});
}

void to_json(json& j, const VmSpec& s) {
  j = {{"name", s.name},
       {"vcpus", s.vcpus},
       {"memory_mib", s.memory_mib},
       {"disks", s.disks},
       {"host", s.pinned_host.empty() ? json(nullptr) : json(s.pinned_host)},
       {"anti_affinity_group",
        s.anti_affinity_group.empty() ? json(nullptr) : json(s.anti_affinity_group)},
       {"ha",
        {{"enabled", s.ha.enabled},
         {"priority", s.ha.priority},
         {"max_restarts", s.ha.max_restarts}}},
       {"nics", s.nics}};
  // Written only when set, so records of VMs without them stay as they were.
  if (s.cdrom) j["cdrom"] = *s.cdrom;
  if (!s.boot.empty()) j["boot"] = boot_json(s.boot);
  if (s.cloud_init) j["cloud_init"] = *s.cloud_init;
}
void from_json(const json& j, VmSpec& s) {
  s.name = j.at("name").get<std::string>();
  s.vcpus = j.at("vcpus").get<int>();
  s.memory_mib = j.at("memory_mib").get<std::int64_t>();
  s.disks = j.value("disks", std::vector<DiskSpec>{});
  s.pinned_host =
      j.contains("host") && !j.at("host").is_null() ? j.at("host").get<std::string>() : "";
  s.anti_affinity_group =
      j.contains("anti_affinity_group") && !j.at("anti_affinity_group").is_null()
          ? j.at("anti_affinity_group").get<std::string>()
          : "";
  // Records written before HA policies hold a boolean.
  if (auto it = j.find("ha"); it != j.end() && it->is_boolean()) {
    s.ha.enabled = it->get<bool>();
  } else if (it != j.end() && it->is_object()) {
    s.ha.enabled = it->value("enabled", false);
    s.ha.priority = it->value("priority", 0);
    s.ha.max_restarts = it->value("max_restarts", 3);
  }
  s.nics = j.value("nics", std::vector<NicSpec>{});  // VMs recorded before NICs: none
  if (j.contains("cdrom") && !j.at("cdrom").is_null()) s.cdrom = j.at("cdrom").get<CdromSpec>();
  s.boot = boot_from(j);
  if (j.contains("cloud_init") && !j.at("cloud_init").is_null())
    s.cloud_init = j.at("cloud_init").get<CloudInit>();
}

void to_json(json& j, const Vm& vm) {
  j = {{"id", vm.id},
       {"spec", vm.spec},
       {"host", vm.host.empty() ? json(nullptr) : json(vm.host)},
       {"desired_state", std::string(to_string(vm.desired))},
       {"state", std::string(to_string(vm.state))},
       {"generation", vm.generation},
       {"created_at", format_time(vm.created_at)},
       {"updated_at", format_time(vm.updated_at)}};
  if (!vm.seen.empty()) j["seen"] = vm.seen;
  if (vm.double_run)
    j["double_run"] = {{"hosts", vm.double_run->hosts},
                       {"since", format_time(vm.double_run->since)}};
  if (!vm.ha_restarts.empty()) {
    json times = json::array();
    for (const auto& t : vm.ha_restarts) times.push_back(format_time(t));
    j["ha_restarts"] = std::move(times);
  }
}
void from_json(const json& j, Vm& vm) {
  vm.id = j.at("id").get<std::string>();
  vm.spec = j.at("spec").get<VmSpec>();
  vm.host = j.contains("host") && !j.at("host").is_null() ? j.at("host").get<std::string>() : "";
  vm.desired = enum_from(j, "desired_state", desired_state_from_string, DesiredState::stopped);
  vm.state = enum_from(j, "state", vm_state_from_string, VmState::pending);
  vm.generation = j.value("generation", std::int64_t{1});
  vm.created_at = time_from(j, "created_at");
  vm.updated_at = time_from(j, "updated_at");
  vm.seen = j.value("seen", std::map<std::string, ReportStamp>{});
  if (auto it = j.find("double_run"); it != j.end() && !it->is_null())
    vm.double_run =
        DoubleRun{it->at("hosts").get<std::vector<std::string>>(), time_from(*it, "since")};
  if (auto it = j.find("ha_restarts"); it != j.end() && it->is_array())
    for (const auto& t : *it)
      if (auto at = t.is_string() ? parse_time(t.get<std::string>()) : std::nullopt)
        vm.ha_restarts.push_back(*at);
}

void to_json(json& j, const ReportStamp& s) {
  j = {{"agent", s.agent}, {"seq", s.seq}};
}
void from_json(const json& j, ReportStamp& s) {
  if (!j.is_object() || j.size() != 2) throw std::invalid_argument("a stamp is {agent, seq}");
  const auto& agent = j.at("agent");
  const auto& seq = j.at("seq");
  if (!agent.is_string() || !seq.is_number_unsigned())
    throw std::invalid_argument("a stamp is {agent: string, seq: unsigned}");
  auto name = agent.get<std::string>();
  if (name.empty() || name.size() > 64 || !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-';
      }))
    throw std::invalid_argument("a stamp's agent is 1-64 of [A-Za-z0-9-]");
  s.agent = std::move(name);
  s.seq = seq.get<std::uint64_t>();
}

void to_json(json& j, const DomainStatus& d) {
  j = {{"uuid", d.uuid},
       {"name", d.name},
       {"state", d.state},
       {"managed", d.managed},
       {"generation", d.generation},
       {"persistent", d.persistent}};
  if (!d.stamp.empty()) j["stamp"] = d.stamp;
}
void from_json(const json& j, DomainStatus& d) {
  d.uuid = j.at("uuid").get<std::string>();
  d.name = j.at("name").get<std::string>();
  d.state = j.at("state").get<std::string>();
  d.managed = j.value("managed", false);
  d.generation = j.value("generation", std::int64_t{0});
  d.persistent = j.value("persistent", true);
  if (auto it = j.find("stamp"); it != j.end()) d.stamp = it->get<ReportStamp>();
}

void to_json(json& j, const HostInventory& inv) {
  j = {{"hostname", inv.hostname},
       {"host_uuid", inv.host_uuid},
       {"cpus", inv.cpus},
       {"cpu_model", inv.cpu_model},
       {"memory_total_mib", inv.memory_total_mib},
       {"memory_free_mib", inv.memory_free_mib},
       {"libvirt_version", inv.libvirt_version},
       {"qemu_version", inv.qemu_version},
       {"domain_type", inv.domain_type},
       {"migration_address", inv.migration_address},
       {"domains", inv.domains},
       {"links", inv.links}};
  if (!inv.stamp.empty()) j["stamp"] = inv.stamp;
}
void from_json(const json& j, HostInventory& inv) {
  inv.hostname = j.value("hostname", "");
  inv.host_uuid = j.value("host_uuid", "");
  inv.cpus = j.value("cpus", 0);
  inv.cpu_model = j.value("cpu_model", "");
  inv.memory_total_mib = j.value("memory_total_mib", std::int64_t{0});
  inv.memory_free_mib = j.value("memory_free_mib", std::int64_t{0});
  inv.libvirt_version = j.value("libvirt_version", "");
  inv.qemu_version = j.value("qemu_version", "");
  inv.domain_type = j.value("domain_type", "");
  inv.migration_address = j.value("migration_address", "");
  inv.domains = j.value("domains", std::vector<DomainStatus>{});
  if (auto it = j.find("stamp"); it != j.end()) inv.stamp = it->get<ReportStamp>();
  inv.links = j.value("links", std::vector<HostLink>{});
}

void to_json(json& j, const Host& h) {
  j = {{"name", h.name},
       {"agent_url", h.agent_url},
       {"agent_secret", h.agent_secret},
       {"state", std::string(to_string(h.state))},
       {"schedulable", h.schedulable},
       {"inventory", h.inventory},
       {"last_heartbeat", time_or_null(h.last_heartbeat)},
       {"storage", h.storage},
       {"created_at", format_time(h.created_at)}};
  if (h.proven_down)
    j["proven_down"] = {{"kind", h.proven_down->kind},
                        {"detail", h.proven_down->detail},
                        {"by", h.proven_down->by},
                        {"at", format_time(h.proven_down->at)}};
  if (!h.fence_devices.empty()) {
    json devices = json::array();
    for (const auto& d : h.fence_devices)
      devices.push_back({{"agent", d.agent}, {"options", d.options}, {"secrets", d.secrets}});
    j["fence_devices"] = std::move(devices);
  }
}
void from_json(const json& j, Host& h) {
  h.name = j.at("name").get<std::string>();
  h.agent_url = j.value("agent_url", "");
  h.agent_secret = j.value("agent_secret", "");
  h.state = enum_from(j, "state", host_state_from_string, HostState::down);
  h.schedulable = j.value("schedulable", true);
  h.inventory = j.value("inventory", HostInventory{});
  h.last_heartbeat = opt_time_from(j, "last_heartbeat");
  h.storage = j.value("storage", json(nullptr));
  if (auto it = j.find("proven_down"); it != j.end() && it->is_object())
    h.proven_down = ProvenDown{it->value("kind", ""), it->value("detail", ""), it->value("by", ""),
                               time_from(*it, "at")};
  if (auto it = j.find("fence_devices"); it != j.end() && it->is_array())
    for (const auto& d : *it)
      h.fence_devices.push_back(
          FenceDevice{d.at("agent").get<std::string>(),
                      d.value("options", std::map<std::string, std::string>{}),
                      d.value("secrets", std::map<std::string, std::string>{})});
  h.created_at = time_from(j, "created_at");
}

void to_json(json& j, const Operation& op) {
  j = {{"id", op.id},
       {"kind", op.kind},
       {"target", {{"type", op.target_type}, {"id", op.target_id}}},
       {"state", std::string(to_string(op.state))},
       {"progress", op.progress},
       {"step", op.step},
       {"error", op.error ? op.error->to_json() : json(nullptr)},
       {"params", op.params},
       {"result", op.result},
       {"attempts", op.attempts},
       {"requested_by", op.requested_by},
       {"created_at", format_time(op.created_at)},
       {"started_at", time_or_null(op.started_at)},
       {"finished_at", time_or_null(op.finished_at)}};
  if (!op.idempotency_key.empty()) j["idempotency_key"] = op.idempotency_key;
  if (!op.request_hash.empty()) j["request_hash"] = op.request_hash;
  if (!op.requester_id.empty()) j["requester_id"] = op.requester_id;
}
void from_json(const json& j, Operation& op) {
  op.id = j.at("id").get<std::string>();
  op.kind = j.at("kind").get<std::string>();
  op.target_type = j.at("target").at("type").get<std::string>();
  op.target_id = j.at("target").at("id").get<std::string>();
  op.state = enum_from(j, "state", op_state_from_string, OpState::pending);
  op.progress = j.value("progress", 0);
  op.step = j.value("step", "");
  if (j.contains("error") && !j.at("error").is_null()) op.error = Error::from_json(j.at("error"));
  op.params = j.value("params", json::object());
  op.result = j.value("result", json::object());
  op.attempts = j.value("attempts", 0);
  op.requested_by = j.value("requested_by", "");
  op.idempotency_key = j.value("idempotency_key", "");
  op.request_hash = j.value("request_hash", "");
  op.requester_id = j.value("requester_id", "");
  op.created_at = time_from(j, "created_at");
  op.started_at = opt_time_from(j, "started_at");
  op.finished_at = opt_time_from(j, "finished_at");
}

void to_json(json& j, const DomainDisk& d) {
  j = {{"volume", d.volume},
       {"block_device", d.block_device},
       {"size_gib", d.size_gib},
       {"bus", std::string(to_string(d.bus))},
       {"target_dev", d.target_dev}};
  put_image(j, d.image, d.image_sha256, d.image_size);
  if (!d.image.empty()) j["image_format"] = d.image_format;
}
void from_json(const json& j, DomainDisk& d) {
  d.volume = j.value("volume", std::string{});
  d.block_device = j.value("block_device", std::string{});
  d.size_gib = j.at("size_gib").get<std::int64_t>();
  d.bus = enum_from(j, "bus", disk_bus_from_string, DiskBus::virtio);
  d.target_dev = j.at("target_dev").get<std::string>();
  get_image(j, d);
  d.image_format = j.value("image_format", std::string{});
}

void to_json(json& j, const DomainSpec& s) {
  j = {{"uuid", s.uuid},
       {"name", s.name},
       {"vcpus", s.vcpus},
       {"memory_mib", s.memory_mib},
       {"domain_type", s.domain_type},
       {"generation", s.generation},
       {"disks", s.disks},
       {"nics", s.nics}};
  if (s.cdrom) j["cdrom"] = *s.cdrom;
  if (!s.boot.empty()) j["boot"] = boot_json(s.boot);
  if (s.cloud_init) j["cloud_init"] = *s.cloud_init;
}
void from_json(const json& j, DomainSpec& s) {
  s.uuid = j.at("uuid").get<std::string>();
  s.name = j.at("name").get<std::string>();
  s.vcpus = j.at("vcpus").get<int>();
  s.memory_mib = j.at("memory_mib").get<std::int64_t>();
  s.domain_type = j.value("domain_type", "kvm");
  s.generation = j.value("generation", std::int64_t{1});
  s.disks = j.value("disks", std::vector<DomainDisk>{});
  s.nics = j.value("nics", std::vector<DomainNic>{});
  if (j.contains("cdrom") && !j.at("cdrom").is_null()) s.cdrom = j.at("cdrom").get<CdromSpec>();
  s.boot = boot_from(j);
  if (j.contains("cloud_init") && !j.at("cloud_init").is_null())
    s.cloud_init = j.at("cloud_init").get<CloudInit>();
}

}  // namespace kvmfleet
