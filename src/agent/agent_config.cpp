#include "kvmfleet/agent/agent_config.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/storage/storage_names.hpp"

namespace kvmfleet::agent {
namespace {

Result<std::string> read_file(const std::string& path, std::size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot read " + path);
  std::string data;
  data.resize(limit + 1);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<std::size_t>(in.gcount()));
  if (data.size() > limit) return invalid(path + " is too large");
  return data;
}

bool is_url(std::string_view u) {
  return (u.starts_with("http://") && u.size() > 7) || (u.starts_with("https://") && u.size() > 8);
}

bool is_absolute_path(std::string_view p) {
  return !p.empty() && p.front() == '/';
}

// Errors about a key of the storage object name it as "storage.KEY".
Error in_storage(Error e) {
  if (auto it = e.details.find("field"); it != e.details.end() && it->is_string())
    *it = "storage." + it->get<std::string>();
  else
    e.details["field"] = "storage";
  return e;
}

Result<StorageConfig> parse_storage_config(const nlohmann::json& j) {
  if (!j.is_object()) return invalid("storage must be a JSON object", {{"field", "storage"}});
  if (auto st = check_known_fields(j, {"host_id", "udev", "lock_manager", "devices", "multipath"},
                                   "storage");
      !st)
    return in_storage(st.take_error());
  StorageConfig s;
  auto host_id = get_int(j, "host_id", true, 0, 1, 2000);
  if (!host_id) return in_storage(host_id.take_error());
  s.host_id = static_cast<int>(*host_id);
  auto udev = get_bool(j, "udev", false);
  if (!udev) return in_storage(udev.take_error());
  s.udev = *udev;
  auto multipath = get_bool(j, "multipath", false);
  if (!multipath) return in_storage(multipath.take_error());
  s.multipath = *multipath;
  auto lock_manager = get_string(j, "lock_manager", false, "sanlock");
  if (!lock_manager) return in_storage(lock_manager.take_error());
  if (*lock_manager != "sanlock")
    return invalid("storage.lock_manager must be \"sanlock\"", {{"field", "storage.lock_manager"}});
  s.lock_manager = std::move(*lock_manager);
  if (auto it = j.find("devices"); it != j.end() && !it->is_null()) {
    if (!it->is_array())
      return invalid("storage.devices must be an array of device paths",
                     {{"field", "storage.devices"}});
    for (const auto& d : *it) {
      if (!d.is_string())
        return invalid("storage.devices must be an array of device paths",
                       {{"field", "storage.devices"}});
      auto path = d.get<std::string>();
      if (auto st = storage::check_device_path(path); !st)
        return invalid("storage.devices: " + st.error().message, {{"field", "storage.devices"}});
      if (std::find(s.devices.begin(), s.devices.end(), path) != s.devices.end())
        return invalid("storage.devices lists " + path + " twice", {{"field", "storage.devices"}});
      s.devices.push_back(std::move(path));
    }
  }
  return s;
}

}  // namespace

