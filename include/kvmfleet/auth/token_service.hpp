#pragma once

// API tokens: who a bearer token is (admin, operator, viewer, or a host's agent), and
// the admin's tokens for people and scripts. Only a token's SHA-256 is stored.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/core/operations.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kvmfleet {

class TokenService {
 public:
  TokenService(ClusterState& state, const Clock& clock) : state_(state), clock_(clock) {}

  std::optional<Principal> authenticate(std::string_view bearer) const;
  // Returns the record and the token itself (shown once).
  Result<std::pair<TokenRecord, std::string>> create_token(const std::string& name, Role role);
  Status delete_token(const std::string& id);
  // First start: an admin token written to `path` (mode 0600) when none exists.
  Status bootstrap_admin(const std::string& path);

 private:
  ClusterState& state_;
  const Clock& clock_;
};

}  // namespace kvmfleet
