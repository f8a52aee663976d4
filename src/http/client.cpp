#include "kvmfleet/http/client.hpp"

#include <openssl/ssl.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "url.hpp"

namespace kvmfleet::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

using detail::parse_url;
using detail::Url;
using steady = std::chrono::steady_clock;

bhttp::request<bhttp::string_body> make_request(std::string_view method, const Url& u,
                                                const std::string& bearer, const std::string& body,
                                                bool keep_alive) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(u.target);
  req.version(11);
  req.set(bhttp::field::host, u.host);
  req.set(bhttp::field::user_agent, "kvmfleet");
  // HTTP/1.1 keeps the connection open unless a side says otherwise.
  if (!keep_alive) req.set(bhttp::field::connection, "close");
  if (!bearer.empty()) req.set(bhttp::field::authorization, "Bearer " + bearer);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  return req;
}

Result<std::shared_ptr<ssl::context>> make_tls_context(const std::string& ca_file,
                                                       bool verify_peer) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (verify_peer) {
    beast::error_code ec;
    ctx->set_verify_mode(ssl::verify_peer);
    if (ca_file.empty())
      ctx->set_default_verify_paths();
    else
      ctx->load_verify_file(ca_file, ec);
    if (ec) return invalid("cannot load CA file " + ca_file + ": " + ec.message());
  }
  return ctx;
}

Error timed_out(const Url& u, const std::string& url, std::chrono::milliseconds timeout) {
  return Error(ErrorCode::unavailable,
               "no answer from " + u.host + ":" + u.port + " within " +
                   std::to_string(timeout.count()) + " ms",
               {{"url", url}});
}

Error failed(const Url& u, const std::string& url, const beast::error_code& ec) {
  return Error(ErrorCode::unavailable,
               "request to " + u.host + ":" + u.port + " failed: " + ec.message(), {{"url", url}});
}

// One connection to one origin, used by one caller at a time. It has an io_context of
// its own, run by the caller until the step at hand is done or the call's deadline
// passes; a connection whose step did not finish is destroyed with its pending work,
// never used again. Every handler refers to members only.
class Connection {
 public:
  // How one step ended.
  struct Outcome {
    beast::error_code ec;
    bool timed_out = false;
    // Whether any byte of the answer arrived (a failure after that is never retried).
    bool response_began = false;
  };

  Connection(const Url& u, std::shared_ptr<ssl::context> tls, bool verify_peer)
      : tls_(std::move(tls)) {
    if (tls_) {
      secure_.emplace(ioc_, *tls_);
      SSL_set_tlsext_host_name(secure_->native_handle(), u.host.c_str());
      if (verify_peer) secure_->set_verify_callback(ssl::host_name_verification(u.host));
    } else {
      plain_.emplace(ioc_);
    }
  }

