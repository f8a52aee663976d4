#include "kvmfleet/api/request_parsing.hpp"

#include "kvmfleet/cloud_init/cloud_init.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/network/vm_nics.hpp"
#include "kvmfleet/storage/storage_names.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <tuple>

namespace kvmfleet::api {

Result<nlohmann::json> parse_body(std::string_view body) {
  if (body.empty()) return invalid("request body is empty; a JSON object is required");
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) return invalid("request body is not valid JSON");
  if (!j.is_object()) return invalid("request body must be a JSON object");
  return j;
}

namespace {

// "ha": true or false (HA with the default policy, or none), or the policy
// {enabled, priority, max_restarts}.
Result<HaPolicy> parse_ha(const nlohmann::json& body) {
  HaPolicy ha;
  auto it = body.find("ha");
  if (it == body.end() || it->is_null()) return ha;
  if (it->is_boolean()) {
    ha.enabled = it->get<bool>();
    return ha;
  }
  if (!it->is_object())
    return invalid("field ha must be a boolean or an object", {{"field", "ha"}});
  if (auto st = check_known_fields(*it, {"enabled", "priority", "max_restarts"}, "ha"); !st) {
    Error e = st.take_error();
    if (auto f = e.details.value("field", std::string()); !f.starts_with("ha."))
      e.details["field"] = "ha." + f;
    return e;
  }
  // Errors name the field as ha.<key>.
  auto prefixed = [](Error e) {
    e.details["field"] = "ha." + e.details.value("field", std::string());
    return e;
  };
  auto enabled = get_bool(*it, "enabled", true);
  if (!enabled) return prefixed(enabled.take_error());
  auto priority = get_int(*it, "priority", false, 0, 0, 1000);
  if (!priority) return prefixed(priority.take_error());
  auto max_restarts = get_int(*it, "max_restarts", false, 3, 1, 100);
  if (!max_restarts) return prefixed(max_restarts.take_error());
  ha.enabled = *enabled;
  ha.priority = static_cast<int>(*priority);
  ha.max_restarts = static_cast<int>(*max_restarts);
  return ha;
}

}  // namespace

