#include "kvmfleet/http/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace kvmfleet::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// Connections are tracked so that stop() can close them all.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void close() = 0;
};

struct Registry {
  std::mutex mu;
  std::unordered_map<std::uint64_t, std::weak_ptr<SessionBase>> sessions;
  std::uint64_t next_id = 0;
  bool stopped = false;

  // A connection that changed hands (an upgrade): tracked like an accepted one, but
  // not counted as accepted again. False once stop() ran.
  bool track(const std::shared_ptr<SessionBase>& s) {
    std::lock_guard lk(mu);
    if (stopped) return false;
    sessions.emplace(next_id + (1ull << 62) + sessions.size(), s);
    return true;
  }
};

namespace websocket = beast::websocket;

// An upgraded connection: reads messages into the handler, writes the handler's
// messages from a bounded queue, all on the connection's strand.
template <class NextLayer>
class WebSocketSession final : public SessionBase,
                               public WebSocketChannel,
                               public std::enable_shared_from_this<WebSocketSession<NextLayer>> {
 public:
  WebSocketSession(NextLayer&& next, const ServerOptions& options,
                   std::shared_ptr<WebSocketHandler> handler)
      : ws_(std::move(next)),
        message_limit_(options.websocket_message_limit),
        queue_limit_(options.websocket_send_queue_limit),
        handler_(std::move(handler)) {}

  void run(Request req) {
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(message_limit_);
    ws_.binary(true);
    auto req_ptr = std::make_shared<Request>(std::move(req));
    ws_.async_accept(*req_ptr, [self = this->shared_from_this(), req_ptr](beast::error_code ec) {
      if (ec) return self->finish();
      self->open_ = true;
      self->handler_->on_open(self);
      self->do_read();
    });
  }

  void send(std::string bytes) override {
    asio::dispatch(
        ws_.get_executor(), [self = this->shared_from_this(), bytes = std::move(bytes)]() mutable {
          if (!self->open_ || self->closing_) return;
          if (self->queued_ + bytes.size() > self->queue_limit_) {
            spdlog::warn("websocket peer reads too slowly; closing");
            return self->start_close(websocket::close_code::policy_error, "peer reads too slowly");
          }
          self->queued_ += bytes.size();
          self->queue_.push_back(std::move(bytes));
          if (!self->writing_) self->do_write();
        });
  }

  void close(std::string reason) override {
    asio::dispatch(ws_.get_executor(),
                   [self = this->shared_from_this(), reason = std::move(reason)]() mutable {
                     if (!self->open_ || self->closing_) return;
                     self->start_close(websocket::close_code::normal, std::move(reason));
                   });
  }

  // stop(): the socket closes at once.
  void close() override {
    asio::post(ws_.get_executor(), [self = this->shared_from_this()] {
      beast::error_code ec;
      beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
      beast::get_lowest_layer(self->ws_).close();
    });
  }

 private:
  void do_read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->finish();
      std::string msg = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      self->handler_->on_message(std::move(msg));
      self->do_read();
    });
  }

  void do_write() {
    if (queue_.empty()) {
      writing_ = false;
      if (closing_ && !close_sent_) do_close();
      return;
    }
    writing_ = true;
    ws_.async_write(asio::buffer(queue_.front()),
                    [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                      self->queued_ -= self->queue_.front().size();
                      self->queue_.pop_front();
                      if (ec) {
                        self->writing_ = false;
                        return self->finish();
                      }
                      self->do_write();
                    });
  }

  void start_close(websocket::close_code code, std::string reason) {
    closing_ = true;
    close_reason_ = websocket::close_reason(code, reason.substr(0, 120));
    if (code != websocket::close_code::normal) {
      // The queue is dropped: the peer is not reading it.
      if (!writing_) {
        queue_.clear();
        queued_ = 0;
      }
    }
    if (!writing_) do_close();
  }

  void do_close() {
    close_sent_ = true;
    ws_.async_close(close_reason_, [self = this->shared_from_this()](beast::error_code) {
      // The peer's close frame is read by the pending async_read, which then ends.
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    open_ = false;
    if (auto h = std::move(handler_)) h->on_closed();
  }

  websocket::stream<NextLayer> ws_;
  beast::flat_buffer buffer_;
  std::size_t message_limit_;
  std::size_t queue_limit_;
  std::shared_ptr<WebSocketHandler> handler_;
  std::deque<std::string> queue_;
  std::size_t queued_ = 0;
  bool open_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool finished_ = false;
  websocket::close_reason close_reason_;
};

// One connection: read a request, hand it to the handler, write its response,
// read the next. Derived supplies stream() and the end-of-connection shutdown.
template <class Derived>
class HttpSession : public SessionBase {
 public:
  HttpSession(beast::flat_buffer buffer, const ServerOptions& options, Handler handler,
              std::shared_ptr<Registry> registry)
      : buffer_(std::move(buffer)),
        options_(options),
        handler_(std::move(handler)),
        registry_(std::move(registry)) {}

  void do_read() {
    parser_.emplace();
    parser_->body_limit(options_.body_limit);
    parser_->header_limit(16 * 1024);
    // Our own timer rather than the stream's expiry: the stream closes the socket on
    // expiry, and a slow client should still get a 408 body before the close.
    beast::get_lowest_layer(derived().stream()).expires_never();
    arm_read_timer();
    if (!options_.open_body) {
      bhttp::async_read(derived().stream(), buffer_, *parser_,
                        [self = derived().shared_from_this()](beast::error_code ec, std::size_t) {
                          self->on_read(ec);
                        });
      return;
    }
    // The header's Content-Length is held to the limit only once open_body has decided.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    bhttp::async_read_header(derived().stream(), buffer_, *parser_,
                             [self = derived().shared_from_this()](
                                 beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void close() override {
    asio::post(derived().stream().get_executor(), [self = derived().shared_from_this()] {
      beast::error_code ec;
      beast::get_lowest_layer(self->stream()).socket().shutdown(tcp::socket::shutdown_both, ec);
      beast::get_lowest_layer(self->stream()).close();
    });
  }

 protected:
  Derived& derived() { return static_cast<Derived&>(*this); }

 private:
  // (Re)starts the read timeout: for a whole request, or for one piece of a streamed body.
  void arm_read_timer() {
    timed_out_ = false;
    read_timer_.emplace(derived().stream().get_executor());
    read_timer_->expires_after(options_.read_timeout);
    read_timer_->async_wait([self = derived().shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream()).socket().cancel(ignored);
    });
  }

  // The header is in: the body goes to a sink if open_body gives one, else it is read
  // whole as without open_body.
  void on_header(beast::error_code ec) {
    if (ec) return on_read(ec);
    // A body in a coding the handlers cannot read is refused before any of it is read,
    // streamed or not.
    if (auto st = check_codings(parser_->get()); !st) {
      if (read_timer_) read_timer_->cancel();
      return send_error_and_close(st.error());
    }
    auto sink = options_.open_body(parser_->get().base());
    if (!sink) {
      if (read_timer_) read_timer_->cancel();
      return send_error_and_close(sink.error());
    }
    if (!*sink) {
      if (parser_->is_done()) return on_read(ec);
      if (const auto length = parser_->content_length(); length && *length > options_.body_limit) {
        if (read_timer_) read_timer_->cancel();
        return send_error_and_close(Error(ErrorCode::payload_too_large,
                                          "request body exceeds the size limit",
                                          {{"limit_bytes", options_.body_limit}}));
      }
      parser_->body_limit(options_.body_limit);
      bhttp::async_read(derived().stream(), buffer_, *parser_,
                        [self = derived().shared_from_this()](beast::error_code ec, std::size_t) {
                          self->on_read(ec);
                        });
      return;
    }
    sink_ = std::move(*sink);
    chunk_.resize(256 * 1024);
    stream_parser_.emplace(std::move(*parser_));
    parser_.reset();
    stream_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (stream_parser_->get()[bhttp::field::expect] == "100-continue") {
      if (read_timer_) read_timer_->cancel();
      auto interim = std::make_shared<bhttp::response<bhttp::empty_body>>(
          bhttp::status::continue_, stream_parser_->get().version());
      bhttp::async_write(
          derived().stream(), *interim,
          [self = derived().shared_from_this(), interim](beast::error_code ec, std::size_t) {
            if (ec) {
              self->end_stream_early();
              return self->derived().do_eof();
            }
            self->read_chunk();
          });
      return;
    }
    read_chunk();
  }

  void read_chunk() {
    if (stream_parser_->is_done()) return finish_stream();
    auto& body = stream_parser_->get().body();
    body.data = chunk_.data();
    body.size = chunk_.size();
    arm_read_timer();
    bhttp::async_read_some(derived().stream(), buffer_, *stream_parser_,
                           [self = derived().shared_from_this()](
                               beast::error_code ec, std::size_t) { self->on_chunk(ec); });
  }

  void on_chunk(beast::error_code ec) {
    if (read_timer_) read_timer_->cancel();
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) {
      const bool timed_out = timed_out_;
      end_stream_early();
      if (timed_out)
        return send_error_and_close(
            Error(ErrorCode::request_timeout, "request body stalled past the read timeout"));
      if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream ||
          ec == asio::error::eof || ec == asio::error::connection_reset ||
          ec == asio::error::operation_aborted)
        return derived().do_eof();
      return send_error_and_close(invalid("malformed HTTP request: " + ec.message()));
    }
    const std::size_t got = chunk_.size() - stream_parser_->get().body().size;
    if (got > 0) {
      if (auto st = sink_->write(chunk_.data(), got); !st) {
        end_stream_early();
        return send_error_and_close(st.error());
      }
    }
    read_chunk();
  }

  void finish_stream() {
    auto sink = std::move(sink_);
    const auto& req = stream_parser_->get();
    Responder respond = responder(req.version(), req.keep_alive());
    stream_parser_.reset();
    try {
      sink->finish(std::move(respond));
    } catch (const std::exception& e) {
      spdlog::error("body sink threw: {}", e.what());
      send_error_and_close(internal_error("internal error"));
    }
  }

  // The streamed body will not be complete: its sink undoes what it made.
  void end_stream_early() {
    if (auto sink = std::move(sink_)) sink->abort();
    stream_parser_.reset();
  }

  // `head`: an answer to HEAD has the headers of the answer, Content-Length included,
  // and no body.
  Responder responder(unsigned version, bool keep_alive, bool head = false) {
    auto self = derived().shared_from_this();
    auto once = std::make_shared<std::atomic<bool>>(false);
    return [self, once, version, keep_alive, head](Response res) {
      if (once->exchange(true)) return;
      res.version(version);
      if (!keep_alive) res.keep_alive(false);
      if (head) res.body().clear();
      asio::dispatch(self->stream().get_executor(),
                     [self, res = std::move(res)]() mutable { self->do_write(std::move(res)); });
    };
  }

  void on_read(beast::error_code ec) {
    if (read_timer_) read_timer_->cancel();
    if (timed_out_ && ec) ec = beast::error::timeout;
    if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      return derived().do_eof();
    }
    if (ec) {
      // Answer what can be answered with our error body, then close.
      const bool started = parser_ && parser_->got_some();
      if (ec == bhttp::error::body_limit) {
        return send_error_and_close(Error(ErrorCode::payload_too_large,
                                          "request body exceeds the size limit",
                                          {{"limit_bytes", options_.body_limit}}));
      }
      if (ec == beast::error::timeout) {
        if (!started) return derived().do_eof();
        return send_error_and_close(
            Error(ErrorCode::request_timeout, "request not received within the read timeout"));
      }
      if (ec == bhttp::error::header_limit) {
        return send_error_and_close(invalid("request headers too large"));
      }
      if (ec == bhttp::error::bad_transfer_encoding) {
        return send_error_and_close(Error(
            ErrorCode::not_implemented, "Transfer-Encoding other than chunked is not implemented"));
      }
      if (!started) return derived().do_eof();
      return send_error_and_close(invalid("malformed HTTP request: " + ec.message()));
    }
    Request req = parser_->release();
    // A body in a coding the handlers cannot read is refused, never read as if plain.
    if (auto st = check_codings(req); !st) return send_error_and_close(st.error());
    if (options_.open_upgrade && is_websocket_upgrade(req)) {
      Result<std::shared_ptr<WebSocketHandler>> upgrade = internal_error("internal error");
      try {
        upgrade = options_.open_upgrade(req);
      } catch (const std::exception& e) {
        spdlog::error("upgrade handler threw: {}", e.what());
      }
      if (!upgrade) return send_error_and_close(upgrade.error());
      if (*upgrade) return derived().upgrade(std::move(req), std::move(*upgrade));
    }
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    Responder respond = responder(version, keep_alive, req.method() == Verb::head);
    try {
      handler_(std::move(req), respond);
    } catch (const std::exception& e) {
      spdlog::error("handler threw: {}", e.what());
      respond(error_response(internal_error("internal error"), version, keep_alive));
    }
  }

  void send_error_and_close(const Error& e) {
    auto res = error_response(e, 11, false);
    do_write(std::move(res));
  }

  void do_write(Response res) {
    response_ = std::make_shared<Response>(std::move(res));
    beast::get_lowest_layer(derived().stream()).expires_after(std::chrono::seconds(30));
    bhttp::async_write(derived().stream(), *response_,
                       [self = derived().shared_from_this()](beast::error_code ec, std::size_t) {
                         self->on_write(ec);
                       });
  }

  void on_write(beast::error_code ec) {
    const bool keep = response_ && response_->keep_alive();
    response_.reset();
    if (ec) return derived().do_eof();
    if (!keep) return derived().do_eof();
    do_read();
  }

 protected:
  beast::flat_buffer buffer_;
  ServerOptions options_;  // a copy: a connection may outlive its Server
  Handler handler_;
  std::shared_ptr<Registry> registry_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  // A body being streamed into sink_ (open_body), a piece at a time through chunk_.
  std::optional<bhttp::request_parser<bhttp::buffer_body>> stream_parser_;
  std::shared_ptr<BodySink> sink_;
  std::vector<char> chunk_;  // sized when a body is first streamed
  std::shared_ptr<Response> response_;
  std::optional<boost::asio::steady_timer> read_timer_;
  bool timed_out_ = false;
};

