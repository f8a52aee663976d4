#pragma once

// A WebSocket client on Boost.Beast, asynchronous on the caller's io_context: the
// controller's console proxy to an agent and the CLI's console use it.

#include "kvmfleet/common/result.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace kvmfleet::http {

struct WebSocketClientOptions {
  std::string ca_file;  // PEM bundle for https; empty: the system default paths
  bool verify_peer = true;
  std::size_t message_limit = 64 * 1024;              // a larger message from the server ends it
  std::chrono::milliseconds connect_timeout{10'000};  // resolve, connect, handshakes
};

struct WebSocketCallbacks {
  std::function<void()> on_open;
  std::function<void(std::string bytes)> on_message;
  // Exactly once, last: ok for a close by either side; the error when the connection
  // could not be made (a refused upgrade carries the server's error body) or broke.
  std::function<void(Status why)> on_closed;
};

// An open (or opening) connection. Thread-safe; messages sent before it opens are
// queued and sent once it does.
class WebSocketConnection {
 public:
  virtual ~WebSocketConnection() = default;
  virtual void send(std::string bytes) = 0;
  virtual void close() = 0;
};

// Connects to `url` (http:// or https://, which decides TLS; ws:// and wss:// are
// accepted as the same) with the bearer token in the upgrade request. Failures are
// reported through on_closed, never thrown.
std::shared_ptr<WebSocketConnection> connect_websocket(boost::asio::io_context& ioc,
                                                       const std::string& url,
                                                       const std::string& bearer,
                                                       WebSocketClientOptions options,
                                                       WebSocketCallbacks callbacks);

}  // namespace kvmfleet::http
