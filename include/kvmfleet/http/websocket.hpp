#pragma once

// WebSocket endpoints of http::Server: a request that asks for an upgrade is offered to
// the server's UpgradeOpener, which checks it like any request (token, route, state)
// and either refuses it with an HTTP error answer, before the upgrade, or names the
// WebSocketHandler the connection is handed to once upgraded.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/types.hpp"

#include <functional>
#include <memory>
#include <string>

namespace kvmfleet::http {

// The sending side of an open WebSocket. Thread-safe; calls after the close are ignored.
class WebSocketChannel {
 public:
  virtual ~WebSocketChannel() = default;
  // Queues one binary message. A peer that leaves more than the server's send-queue
  // limit unread is disconnected (a slow reader never makes the sender buffer without
  // bound).
  virtual void send(std::string bytes) = 0;
  // Closes normally once what is queued is sent; `reason` goes in the close frame.
  virtual void close(std::string reason) = 0;
};

// What an upgraded connection is handed to. The server calls it from the connection's
// strand, one call at a time: on_open first, on_closed last and exactly once.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  virtual void on_open(std::shared_ptr<WebSocketChannel> channel) = 0;
  // One message from the peer, text or binary, within the server's message limit (a
  // larger one closes the connection with "message too big").
  virtual void on_message(std::string bytes) = 0;
  virtual void on_closed() = 0;
};

// Asked for each request that asks for a WebSocket upgrade: the handler to upgrade to;
// nullptr to serve the request as a plain one (the Handler answers it); or the error
// answered instead of the upgrade.
using UpgradeOpener =
    std::function<kvmfleet::Result<std::shared_ptr<WebSocketHandler>>(const Request&)>;

// Whether a request asks for a WebSocket upgrade (GET, Connection: upgrade, Upgrade:
// websocket).
bool is_websocket_upgrade(const Request& req);

}  // namespace kvmfleet::http
