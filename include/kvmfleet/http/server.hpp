#pragma once

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/types.hpp"
#include "kvmfleet/http/websocket.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace kvmfleet::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: pick a free port (see Server::port())
  std::size_t body_limit = 1 << 20;
  std::chrono::milliseconds read_timeout{10'000};  // whole request, headers and body
  std::size_t max_queued_responses = 8;            // pipelining cap per connection
  std::string tls_cert_file;                       // both set: serve HTTPS
  std::string tls_key_file;
  // Empty: every body is read whole, within body_limit. Set: asked for each request
  // once its header is read (see BodyOpener); a body it streams has no size limit, and
  // read_timeout then bounds the wait for each piece of it rather than the whole.
  BodyOpener open_body;
  // Empty: an upgrade request is served as a plain one. Set: asked for each request
  // that asks for a WebSocket upgrade (see UpgradeOpener).
  UpgradeOpener open_upgrade;
  std::size_t websocket_message_limit = 64 * 1024;   // a larger message closes the socket
  std::size_t websocket_send_queue_limit = 4 << 20;  // bytes queued for a slow peer
};

// An HTTP/1.1 server in Beast's async shape: one strand per connection, a timeout on
// every read, a body limit, a cap on pipelined requests. It runs on the io_context
// the caller gives it; stop() closes the listener and every connection.
class Server {
 public:
  Server(boost::asio::io_context& ioc, ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting; an error if the address cannot be bound or the TLS
  // files cannot be loaded.
  Status start();
  void stop();
  std::uint16_t port() const;
  bool tls() const;
  // Connections accepted since start(), and those open now (until stop()).
  std::uint64_t connections_accepted() const;
  std::size_t connections_open() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kvmfleet::http
