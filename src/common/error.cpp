#include "kvmfleet/common/error.hpp"

#include <array>
#include <utility>

namespace kvmfleet {
namespace {

constexpr std::array<std::pair<ErrorCode, std::string_view>, 15> kNames{{
    {ErrorCode::invalid_argument, "invalid_argument"},
    {ErrorCode::unauthenticated, "unauthenticated"},
    {ErrorCode::permission_denied, "permission_denied"},
    {ErrorCode::not_found, "not_found"},
    {ErrorCode::conflict, "conflict"},
    {ErrorCode::insufficient_capacity, "insufficient_capacity"},
    {ErrorCode::payload_too_large, "payload_too_large"},
    {ErrorCode::request_timeout, "request_timeout"},
    {ErrorCode::unsupported_media, "unsupported_media_type"},
    {ErrorCode::not_implemented, "not_implemented"},
    {ErrorCode::method_not_allowed, "method_not_allowed"},
    {ErrorCode::unavailable, "unavailable"},
    {ErrorCode::timeout, "timeout"},
    {ErrorCode::cancelled, "cancelled"},
    {ErrorCode::internal, "internal"},
}};

}  // namespace

std::string_view to_string(ErrorCode code) {
  for (const auto& [c, n] : kNames) {
    if (c == code) return n;
  }
  return "internal";
}

ErrorCode error_code_from_string(std::string_view s) {
  for (const auto& [c, n] : kNames) {
    if (n == s) return c;
  }
  return ErrorCode::internal;
}

nlohmann::json Error::to_json() const {
  return {{"code", std::string(to_string(code))},
          {"message", message},
          {"details", details.is_object() ? details : nlohmann::json::object()}};
}

Error Error::from_json(const nlohmann::json& j) {
  Error e;
  if (!j.is_object()) return internal_error("malformed error body");
  const auto& inner = j.contains("error") ? j.at("error") : j;
  if (!inner.is_object()) return internal_error("malformed error body");
  if (auto it = inner.find("code"); it != inner.end() && it->is_string())
    e.code = error_code_from_string(it->get<std::string>());
  if (auto it = inner.find("message"); it != inner.end() && it->is_string())
    e.message = it->get<std::string>();
  if (auto it = inner.find("details"); it != inner.end() && it->is_object()) e.details = *it;
  return e;
}

}  // namespace kvmfleet
