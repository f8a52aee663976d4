#include "kvmfleet/cloud_init/cloud_init.hpp"

#include "kvmfleet/common/validate.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <string_view>

namespace kvmfleet::cloud_init {
namespace {

// A YAML document's nodes counted as the tree it expands to (aliases counted each time
// they are used), up to a budget: a small document of nested aliases can expand to
// billions of nodes, in the guest's cloud-init and in an emitter here alike.
constexpr std::size_t kMaxNodes = 20'000;

bool within_budget(const YAML::Node& node, std::size_t& budget, int depth) {
  if (budget == 0 || depth > 64) return false;
  --budget;
  if (node.IsSequence()) {
    for (const auto& child : node)
      if (!within_budget(child, budget, depth + 1)) return false;
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!within_budget(kv.first, budget, depth + 1)) return false;
      if (!within_budget(kv.second, budget, depth + 1)) return false;
    }
  }
  return true;
}

Error refusal(const std::string& field, const char* reason, std::string message) {
  return invalid(std::move(message), {{"field", field}, {"reason", reason}});
}

// One YAML document that is a mapping (or empty); never quotes the text.
Result<YAML::Node> load_map(const std::string& text, const std::string& field) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return refusal(field, "malformed_yaml",
                   field + " is not well-formed YAML (line " + std::to_string(e.mark.line + 1) +
                       ", column " + std::to_string(e.mark.column + 1) + ")");
  }
  if (node.IsNull()) return YAML::Node(YAML::NodeType::Map);
  if (!node.IsMap()) return refusal(field, "malformed_yaml", field + " must be a YAML mapping");
  std::size_t budget = kMaxNodes;
  if (!within_budget(node, budget, 0))
    return refusal(
        field, "cloud_init_too_large",
        field + " expands to more than " + std::to_string(kMaxNodes) + " YAML nodes or 64 levels");
  return node;
}

Status check_size(const std::string& text, std::size_t max, const std::string& field) {
  if (text.size() <= max) return {};
  return invalid(
      field + " is over its size limit of " + std::to_string(max) + " bytes",
      {{"field", field}, {"reason", "cloud_init_too_large"}, {"max", max}, {"size", text.size()}});
}

bool is_hostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  std::size_t label = 0;
  char prev = '.';
  for (char c : h) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if (alnum || c == '-') {
      if (label == 0 && c == '-') return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '.' && prev != '-';
}

// One line of an authorized_keys file: a key type cloud-init knows, then base64.
bool is_ssh_key(std::string_view k) {
  if (k.empty() || k.size() > kMaxSshKeyLength) return false;
  for (unsigned char c : k)
    if (c < 0x20 || c >= 0x7f) return false;
  static constexpr std::string_view kTypes[] = {"ssh-rsa ",
                                                "ssh-ed25519 ",
                                                "ssh-dss ",
                                                "ecdsa-sha2-nistp256 ",
                                                "ecdsa-sha2-nistp384 ",
                                                "ecdsa-sha2-nistp521 ",
                                                "sk-ssh-ed25519@openssh.com ",
                                                "sk-ecdsa-sha2-nistp256@openssh.com "};
  return std::any_of(std::begin(kTypes), std::end(kTypes),
                     [&](std::string_view t) { return k.starts_with(t) && k.size() > t.size(); });
}

Status check_user_data(const std::string& text) {
  if (text.empty()) return {};
  if (text.starts_with("#!")) return {};  // a script: cloud-init runs it as it is
  if (!text.starts_with("#cloud-config"))
    return refusal("cloud_init.user_data", "unsupported_user_data",
                   "cloud_init.user_data must be a #cloud-config YAML document or a #! script");
  auto node = load_map(text, "cloud_init.user_data");
  if (!node) return node.take_error();
  return {};
}

}  // namespace