Result<AgentConfig> parse_agent_config(const nlohmann::json& j) {
  if (auto st = check_known_fields(
          j,
          {"host", "listen_address", "listen_port", "agent_url", "controller_url", "token_file",
           "libvirt_uri", "image_pool_path", "console_log_dir", "heartbeat_interval_ms",
           "tls_cert_file", "tls_key_file", "controller_ca_file", "worker_threads",
           "migration_address", "guest_accelerator", "storage"},
          "config");
      !st)
    return st.take_error();
  AgentConfig c;
  auto str = [&](const char* field, bool required, std::string& out) -> Status {
    auto v = get_string(j, field, required, out);
    if (!v) return v.take_error();
    out = std::move(*v);
    return {};
  };
  for (auto st :
       {str("host", true, c.host), str("listen_address", false, c.listen_address),
        str("agent_url", false, c.agent_url), str("controller_url", true, c.controller_url),
        str("token_file", true, c.token_file), str("libvirt_uri", false, c.libvirt_uri),
        str("image_pool_path", false, c.image_pool_path),
        str("console_log_dir", false, c.console_log_dir),
        str("tls_cert_file", false, c.tls_cert_file), str("tls_key_file", false, c.tls_key_file),
        str("controller_ca_file", false, c.controller_ca_file),
        str("migration_address", false, c.migration_address),
        str("guest_accelerator", false, c.guest_accelerator)}) {
    if (!st) return st.take_error();
  }
  if (auto st = check_name("host", c.host); !st) return st.take_error();
  auto port = get_int(j, "listen_port", false, c.listen_port, 1, 65'535);
  if (!port) return port.take_error();
  c.listen_port = static_cast<std::uint16_t>(*port);
  auto interval = get_int(j, "heartbeat_interval_ms", false, 5'000, 100, 300'000);
  if (!interval) return interval.take_error();
  c.heartbeat_interval = std::chrono::milliseconds{*interval};
  auto workers = get_int(j, "worker_threads", false, 4, 1, 64);
  if (!workers) return workers.take_error();
  c.worker_threads = static_cast<int>(*workers);

  if (!is_url(c.controller_url))
    return invalid("controller_url must be an http:// or https:// URL",
                   {{"field", "controller_url"}});
  if (!is_absolute_path(c.token_file))
    return invalid("token_file must be an absolute path", {{"field", "token_file"}});
  if (!is_absolute_path(c.image_pool_path))
    return invalid("image_pool_path must be an absolute path", {{"field", "image_pool_path"}});
  if (c.console_log_dir.empty()) {
    std::string base = c.image_pool_path;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    const auto slash = base.rfind('/');
    c.console_log_dir = (slash == 0 ? std::string() : base.substr(0, slash)) + "/console";
  }
  if (!is_absolute_path(c.console_log_dir))
    return invalid("console_log_dir must be an absolute path", {{"field", "console_log_dir"}});
  if (c.libvirt_uri.empty())
    return invalid("libvirt_uri must not be empty", {{"field", "libvirt_uri"}});
  if (!c.migration_address.empty() && !is_valid_network_host(c.migration_address))
    return invalid("migration_address must be an IPv4 address or a host name",
                   {{"field", "migration_address"}});
  if (c.guest_accelerator != "auto" && c.guest_accelerator != "tcg")
    return invalid("guest_accelerator must be \"auto\" or \"tcg\"",
                   {{"field", "guest_accelerator"}});
  if (c.tls_cert_file.empty() != c.tls_key_file.empty())
    return invalid("tls_cert_file and tls_key_file go together", {{"field", "tls_key_file"}});
  if (auto it = j.find("storage"); it != j.end() && !it->is_null()) {
    auto storage = parse_storage_config(*it);
    if (!storage) return storage.take_error();
    c.storage = std::move(*storage);
  }
  if (c.agent_url.empty()) {
    const bool tls = !c.tls_cert_file.empty();
    const bool v6 = c.listen_address.find(':') != std::string::npos;
    c.agent_url = std::string(tls ? "https://" : "http://") + (v6 ? "[" : "") + c.listen_address +
                  (v6 ? "]" : "") + ":" + std::to_string(c.listen_port);
  } else if (!is_url(c.agent_url)) {
    return invalid("agent_url must be an http:// or https:// URL", {{"field", "agent_url"}});
  }
  return c;
}

Result<AgentConfig> load_agent_config(const std::string& path) {
  auto text = read_file(path, 1 << 20);
  if (!text) return text.take_error();
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) return invalid(path + " is not valid JSON");
  auto config = parse_agent_config(j);
  if (!config) return config.take_error();

  auto token = read_file(config->token_file, 4096);
  if (!token) return token.take_error();
  while (!token->empty() && (token->back() == '\n' || token->back() == '\r' ||
                             token->back() == ' ' || token->back() == '\t'))
    token->pop_back();
  if (token->empty()) return invalid(config->token_file + " holds no token");
  for (unsigned char ch : *token) {
    if (ch <= 0x20 || ch >= 0x7f) return invalid(config->token_file + " holds an invalid token");
  }
  struct stat st {};
  if (::stat(config->token_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
    spdlog::warn("{} is readable by group or others; it holds a secret", config->token_file);
  config->token = std::move(*token);
  return config;
}

}  // namespace kvmfleet::agent
