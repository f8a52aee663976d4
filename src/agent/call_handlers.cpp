#include "call_handlers.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::agent::calls {
namespace {

using agent_protocol::CallId;

constexpr std::size_t index(CallId id) {
  return static_cast<std::size_t>(id);
}

// Every row of the protocol's table and its handler. A row without one does not
// compile, so no request can fall through to some other call.
constexpr auto kHandlers = [] {
  std::array<CallHandler, agent_protocol::kCallCount> h{};
  h[index(CallId::inventory)] = &inventory;
  h[index(CallId::domain_get)] = &domain_get;
  h[index(CallId::define)] = &define;
  h[index(CallId::start)] = &start;
  h[index(CallId::shutdown)] = &shutdown;
  h[index(CallId::reboot)] = &reboot;
  h[index(CallId::destroy)] = &destroy;
  h[index(CallId::undefine)] = &undefine;
  h[index(CallId::fs_freeze)] = &fs_freeze;
  h[index(CallId::fs_thaw)] = &fs_thaw;
  h[index(CallId::block_resize)] = &block_resize;
  h[index(CallId::migrate)] = &migrate;
  h[index(CallId::migration)] = &migration;
  h[index(CallId::migration_abort)] = &migration_abort;
  h[index(CallId::nic_attach)] = &nic_attach;
  h[index(CallId::nic_detach)] = &nic_detach;
  h[index(CallId::media_prepare)] = &media_prepare;
  h[index(CallId::media_remove)] = &media_remove;
  h[index(CallId::storage_inventory)] = &storage_inventory;
  h[index(CallId::iscsi_discover)] = &iscsi_discover;
  h[index(CallId::iscsi_login)] = &iscsi_login;
  h[index(CallId::iscsi_logout)] = &iscsi_logout;
  h[index(CallId::iscsi_sessions)] = &iscsi_sessions;
  h[index(CallId::fc_luns)] = &fc_luns;
  h[index(CallId::fc_attach)] = &fc_attach;
  h[index(CallId::vg_create)] = &vg_create;
  h[index(CallId::vg_get)] = &vg_get;
  h[index(CallId::vg_lockstart)] = &vg_lockstart;
  h[index(CallId::vg_lockstop)] = &vg_lockstop;
  h[index(CallId::lv_list)] = &lv_list;
  h[index(CallId::lv_create)] = &lv_create;
  h[index(CallId::lv_get)] = &lv_get;
  h[index(CallId::lv_grow)] = &lv_grow;
  h[index(CallId::lv_delete)] = &lv_delete;
  h[index(CallId::lv_activate)] = &lv_activate;
  h[index(CallId::lv_snapshot)] = &lv_snapshot;
  h[index(CallId::lv_merge)] = &lv_merge;
  h[index(CallId::network_ensure)] = &network_ensure;
  h[index(CallId::console)] = &console;
  h[index(CallId::console_log)] = &console_log;
  return h;
}();
static_assert(std::ranges::none_of(kHandlers, [](CallHandler h) { return h == nullptr; }),
              "every row of agent_protocol::kCalls needs a handler");

}  // namespace

CallHandler handler_for(CallId id) {
  return kHandlers[index(id)];
}

http::Response ok_json(const nlohmann::json& body) {
  return http::json_response(http::HttpStatus::ok, body);
}

http::Response reply(const Status& s) {
  if (!s) return http::error_response(s.error());
  return ok_json(nlohmann::json::object());
}

Result<std::uint64_t> get_size(const nlohmann::json& body) {
  auto v = get_int(body, "size_bytes", true, 0, 1, std::numeric_limits<std::int64_t>::max());
  if (!v) return v.take_error();
  return static_cast<std::uint64_t>(*v);
}

}  // namespace kvmfleet::agent::calls