Result<VmCreateRequest> parse_vm_create(const nlohmann::json& body, bool allow_start) {
  if (allow_start) {
    if (auto st = check_known_fields(
            body, {"name", "vcpus", "memory_mib", "disks", "host", "anti_affinity_group", "ha",
                   "start", "nics", "cdrom", "boot", "cloud_init"});
        !st)
      return st.take_error();
  } else if (auto st = check_known_fields(
                 body, {"name", "vcpus", "memory_mib", "disks", "host", "anti_affinity_group", "ha",
                        "nics", "cdrom", "boot", "cloud_init"});
             !st) {
    return st.take_error();
  }
  VmCreateRequest r;
  auto name = get_string(body, "name", true);
  if (!name) return name.take_error();
  if (auto st = check_name("name", *name); !st) return st.take_error();
  r.spec.name = *name;
  auto vcpus = get_int(body, "vcpus", false, 1, 1, kMaxVcpus);
  if (!vcpus) return vcpus.take_error();
  r.spec.vcpus = static_cast<int>(*vcpus);
  auto mem = get_int(body, "memory_mib", true, 0, kMinMemoryMib, kMaxMemoryMib);
  if (!mem) return mem.take_error();
  r.spec.memory_mib = *mem;
  if (auto it = body.find("disks"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return invalid("disks must be an array", {{"field", "disks"}});
    if (it->size() > kMaxDisks)
      return invalid("at most 16 disks", {{"field", "disks"}, {"max", kMaxDisks}});
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& d = (*it)[i];
      const std::string where = "disks[" + std::to_string(i) + "]";
      if (auto st = check_known_fields(d, {"size_gib", "bus", "volume", "image"}, where); !st)
        return st.take_error();
      DiskSpec disk;
      auto image = get_string(d, "image", false);
      if (!image) {
        Error e = image.take_error();
        e.details["field"] = where + ".image";
        return e;
      }
      if (!image->empty()) {
        if (!is_valid_name(*image))
          return invalid("image must be an image's name", {{"field", where + ".image"}});
        if (d.contains("volume"))
          return invalid("a disk from an image is made in the host's image pool: no volume",
                         {{"field", where + ".volume"}});
        disk.image = *image;
      }
      // A disk is either a new volume in the host's image pool (size_gib) or an
      // existing shared volume (volume: its name or id).
      auto volume = get_string(d, "volume", false);
      if (!volume) {
        Error e = volume.take_error();
        e.details["field"] = where + ".volume";
        return e;
      }
      if (!volume->empty()) {
        if (d.contains("size_gib"))
          return invalid("a disk has either size_gib or volume, not both",
                         {{"field", where + ".size_gib"}});
        if (!is_valid_name(*volume) && !is_valid_uuid(*volume))
          return invalid("volume must be a volume's name or id", {{"field", where + ".volume"}});
        disk.volume = *volume;
      } else {
        // From an image, the size is optional: the image's own when not given.
        auto size = get_int(d, "size_gib", disk.image.empty(), 0, 1, kMaxDiskGib);
        if (!size) {
          Error e = size.take_error();
          e.details["field"] = where + ".size_gib";
          return e;
        }
        disk.size_gib = *size;
      }
      auto bus = get_string(d, "bus", false, "virtio");
      if (!bus) return bus.take_error();
      auto b = disk_bus_from_string(*bus);
      if (!b) return invalid("bus must be virtio, sata or scsi", {{"field", where + ".bus"}});
      disk.bus = *b;
      r.spec.disks.push_back(disk);
    }
  }
  auto host = get_string(body, "host", false);
  if (!host) return host.take_error();
  if (!host->empty()) {
    if (auto st = check_name("host", *host); !st) return st.take_error();
    r.spec.pinned_host = *host;
  }
  auto group = get_string(body, "anti_affinity_group", false);
  if (!group) return group.take_error();
  if (!group->empty()) {
    if (auto st = check_name("anti_affinity_group", *group); !st) return st.take_error();
    r.spec.anti_affinity_group = *group;
  }
  if (auto ha = parse_ha(body); !ha)
    return ha.take_error();
  else
    r.spec.ha = *ha;
  if (auto it = body.find("nics"); it != body.end() && !it->is_null()) {
    auto nics = parse_nics(*it);
    if (!nics) return nics.take_error();
    r.spec.nics = std::move(*nics);
  }
  if (auto it = body.find("cdrom"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("cdrom must be an object", {{"field", "cdrom"}});
    if (auto st = check_known_fields(*it, {"image"}, "cdrom"); !st) return st.take_error();
    auto image = get_string(*it, "image", true);
    if (!image) {
      Error e = image.take_error();
      e.details["field"] = "cdrom.image";
      return e;
    }
    if (!is_valid_name(*image))
      return invalid("cdrom.image must be an image's name", {{"field", "cdrom.image"}});
    r.spec.cdrom = CdromSpec{*image, {}, 0};
  }
  if (auto it = body.find("boot"); it != body.end() && !it->is_null()) {
    auto boot = parse_boot_order(*it, r.spec);
    if (!boot) return boot.take_error();
    r.spec.boot = std::move(*boot);
  }
  if (auto it = body.find("cloud_init"); it != body.end() && !it->is_null()) {
    auto ci = cloud_init::parse_cloud_init(*it);
    if (!ci) return ci.take_error();
    r.spec.cloud_init = std::move(*ci);
  }
  auto start = get_bool(body, "start", false);
  if (!start) return start.take_error();
  r.start = *start;
  return r;
}

Result<std::vector<BootDevice>> parse_boot_order(const nlohmann::json& j, const VmSpec& spec) {
  auto bad = [](std::string m) {
    return invalid(std::move(m), {{"field", "boot"}, {"reason", "bad_boot_order"}});
  };
  if (!j.is_array() || j.empty() || j.size() > 3)
    return bad("boot must be a list of 1 to 3 of disk, cdrom and network");
  std::vector<BootDevice> boot;
  for (const auto& b : j) {
    auto d = b.is_string() ? boot_device_from_string(b.get<std::string>()) : std::nullopt;
    if (!d) return bad("boot must be a list of 1 to 3 of disk, cdrom and network");
    if (std::find(boot.begin(), boot.end(), *d) != boot.end())
      return bad("boot names " + std::string(to_string(*d)) + " twice");
    if (*d == BootDevice::disk && spec.disks.empty())
      return bad("boot names disk; the VM has none");
    if (*d == BootDevice::cdrom && !spec.cdrom) return bad("boot names cdrom; the VM has none");
    if (*d == BootDevice::network && spec.nics.empty())
      return bad("boot names network; the VM has no NIC");
    boot.push_back(*d);
  }
  return boot;
}

namespace {

// Names that become LVM names as they are: kvmfleet's name rule, plus LVM's own.
Status check_storage_name(std::string_view field, std::string_view name, bool vg) {
  if (auto st = check_name(field, name); !st) return st;
  auto st = vg ? storage::check_vg_name(name) : storage::check_lv_name(name);
  if (!st) return invalid(std::string(field) + ": " + st.error().message, {{"field", field}});
  return {};
}

// Exactly one of size_bytes / size_gib; within LVM's range and a multiple of 512.
Result<std::uint64_t> parse_size(const nlohmann::json& body) {
  const bool bytes = body.contains("size_bytes");
  const bool gib = body.contains("size_gib");
  if (bytes == gib)
    return invalid("give exactly one of size_bytes and size_gib", {{"field", "size_bytes"}});
  constexpr auto kMax = static_cast<std::int64_t>(storage::kMaxVolumeBytes);
  if (gib) {
    auto g = get_int(body, "size_gib", true, 0, 1, kMax >> 30);
    if (!g) return g.take_error();
    return static_cast<std::uint64_t>(*g) << 30;
  }
  auto b = get_int(body, "size_bytes", true, 0, 512, kMax);
  if (!b) return b.take_error();
  if (*b % 512 != 0)
    return invalid("size_bytes must be a multiple of 512", {{"field", "size_bytes"}});
  return static_cast<std::uint64_t>(*b);
}

// An array of at most kMaxPoolHosts host names.
Result<std::vector<std::string>> host_names(const nlohmann::json& j) {
  if (!j.is_array() || j.size() > kMaxPoolHosts)
    return invalid("hosts must be an array of host names", {{"field", "hosts"}});
  std::vector<std::string> out;
  for (const auto& h : j) {
    if (!h.is_string() || !is_valid_name(h.get<std::string>()))
      return invalid("hosts must be an array of host names", {{"field", "hosts"}});
    out.push_back(h.get<std::string>());
  }
  return out;
}

}  // namespace

Result<PoolCreateRequest> parse_pool_create(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"name", "type", "targets", "wwids", "hosts"}); !st)
    return st.take_error();
  PoolCreateRequest r;
  auto name = get_string(body, "name", true);
  if (!name) return name.take_error();
  if (auto st = check_storage_name("name", *name, true); !st) return st.take_error();
  r.pool.name = *name;
  auto type = get_string(body, "type", true);
  if (!type) return type.take_error();
  auto t = pool_type_from_string(*type);
  if (!t) return invalid("type must be iscsi or fc", {{"field", "type"}});
  r.pool.type = *t;
  if (*t == PoolType::iscsi) {
    if (body.contains("wwids")) return invalid("wwids are for type fc", {{"field", "wwids"}});
    auto it = body.find("targets");
    if (it == body.end() || !it->is_array() || it->empty() || it->size() > kMaxPoolLuns)
      return invalid("targets must be an array of 1 to 16 iSCSI targets", {{"field", "targets"}});
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& j = (*it)[i];
      const std::string where = "targets[" + std::to_string(i) + "]";
      if (!j.is_object()) return invalid(where + " must be an object", {{"field", where}});
      if (auto st = check_known_fields(j, {"portal", "iqn", "lun", "chap"}, where); !st)
        return st.take_error();
      IscsiPoolTarget target;
      auto portal = get_string(j, "portal", true);
      if (!portal) return invalid(where + ".portal is required", {{"field", where + ".portal"}});
      auto normal = storage::normalize_portal(*portal);
      if (!normal)
        return invalid(where + ".portal: " + normal.error().message,
                       {{"field", where + ".portal"}});
      target.portal = *normal;
      auto iqn = get_string(j, "iqn", true);
      if (!iqn) return invalid(where + ".iqn is required", {{"field", where + ".iqn"}});
      if (auto st = storage::check_iscsi_name(*iqn); !st)
        return invalid(where + ".iqn: " + st.error().message, {{"field", where + ".iqn"}});
      target.iqn = *iqn;
      auto lun = get_int(j, "lun", false, 1, 0, 16383);
      if (!lun) return invalid(where + ".lun must be 0..16383", {{"field", where + ".lun"}});
      target.lun = static_cast<int>(*lun);
      if (auto c = j.find("chap"); c != j.end() && !c->is_null()) {
        if (!c->is_object())
          return invalid(where + ".chap must be an object", {{"field", where + ".chap"}});
        if (auto st = check_known_fields(*c, {"username", "password"}, where + ".chap"); !st)
          return st.take_error();
        auto u = get_string(*c, "username", true);
        auto pw = get_string(*c, "password", true);
        if (!u || !pw || u->empty() || u->size() > 255 || pw->size() < 12 || pw->size() > 255)
          return invalid(where +
                             ".chap needs a username (1-255 characters) and a password "
                             "(12-255 characters)",
                         {{"field", where + ".chap"}});
        for (const std::string* v : {&*u, &*pw})
          for (unsigned char ch : *v)
            if (ch < 0x21 || ch > 0x7e)
              return invalid(where + ".chap values must be printable ASCII without spaces",
                             {{"field", where + ".chap"}});
        target.chap_username = *u;
        target.chap_password = *pw;
      }
      for (const auto& other : r.pool.targets)
        if (other.iqn == target.iqn && other.lun == target.lun)
          return invalid(where + " repeats a LUN", {{"field", where}});
      r.pool.targets.push_back(std::move(target));
    }
  } else {
    if (body.contains("targets"))
      return invalid("targets are for type iscsi", {{"field", "targets"}});
    auto it = body.find("wwids");
    if (it == body.end() || !it->is_array() || it->empty() || it->size() > kMaxPoolLuns)
      return invalid("wwids must be an array of 1 to 16 WWIDs", {{"field", "wwids"}});
    for (const auto& w : *it) {
      if (!w.is_string()) return invalid("wwids must be strings", {{"field", "wwids"}});
      const auto& s = w.get_ref<const std::string&>();
      if (auto st = storage::check_wwid(s); !st)
        return invalid(st.error().message, {{"field", "wwids"}});
      if (std::find(r.pool.wwids.begin(), r.pool.wwids.end(), s) != r.pool.wwids.end())
        return invalid("wwids repeats " + s, {{"field", "wwids"}});
      r.pool.wwids.push_back(s);
    }
  }
  if (auto it = body.find("hosts"); it != body.end() && !it->is_null()) {
    auto hosts = host_names(*it);
    if (!hosts) return hosts.take_error();
    r.hosts = std::move(*hosts);
  }
  return r;
}

