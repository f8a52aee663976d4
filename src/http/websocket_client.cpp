#include "kvmfleet/http/websocket_client.hpp"

#include <openssl/ssl.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <deque>
#include <nlohmann/json.hpp>

#include "url.hpp"

namespace kvmfleet::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

// The error a refused upgrade carries: the server's error body when it has one.
Error refusal(const websocket::response_type& res) {
  auto body = nlohmann::json::parse(res.body(), nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const auto& e = body["error"];
    Error out(error_code_from_string(e.value("code", "internal")), e.value("message", ""));
    if (e.contains("details") && e["details"].is_object()) out.details = e["details"];
    return out;
  }
  return Error(ErrorCode::unavailable,
               "WebSocket upgrade refused with HTTP " + std::to_string(res.result_int()));
}

template <class Next>
class Client final : public WebSocketConnection, public std::enable_shared_from_this<Client<Next>> {
 public:
  template <class... Args>
  Client(asio::io_context& ioc, detail::Url url, std::string bearer, WebSocketClientOptions options,
         WebSocketCallbacks callbacks, std::shared_ptr<void> keep, Args&&... args)
      : keep_(std::move(keep)),
        resolver_(asio::make_strand(ioc)),
        ws_(resolver_.get_executor(), std::forward<Args>(args)...),
        url_(std::move(url)),
        bearer_(std::move(bearer)),
        options_(std::move(options)),
        callbacks_(std::move(callbacks)) {}

  void run() {
    asio::dispatch(ws_.get_executor(), [self = this->shared_from_this()] {
      self->resolver_.async_resolve(
          self->url_.host, self->url_.port,
          [self](beast::error_code ec, tcp::resolver::results_type results) {
            if (ec) return self->fail(unavailable("cannot resolve " + self->url_.host));
            beast::get_lowest_layer(self->ws_).expires_after(self->options_.connect_timeout);
            beast::get_lowest_layer(self->ws_).async_connect(
                results, [self](beast::error_code ec, const tcp::endpoint&) {
                  if (ec)
                    return self->fail(unavailable("cannot connect to " + self->url_.host + ":" +
                                                  self->url_.port + ": " + ec.message()));
                  self->on_connect();
                });
          });
    });
  }

  void send(std::string bytes) override {
    asio::dispatch(ws_.get_executor(),
                   [self = this->shared_from_this(), bytes = std::move(bytes)]() mutable {
                     if (self->done_ || self->closing_) return;
                     self->queue_.push_back(std::move(bytes));
                     if (self->open_ && !self->writing_) self->do_write();
                   });
  }

  void close() override {
    asio::dispatch(ws_.get_executor(), [self = this->shared_from_this()] {
      if (self->done_ || self->closing_) return;
      self->closing_ = true;
      if (!self->open_) {
        beast::get_lowest_layer(self->ws_).close();
        return self->finish({});
      }
      if (!self->writing_) self->do_close();
    });
  }