class PlainSession final : public HttpSession<PlainSession>,
                           public std::enable_shared_from_this<PlainSession> {
 public:
  PlainSession(tcp::socket&& socket, const ServerOptions& options, Handler handler,
               std::shared_ptr<Registry> registry)
      : HttpSession(beast::flat_buffer{}, options, std::move(handler), std::move(registry)),
        stream_(std::move(socket)) {}

  beast::tcp_stream& stream() { return stream_; }
  void run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }
  void upgrade(Request req, std::shared_ptr<WebSocketHandler> handler) {
    auto ws = std::make_shared<WebSocketSession<beast::tcp_stream>>(std::move(stream_), options_,
                                                                    std::move(handler));
    if (registry_->track(ws)) ws->run(std::move(req));
  }
  void do_eof() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

 private:
  beast::tcp_stream stream_;
};

class TlsSession final : public HttpSession<TlsSession>,
                         public std::enable_shared_from_this<TlsSession> {
 public:
  TlsSession(tcp::socket&& socket, ssl::context& ctx, const ServerOptions& options, Handler handler,
             std::shared_ptr<Registry> registry)
      : HttpSession(beast::flat_buffer{}, options, std::move(handler), std::move(registry)),
        stream_(std::move(socket), ctx) {}

  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  void upgrade(Request req, std::shared_ptr<WebSocketHandler> handler) {
    auto ws = std::make_shared<WebSocketSession<beast::ssl_stream<beast::tcp_stream>>>(
        std::move(stream_), options_, std::move(handler));
    if (registry_->track(ws)) ws->run(std::move(req));
  }
  void run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      beast::get_lowest_layer(self->stream_).expires_after(self->options_.read_timeout);
      self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) return self->do_eof();
        self->do_read();
      });
    });
  }
  void do_eof() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
      beast::get_lowest_layer(self->stream_).close();
    });
  }

 private:
  beast::ssl_stream<beast::tcp_stream> stream_;
};

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(asio::io_context& ioc, ServerOptions opts, Handler h)
      : ioc(ioc),
        options(std::move(opts)),
        handler(std::move(h)),
        acceptor(asio::make_strand(ioc)),
        registry(std::make_shared<Registry>()) {}

  asio::io_context& ioc;
  ServerOptions options;
  Handler handler;
  tcp::acceptor acceptor;
  std::optional<ssl::context> tls_ctx;
  std::shared_ptr<Registry> registry;
  std::uint16_t bound_port = 0;

  void do_accept() {
    acceptor.async_accept(asio::make_strand(ioc),
                          [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                            self->on_accept(ec, std::move(socket));
                          });
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      std::shared_ptr<SessionBase> session;
      if (tls_ctx) {
        auto s =
            std::make_shared<TlsSession>(std::move(socket), *tls_ctx, options, handler, registry);
        s->run();
        session = s;
      } else {
        auto s = std::make_shared<PlainSession>(std::move(socket), options, handler, registry);
        s->run();
        session = s;
      }
      std::lock_guard lk(registry->mu);
      // Forget connections that have ended, so the table stays small.
      if (registry->sessions.size() > 256) {
        for (auto it = registry->sessions.begin(); it != registry->sessions.end();) {
          it = it->second.expired() ? registry->sessions.erase(it) : std::next(it);
        }
      }
      registry->sessions.emplace(registry->next_id++, session);
    }
    do_accept();
  }
};

