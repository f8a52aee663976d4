#pragma once

// One handler per row of the agent protocol's table (protocol.hpp). AgentService has
// matched the request to its row, checked the path's uuid, the body's fields and its
// op_id; a handler reads the call's own arguments (an invalid one is an error before
// anything acts) and returns what the call does, which AgentService runs, through the
// op cache when the row says so.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/agent/report_clock.hpp"
#include "kvmfleet/agent/storage_backend.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/types.hpp"
#include "kvmfleet/network/link_control.hpp"

namespace kvmfleet::agent::calls {

struct CallContext {
  Hypervisor& hv;
  StorageBackend* storage;      // set for every call served by the storage backend
  network::LinkControl* links;  // set for every call served by the network backend
  const agent_protocol::PathParams& params;
  const nlohmann::json& body;   // a POST's checked body; an empty object for a GET
  const std::string& op_id;     // a POST's checked op_id; empty for a GET
  ReportClock& reports;         // stamps answers about domains, after their action
  std::string_view query = {};  // the request's query string, after '?' (GETs that take one)
};

struct PreparedCall {
  std::string subject;  // what the call acts on, for the log
  std::function<http::Response()> act;
};

using CallHandler = Result<PreparedCall> (*)(const CallContext&);

// The handler of a row; every row has one (checked when the agent is compiled).
CallHandler handler_for(agent_protocol::CallId id);

// Answers and readers shared by the handlers.
http::Response ok_json(const nlohmann::json& body);
http::Response reply(const Status& s);
template <typename T>
http::Response reply(const Result<T>& r) {
  if (!r) return http::error_response(r.error());
  return ok_json(nlohmann::json(r.value()));
}
// "size_bytes": a positive integer. Its range and alignment are the storage library's
// to check.
Result<std::uint64_t> get_size(const nlohmann::json& body);

// Domain calls (domain_calls.cpp).
Result<PreparedCall> inventory(const CallContext& c);
Result<PreparedCall> domain_get(const CallContext& c);
Result<PreparedCall> define(const CallContext& c);
Result<PreparedCall> start(const CallContext& c);
Result<PreparedCall> shutdown(const CallContext& c);
Result<PreparedCall> reboot(const CallContext& c);
Result<PreparedCall> destroy(const CallContext& c);
Result<PreparedCall> undefine(const CallContext& c);
Result<PreparedCall> fs_freeze(const CallContext& c);
Result<PreparedCall> fs_thaw(const CallContext& c);
Result<PreparedCall> block_resize(const CallContext& c);
Result<PreparedCall> migrate(const CallContext& c);
Result<PreparedCall> migration(const CallContext& c);
Result<PreparedCall> migration_abort(const CallContext& c);
Result<PreparedCall> nic_attach(const CallContext& c);
Result<PreparedCall> nic_detach(const CallContext& c);
Result<PreparedCall> media_prepare(const CallContext& c);
Result<PreparedCall> media_remove(const CallContext& c);

// Shared-storage calls (storage_calls.cpp).
Result<PreparedCall> storage_inventory(const CallContext& c);
Result<PreparedCall> iscsi_discover(const CallContext& c);
Result<PreparedCall> iscsi_login(const CallContext& c);
Result<PreparedCall> iscsi_logout(const CallContext& c);
Result<PreparedCall> iscsi_sessions(const CallContext& c);
Result<PreparedCall> fc_luns(const CallContext& c);
Result<PreparedCall> fc_attach(const CallContext& c);
Result<PreparedCall> vg_create(const CallContext& c);
Result<PreparedCall> vg_get(const CallContext& c);
Result<PreparedCall> vg_lockstart(const CallContext& c);
Result<PreparedCall> vg_lockstop(const CallContext& c);
Result<PreparedCall> lv_list(const CallContext& c);
Result<PreparedCall> lv_create(const CallContext& c);
Result<PreparedCall> lv_get(const CallContext& c);
Result<PreparedCall> lv_grow(const CallContext& c);
Result<PreparedCall> lv_delete(const CallContext& c);
Result<PreparedCall> lv_activate(const CallContext& c);
Result<PreparedCall> lv_snapshot(const CallContext& c);
Result<PreparedCall> lv_merge(const CallContext& c);

// Network calls (network_calls.cpp).
Result<PreparedCall> network_ensure(const CallContext& c);

// Serial console calls (console_calls.cpp).
Result<PreparedCall> console(const CallContext& c);
Result<PreparedCall> console_log(const CallContext& c);

}  // namespace kvmfleet::agent::calls