Result<std::vector<std::string>> parse_pool_hosts(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"hosts"}); !st) return st.take_error();
  auto it = body.find("hosts");
  if (it == body.end() || !it->is_array() || it->empty())
    return invalid("hosts must name at least one host", {{"field", "hosts"}});
  auto hosts = host_names(*it);
  if (!hosts) return hosts.take_error();
  for (std::size_t i = 1; i < hosts->size(); ++i)
    if (std::find(hosts->begin(), hosts->begin() + i, (*hosts)[i]) != hosts->begin() + i)
      return invalid("hosts repeats " + (*hosts)[i], {{"field", "hosts"}});
  return hosts;
}

Result<VolumeCreateRequest> parse_volume_create(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"name", "pool", "size_bytes", "size_gib"}); !st)
    return st.take_error();
  VolumeCreateRequest r;
  auto name = get_string(body, "name", true);
  if (!name) return name.take_error();
  if (auto st = check_storage_name("name", *name, false); !st) return st.take_error();
  r.name = *name;
  auto pool = get_string(body, "pool", true);
  if (!pool) return pool.take_error();
  if (auto st = check_name("pool", *pool); !st) return st.take_error();
  r.pool = *pool;
  auto size = parse_size(body);
  if (!size) return size.take_error();
  r.size_bytes = *size;
  return r;
}