  // Resolves, connects and (https) shakes hands.
  Outcome open(const Url& u, steady::time_point deadline) {
    begin();
    resolver_.emplace(ioc_);
    resolver_->async_resolve(
        u.host, u.port, [this](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec) return finish(ec);
          auto& lowest = secure_ ? beast::get_lowest_layer(*secure_) : *plain_;
          lowest.async_connect(results, [this](beast::error_code cec, const tcp::endpoint&) {
            if (cec) return finish(cec);
            beast::error_code ignored;
            (secure_ ? beast::get_lowest_layer(*secure_) : *plain_)
                .socket()
                .set_option(tcp::no_delay(true), ignored);
            if (!secure_) return finish({});
            secure_->async_handshake(ssl::stream_base::client,
                                     [this](beast::error_code hec) { finish(hec); });
          });
        });
    return run(deadline);
  }

  // Writes `req` and reads the answer into `response()`.
  Outcome exchange(const bhttp::request<bhttp::string_body>& req, steady::time_point deadline) {
    begin();
    parser_.emplace();
    parser_->body_limit(64 * 1024 * 1024);
    if (secure_)
      write_then_read(*secure_, req);
    else
      write_then_read(*plain_, req);
    Outcome out = run(deadline);
    out.response_began = parser_->got_some() || buf_.size() > 0;
    return out;
  }

  // PUTs `header`, then the `size` bytes of `fd` a piece at a time, then reads the
  // answer; an answer that arrives instead of a write (the server refused the header and
  // closed) is read as well.
  Outcome upload(bhttp::request<bhttp::empty_body>& header, int fd, std::uint64_t size,
                 const UploadProgress& progress, steady::time_point deadline) {
    begin();
    fd_ = fd;
    total_ = size;
    sent_ = 0;
    progress_ = &progress;
    piece_.resize(1 << 20);
    header_serializer_.emplace(header);
    if (secure_)
      send_header(*secure_);
    else
      send_header(*plain_);
    return run(deadline);
  }

  ClientResponse response() {
    ClientResponse out;
    out.status = parser_->get().result_int();
    out.body = std::move(parser_->get().body());
    return out;
  }

  // After a successful exchange: whether the connection may carry the next call.
  bool reusable() const {
    return parser_ && parser_->is_done() && parser_->get().keep_alive() && buf_.size() == 0;
  }

  // Whether an idle connection has nothing to read: bytes there (a stray answer, a
  // TLS close_notify) would be taken for the next call's answer.
  bool quiet() {
    beast::error_code ec;
    const auto n = (secure_ ? beast::get_lowest_layer(*secure_) : *plain_).socket().available(ec);
    return !ec && n == 0;
  }

  steady::time_point idle_since{};

 private:
  template <class Stream>
  void send_header(Stream& stream) {
    bhttp::async_write_header(stream, *header_serializer_,
                              [this, &stream](beast::error_code ec, std::size_t) {
                                if (ec) return read_answer(stream, ec);
                                send_piece(stream);
                              });
  }
  template <class Stream>
  void send_piece(Stream& stream) {
    if (sent_ == total_) return read_answer(stream, {});
    const auto want =
        static_cast<std::size_t>(std::min<std::uint64_t>(piece_.size(), total_ - sent_));
    const ssize_t n = ::read(fd_, piece_.data(), want);
    if (n <= 0) return finish(beast::error_code(EIO, boost::system::generic_category()));
    asio::async_write(stream, asio::buffer(piece_.data(), static_cast<std::size_t>(n)),
                      [this, &stream](beast::error_code ec, std::size_t written) {
                        if (ec) return read_answer(stream, ec);
                        sent_ += written;
                        if (*progress_) (*progress_)(sent_, total_);
                        send_piece(stream);
                      });
  }
  // The answer; after a failed write, that failure unless an answer can still be read.
  template <class Stream>
  void read_answer(Stream& stream, beast::error_code write_ec) {
    parser_.emplace();
    parser_->body_limit(64 * 1024 * 1024);
    bhttp::async_read(stream, buf_, *parser_, [this, write_ec](beast::error_code ec, std::size_t) {
      finish(ec && write_ec ? write_ec : ec);
    });
  }

  template <class Stream>
  void write_then_read(Stream& stream, const bhttp::request<bhttp::string_body>& req) {
    bhttp::async_write(stream, req, [this, &stream](beast::error_code ec, std::size_t) {
      if (ec) return finish(ec);
      bhttp::async_read(stream, buf_, *parser_,
                        [this](beast::error_code rec, std::size_t) { finish(rec); });
    });
  }

  void begin() {
    done_ = false;
    ec_ = {};
  }
  void finish(beast::error_code ec) {
    ec_ = ec;
    done_ = true;
  }
  Outcome run(steady::time_point deadline) {
    ioc_.restart();
    ioc_.run_until(deadline);
    Outcome out;
    out.timed_out = !done_;
    out.ec = ec_;
    return out;
  }

  // Declared first, destroyed last: the streams go before the context that owns
  // their pending work.
  asio::io_context ioc_;
  std::shared_ptr<ssl::context> tls_;
  std::optional<tcp::resolver> resolver_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
  beast::flat_buffer buf_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  // An upload in progress.
  std::optional<bhttp::request_serializer<bhttp::empty_body>> header_serializer_;
  int fd_ = -1;
  std::uint64_t total_ = 0;
  std::uint64_t sent_ = 0;
  const UploadProgress* progress_ = nullptr;
  std::vector<char> piece_;
  beast::error_code ec_;
  bool done_ = false;
};

}  // namespace

