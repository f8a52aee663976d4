#include "kvmfleet/http/types.hpp"

namespace kvmfleet::http {

HttpStatus status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return HttpStatus::bad_request;
    case ErrorCode::unauthenticated:
      return HttpStatus::unauthorized;
    case ErrorCode::permission_denied:
      return HttpStatus::forbidden;
    case ErrorCode::not_found:
      return HttpStatus::not_found;
    case ErrorCode::method_not_allowed:
      return HttpStatus::method_not_allowed;
    case ErrorCode::request_timeout:
      return HttpStatus::request_timeout;
    case ErrorCode::conflict:
      return HttpStatus::conflict;
    case ErrorCode::payload_too_large:
      return HttpStatus::payload_too_large;
    case ErrorCode::unsupported_media:
      return HttpStatus::unsupported_media_type;
    case ErrorCode::insufficient_capacity:
      return HttpStatus::unprocessable_entity;
    case ErrorCode::cancelled:
      return HttpStatus::conflict;
    case ErrorCode::unavailable:
      return HttpStatus::service_unavailable;
    case ErrorCode::timeout:
      return HttpStatus::gateway_timeout;
    case ErrorCode::internal:
      return HttpStatus::internal_server_error;
  }
  return HttpStatus::internal_server_error;
}

std::string json_text(const nlohmann::json& body) {
  // Replace invalid UTF-8 rather than throw: bodies can echo untrusted input.
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  return text;
}

Response json_response(HttpStatus status, std::string text, unsigned version, bool keep_alive) {
  Response res{status, version};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::server, "kvmfleet");
  res.keep_alive(keep_alive);
  res.body() = std::move(text);
  res.prepare_payload();
  return res;
}

Response json_response(HttpStatus status, const nlohmann::json& body, unsigned version,
                       bool keep_alive) {
  return json_response(status, json_text(body), version, keep_alive);
}

Response error_response(const Error& error, unsigned version, bool keep_alive) {
  return json_response(status_for(error.code), {{"error", error.to_json()}}, version, keep_alive);
}

std::string_view bearer_token(const Request& req) {
  auto it = req.find(bhttp::field::authorization);
  if (it == req.end()) return {};
  std::string_view v(it->value().data(), it->value().size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (v.size() <= kPrefix.size()) return {};
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(v[i])) !=
        std::tolower(static_cast<unsigned char>(kPrefix[i])))
      return {};
  }
  return v.substr(kPrefix.size());
}

}  // namespace kvmfleet::http