Result<std::uint64_t> parse_volume_grow(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"size_bytes", "size_gib"}); !st) return st.take_error();
  return parse_size(body);
}

Result<SnapshotCreateRequest> parse_snapshot_create(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"name", "size_bytes", "size_ratio", "quiesce"}); !st)
    return st.take_error();
  SnapshotCreateRequest r;
  auto name = get_string(body, "name", true);
  if (!name) return name.take_error();
  if (auto st = check_name("name", *name); !st) return st.take_error();
  r.name = *name;
  if (body.contains("size_bytes") && body.contains("size_ratio"))
    return invalid("give at most one of size_bytes and size_ratio", {{"field", "size_ratio"}});
  if (body.contains("size_bytes")) {
    auto size = parse_size(body);
    if (!size) return size.take_error();
    r.size_bytes = *size;
  }
  if (auto it = body.find("size_ratio"); it != body.end()) {
    if (!it->is_number() || it->get<double>() <= 0.0 || it->get<double>() > 1.0)
      return invalid("size_ratio must be a number above 0 and at most 1",
                     {{"field", "size_ratio"}});
    r.ratio = it->get<double>();
  }
  auto q = get_bool(body, "quiesce", true);
  if (!q) return q.take_error();
  r.quiesce = *q;
  return r;
}

