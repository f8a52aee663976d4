#include "kvmfleet/fencing/fence_params.hpp"

namespace kvmfleet::fencing {

using nlohmann::json;
using namespace strict_json;

void to_json(json& j, const HostFenceParams& p) {
  j = {{"trigger", p.trigger}};
}
void from_json(const json& j, HostFenceParams& p) {
  expect_object(j, {"trigger"});
  p.trigger = get<std::string>(j, "trigger");
}

void to_json(json& j, const HostFenceResult& r) {
  j = json::object();
  put_optional(j, "host", r.host);
  put_optional(j, "previous_state", r.previous_state);
  put_optional(j, "fenced", r.fenced);
  put_optional(j, "device", r.device);
  put_optional(j, "rounds", r.rounds);
  put_optional(j, "devices", r.devices);
  put_optional(j, "note", r.note);
}
void from_json(const json& j, HostFenceResult& r) {
  expect_object(j, {"host", "previous_state", "fenced", "device", "rounds", "devices", "note"});
  r.host = get_optional<std::string>(j, "host");
  r.previous_state = get_optional<std::string>(j, "previous_state");
  r.fenced = get_optional<bool>(j, "fenced");
  r.device = get_optional<std::string>(j, "device");
  r.rounds = get_optional<int>(j, "rounds");
  r.devices = get_optional<std::vector<std::string>>(j, "devices");
  r.note = get_optional<std::string>(j, "note");
}

}  // namespace kvmfleet::fencing