BeastClient::BeastClient(std::string ca_file, bool verify_peer)
    : ca_file_(std::move(ca_file)), verify_peer_(verify_peer) {}

Result<ClientResponse> BeastClient::request(std::string_view method, const std::string& url,
                                            const std::string& bearer, const std::string& body,
                                            std::chrono::milliseconds timeout) {
  auto parsed = parse_url(url);
  if (!parsed) return parsed.take_error();
  const Url& u = *parsed;
  const auto req = make_request(method, u, bearer, body, /*keep_alive=*/false);
  std::shared_ptr<ssl::context> tls;
  if (u.tls) {
    auto ctx = make_tls_context(ca_file_, verify_peer_);
    if (!ctx) return ctx.take_error();
    tls = std::move(*ctx);
  }
  const auto deadline = steady::now() + timeout;
  Connection conn(u, std::move(tls), verify_peer_);
  auto step = conn.open(u, deadline);
  if (!step.timed_out && !step.ec) step = conn.exchange(req, deadline);
  if (step.timed_out) return timed_out(u, url, timeout);
  if (step.ec) return failed(u, url, step.ec);
  return conn.response();
}

Result<ClientResponse> BeastClient::upload(const std::string& url, const std::string& bearer,
                                           const std::string& path, const UploadProgress& progress,
                                           std::chrono::milliseconds timeout) {
  auto parsed = parse_url(url);
  if (!parsed) return parsed.take_error();
  const Url& u = *parsed;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return invalid("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid(path + " is not a regular file");
  }
  bhttp::request<bhttp::empty_body> header;
  header.method(bhttp::verb::put);
  header.target(u.target);
  header.version(11);
  header.set(bhttp::field::host, u.host);
  header.set(bhttp::field::user_agent, "kvmfleet");
  header.set(bhttp::field::connection, "close");
  header.set(bhttp::field::content_type, "application/octet-stream");
  if (!bearer.empty()) header.set(bhttp::field::authorization, "Bearer " + bearer);
  header.content_length(static_cast<std::uint64_t>(st.st_size));
  std::shared_ptr<ssl::context> tls;
  if (u.tls) {
    auto ctx = make_tls_context(ca_file_, verify_peer_);
    if (!ctx) {
      ::close(fd);
      return ctx.take_error();
    }
    tls = std::move(*ctx);
  }
  const auto deadline = steady::now() + timeout;
  Connection conn(u, std::move(tls), verify_peer_);
  auto step = conn.open(u, deadline);
  if (!step.timed_out && !step.ec)
    step = conn.upload(header, fd, static_cast<std::uint64_t>(st.st_size), progress, deadline);
  ::close(fd);
  if (step.timed_out) return timed_out(u, url, timeout);
  if (step.ec) return failed(u, url, step.ec);
  return conn.response();
}

Result<ClientResponse> Client::upload(const std::string& url, const std::string& bearer,
                                      const std::string& path, const UploadProgress& progress,
                                      std::chrono::milliseconds timeout) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot open " + path);
  const std::string body{std::istreambuf_iterator<char>(in), {}};
  if (progress) progress(body.size(), body.size());
  return request("PUT", url, bearer, body, timeout);
}

struct KeepAliveClient::Impl {
  explicit Impl(KeepAliveOptions o) : options(std::move(o)) {}

  KeepAliveOptions options;
  mutable std::mutex mu;
  std::shared_ptr<ssl::context> tls;  // made at the first https call
  // Per origin, oldest first (the most recently handed back last).
  std::unordered_map<std::string, std::vector<std::unique_ptr<Connection>>> idle;

