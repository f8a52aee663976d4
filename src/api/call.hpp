#pragma once

// What the API's route handlers share: one request in flight and the helpers that
// read its body and answer it. Internal to src/api.

#include "kvmfleet/api/metrics.hpp"
#include "kvmfleet/api/page_cache.hpp"
#include "kvmfleet/api/request_parsing.hpp"
#include "kvmfleet/api/router.hpp"
#include "kvmfleet/api/views.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/http/types.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvmfleet::api {

using http::HttpStatus;
using http::Verb;
using nlohmann::json;

inline std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash);
  }
  return out;
}

// One request in flight: what the handlers need, and the way to answer. Made shared
// (Api::handle) so that an answer parked until an operation ends keeps it alive.
struct Call : std::enable_shared_from_this<Call> {
  Call(http::Request r, http::Responder res, Metrics& m, PageCache& p)
      : req(std::move(r)), respond(std::move(res)), metrics(m), pages(p) {}

  http::Request req;
  http::Responder respond;
  Metrics& metrics;
  PageCache& pages;  // GET /v1/vms pages
  std::vector<std::string_view> seg;
  std::map<std::string, std::string> query;
  std::optional<Principal> who;  // empty only on routes that need no token
  // Set by the router before the handler runs:
  const Route* route = nullptr;
  std::vector<std::pair<std::string_view, std::string>> params;  // checked path parameters
  std::chrono::seconds wait{0};                                  // ?wait=, checked
  // When the request reached the API, before any check or lock (Api::handle): what a
  // heartbeat counts for.
  Arrival arrived;

  // The path parameter of that kind in the route's pattern, e.g. param("vm").
  const std::string& param(std::string_view kind) const {
    for (const auto& [k, v] : params)
      if (k == kind) return v;
    throw std::logic_error("route has no path parameter " + std::string(kind));
  }

  void reply(http::Response res) {
    const auto ms = req.method_string();
    metrics.count_request(std::string_view(ms.data(), ms.size()), res.result_int());
    respond(std::move(res));
  }
  void ok(HttpStatus status, const json& body) {
    reply(http::json_response(status, body, req.version(), req.keep_alive()));
  }
  void fail(const Error& e) { reply(http::error_response(e, req.version(), req.keep_alive())); }
};

inline Result<json> body_of(Call& c) {
  // curl -d sends its default form type with a JSON body; that is accepted, since
  // the body must parse as a JSON object anyway. Any other declared type is refused.
  const auto field = c.req[http::bhttp::field::content_type];
  const std::string_view ct(field.data(), field.size());
  if (!c.req.body().empty() && !ct.empty() && !http::media_type_is(ct, "application/json") &&
      !http::media_type_is(ct, "application/x-www-form-urlencoded"))
    return Error(ErrorCode::unsupported_media, "request body must be application/json");
  return parse_body(c.req.body());
}

// For actions whose body is optional: an empty body is an empty object.
inline Result<json> optional_body_of(Call& c) {
  if (c.req.body().empty()) return json::object();
  return body_of(c);
}

inline SubmitOptions submit_options(const Call& c) {
  SubmitOptions o;
  auto key = c.req["Idempotency-Key"];
  o.idempotency_key = std::string(key.data(), key.size());
  std::string canonical(c.req.method_string());
  canonical += ' ';
  canonical += std::string(c.req.target());
  canonical += '\n';
  canonical += c.req.body();
  o.request_hash = sha256_hex(canonical);
  return o;
}

inline Status check_idempotency_key(const Call& c) {
  const auto it = c.req.find("Idempotency-Key");
  if (it == c.req.end()) return {};
  const auto key = it->value();
  if (key.empty()) return invalid("Idempotency-Key is empty");
  if (c.req.count("Idempotency-Key") > 1) return invalid("Idempotency-Key given twice");
  if (key.size() > 128) return invalid("Idempotency-Key longer than 128 characters");
  for (char ch : key)
    if (ch < 0x21 || ch > 0x7e) return invalid("Idempotency-Key must be printable ASCII");
  return {};
}

// Answers an accepted submission: 202 with the operation, or, with ?wait=N, the
// operation once it ends (200) or when N seconds pass (202).
inline void answer_operation(Controller& svc, Call& call, const Submitted& s) {
  auto send = [c = call.shared_from_this(),
               replayed = s.replayed](const std::optional<Operation>& op) {
    if (!op) return c->fail(not_found("operation vanished"));
    auto res = http::json_response(is_terminal(op->state) ? HttpStatus::ok : HttpStatus::accepted,
                                   operation_view(*op), c->req.version(), c->req.keep_alive());
    res.set(http::bhttp::field::location, "/v1/operations/" + op->id);
    if (replayed) res.set("Idempotent-Replayed", "true");
    c->reply(std::move(res));
  };
  if (call.wait.count() == 0) return send(s.operation);
  svc.operations().wait(s.operation.id, call.wait, send);
}

// Answers a submission: its refusal, or the operation as answer_operation does.
inline void answer_submitted(Controller& svc, Call& c, const Result<Submitted>& s) {
  if (!s) return c.fail(s.error());
  answer_operation(svc, c, *s);
}

}  // namespace kvmfleet::api
