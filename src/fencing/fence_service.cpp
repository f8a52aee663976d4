#include "kvmfleet/fencing/fence_service.hpp"

#include "kvmfleet/core/typed_operation.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvmfleet::fencing {

using nlohmann::json;

namespace {

// The system's own principal: what automatic fencing is attributed to.
const Principal kFencing{"", "kvmfleet fencing", Role::admin, ""};
constexpr std::string_view kInterrupted = "interrupted";

Error bad_field(std::string message, const std::string& field, std::string_view reason) {
  return invalid(std::move(message), {{"field", field}, {"reason", reason}});
}

// The last non-empty line of an agent's output, short: what a person reads first.
std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of(" \r\n\t");
  if (end == std::string::npos) return "";
  auto begin = text.rfind('\n', end);
  std::string line = text.substr(begin == std::string::npos ? 0 : begin + 1,
                                 end + 1 - (begin == std::string::npos ? 0 : begin + 1));
  if (line.size() > 200) line = line.substr(line.size() - 200);
  return line;
}

std::string describe(const FenceDevice& d, std::size_t index) {
  return "device " + std::to_string(index + 1) + " (" + d.agent + ")";
}

std::map<std::string, std::string> all_options(const FenceDevice& d) {
  auto opts = d.options;
  for (const auto& [k, v] : d.secrets) opts[k] = v;
  return opts;
}

std::string why_failed(const char* action, const FenceResult& r) {
  std::string why =
      std::string(action) +
      (r.timed_out ? " timed out" : " failed (exit code " + std::to_string(r.exit_code) + ")");
  if (auto line = last_line(r.output_tail); !line.empty()) why += ": " + line;
  return why;
}

}  // namespace

Result<std::vector<DeviceInput>> parse_fencing(const json& body) {
  if (!body.is_object())
    return invalid("the body must be a JSON object", {{"reason", "not_object"}});
  for (const auto& [k, _] : body.items())
    if (k != "devices") return bad_field("unknown field " + k, k, "unknown_field");
  auto it = body.find("devices");
  if (it == body.end() || !it->is_array())
    return bad_field("devices must be an array", "devices", "required");
  if (it->size() > kMaxDevices)
    return bad_field("at most " + std::to_string(kMaxDevices) + " fence devices", "devices",
                     "too_many_devices");
  std::vector<DeviceInput> out;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& d = (*it)[i];
    const std::string at = "devices[" + std::to_string(i) + "]";
    if (!d.is_object()) return bad_field(at + " must be an object", at, "not_object");
    for (const auto& [k, _] : d.items())
      if (k != "agent" && k != "options")
        return bad_field("unknown field " + k, at + "." + k, "unknown_field");
    DeviceInput dev;
    auto agent = d.find("agent");
    if (agent == d.end() || !agent->is_string())
      return bad_field(at + ".agent must be a string", at + ".agent", "required");
    dev.agent = agent->get<std::string>();
    if (auto st = check_agent_name(dev.agent); !st)
      return bad_field(st.error().message, at + ".agent", "bad_agent_name");
    auto options = d.find("options");
    if (options != d.end()) {
      if (!options->is_object())
        return bad_field(at + ".options must be an object", at + ".options", "not_object");
      if (options->size() > kMaxOptions)
        return bad_field("at most 64 options", at + ".options", "too_many_options");
      for (const auto& [key, v] : options->items()) {
        const std::string field = at + ".options." + key;
        std::string value;
        const bool secret = is_secret_option(key);
        if (v.is_string()) {
          value = v.get<std::string>();
        } else if (v.is_number_integer()) {
          value = v.dump();
        } else if (v.is_boolean()) {
          value = v.get<bool>() ? "1" : "0";
        } else if (secret && v.is_object() && v.size() == 1 && v.contains("set") &&
                   v["set"] == true) {
          if (auto st = check_option(key, ""); !st)
            return bad_field(st.error().message, field, st.error().details.value("reason", ""));
          dev.kept.push_back(key);
          continue;
        } else {
          return bad_field(field + " must be a string, an integer or a boolean", field,
                           "bad_option_value");
        }
        if (auto st = check_option(key, value); !st)
          return bad_field(st.error().message, field, st.error().details.value("reason", ""));
        (secret ? dev.secrets : dev.options)[key] = std::move(value);
      }
    }
    out.push_back(std::move(dev));
  }
  return out;
}

