#include "kvmfleet/api/api.hpp"

#include "call.hpp"
#include "kvmfleet/api/request_parsing.hpp"
#include "kvmfleet/api/views.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"

#include <spdlog/spdlog.h>

#include <optional>
#include <string_view>
#include <vector>

namespace kvmfleet::api {
namespace {

using nlohmann::json;
using http::HttpStatus;
using http::Verb;

void list_vms(Controller& svc, PageCache& pages, Call& c) {
  if (auto st = check_query_keys(c.query, {"limit", "cursor", "host", "state"}); !st)
    return c.fail(st.error());
  auto limit = query_int(c.query, "limit", 100, 1, 1000);
  if (!limit) return c.fail(limit.error());
  const std::string cursor = c.query.count("cursor") ? c.query.at("cursor") : "";
  const std::string host = c.query.count("host") ? c.query.at("host") : "";
  const std::string state = c.query.count("state") ? c.query.at("state") : "";
  if (!cursor.empty() && !is_valid_name(cursor)) return c.fail(invalid("bad cursor", {{"parameter", "cursor"}}));
  if (!host.empty() && !is_valid_name(host)) return c.fail(invalid("bad host", {{"parameter", "host"}}));
  if (!state.empty() && !vm_state_from_string(state))
    return c.fail(invalid("unknown state", {{"parameter", "state"}}));
  // The page's body is made once per change of the VMs and served as is until the next
  // one: this is the read that dashboards and scripts poll.
  const std::string key = std::to_string(*limit) + "|" + cursor + "|" + host + "|" + state;
  std::string body = svc.state().read([&](const ClusterState::Data& d) {
    if (auto hit = pages.find(key, d.vms_version)) return std::move(*hit);
    json items = json::array();
    std::string next;
    // The cursor is the last name of the previous page: pages stay stable while VMs
    // are added or removed elsewhere in the list.
    auto it = cursor.empty() ? d.vm_ids.begin() : d.vm_ids.upper_bound(cursor);
    for (; it != d.vm_ids.end(); ++it) {
      const Vm& vm = d.vms.at(it->second);
      if (!host.empty() && vm.host != host) continue;
      if (!state.empty() && to_string(vm.state) != state) continue;
      if (static_cast<int>(items.size()) == *limit) {
        next = items.back()["name"].get<std::string>();
        break;
      }
      items.push_back(vm_view(vm));
    }
    std::string text = http::json_text(
        json{{"items", std::move(items)}, {"next_cursor", next.empty() ? json(nullptr) : json(next)}});
    pages.put(key, d.vms_version, text);
    return text;
  });
  c.reply(http::json_response(HttpStatus::ok, std::move(body), c.req.version(), c.req.keep_alive()));
}

// An operation's place in the list (newest first): its creation time in the clock's
// ticks and its id. As a cursor, "TICKS.ID": it stays valid when that operation has
// been pruned since.
struct OpKey {
  std::int64_t ticks = 0;
  std::string id;
  static OpKey of(const Operation& op) {
    return {static_cast<std::int64_t>(op.created_at.time_since_epoch().count()), op.id};
  }
  // Whether `this` comes before `o` in the list.
  bool before(const OpKey& o) const { return ticks != o.ticks ? ticks > o.ticks : id > o.id; }
  std::string cursor() const { return std::to_string(ticks) + "." + id; }
  static std::optional<OpKey> parse(std::string_view s) {
    const auto dot = s.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot > 19) return std::nullopt;
    OpKey k;
    for (char ch : s.substr(0, dot)) {
      if (ch < '0' || ch > '9') return std::nullopt;
      k.ticks = k.ticks * 10 + (ch - '0');
    }
    k.id = std::string(s.substr(dot + 1));
    if (!is_valid_uuid(k.id)) return std::nullopt;
    return k;
  }
};

void list_operations(Controller& svc, Call& c) {
  if (auto st = check_query_keys(c.query, {"limit", "cursor", "state", "target"}); !st)
    return c.fail(st.error());
  auto limit = query_int(c.query, "limit", 100, 1, 1000);
  if (!limit) return c.fail(limit.error());
  const std::string state = c.query.count("state") ? c.query.at("state") : "";
  const std::string target = c.query.count("target") ? c.query.at("target") : "";
  if (!state.empty() && !op_state_from_string(state))
    return c.fail(invalid("unknown state", {{"parameter", "state"}}));
  std::optional<OpKey> after;
  if (c.query.count("cursor")) {
    after = OpKey::parse(c.query.at("cursor"));
    if (!after) return c.fail(invalid("bad cursor", {{"parameter", "cursor"}}));
  }
  json body = svc.state().read([&](const ClusterState::Data& d) {
    std::vector<std::pair<OpKey, const Operation*>> ops;
    for (const auto& [_, op] : d.operations) {
      if (!state.empty() && to_string(op.state) != state) continue;
      if (!target.empty() && op.target_id != target) continue;
      OpKey k = OpKey::of(op);
      if (after && !after->before(k)) continue;  // on an earlier page
      ops.emplace_back(std::move(k), &op);
    }
    std::sort(ops.begin(), ops.end(),
              [](const auto& a, const auto& b) { return a.first.before(b.first); });
    json items = json::array();
    json next = nullptr;
    for (const auto& [k, op] : ops) {
      if (static_cast<int>(items.size()) == *limit) {
        next = ops[items.size() - 1].first.cursor();
        break;
      }
      items.push_back(operation_view(*op));
    }
    return json{{"items", std::move(items)}, {"next_cursor", std::move(next)}};
  });
  c.ok(HttpStatus::ok, body);
}

void route(Controller& svc, Metrics& metrics, PageCache& pages, std::shared_ptr<Call> cp) {
  Call& c = *cp;
  const auto& seg = c.seg;
  const Verb m = c.req.method();
  const auto n = seg.size();
  auto not_allowed = [&] { c.fail(Error(ErrorCode::method_not_allowed, "method not allowed on this path")); };
  // For handlers that take no query parameters: one given is refused, never ignored.
  auto no_query = [&] {
    if (auto st = check_query_keys(c.query, {}); !st) {
      c.fail(st.error());
      return false;
    }
    return true;
  };

  // --- unauthenticated
  if (n == 2 && seg[0] == "v1" && seg[1] == "healthz") {
    if (m != Verb::get) return not_allowed();
    if (!no_query()) return;
    // Without a token: whether each part is healthy, never its errors (they name VMs).
    json details = json::object();
    for (const auto& [name, h] : metrics.health_details().items()) {
      json brief = json::object();
      for (const char* key : {"healthy", "lag_seconds", "queue_depth"})
        if (h.is_object() && h.contains(key)) brief[key] = h[key];
      details[name] = std::move(brief);
    }
    return c.ok(HttpStatus::ok, {{"status", "ok"}, {"details", std::move(details)}});
  }

  // --- everything else needs a token
  c.who = svc.tokens().authenticate(http::bearer_token(c.req));
  if (!c.who) return c.fail(Error(ErrorCode::unauthenticated, "a valid bearer token is required"));
  auto require = [&](Need need) {
    if (allowed(c.who->role, need)) return true;
    c.fail(Error(ErrorCode::permission_denied,
                 "role " + std::string(to_string(c.who->role)) + " may not do this"));
    return false;
  };
  if (auto st = check_idempotency_key(c); !st) return c.fail(st.error());

  if (n == 1 && seg[0] == "metrics") {
    if (m != Verb::get) return not_allowed();
    if (!require(Need::viewer)) return;
    if (!no_query()) return;
    auto res = http::Response{HttpStatus::ok, c.req.version()};
    res.set(http::bhttp::field::content_type, "text/plain; version=0.0.4");
    res.keep_alive(c.req.keep_alive());
    res.body() = metrics.render(svc.state());
    res.prepare_payload();
    return c.reply(std::move(res));
  }
  if (n < 2 || seg[0] != "v1") return c.fail(not_found("no such resource"));
  const std::string_view coll = seg[1];

  // --- agents
  if (coll == "agent" && n == 3) {
    if (m != Verb::post) return not_allowed();
    if (!require(Need::agent)) return;
    if (!no_query()) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    if (seg[2] == "heartbeat") {
      if (auto st = check_known_fields(*body, {"host", "agent_url", "inventory"}); !st) return c.fail(st.error());
      auto host = get_string(*body, "host", true);
      if (!host) return c.fail(host.error());
      auto url = get_string(*body, "agent_url", false);
      if (!url) return c.fail(url.error());
      if (!url->empty())
        if (auto st = check_agent_url(*url); !st) return c.fail(st.error());
      HostInventory inv;
      try {
        inv = body->at("inventory").get<HostInventory>();
      } catch (const std::exception&) {
        return c.fail(invalid("inventory is malformed", {{"field", "inventory"}}));
      }
      for (const auto& d : inv.domains)
        if (!is_valid_uuid(d.uuid)) return c.fail(invalid("inventory has a bad domain uuid"));
      if (auto st = svc.hosts().heartbeat(*c.who, *host, *url, inv); !st) return c.fail(st.error());
      return c.ok(HttpStatus::ok, {{"heartbeat_interval_ms", svc.config().heartbeat_interval.count()}});
    }
    if (seg[2] == "events") {
      if (auto st = check_known_fields(*body, {"host", "events"}); !st) return c.fail(st.error());
      auto host = get_string(*body, "host", true);
      if (!host) return c.fail(host.error());
      if (!body->contains("events") || !body->at("events").is_array())
        return c.fail(invalid("events must be an array", {{"field", "events"}}));
      std::vector<DomainEvent> events;
      for (const auto& e : body->at("events")) {
        if (!e.is_object()) return c.fail(invalid("event must be an object"));
        DomainEvent ev;
        for (auto [field, out] : {std::pair{"uuid", &ev.uuid}, std::pair{"name", &ev.name},
                                  std::pair{"state", &ev.state}, std::pair{"reason", &ev.reason}}) {
          auto v = get_string(e, field, false);
          if (!v) return c.fail(v.error());
          *out = *v;
        }
        if (!is_valid_uuid(ev.uuid)) return c.fail(invalid("event has a bad uuid"));
        events.push_back(std::move(ev));
      }
      if (auto st = svc.hosts().domain_events(*c.who, *host, events); !st) return c.fail(st.error());
      return c.ok(HttpStatus::ok, json::object());
    }
    return c.fail(not_found("no such resource"));
  }

  // --- shared storage
  if (coll == "storage-pools" || coll == "volumes") return route_storage(svc, cp);

  // --- hosts
  if (coll == "hosts") {
    if (n == 2 && m == Verb::get) {
      if (!require(Need::viewer)) return;
      if (auto st = check_query_keys(c.query, {}); !st) return c.fail(st.error());
      json items = svc.state().read([](const ClusterState::Data& d) {
        json a = json::array();
        for (const auto& [_, h] : d.hosts) a.push_back(host_view(h, d));
        return a;
      });
      return c.ok(HttpStatus::ok, {{"items", items}});
    }
    if (n == 2 && m == Verb::post) {
      if (!require(Need::admin)) return;
      if (!no_query()) return;
      auto body = body_of(c);
      if (!body) return c.fail(body.error());
      if (auto st = check_known_fields(*body, {"name", "agent_url"}); !st) return c.fail(st.error());
      auto name = get_string(*body, "name", true);
      if (!name) return c.fail(name.error());
      if (auto st = check_name("name", *name); !st) return c.fail(st.error());
      auto url = get_string(*body, "agent_url", true);
      if (!url) return c.fail(url.error());
      if (auto st = check_agent_url(*url); !st) return c.fail(st.error());
      auto r = svc.hosts().register_host(*name, *url);
      if (!r) return c.fail(r.error());
      json view = svc.state().read([&](const ClusterState::Data& d) { return host_view(r->first, d); });
      return c.ok(HttpStatus::created, {{"host", view}, {"agent_token", r->second}});
    }
    if (n == 2) return not_allowed();
    const std::string name(seg[2]);
    if (!is_valid_name(name)) return c.fail(invalid("bad host name", {{"host", name}}));
    if (n == 3 && m == Verb::get) {
      if (!require(Need::viewer)) return;
      if (!no_query()) return;
      auto view = svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
        const Host* h = d.find_host(name);
        return h ? std::optional<json>(host_view(*h, d)) : std::nullopt;
      });
      if (!view) return c.fail(not_found("no such host", {{"host", name}}));
      return c.ok(HttpStatus::ok, *view);
    }
    if (n == 3 && m == Verb::patch) {
      if (!require(Need::admin)) return;
      if (!no_query()) return;
      auto body = body_of(c);
      if (!body) return c.fail(body.error());
      if (auto st = check_known_fields(*body, {"schedulable"}); !st) return c.fail(st.error());
      if (!body->contains("schedulable") || !(*body)["schedulable"].is_boolean())
        return c.fail(invalid("schedulable must be true or false", {{"field", "schedulable"}}));
      auto s = get_bool(*body, "schedulable", true);
      if (!s) return c.fail(s.error());
      if (auto st = svc.hosts().set_schedulable(name, *s); !st) return c.fail(st.error());
      auto view = svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
        const Host* h = d.find_host(name);
        return h ? std::optional<json>(host_view(*h, d)) : std::nullopt;
      });
      if (!view) return c.fail(not_found("no such host", {{"host", name}}));
      return c.ok(HttpStatus::ok, *view);
    }
    if (n == 4 && seg[3] == "maintenance") {
      if (m != Verb::post) return not_allowed();
      if (!require(Need::admin)) return;
      if (auto st = check_query_keys(c.query, {"wait"}); !st) return c.fail(st.error());
      if (auto w = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds); !w) return c.fail(w.error());
      auto body = body_of(c);
      if (!body) return c.fail(body.error());
      auto req = parse_maintenance(*body, MigrationPolicy{});
      if (!req) return c.fail(req.error());
      return answer_submitted(
          svc, cp, svc.migration().set_maintenance(*c.who, name, req->enabled, req->policy, submit_options(c)));
    }
    if (n == 3 && m == Verb::delete_) {
      if (!require(Need::admin)) return;
      if (!no_query()) return;
      if (auto st = svc.hosts().delete_host(name); !st) return c.fail(st.error());
      return c.ok(HttpStatus::ok, json::object());
    }
    return n == 3 ? not_allowed() : c.fail(not_found("no such resource"));
  }

  // --- VMs
  if (coll == "vms") {
    if (n == 2 && m == Verb::get) {
      if (!require(Need::viewer)) return;
      return list_vms(svc, pages, c);
    }
    if (n == 2 && m == Verb::post) {
      if (!require(Need::operator_)) return;
      if (auto st = check_query_keys(c.query, {"wait"}); !st) return c.fail(st.error());
      if (auto w = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds); !w) return c.fail(w.error());
      auto body = body_of(c);
      if (!body) return c.fail(body.error());
      auto spec = parse_vm_create(*body);
      if (!spec) return c.fail(spec.error());
      return answer_submitted(svc, cp,
                              svc.vms().create_vm(*c.who, spec->spec, spec->start, submit_options(c)));
    }
    if (n == 2) return not_allowed();
    const std::string id(seg[2]);
    if (!is_valid_uuid(id) && !is_valid_name(id)) return c.fail(invalid("bad VM id or name", {{"vm", id}}));
    if (n == 3 && m == Verb::get) {
      if (!require(Need::viewer)) return;
      if (!no_query()) return;
      auto view = svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
        const Vm* vm = d.find_vm(id);
        return vm ? std::optional<json>(vm_view(*vm)) : std::nullopt;
      });
      if (!view) return c.fail(not_found("no such VM", {{"vm", id}}));
      return c.ok(HttpStatus::ok, *view);
    }
    if (n == 3 && m == Verb::delete_) {
      if (!require(Need::operator_)) return;
      if (auto st = check_query_keys(c.query, {"wait", "force"}); !st) return c.fail(st.error());
      if (auto w = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds); !w) return c.fail(w.error());
      auto force = query_bool(c.query, "force", false);
      if (!force) return c.fail(force.error());
      return answer_submitted(
          svc, cp,
          svc.vms().vm_action(*c.who, id, op_kind::vm_delete, VmDeleteParams{*force}, submit_options(c)));
    }
    if (n == 4) {
      if (m != Verb::post) return not_allowed();
      if (!require(Need::operator_)) return;
      if (auto st = check_query_keys(c.query, {"wait"}); !st) return c.fail(st.error());
      if (auto w = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds); !w) return c.fail(w.error());
      auto body = optional_body_of(c);
      if (!body) return c.fail(body.error());
      if (seg[3] == "snapshots") {
        auto req = parse_snapshot_create(*body);
        if (!req) return c.fail(req.error());
        return answer_submitted(
            svc, cp,
            svc.storage().create_vm_snapshot(*c.who, id, req->name, req->size_bytes, req->ratio, req->quiesce,
                                   submit_options(c)));
      }
      if (seg[3] == "migrate") {
        auto mig = parse_migrate(*body, MigrationPolicy{});
        if (!mig) return c.fail(mig.error());
        return answer_submitted(
            svc, cp, svc.migration().migrate_vm(*c.who, id, mig->target_host, mig->policy, submit_options(c)));
      }
      std::string_view kind;
      VmActionParams params;
      if (seg[3] == "start") kind = op_kind::vm_start;
      else if (seg[3] == "reboot") kind = op_kind::vm_reboot;
      else if (seg[3] == "destroy") kind = op_kind::vm_destroy;
      else if (seg[3] == "stop") {
        kind = op_kind::vm_stop;
        auto stop = parse_stop(*body);
        if (!stop) return c.fail(stop.error());
        params = VmStopParams{stop->timeout_s > 0 ? stop->timeout_s : svc.config().default_stop_timeout_s,
                              stop->force};
      } else {
        return c.fail(not_found("no such action", {{"action", std::string(seg[3])}}));
      }
      if (kind != op_kind::vm_stop)
        if (auto st = check_known_fields(*body, {}); !st) return c.fail(st.error());
      return answer_submitted(svc, cp, svc.vms().vm_action(*c.who, id, kind, params, submit_options(c)));
    }
    return n == 3 ? not_allowed() : c.fail(not_found("no such resource"));
  }

  // --- operations
  if (coll == "operations") {
    if (n == 2) {
      if (m != Verb::get) return not_allowed();
      if (!require(Need::viewer)) return;
      return list_operations(svc, c);
    }
    const std::string id(seg[2]);
    if (n != 3) return c.fail(not_found("no such resource"));
    if (!is_valid_uuid(id)) return c.fail(invalid("bad operation id", {{"operation", id}}));
    if (m == Verb::get) {
      if (!require(Need::viewer)) return;
      if (auto st = check_query_keys(c.query, {"wait"}); !st) return c.fail(st.error());
      auto wait = query_int(c.query, "wait", 0, 0, kMaxWaitSeconds);
      if (!wait) return c.fail(wait.error());
      svc.operations().wait(id, std::chrono::seconds(*wait), [cp](const std::optional<Operation>& op) {
        if (!op) return cp->fail(not_found("no such operation", {{"operation", cp->seg[2]}}));
        cp->ok(HttpStatus::ok, operation_view(*op));
      });
      return;
    }
    if (m == Verb::delete_) {
      if (!require(Need::operator_)) return;
      if (!no_query()) return;
      if (auto st = svc.operations().cancel(id); !st) return c.fail(st.error());
      auto op = svc.state().read([&](const ClusterState::Data& d) -> std::optional<Operation> {
        const Operation* o = d.find_operation(id);
        return o ? std::optional<Operation>(*o) : std::nullopt;
      });
      // Cancelled at once (it had not started): done, 200. Still running: asked, 202.
      const bool done = op && is_terminal(op->state);
      return c.ok(done ? HttpStatus::ok : HttpStatus::accepted,
                  op ? operation_view(*op) : json::object());
    }
    return not_allowed();
  }

  // --- placement dry run
  if (coll == "placements" && n == 2) {
    if (m != Verb::post) return not_allowed();
    if (!require(Need::operator_)) return;
    if (!no_query()) return;
    auto body = body_of(c);
    if (!body) return c.fail(body.error());
    auto spec = parse_vm_create(*body, false);
    if (!spec) return c.fail(spec.error());
    auto placement = svc.vms().place(spec->spec);
    if (!placement) return c.fail(placement.error());
    return c.ok(HttpStatus::ok, placement_view(*placement));
  }

  // --- tokens
  if (coll == "tokens") {
    if (!require(Need::admin)) return;
    if (!no_query()) return;
    if (n == 2 && m == Verb::get) {
      json items = svc.state().read([](const ClusterState::Data& d) {
        std::vector<const TokenRecord*> v;
        for (const auto& [_, t] : d.tokens) v.push_back(&t);
        std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->created_at < b->created_at; });
        json a = json::array();
        for (const auto* t : v) a.push_back(token_view(*t));
        return a;
      });
      return c.ok(HttpStatus::ok, {{"items", items}});
    }
    if (n == 2 && m == Verb::post) {
      auto body = body_of(c);
      if (!body) return c.fail(body.error());
      if (auto st = check_known_fields(*body, {"name", "role"}); !st) return c.fail(st.error());
      auto name = get_string(*body, "name", true);
      if (!name) return c.fail(name.error());
      auto role_s = get_string(*body, "role", true);
      if (!role_s) return c.fail(role_s.error());
      auto role = role_from_string(*role_s);
      if (!role || *role == Role::agent)
        return c.fail(invalid("role must be admin, operator or viewer", {{"field", "role"}}));
      auto r = svc.tokens().create_token(*name, *role);
      if (!r) return c.fail(r.error());
      json view = token_view(r->first);
      view["token"] = r->second;
      return c.ok(HttpStatus::created, view);
    }
    if (n == 3 && m == Verb::delete_) {
      const std::string id(seg[2]);
      if (!is_valid_uuid(id)) return c.fail(invalid("bad token id"));
      if (auto st = svc.tokens().delete_token(id); !st) return c.fail(st.error());
      return c.ok(HttpStatus::ok, json::object());
    }
    return n <= 3 ? not_allowed() : c.fail(not_found("no such resource"));
  }

  return c.fail(not_found("no such resource"));
}

}  // namespace

void Api::handle(http::Request&& req, http::Responder respond) {
  auto c = std::make_shared<Call>(Call{std::move(req), std::move(respond), metrics_, {}, {}, {}});
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
    route(service_, metrics_, pages_, c);
  } catch (const std::exception& e) {
    spdlog::error("request {} {} failed: {}", std::string(c->req.method_string()), std::string(target), e.what());
    c->fail(internal_error("internal error"));
  }
}

}  // namespace kvmfleet::api