  static std::string origin(const Url& u) {
    return (u.tls ? "https://" : "http://") + u.host + ":" + u.port;
  }

  Result<std::shared_ptr<ssl::context>> tls_context() {
    std::lock_guard lk(mu);
    if (!tls) {
      auto ctx = make_tls_context(options.ca_file, options.verify_peer);
      if (!ctx) return ctx.take_error();
      tls = std::move(*ctx);
    }
    return tls;
  }

  // The most recently used idle connection of `key`, or null. Connections idle for
  // too long, of every origin, are closed on the way (outside the lock), so a client
  // that calls many origins does not keep dead ones open.
  std::unique_ptr<Connection> take(const std::string& key) {
    std::vector<std::unique_ptr<Connection>> stale;
    std::unique_ptr<Connection> found;
    {
      std::lock_guard lk(mu);
      const auto now = steady::now();
      for (auto it = idle.begin(); it != idle.end();) {
        auto& list = it->second;  // oldest first
        const auto young = std::find_if(list.begin(), list.end(), [&](const auto& c) {
          return now - c->idle_since <= options.max_idle_time;
        });
        std::move(list.begin(), young, std::back_inserter(stale));
        list.erase(list.begin(), young);
        if (it->first == key && !list.empty()) {
          found = std::move(list.back());
          list.pop_back();
        }
        it = list.empty() ? idle.erase(it) : std::next(it);
      }
    }
    return found;
  }

  void give_back(const std::string& key, std::unique_ptr<Connection> conn) {
    conn->idle_since = steady::now();
    std::unique_ptr<Connection> surplus;
    std::lock_guard lk(mu);
    auto& list = idle[key];
    list.push_back(std::move(conn));
    if (list.size() > options.max_idle_per_origin) {
      surplus = std::move(list.front());
      list.erase(list.begin());
    }
  }
};

KeepAliveClient::KeepAliveClient(KeepAliveOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

KeepAliveClient::~KeepAliveClient() = default;

std::size_t KeepAliveClient::idle_connections() const {
  std::lock_guard lk(impl_->mu);
  std::size_t n = 0;
  for (const auto& [_, list] : impl_->idle) n += list.size();
  return n;
}

Result<ClientResponse> KeepAliveClient::request(std::string_view method, const std::string& url,
                                                const std::string& bearer, const std::string& body,
                                                std::chrono::milliseconds timeout) {
  auto parsed = parse_url(url);
  if (!parsed) return parsed.take_error();
  const Url& u = *parsed;
  const auto req = make_request(method, u, bearer, body, /*keep_alive=*/true);
  std::shared_ptr<ssl::context> tls;
  if (u.tls) {
    auto ctx = impl_->tls_context();
    if (!ctx) return ctx.take_error();
    tls = std::move(*ctx);
  }
  const auto deadline = steady::now() + timeout;
  const std::string key = Impl::origin(u);
  // The first attempt may reuse an idle connection; the only retry opens a fresh one.
  for (bool may_reuse = true;; may_reuse = false) {
    std::unique_ptr<Connection> conn = may_reuse ? impl_->take(key) : nullptr;
    if (conn && !conn->quiet()) conn.reset();
    const bool reused = conn != nullptr;
    if (!conn) {
      conn = std::make_unique<Connection>(u, tls, impl_->options.verify_peer);
      const auto opened = conn->open(u, deadline);
      if (opened.timed_out) return timed_out(u, url, timeout);
      if (opened.ec) return failed(u, url, opened.ec);
    }
    const auto step = conn->exchange(req, deadline);
    if (step.timed_out) return timed_out(u, url, timeout);
    if (step.ec) {
      // The server closed the idle connection before it saw this request.
      if (reused && !step.response_began) continue;
      return failed(u, url, step.ec);
    }
    ClientResponse out = conn->response();
    if (conn->reusable()) impl_->give_back(key, std::move(conn));
    return out;
  }
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
