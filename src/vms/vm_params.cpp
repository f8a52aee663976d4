#include "kvmfleet/vms/vm_params.hpp"

namespace kvmfleet {

using nlohmann::json;
using namespace strict_json;

void to_json(json& j, const VmCreateParams& p) {
  j = {{"name", p.name}, {"start", p.start}};
}
void from_json(const json& j, VmCreateParams& p) {
  expect_object(j, {"name", "start"});
  p.name = get<std::string>(j, "name");
  p.start = get<bool>(j, "start");
}

void to_json(json& j, const VmCreateResult& r) {
  j = json::object();
  put_optional(j, "host", r.host);
}
void from_json(const json& j, VmCreateResult& r) {
  expect_object(j, {"host"});
  r.host = get_optional<std::string>(j, "host");
}

void to_json(json& j, const VmStopParams& p) {
  j = {{"timeout_s", p.timeout_s}, {"force", p.force}};
}
void from_json(const json& j, VmStopParams& p) {
  expect_object(j, {"timeout_s", "force"});
  p.timeout_s = get<int>(j, "timeout_s");
  p.force = get<bool>(j, "force");
}

void to_json(json& j, const VmStopResult& r) {
  j = json::object();
  if (r.forced) j["forced"] = true;
  put_optional(j, "storage_warning", r.storage_warning);
}
void from_json(const json& j, VmStopResult& r) {
  expect_object(j, {"forced", "storage_warning"});
  r.forced = get_optional<bool>(j, "forced").value_or(false);
  r.storage_warning = get_optional<std::string>(j, "storage_warning");
}

void to_json(json& j, const VmDestroyResult& r) {
  j = json::object();
  put_optional(j, "storage_warning", r.storage_warning);
}
void from_json(const json& j, VmDestroyResult& r) {
  expect_object(j, {"storage_warning"});
  r.storage_warning = get_optional<std::string>(j, "storage_warning");
}

void to_json(json& j, const VmDeleteParams& p) {
  j = {{"force", p.force}};
}
void from_json(const json& j, VmDeleteParams& p) {
  expect_object(j, {"force"});
  p.force = get<bool>(j, "force");
}

}  // namespace kvmfleet
