#pragma once

#include "kvmfleet/common/result.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace kvmfleet::http {

struct ClientResponse {
  unsigned status = 0;
  std::string body;
};

// A blocking HTTP/1.1 JSON client (one connection per call). The narrow interface
// lets tests put a double in place of the network.
class Client {
 public:
  virtual ~Client() = default;
  // `url` is http://host:port/path or https://...; failures to connect, send or read
  // within `timeout` are `unavailable` errors. Any status is returned as a value.
  virtual Result<ClientResponse> request(std::string_view method, const std::string& url,
                                         const std::string& bearer, const std::string& body,
                                         std::chrono::milliseconds timeout) = 0;
};

// The real client on Boost.Beast.
class BeastClient final : public Client {
 public:
  // ca_file: PEM bundle for https; empty: the system default paths.
  explicit BeastClient(std::string ca_file = {}, bool verify_peer = true);
  Result<ClientResponse> request(std::string_view method, const std::string& url,
                                 const std::string& bearer, const std::string& body,
                                 std::chrono::milliseconds timeout) override;

 private:
  std::string ca_file_;
  bool verify_peer_;
};

// Calls a JSON endpoint: 2xx bodies are parsed and returned, error bodies become the
// Error they carry (so an agent's conflict stays a conflict at the controller).
Result<nlohmann::json> call_json(Client& client, std::string_view method, const std::string& url,
                                 const std::string& bearer, const nlohmann::json* body,
                                 std::chrono::milliseconds timeout);

}  // namespace kvmfleet::http
