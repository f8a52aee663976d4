#include "kvmfleet/model/strict_json.hpp"

namespace kvmfleet {

void to_json(nlohmann::json& j, const NoFields&) {
  j = nlohmann::json::object();
}
void from_json(const nlohmann::json& j, NoFields&) {
  strict_json::expect_object(j, {});
}

namespace strict_json {

void fail(const std::string& path, std::string_view what) {
  throw std::invalid_argument(path + ": expected " + std::string(what));
}

void expect_object(const nlohmann::json& j, std::initializer_list<std::string_view> known) {
  if (!j.is_object()) throw std::invalid_argument("expected an object");
  for (const auto& [key, _] : j.items()) {
    bool found = false;
    for (const auto k : known) found = found || k == key;
    if (!found) throw std::invalid_argument("unknown field " + key);
  }
}

Error Reader<Error>::read(const nlohmann::json& v) {
  expect_object(v, {"code", "message", "details"});
  const auto code = get<std::string>(v, "code");
  const ErrorCode c = error_code_from_string(code);
  if (to_string(c) != code) fail("code", "an error code");
  const auto details = v.find("details");
  if (details == v.end()) throw std::invalid_argument("missing field details");
  if (!details->is_object()) fail("details", "an object");
  return Error(c, get<std::string>(v, "message"), *details);
}

}  // namespace strict_json
}  // namespace kvmfleet
