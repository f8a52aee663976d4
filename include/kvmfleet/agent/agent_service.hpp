#pragma once

// The agent's HTTP API (see protocol.hpp) as a request→response function over a
// Hypervisor: authenticate, validate strictly, dispatch to one Hypervisor call, answer.
// No network I/O happens here; a Server or a test feeds it requests.

#include <string>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/agent/op_cache.hpp"
#include "kvmfleet/http/types.hpp"

namespace kvmfleet::agent {

class AgentService {
 public:
  // `token`: the host's bearer token; every request must carry it.
  AgentService(Hypervisor& hypervisor, std::string token, std::size_t op_cache_capacity = 1024);

  // Blocking: libvirt calls can take seconds, so run it off the I/O threads.
  http::Response serve(const http::Request& req);
  // Handler semantics: answers through `respond` before returning.
  void handle(http::Request&& req, http::Responder respond);

 private:
  http::Response route(const http::Request& req);
  http::Response mutate(const http::Request& req, std::string_view path, std::string_view action,
                        const std::string& uuid);

  Hypervisor& hv_;
  std::string token_;
  OpCache ops_;
};

}  // namespace kvmfleet::agent