Result<StopRequest> parse_stop(const nlohmann::json& body) {
  if (auto st = check_known_fields(body, {"timeout_s", "force"}); !st) return st.take_error();
  StopRequest r;
  auto t = get_int(body, "timeout_s", false, 0, 1, 3600);
  if (!t) return t.take_error();
  r.timeout_s = static_cast<int>(*t);
  auto f = get_bool(body, "force", false);
  if (!f) return f.take_error();
  r.force = *f;
  return r;
}

namespace {

Result<MigrationPolicy> parse_policy_fields(const nlohmann::json& body,
                                            const MigrationPolicy& defaults) {
  MigrationPolicy r = defaults;
  auto downtime = get_int(body, "max_downtime_ms", false, defaults.max_downtime_ms, 1, 600'000);
  if (!downtime) return downtime.take_error();
  r.max_downtime_ms = *downtime;
  auto bw = get_int(body, "bandwidth_mib_s", false, defaults.bandwidth_mib_s, 0, 100'000);
  if (!bw) return bw.take_error();
  r.bandwidth_mib_s = *bw;
  auto ac = get_bool(body, "auto_converge", defaults.auto_converge);
  if (!ac) return ac.take_error();
  r.auto_converge = *ac;
  auto pc = get_bool(body, "allow_post_copy", defaults.allow_post_copy);
  if (!pc) return pc.take_error();
  r.allow_post_copy = *pc;
  auto budget = get_int(body, "converge_timeout_s", false, defaults.converge_timeout_s, 0, 86'400);
  if (!budget) return budget.take_error();
  r.converge_timeout_s = *budget;
  // The ceiling follows a raised downtime unless given: it is never below it.
  auto ceiling = get_int(body, "downtime_ceiling_ms", false,
                         std::max(defaults.downtime_ceiling_ms, r.max_downtime_ms), 1, 600'000);
  if (!ceiling) return ceiling.take_error();
  if (*ceiling < r.max_downtime_ms)
    return invalid("downtime_ceiling_ms must not be below max_downtime_ms",
                   {{"field", "downtime_ceiling_ms"}});
  r.downtime_ceiling_ms = *ceiling;
  return r;
}

}  // namespace

Result<MaintenanceRequest> parse_maintenance(const nlohmann::json& body,
                                             const MigrationPolicy& defaults) {
  if (auto st = check_known_fields(body, {"enabled", "policy"}); !st) return st.take_error();
  if (!body.contains("enabled") || !body["enabled"].is_boolean())
    return invalid("enabled must be true or false", {{"field", "enabled"}});
  MaintenanceRequest r;
  r.enabled = body["enabled"].get<bool>();
  r.policy = defaults;
  if (body.contains("policy")) {
    const auto& p = body["policy"];
    if (!p.is_object()) return invalid("policy must be an object", {{"field", "policy"}});
    if (!r.enabled)
      return invalid("policy applies only when enabling maintenance", {{"field", "policy"}});
    if (auto st =
            check_known_fields(p, {"max_downtime_ms", "bandwidth_mib_s", "auto_converge",
                                   "allow_post_copy", "converge_timeout_s", "downtime_ceiling_ms"});
        !st)
      return st.take_error();
    auto policy = parse_policy_fields(p, defaults);
    if (!policy) return policy.take_error();
    r.policy = *policy;
  }
  return r;
}

Result<MigrateRequest> parse_migrate(const nlohmann::json& body, const MigrationPolicy& defaults) {
  if (auto st = check_known_fields(
          body, {"target_host", "max_downtime_ms", "bandwidth_mib_s", "auto_converge",
                 "allow_post_copy", "converge_timeout_s", "downtime_ceiling_ms"});
      !st)
    return st.take_error();
  MigrateRequest r;
  auto host = get_string(body, "target_host", false);
  if (!host) return host.take_error();
  if (!host->empty()) {
    if (auto st = check_name("target_host", *host); !st) return st.take_error();
    r.target_host = *host;
  }
  auto policy = parse_policy_fields(body, defaults);
  if (!policy) return policy.take_error();
  r.policy = *policy;
  return r;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return invalid("bad percent-encoding in query");
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return invalid("bad percent-encoding in query");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

Result<std::map<std::string, std::string>> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto key = percent_decode(part.substr(0, eq));
    if (!key) return key.take_error();
    auto value =
        percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!value) return value.take_error();
    if (!out.emplace(*key, *value).second)
      return invalid("query parameter given twice", {{"parameter", *key}});
  }
  return out;
}

Status check_query_keys(const std::map<std::string, std::string>& q,
                        const std::vector<std::string_view>& allowed) {
  for (const auto& [k, _] : q) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      return invalid("unknown query parameter", {{"parameter", k}});
  }
  return {};
}

Result<int> query_int(const std::map<std::string, std::string>& q, const std::string& key,
                      int fallback, int min, int max) {
  auto it = q.find(key);
  if (it == q.end()) return fallback;
  int v = 0;
  const auto& s = it->second;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size())
    return invalid(key + " must be an integer", {{"parameter", key}});
  if (v < min || v > max)
    return invalid(key + " is out of range", {{"parameter", key}, {"min", min}, {"max", max}});
  return v;
}

