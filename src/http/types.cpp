#include "kvmfleet/http/types.hpp"

#include "kvmfleet/http/websocket.hpp"

#include <boost/beast/websocket/rfc6455.hpp>

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
    case ErrorCode::not_implemented:
      return HttpStatus::not_implemented;
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

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether every comma-separated element of every `field` header is `only` (or empty).
bool only_coding(const Request& req, bhttp::field field, std::string_view only) {
  for (auto [it, end] = req.equal_range(field); it != end; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    while (true) {
      const auto comma = v.find(',');
      const auto coding = trim(v.substr(0, comma));
      if (!coding.empty() && !iequals(coding, only)) return false;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return true;
}

}  // namespace

bool media_type_is(std::string_view content_type, std::string_view type) {
  return iequals(trim(content_type.substr(0, content_type.find(';'))), type);
}

Status check_codings(const Request& req) {
  if (!only_coding(req, bhttp::field::content_encoding, "identity"))
    return Error(ErrorCode::unsupported_media,
                 "Content-Encoding other than identity is not accepted");
  if (!only_coding(req, bhttp::field::transfer_encoding, "chunked"))
    return Error(ErrorCode::not_implemented,
                 "Transfer-Encoding other than chunked is not implemented");
  return {};
}

}  // namespace kvmfleet::http

namespace kvmfleet::http {

bool is_websocket_upgrade(const Request& req) {
  return boost::beast::websocket::is_upgrade(req);
}

}  // namespace kvmfleet::http
