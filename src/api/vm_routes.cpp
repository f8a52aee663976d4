// /v1/vms and /v1/placements: the VM lifecycle and the placement dry run. (Migration is
// in migration_routes.cpp, VM snapshots in storage_routes.cpp.)
#include "handlers.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/images/vm_images.hpp"

namespace kvmfleet::api {
namespace {

// start, reboot and destroy take no parameters: an empty body or an empty object.
void vm_action_without_body(Controller& svc, Call& c, std::string_view kind) {
  auto body = optional_body_of(c);
  if (!body) return c.fail(body.error());
  if (auto st = check_known_fields(*body, {}); !st) return c.fail(st.error());
  answer_submitted(svc, c, svc.vms().vm_action(*c.who, c.param("vm"), kind, {}, submit_options(c)));
}

}  // namespace

void list_vms(Controller& svc, Call& c) {
  auto limit = query_int(c.query, "limit", 100, 1, 1000);
  if (!limit) return c.fail(limit.error());
  const std::string cursor = c.query.count("cursor") ? c.query.at("cursor") : "";
  const std::string host = c.query.count("host") ? c.query.at("host") : "";
  const std::string state = c.query.count("state") ? c.query.at("state") : "";
  if (!cursor.empty() && !is_valid_name(cursor))
    return c.fail(invalid("bad cursor", {{"parameter", "cursor"}}));
  if (!host.empty() && !is_valid_name(host))
    return c.fail(invalid("bad host", {{"parameter", "host"}}));
  if (!state.empty() && !vm_state_from_string(state))
    return c.fail(invalid("unknown state", {{"parameter", "state"}}));
  // The page's body is made once per change of the VMs and served as is until the next
  // one: this is the read that dashboards and scripts poll. On a miss only the page's
  // records are copied under the state's read lock; the JSON is built after it.
  const std::string key = std::to_string(*limit) + "|" + cursor + "|" + host + "|" + state;
  std::uint64_t version = 0;
  std::optional<std::string> body;
  std::vector<Vm> page;
  std::string next;
  svc.state().read([&](const ClusterState::Data& d) {
    version = d.vms_version;
    if ((body = c.pages.find(key, version))) return;
    // The cursor is the last name of the previous page: pages stay stable while VMs
    // are added or removed elsewhere in the list.
    auto it = cursor.empty() ? d.vm_ids.begin() : d.vm_ids.upper_bound(cursor);
    for (; it != d.vm_ids.end(); ++it) {
      const Vm& vm = d.vms.at(it->second);
      if (!host.empty() && vm.host != host) continue;
      if (!state.empty() && to_string(vm.state) != state) continue;
      if (static_cast<int>(page.size()) == *limit) {
        next = page.back().spec.name;
        break;
      }
      page.push_back(vm);
    }
  });
  if (!body) {
    json items = json::array();
    for (const Vm& vm : page) items.push_back(vm_view(vm));
    body = http::json_text(json{{"items", std::move(items)},
                                {"next_cursor", next.empty() ? json(nullptr) : json(next)}});
    c.pages.put(key, version, *body);
  }
  c.reply(
      http::json_response(HttpStatus::ok, std::move(*body), c.req.version(), c.req.keep_alive()));
}

void create_vm(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto spec = parse_vm_create(*body);
  if (!spec) return c.fail(spec.error());
  if (auto st = images::resolve_vm_images(svc.images(), spec->spec); !st) return c.fail(st.error());
  answer_submitted(svc, c, svc.vms().create_vm(*c.who, spec->spec, spec->start, submit_options(c)));
}

void get_vm(Controller& svc, Call& c) {
  const std::string& id = c.param("vm");
  auto view = svc.state().read([&](const ClusterState::Data& d) -> std::optional<json> {
    const Vm* vm = d.find_vm(id);
    return vm ? std::optional<json>(vm_view(*vm)) : std::nullopt;
  });
  if (!view) return c.fail(not_found("no such VM", {{"vm", id}}));
  c.ok(HttpStatus::ok, *view);
}

void delete_vm(Controller& svc, Call& c) {
  auto force = query_bool(c.query, "force", false);
  if (!force) return c.fail(force.error());
  answer_submitted(svc, c,
                   svc.vms().vm_action(*c.who, c.param("vm"), op_kind::vm_delete,
                                       VmDeleteParams{*force}, submit_options(c)));
}

void start_vm(Controller& svc, Call& c) {
  vm_action_without_body(svc, c, op_kind::vm_start);
}
void reboot_vm(Controller& svc, Call& c) {
  vm_action_without_body(svc, c, op_kind::vm_reboot);
}
void destroy_vm(Controller& svc, Call& c) {
  vm_action_without_body(svc, c, op_kind::vm_destroy);
}

void stop_vm(Controller& svc, Call& c) {
  auto body = optional_body_of(c);
  if (!body) return c.fail(body.error());
  auto stop = parse_stop(*body);
  if (!stop) return c.fail(stop.error());
  const VmStopParams params{
      stop->timeout_s > 0 ? stop->timeout_s : svc.config().default_stop_timeout_s, stop->force};
  answer_submitted(
      svc, c,
      svc.vms().vm_action(*c.who, c.param("vm"), op_kind::vm_stop, params, submit_options(c)));
}

void place_vm(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto spec = parse_vm_create(*body, false);
  if (!spec) return c.fail(spec.error());
  if (auto st = images::resolve_vm_images(svc.images(), spec->spec); !st) return c.fail(st.error());
  auto placement = svc.vms().place(spec->spec);
  if (!placement) return c.fail(placement.error());
  c.ok(HttpStatus::ok, placement_view(*placement));
}

}  // namespace kvmfleet::api
