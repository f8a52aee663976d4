#include "kvmfleet/fencing/fence_agent.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <utility>

namespace kvmfleet::fencing {
namespace {

constexpr std::array<std::pair<FenceAction, std::string_view>, 5> kActions{{
    {FenceAction::off, "off"},
    {FenceAction::on, "on"},
    {FenceAction::reboot, "reboot"},
    {FenceAction::status, "status"},
    {FenceAction::monitor, "monitor"},
}};

// The fence-agents family's secret options (fencing.py's all_opt and the agents'
// own): passwords, their scripts, SNMP secrets, cloud keys.
constexpr std::array<std::string_view, 14> kSecretOptions{
    "password",      "passwd",           "password_script",
    "passwd_script", "snmp_priv_passwd", "snmp_priv_passwd_script",
    "community",     "secret_key",       "access_key",
    "apikey",        "api_key",          "token",
    "auth_token",    "client_secret"};

bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

Error bad_option(std::string message, std::string_view key, std::string_view reason) {
  return invalid(std::move(message), {{"option", std::string(key)}, {"reason", reason}});
}

}  // namespace

std::string_view to_string(FenceAction a) {
  for (const auto& [k, v] : kActions)
    if (k == a) return v;
  return "status";
}

std::string_view to_string(PowerStatus s) {
  switch (s) {
    case PowerStatus::on:
      return "on";
    case PowerStatus::off:
      return "off";
    case PowerStatus::unknown:
      return "unknown";
  }
  return "unknown";
}

Status check_agent_name(std::string_view agent) {
  constexpr std::string_view prefix = "fence_";
  const bool shape = agent.size() > prefix.size() && agent.size() <= 64 &&
                     agent.starts_with(prefix) &&
                     std::all_of(agent.begin() + static_cast<std::ptrdiff_t>(prefix.size()),
                                 agent.end(), [](char c) { return lower_alnum(c) || c == '_'; });
  if (!shape)
    return invalid("a fence agent is named fence_[a-z0-9_]+ (at most 64 characters)",
                   {{"field", "agent"}, {"reason", "bad_agent_name"}});
  return ok_status();
}

Status check_option(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > kMaxKeyBytes || !(key[0] >= 'a' && key[0] <= 'z') ||
      !std::all_of(key.begin(), key.end(), [](char c) { return lower_alnum(c) || c == '_'; }))
    return bad_option("an option's name is [a-z][a-z0-9_]* of at most 64 characters", key,
                      "bad_option_name");
  if (key == "action")
    return bad_option("the action is not an option: kvmfleet sets it for each call", key,
                      "reserved_option");
  if (value.size() > kMaxValueBytes)
    return bad_option("an option's value is at most 1024 bytes", key, "option_too_long");
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f)
      return bad_option("an option's value holds no line break or other control character", key,
                        "bad_option_value");
  return ok_status();
}

bool is_secret_option(std::string_view key) {
  if (std::find(kSecretOptions.begin(), kSecretOptions.end(), key) != kSecretOptions.end())
    return true;
  return key.find("passw") != std::string_view::npos ||
         key.find("secret") != std::string_view::npos ||
         key.find("token") != std::string_view::npos;
}

std::string fence_input(FenceAction action, const std::map<std::string, std::string>& options) {
  std::string in = "action=" + std::string(to_string(action)) + "\n";
  for (const auto& [k, v] : options) in += k + "=" + v + "\n";
  return in;
}

PowerStatus status_of(FenceAction action, int exit_code) {
  if (action != FenceAction::status && action != FenceAction::monitor) return PowerStatus::unknown;
  if (exit_code == 0) return action == FenceAction::status ? PowerStatus::on : PowerStatus::unknown;
  if (exit_code == 2 && action == FenceAction::status) return PowerStatus::off;
  return PowerStatus::unknown;
}

std::string masked_tail(std::string text, const std::map<std::string, std::string>& options,
                        std::size_t limit) {
  for (const auto& [k, v] : options) {
    if (v.empty() || !is_secret_option(k)) continue;
    for (auto at = text.find(v); at != std::string::npos; at = text.find(v, at + 3))
      text.replace(at, v.size(), "***");
  }
  if (text.size() > limit) text.erase(0, text.size() - limit);
  return text;
}

Status CommandFenceAgent::check_available(const std::string& agent) {
  if (auto st = check_agent_name(agent); !st) return st;
  const auto path = agent_dir_ + "/" + agent;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) || ::access(path.c_str(), X_OK) != 0)
    return not_found("no fence agent " + agent + " in " + agent_dir_,
                     {{"agent", agent}, {"reason", "agent_not_found"}});
  return ok_status();
}

Result<FenceResult> CommandFenceAgent::run(const FenceRequest& request) {
  if (auto st = check_agent_name(request.agent); !st) return st.take_error();
  if (request.options.size() > kMaxOptions)
    return invalid("at most 64 options", {{"reason", "too_many_options"}});
  for (const auto& [k, v] : request.options)
    if (auto st = check_option(k, v); !st) return st.take_error();
  if (auto st = check_available(request.agent); !st)
    return unavailable(st.error().message, {{"agent", request.agent}});
  RunOptions opts;
  opts.timeout = request.timeout;
  opts.input = fence_input(request.action, request.options);
  opts.output_limit = std::size_t{64} << 10;
  auto ran = processes_.run({agent_dir_ + "/" + request.agent}, opts);
  FenceResult r;
  if (!ran) {
    if (ran.error().code != ErrorCode::timeout)
      return unavailable("cannot run " + request.agent + ": " + ran.error().message,
                         {{"agent", request.agent}});
    // What it wrote before it was killed, never the runner's details as they are.
    const auto& d = ran.error().details;
    std::string text = d.value("stdout", "") + d.value("stderr", "");
    r.timed_out = true;
    r.output_tail = masked_tail(std::move(text), request.options);
    return r;
  }
  r.exit_code = ran->exit_code;
  r.status = status_of(request.action, ran->exit_code);
  r.output_tail = masked_tail(ran->out + ran->err, request.options);
  return r;
}

}  // namespace kvmfleet::fencing