json devices_view(const std::vector<FenceDevice>& devices) {
  json a = json::array();
  for (const auto& d : devices) {
    json options = d.options;
    if (options.is_null()) options = json::object();
    for (const auto& [k, _] : d.secrets) options[k] = {{"set", true}};
    a.push_back({{"agent", d.agent}, {"options", std::move(options)}});
  }
  return a;
}

Result<std::string> parse_confirm_down(const json& body) {
  if (!body.is_object())
    return invalid("the body must be a JSON object", {{"reason", "not_object"}});
  for (const auto& [k, _] : body.items())
    if (k != "reason") return bad_field("unknown field " + k, k, "unknown_field");
  auto it = body.find("reason");
  if (it == body.end() || !it->is_string() || it->get<std::string>().empty())
    return bad_field("reason is required: why the host is known to run nothing", "reason",
                     "required");
  auto reason = it->get<std::string>();
  if (reason.size() > kMaxReasonBytes)
    return bad_field("reason is at most 512 bytes", "reason", "too_long");
  for (unsigned char c : reason)
    if (c < 0x20 || c == 0x7f)
      return bad_field("reason holds no control character", "reason", "bad_value");
  return reason;
}

FenceService::FenceService(ClusterState& state, Operations& operations, OperationRunner& runner,
                           HostService& hosts, FenceAgent& agent, const Clock& clock,
                           FencingTimings timings)
    : state_(state),
      operations_(operations),
      hosts_(hosts),
      agent_(agent),
      clock_(clock),
      timings_(timings) {
  runner.register_kind(std::string(kHostFence), [this](OpContext& ctx) -> Status {
    auto params = params_of<HostFenceParams>(ctx.op());
    if (!params) return params.take_error();
    auto recorded = result_of<HostFenceResult>(ctx.op());
    if (!recorded) return recorded.take_error();
    HostFenceResult result = std::move(*recorded);
    ctx.bind_result([&result] { return json(result); });
    struct Unbind {
      OpContext& ctx;
      ~Unbind() { ctx.unbind_result(); }
    } unbind{ctx};
    return run_fence(ctx, *params, result);
  });
}

FenceService::~FenceService() {
  stop();
}

void FenceService::start() {
  if (monitor_.joinable()) return;
  monitor_ = std::thread([this] {
    do {
      monitor_all();
    } while (clock_.sleep_for(timings_.monitor_interval, stop_monitor_));
  });
}

void FenceService::stop() {
  stop_monitor_.raise();
  if (monitor_.joinable()) monitor_.join();
}

Result<json> FenceService::set_devices(const std::string& host, std::vector<DeviceInput> devices) {
  for (std::size_t i = 0; i < devices.size(); ++i)
    if (auto st = agent_.check_available(devices[i].agent); !st)
      return bad_field(st.error().message, "devices[" + std::to_string(i) + "].agent",
                       "agent_not_found");
  std::vector<FenceDevice> stored;
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Host* h = d.find_host(host);
    if (!h) return not_found("no such host", {{"host", host}});
    if (const Operation* op = d.active_operation_for(host); op && op->kind == kHostFence)
      return conflict("the host is being fenced; set its devices once that ends",
                      {{"host", host}, {"operation", op->id}});
    stored.clear();
    for (std::size_t i = 0; i < devices.size(); ++i) {
      FenceDevice dev{devices[i].agent, devices[i].options, devices[i].secrets};
      for (const auto& key : devices[i].kept) {
        const FenceDevice* old =
            i < h->fence_devices.size() && h->fence_devices[i].agent == dev.agent
                ? &h->fence_devices[i]
                : nullptr;
        auto it =
            old ? old->secrets.find(key) : std::map<std::string, std::string>::const_iterator{};
        if (!old || it == old->secrets.end())
          return bad_field("no stored value of " + key + " to keep for this device",
                           "devices[" + std::to_string(i) + "].options." + key, "no_stored_secret");
        dev.secrets[key] = it->second;
      }
      stored.push_back(std::move(dev));
    }
    Host next = *h;
    next.fence_devices = stored;
    b.put_hosts.push_back(std::move(next));
    return {};
  });
  if (!st) return st.take_error();
  spdlog::info("host {}: {} fence device(s) set", host, stored.size());
  return json{{"host", host}, {"devices", devices_view(stored)}};
}