Result<bool> query_bool(const std::map<std::string, std::string>& q, const std::string& key,
                        bool fallback) {
  auto it = q.find(key);
  if (it == q.end()) return fallback;
  if (it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  return invalid(key + " must be true or false", {{"parameter", key}});
}

Status check_agent_url(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("http://"))
    rest.remove_prefix(7);
  else if (rest.starts_with("https://"))
    rest.remove_prefix(8);
  else
    return invalid("agent_url must start with http:// or https://", {{"field", "agent_url"}});
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return invalid("agent_url must be scheme://host:port", {{"field", "agent_url"}});
  const auto host = rest.substr(0, colon), port = rest.substr(colon + 1);
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-'))
      return invalid("agent_url host has characters outside [A-Za-z0-9.-]",
                     {{"field", "agent_url"}});
  }
  int p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc{} || ptr != port.data() + port.size() || p < 1 || p > 65535)
    return invalid("agent_url port must be 1..65535", {{"field", "agent_url"}});
  if (host.size() > 253) return invalid("agent_url host too long", {{"field", "agent_url"}});
  return {};
}

namespace {

// The error of a field read by get_string/get_int/get_bool, named by its full path.
Error at(Error e, const std::string& prefix) {
  if (e.details.contains("field"))
    e.details["field"] = prefix + e.details["field"].get<std::string>();
  e.message = prefix + e.message;
  return e;
}

Result<std::string> bounded_string(const nlohmann::json& j, std::string_view field,
                                   const std::string& prefix, std::size_t max) {
  auto v = get_string(j, field, false);
  if (!v) return at(v.take_error(), prefix);
  if (v->size() > max)
    return invalid(prefix + std::string(field) + " is longer than " + std::to_string(max),
                   {{"field", prefix + std::string(field)}});
  return v;
}

// An optional "stamp" ({agent, seq}, the model's strict reader).
Status read_stamp(const nlohmann::json& j, const std::string& prefix, ReportStamp& out) {
  auto it = j.find("stamp");
  if (it == j.end()) return {};
  try {
    out = it->get<ReportStamp>();
  } catch (const std::exception&) {
    return invalid(prefix + "stamp is malformed", {{"field", prefix + "stamp"}});
  }
  return {};
}

}  // namespace

