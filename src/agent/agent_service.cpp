#include "kvmfleet/agent/agent_service.hpp"

#include <spdlog/spdlog.h>

#include <cassert>

#include "call_handlers.hpp"
#include "kvmfleet/agent/call_router.hpp"
#include "kvmfleet/agent/console_relay.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::agent {
namespace {

using nlohmann::json;
namespace proto = agent_protocol;

bool is_valid_op_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

http::Response method_not_allowed(const std::string& allow) {
  auto res =
      http::error_response({ErrorCode::method_not_allowed, "method not allowed; use " + allow});
  res.set(http::bhttp::field::allow, allow);
  return res;
}

// The path's uuid segment is untrusted: checked before it goes anywhere.
Status check_uuid(std::string_view uuid) {
  if (is_valid_uuid(uuid)) return {};
  return invalid("uuid in path must be a lowercase canonical UUID", {{"field", "uuid"}});
}

// A mutating request's body: JSON (when a content type is given), an object.
Result<json> parse_json_body(const http::Request& req) {
  if (auto ct = req.find(http::bhttp::field::content_type); ct != req.end()) {
    const std::string_view v(ct->value().data(), ct->value().size());
    if (!http::media_type_is(v, "application/json"))
      return Error{ErrorCode::unsupported_media, "request body must be application/json"};
  }
  json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return invalid("request body is not valid JSON");
  if (!body.is_object()) return invalid("request body must be a JSON object");
  return body;
}

Result<std::string> get_op_id(const json& body) {
  auto op_id = get_string(body, "op_id", true);
  if (!op_id) return op_id.take_error();
  if (!is_valid_op_id(*op_id))
    return invalid("op_id must be 1-128 characters of [A-Za-z0-9._:-]", {{"field", "op_id"}});
  return op_id;
}

// A POST's body: an object with only the row's fields and a valid op_id.
Result<json> checked_body(const http::Request& req, const proto::Call& call) {
  auto body = parse_json_body(req);
  if (!body) return body.take_error();
  if (auto known = check_known_fields(*body, call.fields); !known) return known.take_error();
  return body;
}

}  // namespace

AgentService::AgentService(Hypervisor& hypervisor, std::string token, std::size_t op_cache_capacity)
    : hv_(hypervisor), token_(std::move(token)), ops_(op_cache_capacity) {
  assert(!token_.empty());
}

AgentService::AgentService(Hypervisor& hypervisor, StorageBackend storage, std::string token,
                           std::size_t op_cache_capacity)
    : hv_(hypervisor), storage_(storage), token_(std::move(token)), ops_(op_cache_capacity) {
  assert(!token_.empty());
}

void AgentService::handle(http::Request&& req, http::Responder respond) {
  respond(serve(req));
}

http::Response AgentService::serve(const http::Request& req) {
  http::Response res;
  try {
    res = route(req);
  } catch (const std::exception& e) {
    spdlog::error("agent request {} {} failed: {}", std::string(req.method_string()),
                  std::string(req.target()), e.what());
    res = http::error_response(internal_error("unexpected error handling the request"));
  }
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  return res;
}

http::Response AgentService::route(const http::Request& req) {
  // Authenticate before anything else, so an unauthenticated caller learns nothing,
  // not even which paths exist. An empty configured token never matches.
  const auto presented = http::bearer_token(req);
  if (token_.empty() || presented.empty() || !constant_time_equal(presented, token_)) {
    auto res = http::error_response({ErrorCode::unauthenticated, "missing or invalid token"});
    res.set(http::bhttp::field::www_authenticate, "Bearer");
    return res;
  }

  std::string_view path(req.target().data(), req.target().size());
  std::string_view query;
  if (auto q = path.find('?'); q != std::string_view::npos) {
    query = path.substr(q + 1);
    path = path.substr(0, q);
  }
  const std::string_view method(req.method_string().data(), req.method_string().size());

  const CallMatch match = match_call(method, path);
  if (match.call == nullptr) {
    if (!match.allow.empty()) return method_not_allowed(match.allow);
    return http::error_response(not_found("no such agent endpoint"));
  }
  const proto::Call& call = *match.call;
  if (!match.params.uuid.empty()) {
    if (auto st = check_uuid(match.params.uuid); !st) return http::error_response(st.error());
  }
  // 409 rather than 404: the route exists, this host is in the wrong state for it,
  // and a 404 would read as "no such VG/LV" to the controller.
  if (call.backend == proto::Backend::storage && !storage_)
    return http::error_response(conflict("storage is not configured on this host"));
  if (call.backend == proto::Backend::network && !links_)
    return http::error_response(conflict("networking is not configured on this host"));

  json body = json::object();
  std::string op_id;
  if (call.replay != proto::Replay::none) {
    auto checked = checked_body(req, call);
    if (!checked) return http::error_response(checked.error());
    body = std::move(*checked);
    auto id = get_op_id(body);
    if (!id) return http::error_response(id.error());
    op_id = std::move(*id);
  }

  const calls::CallContext context{
      hv_, storage_ ? &*storage_ : nullptr, links_, match.params, body, op_id, reports_, query};
  auto prepared = calls::handler_for(call.id)(context);
  if (!prepared) return http::error_response(prepared.error());

  auto act_and_log = [&] {
    auto res = prepared->act();
    // Names are untrusted until the backend checked them: logged as JSON strings.
    spdlog::info("{} {} (op {}): {}", call.name,
                 json(prepared->subject).dump(-1, ' ', false, json::error_handler_t::replace),
                 op_id, res.result_int());
    return res;
  };
  switch (call.replay) {
    case proto::Replay::none:
      return prepared->act();
    case proto::Replay::hypervisor:
      return act_and_log();
    case proto::Replay::op_cache:
      break;
  }
  // One controller operation makes several calls (define, then start...) with the same
  // op_id, so the call's path is part of the key. The body is remembered only as a
  // digest, so a CHAP secret does not stay in the cache.
  const std::string key = op_id + " " + std::string(path);
  return ops_.run(key, sha256_hex(body.dump()), act_and_log);
}

Result<std::shared_ptr<http::WebSocketHandler>> AgentService::open_upgrade(
    const http::Request& req) {
  const auto presented = http::bearer_token(req);
  if (token_.empty() || presented.empty() || !constant_time_equal(presented, token_))
    return Error{ErrorCode::unauthenticated, "missing or invalid token"};
  std::string_view path(req.target().data(), req.target().size());
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  const std::string_view method(req.method_string().data(), req.method_string().size());
  const CallMatch match = match_call(method, path);
  if (match.call == nullptr) {
    if (!match.allow.empty())
      return Error{ErrorCode::method_not_allowed, "method not allowed; use " + match.allow};
    return not_found("no such agent endpoint");
  }
  if (!match.call->websocket)
    return invalid("this agent endpoint is no WebSocket endpoint",
                   {{"reason", "websocket_not_supported"}});
  if (auto st = check_uuid(match.params.uuid); !st) return st.error();
  switch (match.call->id) {
    case proto::CallId::console:
      return std::shared_ptr<http::WebSocketHandler>(
          std::make_shared<ConsoleRelay>(hv_, match.params.uuid));
    default:
      break;
  }
  return internal_error("WebSocket call without a handler");
}

}  // namespace kvmfleet::agent