Result<json> FenceService::get_devices(const std::string& host) const {
  auto h = state_.host(host);
  if (!h) return not_found("no such host", {{"host", host}});
  return json{{"host", host}, {"devices", devices_view(h->fence_devices)}};
}

Result<Submitted> FenceService::fence(const Principal& who, const std::string& host,
                                      const SubmitOptions& opts, const std::string& trigger) {
  Operation op;
  set_params(op, HostFenceParams{trigger});
  op.target_type = "host";
  return operations_.submit(
      who, op, opts, [&](const ClusterState::Data& d, WriteBatch&, Operation& next) -> Status {
        const Host* h = d.find_host(host);
        if (!h) return not_found("no such host", {{"host", host}});
        if (h->fence_devices.empty())
          return conflict("host has no fence devices (PUT /v1/hosts/" + host + "/fencing)",
                          {{"host", host}, {"reason", "no_fence_devices"}});
        if (const Operation* other = d.active_operation_for(h->name))
          return conflict("host has an operation in progress; cancel it or wait for it",
                          {{"host", host}, {"operation", other->id}, {"kind", other->kind}});
        next.target_id = h->name;
        return {};
      });
}

Status FenceService::confirm_down(const Principal& who, const std::string& host,
                                  const std::string& reason) {
  const auto now = clock_.now();
  auto st = state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Host* h = d.find_host(host);
    if (!h) return not_found("no such host", {{"host", host}});
    if (h->state == HostState::up)
      return conflict("host is up: its heartbeats arrive, so it cannot be confirmed down",
                      {{"host", host}, {"reason", "host_up"}});
    Host next = *h;
    next.state = HostState::fenced;
    next.proven_down = ProvenDown{"confirm_down", reason, who.name, now};
    b.put_hosts.push_back(std::move(next));
    return {};
  });
  if (!st) return st;
  spdlog::warn("audit: {} (token {}) confirmed host {} down: {}", who.name, who.token_id, host,
               reason);
  note_success(host);
  return {};
}

// An admin's fence that failed delays the automatic one too: it just tried every device.
void FenceService::note_failure(const std::string& host, const std::string& why) {
  std::lock_guard lk(mu_);
  auto& rt = runtime_[host];
  rt.last_error = why;
  ++rt.failures;
  auto delay = timings_.retry_backoff;
  for (int i = 1; i < rt.failures && delay < timings_.retry_backoff_max; ++i) delay *= 2;
  rt.next_try = clock_.steady_now() + std::min(delay, timings_.retry_backoff_max);
}

void FenceService::note_success(const std::string& host) {
  std::lock_guard lk(mu_);
  auto& rt = runtime_[host];
  rt.failures = 0;
  rt.last_error.clear();
  rt.next_try = {};
}

