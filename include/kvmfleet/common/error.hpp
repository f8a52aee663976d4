#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace kvmfleet {

// The closed set of error categories. Every failure that reaches a user is one of
// these; the HTTP status for each lives in exactly one place
// (http::status_for, src/http/types.cpp).
enum class ErrorCode {
  invalid_argument,       // the request itself is wrong (name, type, range, unknown field)
  unauthenticated,        // no token or a bad token
  permission_denied,      // the token's role may not do this
  not_found,              // unknown id or name
  conflict,               // the resource is in a state that forbids the action
  insufficient_capacity,  // no host can take it
  payload_too_large,      // body over the size limit
  request_timeout,        // the client was too slow
  unsupported_media,      // not JSON, or a content coding other than identity
  not_implemented,        // a transfer coding other than chunked
  method_not_allowed,
  unavailable,  // a host or dependency cannot be reached now; retry later
  timeout,      // an operation step ran out of time
  cancelled,    // the operation was cancelled
  internal,     // a bug or an unexpected failure
};

std::string_view to_string(ErrorCode code);
// Parses a code produced by to_string; unknown strings become internal.
ErrorCode error_code_from_string(std::string_view s);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
  nlohmann::json details = nlohmann::json::object();

  Error() = default;
  Error(ErrorCode c, std::string m, nlohmann::json d = nlohmann::json::object())
      : code(c), message(std::move(m)), details(std::move(d)) {}

  // {"code": ..., "message": ..., "details": {...}} — the inner part of every error body.
  nlohmann::json to_json() const;
  static Error from_json(const nlohmann::json& j);
  // "code: message", for logs and for errors recorded as text (no details).
  std::string brief() const { return std::string(to_string(code)) + ": " + message; }
};

inline Error invalid(std::string m, nlohmann::json d = nlohmann::json::object()) {
  return {ErrorCode::invalid_argument, std::move(m), std::move(d)};
}
inline Error not_found(std::string m, nlohmann::json d = nlohmann::json::object()) {
  return {ErrorCode::not_found, std::move(m), std::move(d)};
}
inline Error conflict(std::string m, nlohmann::json d = nlohmann::json::object()) {
  return {ErrorCode::conflict, std::move(m), std::move(d)};
}
inline Error unavailable(std::string m, nlohmann::json d = nlohmann::json::object()) {
  return {ErrorCode::unavailable, std::move(m), std::move(d)};
}
inline Error internal_error(std::string m, nlohmann::json d = nlohmann::json::object()) {
  return {ErrorCode::internal, std::move(m), std::move(d)};
}

}  // namespace kvmfleet
