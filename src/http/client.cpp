#include "kvmfleet/http/client.hpp"

#include <openssl/ssl.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>

namespace kvmfleet::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

Result<Url> parse_url(const std::string& url) {
  Url u;
  std::string_view rest(url);
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    u.tls = true;
  } else {
    return invalid("URL must start with http:// or https://", {{"url", url}});
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return invalid("bad URL host", {{"url", url}});
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(":")) u.port = std::string(authority.substr(1));
  } else {
    const auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) return invalid("URL has no host", {{"url", url}});
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  return u;
}

// Runs one exchange over an already-connected stream, asynchronously, so that the
// caller's io_context.run_for() bounds the whole thing.
template <class Stream>
void exchange(Stream& stream, bhttp::request<bhttp::string_body>& req, beast::flat_buffer& buf,
              bhttp::response_parser<bhttp::string_body>& parser, beast::error_code& out,
              bool& done) {
  bhttp::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
    if (ec) {
      out = ec;
      done = true;
      return;
    }
    bhttp::async_read(stream, buf, parser, [&](beast::error_code ec2, std::size_t) {
      out = ec2;
      done = true;
    });
  });
}

}  // namespace

BeastClient::BeastClient(std::string ca_file, bool verify_peer)
    : ca_file_(std::move(ca_file)), verify_peer_(verify_peer) {}

Result<ClientResponse> BeastClient::request(std::string_view method, const std::string& url,
                                            const std::string& bearer, const std::string& body,
                                            std::chrono::milliseconds timeout) {
  auto parsed = parse_url(url);
  if (!parsed) return parsed.take_error();
  const Url& u = *parsed;

  bhttp::request<bhttp::string_body> req;
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(u.target);
  req.version(11);
  req.set(bhttp::field::host, u.host);
  req.set(bhttp::field::user_agent, "kvmfleet");
  req.set(bhttp::field::connection, "close");
  if (!bearer.empty()) req.set(bhttp::field::authorization, "Bearer " + bearer);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();

  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::flat_buffer buf;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code ec;
  bool done = false;

  std::optional<ssl::context> ctx;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  if (u.tls) {
    ctx.emplace(ssl::context::tls_client);
    if (verify_peer_) {
      ctx->set_verify_mode(ssl::verify_peer);
      if (ca_file_.empty())
        ctx->set_default_verify_paths();
      else
        ctx->load_verify_file(ca_file_, ec);
      if (ec) return invalid("cannot load CA file " + ca_file_ + ": " + ec.message());
    }
    secure.emplace(ioc, *ctx);
    SSL_set_tlsext_host_name(secure->native_handle(), u.host.c_str());
    if (verify_peer_) secure->set_verify_callback(ssl::host_name_verification(u.host));
  } else {
    plain.emplace(ioc);
  }

  resolver.async_resolve(
      u.host, u.port, [&](beast::error_code rec, tcp::resolver::results_type results) {
        if (rec) {
          ec = rec;
          done = true;
          return;
        }
        auto& lowest = u.tls ? beast::get_lowest_layer(*secure) : *plain;
        lowest.async_connect(results, [&](beast::error_code cec, const tcp::endpoint&) {
          if (cec) {
            ec = cec;
            done = true;
            return;
          }
          if (u.tls) {
            secure->async_handshake(ssl::stream_base::client, [&](beast::error_code hec) {
              if (hec) {
                ec = hec;
                done = true;
                return;
              }
              exchange(*secure, req, buf, parser, ec, done);
            });
          } else {
            exchange(*plain, req, buf, parser, ec, done);
          }
        });
      });

  ioc.run_for(timeout);
  if (!done) {
    return Error(ErrorCode::unavailable,
                 "no answer from " + u.host + ":" + u.port + " within " +
                     std::to_string(timeout.count()) + " ms",
                 {{"url", url}});
  }
  if (ec) {
    return Error(ErrorCode::unavailable,
                 "request to " + u.host + ":" + u.port + " failed: " + ec.message(),
                 {{"url", url}});
  }
  ClientResponse out;
  out.status = parser.get().result_int();
  out.body = std::move(parser.get().body());
  return out;
}

Result<nlohmann::json> call_json(Client& client, std::string_view method, const std::string& url,
                                 const std::string& bearer, const nlohmann::json* body,
                                 std::chrono::milliseconds timeout) {
  auto res = client.request(method, url, bearer, body ? body->dump() : std::string{}, timeout);
  if (!res) return res.take_error();
  nlohmann::json parsed = nlohmann::json::parse(res->body, nullptr, false);
  if (res->status >= 200 && res->status < 300) {
    if (res->body.empty()) return nlohmann::json::object();
    if (parsed.is_discarded())
      return internal_error("peer answered with malformed JSON", {{"url", url}});
    return parsed;
  }
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error"))
    return Error::from_json(parsed);
  return Error(res->status >= 500 ? ErrorCode::unavailable : ErrorCode::internal,
               "peer answered HTTP " + std::to_string(res->status), {{"url", url}});
}

}  // namespace kvmfleet::http