std::optional<std::string> FenceService::fence_with(OpContext& ctx, std::size_t index,
                                                    const FenceDevice& device,
                                                    Clock::time_point& confirmed) {
  FenceRequest req{device.agent, FenceAction::off, all_options(device), timings_.agent_timeout};
  ctx.progress(20, "powering the host off with " + describe(device, index));
  auto off = agent_.run(req);
  if (!off) return "off: " + off.error().message;
  if (!off->ok()) return why_failed("off", *off);
  req.action = FenceAction::status;
  auto delay = timings_.status_backoff;
  std::string last;
  for (int k = 0; k < timings_.status_checks; ++k) {
    ctx.progress(60, "confirming with " + describe(device, index) + " that the power is off");
    auto st = agent_.run(req);
    if (st && st->status == PowerStatus::off) {
      confirmed = ctx.clock().now();
      return std::nullopt;
    }
    if (!st)
      last = "status: " + st.error().message;
    else if (st->status == PowerStatus::on)
      last = "status reports the power on";
    else
      last = why_failed("status", *st);
    if (k + 1 < timings_.status_checks) {
      if (!ctx.sleep_for(delay)) return std::string(kInterrupted);
      delay *= 2;
    }
  }
  return "off done, but status did not report off after " + std::to_string(timings_.status_checks) +
         " checks (" + last + ")";
}

Status FenceService::run_fence(OpContext& ctx, const HostFenceParams& p, HostFenceResult& r) {
  const std::string name = ctx.op().target_id;
  const bool automatic = p.trigger == "liveness";
  r.host = name;
  auto host = ctx.state().host(name);
  if (!host) return not_found("no such host", {{"host", name}});
  if (automatic && host->state != HostState::down && host->state != HostState::fencing) {
    r.fenced = false;
    r.note = "host is " + std::string(to_string(host->state)) + " now: not fenced";
    return {};
  }
  if (host->fence_devices.empty())
    return conflict("host has no fence devices", {{"host", name}, {"reason", "no_fence_devices"}});
  if (!r.previous_state)
    r.previous_state = host->state == HostState::fencing ? "down" : to_string(host->state);
  const auto previous = host_state_from_string(*r.previous_state).value_or(HostState::down);
  auto set_state = [&](std::optional<HostState> only_from, HostState to) {
    return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
      const Host* h = d.find_host(name);
      if (!h || h->state == to || (only_from && h->state != *only_from)) return {};
      // proven_down stays: a fenced host fenced again that fails goes back to fenced
      // with the evidence it had.
      Host next = *h;
      next.state = to;
      b.put_hosts.push_back(std::move(next));
      return {};
    });
  };
  // Cancelled: the host goes back; the controller stopping: it stays fencing, and the
  // next controller resumes the operation.
  auto interrupted = [&]() -> Status {
    if (!ctx.cancel_requested())
      return unavailable("fencing interrupted by the controller stopping", {{"host", name}});
    (void)set_state(HostState::fencing, previous);
    return Error(ErrorCode::cancelled, "fencing cancelled; the host was not fenced");
  };
  if (host->state != HostState::fencing) {
    if (auto st = set_state(std::nullopt, HostState::fencing); !st) return st;
    spdlog::warn("host {}: fencing ({})", name,
                 automatic ? "down by liveness" : "asked by an admin");
  }
  const auto& devices = host->fence_devices;
  for (int round = 0; round < timings_.rounds; ++round) {
    r.rounds = round + 1;
    std::vector<std::string> outcomes;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      if (ctx.cancel_requested()) return interrupted();
      if (automatic) {
        auto now = ctx.state().host(name);
        if (now && now->state == HostState::up) {
          r.fenced = false;
          r.note = "host was heard again: not fenced";
          note_success(name);
          return {};
        }
      }
      Clock::time_point confirmed{};
      auto why = fence_with(ctx, i, devices[i], confirmed);
      if (why && *why == kInterrupted) return interrupted();
      if (!why) {
        const std::string by = describe(devices[i], i);
        auto st = ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
          const Host* h = d.find_host(name);
          if (!h) return not_found("host was deleted while being fenced", {{"host", name}});
          if (h->last_heartbeat && *h->last_heartbeat > confirmed)
            return conflict("host was heard after " + by + " reported it off: not fenced",
                            {{"host", name}});
          Host next = *h;
          next.state = HostState::fenced;
          next.proven_down =
              ProvenDown{"fence", by + " powered the host off and its status reports off",
                         "kvmfleet fencing", confirmed};
          b.put_hosts.push_back(std::move(next));
          return {};
        });
        if (!st) {
          note_failure(name, st.error().message);
          return st;
        }
        outcomes.push_back("fenced");
        r.devices = outcomes;
        r.fenced = true;
        r.device = by;
        spdlog::warn("host {} fenced: {} powered it off and its status reports off", name, by);
        note_success(name);
        return {};
      }
      spdlog::warn("host {}: {} did not fence it: {}", name, describe(devices[i], i), *why);
      outcomes.push_back(*why);
      r.devices = outcomes;
      ctx.progress(80, describe(devices[i], i) + " failed");
    }
    if (round + 1 < timings_.rounds) {
      ctx.progress(10, "no device fenced the host; trying again");
      if (!ctx.sleep_for(timings_.round_backoff * (1 << round))) return interrupted();
    }
  }
  r.fenced = false;
  (void)set_state(HostState::fencing, previous);
  std::string all;
  for (const auto& o : r.devices.value_or(std::vector<std::string>{}))
    all += (all.empty() ? "" : "; ") + o;
  note_failure(name, all);
  spdlog::error(
      "host {}: no fence device powered it off ({} rounds); it is not fenced and its "
      "VMs wait",
      name, timings_.rounds);
  return unavailable("no fence device powered host " + name + " off",
                     {{"host", name}, {"devices", r.devices.value_or(std::vector<std::string>{})}});
}

