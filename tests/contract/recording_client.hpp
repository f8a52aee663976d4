#pragma once

#include "kvmfleet/common/result.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvmfleet::contract {

// One request as the contract test sends it. `path_template` names the contract's
// path for it (e.g. /v1/vms/{id}); the checker finds the schema by it.
struct HttpCall {
  std::string method;
  std::string target;  // path and query, e.g. /v1/vms?limit=2
  std::string path_template;
  std::string token;                              // bearer token; empty: no Authorization header
  std::optional<std::string> body;                // nullopt: no body at all
  std::string content_type = "application/json";  // sent with a body; empty: none
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpAnswer {
  unsigned status = 0;
  std::string content_type;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  // The body as JSON; a discarded value when it is not JSON.
  nlohmann::json json() const;
  std::string header(const std::string& lower_name) const;
};

// A blocking HTTP/1.1 client for the controller on loopback that writes every
// exchange it makes as one JSON line (the input of openapi_check.py). It is separate
// from http::BeastClient because the contract needs what that client hides on
// purpose: arbitrary request headers and content types, response headers, and
// requests that are malformed or left unfinished.
class RecordingClient {
 public:
  RecordingClient(std::uint16_t port, const std::string& record_path);

  // Sends the call on a fresh connection and records the answer.
  Result<HttpAnswer> send(const HttpCall& call);

  // Writes raw bytes (a malformed or unfinished request), reads the answer, and
  // records it under `method` and `path_template`.
  Result<HttpAnswer> send_raw(const std::string& bytes, const std::string& method,
                              const std::string& target, const std::string& path_template);

  std::size_t recorded() const { return recorded_; }

 private:
  Result<HttpAnswer> exchange(const std::string& bytes);
  void record(const std::string& method, const std::string& target,
              const std::string& path_template,
              const std::vector<std::pair<std::string, std::string>>& request_headers,
              const std::string& request_content_type,
              const std::optional<std::string>& request_body, const HttpAnswer& answer);

  std::uint16_t port_;
  std::ofstream out_;
  std::size_t recorded_ = 0;
  // Guards against a server that never answers; not a measure of anything.
  std::chrono::seconds deadline_{120};
};

}  // namespace kvmfleet::contract