Server::Server(asio::io_context& ioc, ServerOptions options, Handler handler)
    : impl_(std::make_shared<Impl>(ioc, std::move(options), std::move(handler))) {}

Server::~Server() {
  stop();
}

kvmfleet::Status Server::start() {
  auto& o = impl_->options;
  if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
    if (o.tls_cert_file.empty() || o.tls_key_file.empty())
      return invalid("TLS needs both a certificate and a key file");
    impl_->tls_ctx.emplace(ssl::context::tls_server);
    impl_->tls_ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                                ssl::context::no_tlsv1_1);
    beast::error_code ec;
    impl_->tls_ctx->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) return invalid("cannot load TLS certificate " + o.tls_cert_file + ": " + ec.message());
    impl_->tls_ctx->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
    if (ec) return invalid("cannot load TLS key " + o.tls_key_file + ": " + ec.message());
  }
  beast::error_code ec;
  auto addr = asio::ip::make_address(o.address, ec);
  if (ec) return invalid("bad listen address " + o.address);
  tcp::endpoint ep{addr, o.port};
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (ec) return unavailable("open: " + ec.message());
  acc.set_option(asio::socket_base::reuse_address(true), ec);
  acc.bind(ep, ec);
  if (ec)
    return unavailable("cannot bind " + o.address + ":" + std::to_string(o.port) + ": " +
                       ec.message());
  acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("listen: " + ec.message());
  impl_->bound_port = acc.local_endpoint().port();
  impl_->do_accept();
  return {};
}

void Server::stop() {
  if (!impl_) return;
  auto impl = impl_;
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    std::lock_guard lk(impl->registry->mu);
    if (impl->registry->stopped) return;
    impl->registry->stopped = true;
    for (auto& [_, w] : impl->registry->sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
    impl->registry->sessions.clear();
  }
  asio::post(impl->acceptor.get_executor(), [impl] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
  for (auto& s : live) s->close();
}

std::uint16_t Server::port() const {
  return impl_->bound_port;
}
bool Server::tls() const {
  return impl_->tls_ctx.has_value();
}

std::uint64_t Server::connections_accepted() const {
  std::lock_guard lk(impl_->registry->mu);
  return impl_->registry->next_id;
}

std::size_t Server::connections_open() const {
  std::lock_guard lk(impl_->registry->mu);
  return static_cast<std::size_t>(
      std::count_if(impl_->registry->sessions.begin(), impl_->registry->sessions.end(),
                    [](const auto& entry) { return !entry.second.expired(); }));
}

}  // namespace kvmfleet::http