Result<HostInventory> parse_inventory(const nlohmann::json& j) {
  const std::string p = "inventory.";
  if (!j.is_object()) return invalid("inventory must be an object", {{"field", "inventory"}});
  HostInventory inv;
  for (auto [field, out, max] :
       {std::tuple{"hostname", &inv.hostname, 255}, std::tuple{"host_uuid", &inv.host_uuid, 64},
        std::tuple{"cpu_model", &inv.cpu_model, 255},
        std::tuple{"libvirt_version", &inv.libvirt_version, 64},
        std::tuple{"qemu_version", &inv.qemu_version, 64},
        std::tuple{"migration_address", &inv.migration_address, 255}}) {
    auto v = bounded_string(j, field, p, static_cast<std::size_t>(max));
    if (!v) return v.take_error();
    *out = std::move(*v);
  }
  auto type = get_string(j, "domain_type", false);
  if (!type) return at(type.take_error(), p);
  if (!type->empty() && *type != "kvm" && *type != "qemu")
    return invalid("inventory.domain_type must be kvm or qemu",
                   {{"field", "inventory.domain_type"}});
  inv.domain_type = *type;
  auto cpus = get_int(j, "cpus", false, 0, 0, 1 << 16);
  if (!cpus) return at(cpus.take_error(), p);
  inv.cpus = static_cast<int>(*cpus);
  constexpr std::int64_t kMaxMib = std::int64_t{1} << 40;
  auto total = get_int(j, "memory_total_mib", false, 0, 0, kMaxMib);
  if (!total) return at(total.take_error(), p);
  inv.memory_total_mib = *total;
  auto free = get_int(j, "memory_free_mib", false, 0, 0, kMaxMib);
  if (!free) return at(free.take_error(), p);
  inv.memory_free_mib = *free;
  if (auto st = read_stamp(j, p, inv.stamp); !st) return st.take_error();
  if (auto links = j.find("links"); links != j.end() && !links->is_null()) {
    if (!links->is_array() || links->size() > kMaxInventoryLinks)
      return invalid("inventory.links must be an array of at most 4096 links",
                     {{"field", "inventory.links"}});
    for (std::size_t i = 0; i < links->size(); ++i) {
      const std::string where = p + "links[" + std::to_string(i) + "]";
      try {
        // HostLink's reader checks the name and kind (model/network.cpp).
        inv.links.push_back((*links)[i].get<HostLink>());
      } catch (const std::exception&) {
        return invalid(where + " is malformed", {{"field", where}});
      }
    }
  }
  auto it = j.find("domains");
  if (it == j.end() || it->is_null()) return inv;
  if (!it->is_array() || it->size() > kMaxInventoryDomains)
    return invalid("inventory.domains must be an array of at most 4096 domains",
                   {{"field", "inventory.domains"}});
  for (std::size_t i = 0; i < it->size(); ++i) {
    const auto& d = (*it)[i];
    const std::string where = p + "domains[" + std::to_string(i) + "].";
    if (!d.is_object())
      return invalid(where + " must be an object", {{"field", where.substr(0, where.size() - 1)}});
    DomainStatus s;
    auto uuid = get_string(d, "uuid", true);
    if (!uuid) return at(uuid.take_error(), where);
    if (!is_valid_uuid(*uuid))
      return invalid(where + "uuid must be a canonical UUID", {{"field", where + "uuid"}});
    s.uuid = *uuid;
    auto name = get_string(d, "name", true);
    if (!name) return at(name.take_error(), where);
    if (name->empty() || name->size() > 255)
      return invalid(where + "name must be 1-255 characters", {{"field", where + "name"}});
    s.name = *name;
    auto state = get_string(d, "state", true);
    if (!state) return at(state.take_error(), where);
    if (!vm_state_from_string(*state))
      return invalid(where + "state is not a VM state", {{"field", where + "state"}});
    s.state = *state;
    auto managed = get_bool(d, "managed", false);
    if (!managed) return at(managed.take_error(), where);
    s.managed = *managed;
    auto generation =
        get_int(d, "generation", false, 0, 0, std::numeric_limits<std::int64_t>::max());
    if (!generation) return at(generation.take_error(), where);
    s.generation = *generation;
    auto persistent = get_bool(d, "persistent", true);
    if (!persistent) return at(persistent.take_error(), where);
    s.persistent = *persistent;
    if (auto st = read_stamp(d, where, s.stamp); !st) return st.take_error();
    inv.domains.push_back(std::move(s));
  }
  return inv;
}

bool is_event_state(std::string_view state) {
  return state == "undefined" || vm_state_from_string(state).has_value();
}

}  // namespace kvmfleet::api
