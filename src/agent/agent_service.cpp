#include "kvmfleet/agent/agent_service.hpp"

#include <spdlog/spdlog.h>

#include <cassert>

#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet::agent {
namespace {

using nlohmann::json;

constexpr std::string_view kDomainsPrefix = "/agent/v1/domains/";

bool is_valid_op_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

http::Response method_not_allowed(std::string_view allow) {
  auto res = http::error_response(
      {ErrorCode::method_not_allowed, "method not allowed; use " + std::string(allow)});
  res.set(http::bhttp::field::allow, std::string(allow));
  return res;
}

http::Response ok_json(const json& body) {
  return http::json_response(http::HttpStatus::ok, body);
}

template <typename T>
http::Response reply(const Result<T>& r) {
  if (!r) return http::error_response(r.error());
  return ok_json(json(r.value()));
}

http::Response reply(const Status& s) {
  if (!s) return http::error_response(s.error());
  return ok_json(json::object());
}

// The path's uuid segment is untrusted: checked before it goes anywhere.
Status check_uuid(std::string_view uuid) {
  if (is_valid_uuid(uuid)) return {};
  return invalid("uuid in path must be a lowercase canonical UUID", {{"field", "uuid"}});
}

}  // namespace

AgentService::AgentService(Hypervisor& hypervisor, std::string token, std::size_t op_cache_capacity)
    : hv_(hypervisor), token_(std::move(token)), ops_(op_cache_capacity) {
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
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

  if (path == agent_protocol::kInventory.path) {
    if (req.method() != http::Verb::get) return method_not_allowed("GET");
    return reply(hv_.inventory());
  }
  if (path == agent_protocol::kDefine.path) {
    if (req.method() != http::Verb::post) return method_not_allowed("POST");
    return mutate(req, path, "define", {});
  }
  if (path.starts_with(kDomainsPrefix)) {
    const auto rest = path.substr(kDomainsPrefix.size());
    const auto slash = rest.find('/');
    const auto uuid = rest.substr(0, slash);
    if (slash == std::string_view::npos) {
      if (req.method() != http::Verb::get) return method_not_allowed("GET");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return reply(hv_.get_domain(std::string(uuid)));
    }
    const auto action = rest.substr(slash + 1);
    if (action == "start" || action == "shutdown" || action == "reboot" || action == "destroy" ||
        action == "undefine") {
      if (req.method() != http::Verb::post) return method_not_allowed("POST");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return mutate(req, path, action, std::string(uuid));
    }
    if (action == "migrate" || action == "migration/abort") {
      if (req.method() != http::Verb::post) return method_not_allowed("POST");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return mutate(req, path, action, std::string(uuid));
    }
    if (action == "migration") {
      if (req.method() != http::Verb::get) return method_not_allowed("GET");
      if (auto st = check_uuid(uuid); !st) return http::error_response(st.error());
      return reply(hv_.migration_status(std::string(uuid)));
    }
  }
  return http::error_response(not_found("no such agent endpoint"));
}

http::Response AgentService::mutate(const http::Request& req, std::string_view path,
                                    std::string_view action, const std::string& uuid) {
  if (auto ct = req.find(http::bhttp::field::content_type); ct != req.end()) {
    const std::string_view v(ct->value().data(), ct->value().size());
    if (!v.starts_with("application/json"))
      return http::error_response(
          {ErrorCode::unsupported_media, "request body must be application/json"});
  }
  const json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return http::error_response(invalid("request body is not valid JSON"));
  if (!body.is_object()) return http::error_response(invalid("request body must be a JSON object"));

  // parse_migration_request checks a migrate body's fields itself.
  Status known = action == "define"     ? check_known_fields(body, {"op_id", "spec"})
                 : action == "undefine" ? check_known_fields(body, {"op_id", "remove_volumes"})
                 : action == "migrate"  ? Status{}
                                        : check_known_fields(body, {"op_id"});
  if (!known) return http::error_response(known.error());
  auto op_id = get_string(body, "op_id", true);
  if (!op_id) return http::error_response(op_id.error());
  if (!is_valid_op_id(*op_id))
    return http::error_response(
        invalid("op_id must be 1-128 characters of [A-Za-z0-9._:-]", {{"field", "op_id"}}));

  std::function<http::Response()> act;
  std::string subject = uuid;
  if (action == "define") {
    auto it = body.find("spec");
    if (it == body.end())
      return http::error_response(invalid("spec is required", {{"field", "spec"}}));
    auto spec = parse_domain_spec(*it);
    if (!spec) return http::error_response(spec.error());
    subject = spec->uuid;
    act = [this, spec = std::move(*spec)] { return reply(hv_.define(spec)); };
  } else if (action == "undefine") {
    auto remove = get_bool(body, "remove_volumes", false);
    if (!remove) return http::error_response(remove.error());
    act = [this, uuid, remove = *remove] { return reply(hv_.undefine(uuid, remove)); };
  } else if (action == "migrate") {
    auto request = parse_migration_request(body);
    if (!request) return http::error_response(request.error());
    request->op_id = *op_id;
    // Not through the op cache: the hypervisor keeps each domain's last migration by
    // op_id, so a repeat answers the migration's current status, not a stale copy of
    // the first answer, and can never start it twice.
    auto res = reply(hv_.migrate(uuid, *request));
    spdlog::info("migrate {} to {} (op {}): {}", uuid, request->destination_uri, *op_id,
                 res.result_int());
    return res;
  } else if (action == "migration/abort") {
    act = [this, uuid] { return reply(hv_.abort_migration(uuid)); };
  } else if (action == "start") {
    act = [this, uuid] { return reply(hv_.start(uuid)); };
  } else if (action == "shutdown") {
    act = [this, uuid] { return reply(hv_.shutdown(uuid)); };
  } else if (action == "reboot") {
    act = [this, uuid] { return reply(hv_.reboot(uuid)); };
  } else {
    act = [this, uuid] { return reply(hv_.destroy(uuid)); };
  }

  // One controller operation makes several calls (define, then start...) with the same
  // op_id, so the call's path is part of the key.
  const std::string key = *op_id + " " + std::string(path);
  auto res = ops_.run(key, body.dump(), [&] {
    auto r = act();
    spdlog::info("{} {} (op {}): {}", action, subject, *op_id, r.result_int());
    return r;
  });
  return res;
}

}  // namespace kvmfleet::agent
