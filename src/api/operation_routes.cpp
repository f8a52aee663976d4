// /v1/operations: list, wait for and cancel the work the other routes submit.
#include "handlers.hpp"

#include "kvmfleet/common/validate.hpp"

#include <algorithm>
#include <charconv>

namespace kvmfleet::api {
namespace {

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
    if (dot == std::string_view::npos || dot == 0) return std::nullopt;
    OpKey k;
    // Digits only, within 64 bits: from_chars refuses a sign and reports overflow.
    const char* end = s.data() + dot;
    auto [p, ec] = std::from_chars(s.data(), end, k.ticks);
    if (ec != std::errc{} || p != end || s.front() == '-') return std::nullopt;
    k.id = std::string(s.substr(dot + 1));
    if (!is_valid_uuid(k.id)) return std::nullopt;
    return k;
  }
};

// Who may cancel an operation: whoever may submit its kind (the role of the route
// that submits it, routes.cpp). A kind not listed needs an admin.
struct CancelRule {
  std::string_view kind;
  Need need;
};
constexpr CancelRule kCancelRules[] = {
    {op_kind::vm_create, Need::operator_},       {op_kind::vm_start, Need::operator_},
    {op_kind::vm_stop, Need::operator_},         {op_kind::vm_reboot, Need::operator_},
    {op_kind::vm_destroy, Need::operator_},      {op_kind::vm_delete, Need::operator_},
    {op_kind::vm_migrate, Need::operator_},      {op_kind::vm_snapshot, Need::operator_},
    {op_kind::volume_create, Need::operator_},   {op_kind::volume_grow, Need::operator_},
    {op_kind::volume_delete, Need::operator_},   {op_kind::snapshot_create, Need::operator_},
    {op_kind::snapshot_delete, Need::operator_}, {op_kind::snapshot_revert, Need::operator_},
    {op_kind::host_maintenance, Need::admin},    {op_kind::pool_create, Need::admin},
    {op_kind::pool_delete, Need::admin},         {op_kind::pool_connect, Need::admin},
};

Need cancel_need(std::string_view kind) {
  for (const auto& r : kCancelRules)
    if (r.kind == kind) return r.need;
  return Need::admin;
}

}  // namespace

void list_operations(Controller& svc, Call& c) {
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

void get_operation(Controller& svc, Call& c) {
  svc.operations().wait(
      c.param("operation"), c.wait,
      [cp = c.shared_from_this()](const std::optional<Operation>& op) {
        if (!op)
          return cp->fail(not_found("no such operation", {{"operation", cp->param("operation")}}));
        cp->ok(HttpStatus::ok, operation_view(*op));
      });
}

void cancel_operation(Controller& svc, Call& c) {
  const std::string& id = c.param("operation");
  const auto kind =
      svc.state().read([&](const ClusterState::Data& d) -> std::optional<std::string> {
        const Operation* o = d.find_operation(id);
        return o ? std::optional<std::string>(o->kind) : std::nullopt;
      });
  if (kind && !allowed(c.who->role, cancel_need(*kind)))
    return c.fail(Error(ErrorCode::permission_denied,
                        "role " + std::string(to_string(c.who->role)) + " may not cancel " + *kind,
                        {{"operation", id}}));
  if (auto st = svc.operations().cancel(id); !st) return c.fail(st.error());
  auto op = svc.state().read([&](const ClusterState::Data& d) -> std::optional<Operation> {
    const Operation* o = d.find_operation(id);
    return o ? std::optional<Operation>(*o) : std::nullopt;
  });
  // Cancelled at once (it had not started): done, 200. Still running: asked, 202.
  const bool done = op && is_terminal(op->state);
  c.ok(done ? HttpStatus::ok : HttpStatus::accepted, op ? operation_view(*op) : json::object());
}

}  // namespace kvmfleet::api
