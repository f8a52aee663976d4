#pragma once

// The agent's HTTP API (see protocol.hpp) as a request→response function over a
// Hypervisor: authenticate, match the request to its row of the protocol's table,
// validate strictly, dispatch to the row's one handler, answer. No network I/O
// happens here; a Server or a test feeds it requests.

#include <optional>
#include <string>
#include <string_view>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/agent/op_cache.hpp"
#include "kvmfleet/agent/report_clock.hpp"
#include "kvmfleet/agent/storage_backend.hpp"
#include "kvmfleet/http/types.hpp"
#include "kvmfleet/http/websocket.hpp"
#include "kvmfleet/network/link_control.hpp"

namespace kvmfleet::agent {

class AgentService {
 public:
  // `token`: the host's bearer token; every request must carry it.
  // Without storage, every /agent/v1/storage route answers 409 conflict.
  AgentService(Hypervisor& hypervisor, std::string token, std::size_t op_cache_capacity = 1024);
  // With shared storage: the /agent/v1/storage routes dispatch to `storage`.
  AgentService(Hypervisor& hypervisor, StorageBackend storage, std::string token,
               std::size_t op_cache_capacity = 1024);

  // Serves /agent/v1/networks through `links` (without, they answer 409) and adds the
  // host's links to GET /agent/v1/inventory.
  void set_link_control(network::LinkControl& links) { links_ = &links; }

  // Blocking: libvirt calls can take seconds, so run it off the I/O threads.
  http::Response serve(const http::Request& req);
  // Handler semantics: answers through `respond` before returning.
  void handle(http::Request&& req, http::Responder respond);
  // For the server's open_upgrade: a WebSocket call's handler (the serial console) once
  // the token, the path and its uuid passed, or the refusal answered instead.
  Result<std::shared_ptr<http::WebSocketHandler>> open_upgrade(const http::Request& req);

  // The clock that stamps this agent's answers about domains; the heartbeat loop stamps
  // its reports with the same one (ReportStamp in model/host.hpp).
  ReportClock& reports() { return reports_; }

 private:
  http::Response route(const http::Request& req);

  Hypervisor& hv_;
  std::optional<StorageBackend> storage_;
  network::LinkControl* links_ = nullptr;
  std::string token_;
  OpCache ops_;
  ReportClock reports_;
};

}  // namespace kvmfleet::agent
