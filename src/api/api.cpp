#include "kvmfleet/api/api.hpp"

#include "call.hpp"
#include "kvmfleet/api/routes.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string_view>

namespace kvmfleet::api {

Api::Api(Controller& service, Metrics& metrics) : Api(service, metrics, routes()) {}

Api::Api(Controller& service, Metrics& metrics, std::vector<Route> routes)
    : service_(service), metrics_(metrics), router_(std::move(routes)) {}

void Api::handle(http::Request&& req, http::Responder respond) {
  // First: the time a heartbeat counts for is its arrival, not the end of its processing.
  const auto arrived = Arrival::now(service_.clock());
  auto c = std::make_shared<Call>(std::move(req), std::move(respond), metrics_, pages_);
  c->arrived = arrived;
  const std::string_view target(c->req.target().data(), c->req.target().size());
  const auto qmark = target.find('?');
  // Views into the request target live as long as the Call that owns the request.
  c->seg = split_path(target.substr(0, qmark));
  if (qmark != std::string_view::npos) {
    auto q = parse_query(target.substr(qmark + 1));
    if (!q) return c->fail(q.error());
    c->query = std::move(*q);
  }
  try {
    dispatch(*c);
  } catch (const std::exception& e) {
    spdlog::error("request {} {} failed: {}", std::string(c->req.method_string()),
                  std::string(target), e.what());
    c->fail(internal_error("internal error"));
  }
}

// Every request passes the same checks in the same order before its handler runs: the
// token and Idempotency-Key (on all but open routes), the path (404), its parameters (400),
// the method (405), the role (403), the query keys and ?wait (400).
void Api::dispatch(Call& c) {
  auto match = router_.match(c.seg);
  auto route = admit(c, match);
  if (!route) {
    auto res = http::error_response(route.error(), c.req.version(), c.req.keep_alive());
    if (route.error().code == ErrorCode::method_not_allowed)
      res.set(http::bhttp::field::allow, match->resource->allow);
    return c.reply(std::move(res));
  }
  (*route)->handle(service_, c);
}

Result<const Route*> Api::admit(Call& c, std::optional<Router::Match>& match) {
  if (!match || !match->resource->open) {
    c.who = service_.tokens().authenticate(http::bearer_token(c.req));
    if (!c.who) return Error(ErrorCode::unauthenticated, "a valid bearer token is required");
    if (auto st = check_idempotency_key(c); !st) return st.error();
  }
  if (!match) return not_found("no such resource");
  for (const auto& [kind, value] : match->params)
    if (auto st = check_path_param(kind, value); !st) return st.error();
  const Route* route = match->resource->find(c.req.method());
  if (!route) return Error(ErrorCode::method_not_allowed, "method not allowed on this path");
  if (c.who && !allowed(c.who->role, route->need))
    return Error(ErrorCode::permission_denied,
                 "role " + std::string(to_string(c.who->role)) + " may not do this");
  if (auto st = check_query_keys(c.query, route->query); !st) return st.error();
  if (std::find(route->query.begin(), route->query.end(), "wait") != route->query.end()) {
    auto wait = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds);
    if (!wait) return wait.error();
    c.wait = std::chrono::seconds(*wait);
  }
  c.route = route;
  c.params = std::move(match->params);
  return route;
}

void Api::count(const Call& c, unsigned status) {
  const auto ms = c.req.method_string();
  metrics_.count_request(std::string_view(ms.data(), ms.size()), status);
}

Result<std::shared_ptr<Call>> Api::admitted_call(http::Request req) {
  auto c = std::make_shared<Call>(std::move(req), http::Responder(), metrics_, pages_);
  c->arrived = Arrival::now(service_.clock());
  const std::string_view own(c->req.target().data(), c->req.target().size());
  const auto qmark = own.find('?');
  c->seg = split_path(own.substr(0, qmark));
  auto refuse = [&](const Error& e) -> Error {
    count(*c, static_cast<unsigned>(http::status_for(e.code)));
    return e;
  };
  if (qmark != std::string_view::npos) {
    auto q = parse_query(own.substr(qmark + 1));
    if (!q) return refuse(q.error());
    c->query = std::move(*q);
  }
  auto match = router_.match(c->seg);  // views into the call's own copy of the target
  if (auto admitted = admit(*c, match); !admitted) return refuse(admitted.error());
  return c;
}

Result<std::shared_ptr<http::BodySink>> Api::open_body(const http::RequestHeader& header) {
  const std::string_view target(header.target().data(), header.target().size());
  auto match = router_.match(split_path(target.substr(0, target.find('?'))));
  if (!match) return std::shared_ptr<http::BodySink>();
  const Route* route = match->resource->find(header.method());
  if (!route || !route->open_body) return std::shared_ptr<http::BodySink>();
  // A call like handle()'s, over the header alone; the sink answers it.
  auto c = admitted_call(http::Request(header));
  if (!c) return c.take_error();
  auto sink = route->open_body(service_, **c);
  if (!sink) count(**c, static_cast<unsigned>(http::status_for(sink.error().code)));
  return sink;
}

Result<std::shared_ptr<http::WebSocketHandler>> Api::open_upgrade(const http::Request& req) {
  const std::string_view target(req.target().data(), req.target().size());
  auto match = router_.match(split_path(target.substr(0, target.find('?'))));
  if (!match) return std::shared_ptr<http::WebSocketHandler>();
  const Route* route = match->resource->find(req.method());
  if (!route || !route->open_upgrade) return std::shared_ptr<http::WebSocketHandler>();
  auto c = admitted_call(http::Request(req));
  if (!c) return c.take_error();
  auto handler = route->open_upgrade(service_, **c);
  count(**c, handler ? 101u : static_cast<unsigned>(http::status_for(handler.error().code)));
  return handler;
}

}  // namespace kvmfleet::api
