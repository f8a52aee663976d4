#pragma once

// Matches a request's method and path against the rows of the agent protocol's table
// (protocol.hpp), and writes a row's path for given parameters: the two directions of
// one pattern, so what the controller asks for is what the agent serves.

#include <string>
#include <string_view>

#include "kvmfleet/agent/protocol.hpp"

namespace kvmfleet::agent {

struct CallMatch {
  // The row of this method and path; null when there is none.
  const agent_protocol::Call* call = nullptr;
  agent_protocol::PathParams params;
  // When `call` is null: the methods the path answers to (e.g. "GET"), for a 405 and
  // its Allow header; empty when no row has this path (a 404).
  std::string allow;
};

// `path` without its query. Rules: protocol.hpp, "Details the agent guarantees".
CallMatch match_call(std::string_view method, std::string_view path);

// The row's path with its parameters filled in.
std::string path_for(const agent_protocol::Call& call, const agent_protocol::PathParams& params);

}  // namespace kvmfleet::agent