 private:
  void on_connect() {
    if constexpr (std::is_same_v<Next, beast::ssl_stream<beast::tcp_stream>>) {
      SSL_set_tlsext_host_name(ws_.next_layer().native_handle(), url_.host.c_str());
      if (options_.verify_peer)
        ws_.next_layer().set_verify_callback(ssl::host_name_verification(url_.host));
      ws_.next_layer().async_handshake(
          ssl::stream_base::client, [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) return self->fail(unavailable("TLS handshake failed: " + ec.message()));
            self->upgrade();
          });
    } else {
      upgrade();
    }
  }

  void upgrade() {
    ws_.set_option(
        websocket::stream_base::decorator([bearer = bearer_](websocket::request_type& req) {
          req.set(beast::http::field::authorization, "Bearer " + bearer);
          req.set(beast::http::field::user_agent, "kvmfleet");
        }));
    ws_.async_handshake(
        res_, url_.host + ":" + url_.port, url_.target,
        [self = this->shared_from_this()](beast::error_code ec) {
          if (ec == websocket::error::upgrade_declined) return self->fail(refusal(self->res_));
          if (ec) return self->fail(unavailable("WebSocket handshake failed: " + ec.message()));
          self->on_open();
        });
  }

  void on_open() {
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.read_message_max(options_.message_limit);
    ws_.binary(true);
    open_ = true;
    if (callbacks_.on_open) callbacks_.on_open();
    do_read();
    if (closing_) {
      if (!writing_) do_close();
    } else if (!queue_.empty()) {
      do_write();
    }
  }

  void do_read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec == websocket::error::closed) return self->finish({});
      if (ec) {
        if (self->closing_) return self->finish({});
        return self->finish(unavailable("WebSocket connection ended: " + ec.message()));
      }
      std::string msg = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      if (self->callbacks_.on_message) self->callbacks_.on_message(std::move(msg));
      self->do_read();
    });
  }

  void do_write() {
    if (queue_.empty()) {
      writing_ = false;
      if (closing_) do_close();
      return;
    }
    writing_ = true;
    ws_.async_write(asio::buffer(queue_.front()),
                    [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                      self->queue_.pop_front();
                      if (ec) {
                        self->writing_ = false;
                        return;  // the pending read reports the end
                      }
                      self->do_write();
                    });
  }

  void do_close() {
    if (close_sent_) return;
    close_sent_ = true;
    ws_.async_close(websocket::close_code::normal, [](beast::error_code) {});
  }

  void fail(Error e) {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    finish(std::move(e));
  }

  void finish(Status why) {
    if (done_) return;
    done_ = true;
    open_ = false;
    queue_.clear();
    auto cb = std::move(callbacks_);
    callbacks_ = {};
    if (cb.on_closed) cb.on_closed(std::move(why));
  }

  std::shared_ptr<void> keep_;  // what the stream refers to (the TLS context): outlives it
  tcp::resolver resolver_;
  websocket::stream<Next> ws_;
  detail::Url url_;
  std::string bearer_;
  WebSocketClientOptions options_;
  WebSocketCallbacks callbacks_;
  websocket::response_type res_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  bool open_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool done_ = false;
};

// A connection that never opened: reports its error on the io_context, like any other.
class Failed final : public WebSocketConnection {
 public:
  void send(std::string) override {}
  void close() override {}
};

}  // namespace

std::shared_ptr<WebSocketConnection> connect_websocket(asio::io_context& ioc,
                                                       const std::string& url,
                                                       const std::string& bearer,
                                                       WebSocketClientOptions options,
                                                       WebSocketCallbacks callbacks) {
  std::string http_url = url;
  if (http_url.starts_with("ws://")) http_url = "http://" + http_url.substr(5);
  if (http_url.starts_with("wss://")) http_url = "https://" + http_url.substr(6);
  auto parsed = detail::parse_url(http_url);
  if (!parsed) {
    asio::post(ioc, [cb = std::move(callbacks.on_closed), e = parsed.error()] {
      if (cb) cb(e);
    });
    return std::make_shared<Failed>();
  }
  if (!parsed->tls) {
    auto c = std::make_shared<Client<beast::tcp_stream>>(
        ioc, std::move(*parsed), bearer, std::move(options), std::move(callbacks), nullptr);
    c->run();
    return c;
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (options.verify_peer) {
    beast::error_code ec;
    ctx->set_verify_mode(ssl::verify_peer);
    if (options.ca_file.empty())
      ctx->set_default_verify_paths(ec);
    else
      ctx->load_verify_file(options.ca_file, ec);
    if (ec) {
      asio::post(ioc, [cb = std::move(callbacks.on_closed), f = options.ca_file, m = ec.message()] {
        if (cb) cb(invalid("cannot load CA file " + f + ": " + m));
      });
      return std::make_shared<Failed>();
    }
  }
  auto c = std::make_shared<Client<beast::ssl_stream<beast::tcp_stream>>>(
      ioc, std::move(*parsed), bearer, std::move(options), std::move(callbacks), ctx, *ctx);
  c->run();
  return c;
}

}  // namespace kvmfleet::http
