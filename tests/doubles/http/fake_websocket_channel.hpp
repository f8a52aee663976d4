#pragma once

// The double of http::WebSocketChannel (include/kvmfleet/http/websocket.hpp): what a
// handler sent and whether and why it closed.

#include "kvmfleet/http/websocket.hpp"

#include <vector>

namespace kvmfleet::doubles {

class FakeWebSocketChannel final : public http::WebSocketChannel {
 public:
  void send(std::string bytes) override {
    if (!closed) sent.push_back(std::move(bytes));
  }
  void close(std::string why) override {
    closed = true;
    reason = std::move(why);
  }
  std::vector<std::string> sent;
  bool closed = false;
  std::string reason;
};

}  // namespace kvmfleet::doubles