Status check(const CloudInit& c) {
  if (auto st = check_size(c.user_data, kMaxUserData, "cloud_init.user_data"); !st) return st;
  if (auto st = check_size(c.meta_data, kMaxMetaData, "cloud_init.meta_data"); !st) return st;
  if (auto st = check_size(c.network_config, kMaxNetworkConfig, "cloud_init.network_config"); !st)
    return st;
  if (!c.meta_data.empty() && !c.hostname.empty())
    return refusal("cloud_init.hostname", "meta_data_and_hostname",
                   "cloud_init has meta_data or hostname, not both");
  if (!c.hostname.empty() && !is_hostname(c.hostname))
    return refusal("cloud_init.hostname", "bad_hostname",
                   "cloud_init.hostname must be a host name (letters, digits, '-' and '.')");
  if (c.ssh_authorized_keys.size() > kMaxSshKeys)
    return invalid("at most " + std::to_string(kMaxSshKeys) + " SSH keys",
                   {{"field", "cloud_init.ssh_authorized_keys"},
                    {"reason", "cloud_init_too_large"},
                    {"max", kMaxSshKeys}});
  for (std::size_t i = 0; i < c.ssh_authorized_keys.size(); ++i)
    if (!is_ssh_key(c.ssh_authorized_keys[i]))
      return refusal("cloud_init.ssh_authorized_keys[" + std::to_string(i) + "]", "bad_ssh_key",
                     "an SSH key must be one line: a key type (ssh-ed25519, ssh-rsa, "
                     "ecdsa-sha2-*, ...) and its base64");
  if (auto st = check_user_data(c.user_data); !st) return st;
  if (!c.meta_data.empty())
    if (auto n = load_map(c.meta_data, "cloud_init.meta_data"); !n) return n.take_error();
  if (!c.network_config.empty())
    if (auto n = load_map(c.network_config, "cloud_init.network_config"); !n) return n.take_error();
  std::size_t total = c.user_data.size() + c.meta_data.size() + c.network_config.size();
  for (const auto& k : c.ssh_authorized_keys) total += k.size() + 8;
  if (total > kMaxSeed)
    return invalid(
        "cloud_init is over its size limit of " + std::to_string(kMaxSeed) + " bytes",
        {{"field", "cloud_init"}, {"reason", "cloud_init_too_large"}, {"max", kMaxSeed}});
  return {};
}

Result<CloudInit> parse_cloud_init(const nlohmann::json& j) {
  if (!j.is_object()) return invalid("cloud_init must be an object", {{"field", "cloud_init"}});
  if (auto st = check_known_fields(
          j, {"user_data", "meta_data", "hostname", "network_config", "ssh_authorized_keys"},
          "cloud_init");
      !st)
    return st.take_error();
  CloudInit c;
  for (auto [key, out] :
       {std::pair{"user_data", &c.user_data}, std::pair{"meta_data", &c.meta_data},
        std::pair{"hostname", &c.hostname}, std::pair{"network_config", &c.network_config}}) {
    auto v = get_string(j, key, false);
    if (!v) {
      Error e = v.take_error();
      e.details["field"] = std::string("cloud_init.") + key;
      return e;
    }
    *out = std::move(*v);
  }
  if (auto it = j.find("ssh_authorized_keys"); it != j.end() && !it->is_null()) {
    if (!it->is_array())
      return invalid("cloud_init.ssh_authorized_keys must be an array of strings",
                     {{"field", "cloud_init.ssh_authorized_keys"}});
    if (it->size() > kMaxSshKeys)
      return invalid("at most " + std::to_string(kMaxSshKeys) + " SSH keys",
                     {{"field", "cloud_init.ssh_authorized_keys"},
                      {"reason", "cloud_init_too_large"},
                      {"max", kMaxSshKeys}});
    for (const auto& k : *it) {
      if (!k.is_string())
        return invalid("cloud_init.ssh_authorized_keys must be an array of strings",
                       {{"field", "cloud_init.ssh_authorized_keys"}});
      std::string key = k.get<std::string>();
      // A key pasted from a .pub file ends with a newline.
      while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
      c.ssh_authorized_keys.push_back(std::move(key));
    }
  }
  if (auto st = check(c); !st) return st.take_error();
  return c;
}

Result<SeedFiles> seed_files(const CloudInit& c, const std::string& instance_id,
                             const std::string& vm_name) {
  if (auto st = check(c); !st) return st.take_error();
  SeedFiles f;
  f.user_data = c.user_data.empty() ? "#cloud-config\n{}\n" : c.user_data;
  f.network_config = c.network_config;
  YAML::Node meta(YAML::NodeType::Map);
  if (!c.meta_data.empty()) {
    auto m = load_map(c.meta_data, "cloud_init.meta_data");
    if (!m) return m.take_error();
    meta = *m;
  }
  if (!meta["instance-id"]) meta["instance-id"] = instance_id;
  if (!meta["local-hostname"]) meta["local-hostname"] = c.hostname.empty() ? vm_name : c.hostname;
  if (!c.ssh_authorized_keys.empty()) {
    // NoCloud hands meta-data's public-keys to the default user, as other datasources'
    // keys: the user-data is passed on as written.
    YAML::Node keys = meta["public-keys"];
    if (keys && !keys.IsSequence())
      return refusal("cloud_init.meta_data", "malformed_yaml",
                     "cloud_init.meta_data public-keys must be a list");
    YAML::Node list(YAML::NodeType::Sequence);
    if (keys)
      for (const auto& k : keys) list.push_back(k);
    for (const auto& k : c.ssh_authorized_keys) list.push_back(k);
    meta["public-keys"] = list;
  }
  YAML::Emitter out;
  out << meta;
  if (!out.good()) return internal_error("cannot write the seed's meta-data");
  f.meta_data = std::string(out.c_str()) + "\n";
  return f;
}

}  // namespace kvmfleet::cloud_init
