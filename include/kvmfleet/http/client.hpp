#pragma once

#include "kvmfleet/common/result.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace kvmfleet::http {

struct ClientResponse {
  unsigned status = 0;
  std::string body;
};

// Told the bytes of an upload sent so far and its total, after each piece.
using UploadProgress = std::function<void(std::uint64_t sent, std::uint64_t total)>;

// A blocking HTTP/1.1 JSON client. The narrow interface lets tests put a double in
// place of the network.
class Client {
 public:
  virtual ~Client() = default;
  // `url` is http://host:port/path or https://...; failures to connect, send or read
  // within `timeout` are `unavailable` errors. Any status is returned as a value.
  virtual Result<ClientResponse> request(std::string_view method, const std::string& url,
                                         const std::string& bearer, const std::string& body,
                                         std::chrono::milliseconds timeout) = 0;
  // PUTs the file at `path` as the body (application/octet-stream). This one reads the
  // file whole and calls request(); BeastClient streams it a piece at a time.
  virtual Result<ClientResponse> upload(const std::string& url, const std::string& bearer,
                                        const std::string& path, const UploadProgress& progress,
                                        std::chrono::milliseconds timeout);
};

// The real client on Boost.Beast: one connection per call ("Connection: close").
class BeastClient final : public Client {
 public:
  // ca_file: PEM bundle for https; empty: the system default paths.
  explicit BeastClient(std::string ca_file = {}, bool verify_peer = true);
  Result<ClientResponse> request(std::string_view method, const std::string& url,
                                 const std::string& bearer, const std::string& body,
                                 std::chrono::milliseconds timeout) override;
  // Streams the file in pieces of 1 MiB, with a Content-Length; an answer the server
  // gives before the whole body is sent (a refusal) is returned as any other.
  Result<ClientResponse> upload(const std::string& url, const std::string& bearer,
                                const std::string& path, const UploadProgress& progress,
                                std::chrono::milliseconds timeout) override;

 private:
  std::string ca_file_;
  bool verify_peer_;
};

struct KeepAliveOptions {
  std::string ca_file;  // PEM bundle for https; empty: the system default paths
  bool verify_peer = true;
  // Idle connections kept per scheme+host+port; more are closed when handed back.
  std::size_t max_idle_per_origin = 4;
  // An idle connection older than this is closed instead of used. Below the read
  // timeout of kvmfleet's server (10 s by default), after which it closes an idle
  // connection, so that one is seldom tried in vain.
  std::chrono::milliseconds max_idle_time{9'000};
};

// The client on Boost.Beast that keeps its connections open across calls (HTTP/1.1
// keep-alive), per scheme+host+port, for http and https alike. Thread-safe: a call
// takes an idle connection of its origin or opens one, and hands it back when the
// answer allows reuse, so concurrent calls never share a connection. A request that
// fails on a reused connection before any byte of the answer arrived (the server
// closed it while it was idle) is sent once more on a fresh connection, within the
// same timeout; once an answer has begun, a failure is never retried. A connection
// whose call failed or timed out, or with bytes waiting while idle, is closed, never
// reused.
class KeepAliveClient final : public Client {
 public:
  explicit KeepAliveClient(KeepAliveOptions options = {});
  ~KeepAliveClient() override;
  KeepAliveClient(const KeepAliveClient&) = delete;
  KeepAliveClient& operator=(const KeepAliveClient&) = delete;

  Result<ClientResponse> request(std::string_view method, const std::string& url,
                                 const std::string& bearer, const std::string& body,
                                 std::chrono::milliseconds timeout) override;

  // Connections open and waiting for a call now, over all origins.
  std::size_t idle_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Calls a JSON endpoint: 2xx bodies are parsed and returned, error bodies become the
// Error they carry (so an agent's conflict stays a conflict at the controller).
Result<nlohmann::json> call_json(Client& client, std::string_view method, const std::string& url,
                                 const std::string& bearer, const nlohmann::json* body,
                                 std::chrono::milliseconds timeout);

}  // namespace kvmfleet::http