void FenceService::tick() {
  if (hosts_.liveness_guard_active()) return;
  auto due = state_.read([](const ClusterState::Data& d) {
    std::vector<std::string> out;
    for (const auto& [name, h] : d.hosts)
      if (h.state == HostState::down && h.last_heartbeat && !h.fence_devices.empty() &&
          !d.active_operation_for(name))
        out.push_back(name);
    return out;
  });
  const auto now = clock_.steady_now();
  for (const auto& name : due) {
    {
      std::lock_guard lk(mu_);
      if (auto it = runtime_.find(name); it != runtime_.end() && it->second.next_try > now)
        continue;
    }
    auto s = fence(kFencing, name, {}, "liveness");
    if (s)
      spdlog::warn("host {} is down: fencing it (operation {})", name, s->operation.id);
    else
      spdlog::debug("host {}: automatic fencing not started: {}", name, s.error().message);
  }
}

void FenceService::monitor_all() {
  auto hosts = state_.read([](const ClusterState::Data& d) {
    std::vector<Host> out;
    for (const auto& [_, h] : d.hosts)
      if (!h.fence_devices.empty()) out.push_back(h);
    return out;
  });
  for (const auto& h : hosts) {
    std::vector<std::string> outcome;
    bool any = false;
    for (std::size_t i = 0; i < h.fence_devices.size(); ++i) {
      const auto& dev = h.fence_devices[i];
      auto r =
          agent_.run({dev.agent, FenceAction::monitor, all_options(dev), timings_.agent_timeout});
      if (r && r->ok()) {
        outcome.push_back("ok");
        any = true;
      } else {
        outcome.push_back(r ? why_failed("monitor", *r) : "monitor: " + r.error().message);
      }
    }
    std::lock_guard lk(mu_);
    auto& rt = runtime_[h.name];
    rt.monitored_at = clock_.now();
    rt.fenceable = any;
    rt.monitor = std::move(outcome);
  }
}

json FenceService::summary(const Host& host) const {
  json j = {{"devices", host.fence_devices.size()},
            {"fenceable", nullptr},
            {"monitored_at", nullptr},
            {"monitor", json::array()},
            {"last_error", nullptr}};
  std::lock_guard lk(mu_);
  auto it = runtime_.find(host.name);
  if (it == runtime_.end()) return j;
  const auto& rt = it->second;
  if (rt.fenceable && !host.fence_devices.empty()) j["fenceable"] = *rt.fenceable;
  if (rt.monitored_at) j["monitored_at"] = format_time(*rt.monitored_at);
  j["monitor"] = rt.monitor;
  if (!rt.last_error.empty()) j["last_error"] = rt.last_error;
  return j;
}

}  // namespace kvmfleet::fencing
