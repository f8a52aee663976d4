#include "recording_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cctype>
#include <sstream>

namespace kvmfleet::contract {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes what it can; the checker only needs the query as the server saw it.
std::string percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

nlohmann::json query_of(const std::string& target) {
  nlohmann::json q = nlohmann::json::object();
  const auto qmark = target.find('?');
  if (qmark == std::string::npos) return q;
  std::stringstream parts(target.substr(qmark + 1));
  std::string part;
  while (std::getline(parts, part, '&')) {
    if (part.empty()) continue;
    const auto eq = part.find('=');
    q[percent_decode(part.substr(0, eq))] =
        eq == std::string::npos ? std::string{} : percent_decode(part.substr(eq + 1));
  }
  return q;
}

}  // namespace

nlohmann::json HttpAnswer::json() const {
  return nlohmann::json::parse(body, nullptr, false);
}

std::string HttpAnswer::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string{} : it->second;
}

RecordingClient::RecordingClient(std::uint16_t port, const std::string& record_path)
    : port_(port), out_(record_path, std::ios::trunc) {}

Result<HttpAnswer> RecordingClient::send(const HttpCall& call) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(call.method);
  req.target(call.target);
  req.version(11);
  req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(port_));
  req.set(bhttp::field::user_agent, "kvmfleet-contract-test");
  req.set(bhttp::field::connection, "close");
  if (!call.token.empty()) req.set(bhttp::field::authorization, "Bearer " + call.token);
  for (const auto& [name, value] : call.headers) req.set(name, value);
  if (call.body) {
    if (!call.content_type.empty()) req.set(bhttp::field::content_type, call.content_type);
    req.body() = *call.body;
  }
  req.prepare_payload();
  std::ostringstream wire;
  wire << req;
  auto answer = exchange(wire.str());
  if (!answer) return answer;
  record(call.method, call.target, call.path_template, call.headers,
         call.body ? call.content_type : "", call.body, *answer);
  return answer;
}

Result<HttpAnswer> RecordingClient::send_raw(const std::string& bytes, const std::string& method,
                                             const std::string& target,
                                             const std::string& path_template) {
  auto answer = exchange(bytes);
  if (!answer) return answer;
  record(method, target, path_template, {}, "", std::nullopt, *answer);
  return answer;
}

Result<HttpAnswer> RecordingClient::exchange(const std::string& bytes) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code failure;
  bool done = false;
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port_);
  socket.async_connect(endpoint, [&](beast::error_code ec) {
    if (ec) {
      failure = ec;
      done = true;
      return;
    }
    asio::async_write(socket, asio::buffer(bytes), [&](beast::error_code, std::size_t) {
      // A server that refuses a request early (413) may close before it has read
      // everything; its answer is still there to read, so a write error is not final.
      bhttp::async_read(socket, buffer, parser, [&](beast::error_code rec, std::size_t) {
        failure = rec;
        done = true;
      });
    });
  });
  ioc.run_for(deadline_);
  if (!done) return Error(ErrorCode::timeout, "no answer from the controller");
  if (failure) return Error(ErrorCode::unavailable, "exchange failed: " + failure.message());
  const auto& res = parser.get();
  HttpAnswer answer;
  answer.status = res.result_int();
  for (const auto& field : res)
    answer.headers[lower(std::string(field.name_string()))] = std::string(field.value());
  answer.content_type = answer.header("content-type");
  answer.body = res.body();
  return answer;
}

void RecordingClient::record(
    const std::string& method, const std::string& target, const std::string& path_template,
    const std::vector<std::pair<std::string, std::string>>& request_headers,
    const std::string& request_content_type, const std::optional<std::string>& request_body,
    const HttpAnswer& answer) {
  nlohmann::json req_headers = nlohmann::json::object();
  for (const auto& [name, value] : request_headers) req_headers[lower(name)] = value;
  nlohmann::json line = {
      {"method", method},
      {"path_template", path_template},
      {"path", target},
      {"query", query_of(target)},
      {"request_headers", req_headers},
      {"request_content_type", request_content_type},
      {"request_body", request_body ? nlohmann::json(*request_body) : nlohmann::json(nullptr)},
      {"status", answer.status},
      {"content_type", answer.content_type},
      {"headers", answer.headers},
      {"body", answer.body}};
  out_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  out_.flush();
  ++recorded_;
}

}  // namespace kvmfleet::contract
