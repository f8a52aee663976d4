#include "kvmfleet/api/request_parsing.hpp"

#include "kvmfleet/common/validate.hpp"

#include <algorithm>
#include <charconv>

namespace kvmfleet::api {

Result<nlohmann::json> parse_body(std::string_view body) {
  if (body.empty()) return invalid("request body is empty; a JSON object is required");
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) return invalid("request body is not valid JSON");
  if (!j.is_object()) return invalid("request body must be a JSON object");
  return j;
}

Result<VmCreateRequest> parse_vm_create(const nlohmann::json& body, bool allow_start) {
  if (allow_start) {
    if (auto st = check_known_fields(body, {"name", "vcpus", "memory_mib", "disks", "host",
                                            "anti_affinity_group", "ha", "start"});
        !st)
      return st.take_error();
  } else if (auto st = check_known_fields(body, {"name", "vcpus", "memory_mib", "disks", "host",
                                                 "anti_affinity_group", "ha"});
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
      if (auto st = check_known_fields(d, {"size_gib", "bus"}, where); !st) return st.take_error();
      DiskSpec disk;
      auto size = get_int(d, "size_gib", true, 0, 1, kMaxDiskGib);
      if (!size) {
        Error e = size.take_error();
        e.details["field"] = where + ".size_gib";
        return e;
      }
      disk.size_gib = *size;
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
  auto ha = get_bool(body, "ha", false);
  if (!ha) return ha.take_error();
  r.spec.ha = *ha;
  auto start = get_bool(body, "start", false);
  if (!start) return start.take_error();
  r.start = *start;
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
    if (!r.enabled) return invalid("policy applies only when enabling maintenance", {{"field", "policy"}});
    if (auto st = check_known_fields(
            p, {"max_downtime_ms", "bandwidth_mib_s", "auto_converge", "allow_post_copy",
                "converge_timeout_s", "downtime_ceiling_ms"});
        !st)
      return st.take_error();
    auto policy = parse_policy_fields(p, defaults);
    if (!policy) return policy.take_error();
    r.policy = *policy;
  }
  return r;
}

Result<MigrateRequest> parse_migrate(const nlohmann::json& body, const MigrationPolicy& defaults) {
  if (auto st = check_known_fields(body, {"target_host", "max_downtime_ms", "bandwidth_mib_s",
                                          "auto_converge", "allow_post_copy",
                                          "converge_timeout_s", "downtime_ceiling_ms"});
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
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!value) return value.take_error();
    if (!out.emplace(*key, *value).second)
      return invalid("query parameter given twice", {{"parameter", *key}});
  }
  return out;
}

Status check_query_keys(const std::map<std::string, std::string>& q,
                        std::initializer_list<std::string_view> allowed) {
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
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  else if (rest.starts_with("https://")) rest.remove_prefix(8);
  else return invalid("agent_url must start with http:// or https://", {{"field", "agent_url"}});
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return invalid("agent_url must be scheme://host:port", {{"field", "agent_url"}});
  const auto host = rest.substr(0, colon), port = rest.substr(colon + 1);
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-'))
      return invalid("agent_url host has characters outside [A-Za-z0-9.-]", {{"field", "agent_url"}});
  }
  int p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc{} || ptr != port.data() + port.size() || p < 1 || p > 65535)
    return invalid("agent_url port must be 1..65535", {{"field", "agent_url"}});
  if (host.size() > 253) return invalid("agent_url host too long", {{"field", "agent_url"}});
  return {};
}

}  // namespace kvmfleet::api
