#include <array>
#include <utility>

#include "kvmfleet/store/store.hpp"

namespace kvmfleet {
namespace {

// The spellings are what the API and the tokens table hold, so they never change.
constexpr std::array<std::pair<Role, std::string_view>, 4> kRoles{{
    {Role::admin, "admin"},
    {Role::operator_, "operator"},
    {Role::viewer, "viewer"},
    {Role::agent, "agent"},
}};

}  // namespace

std::string_view to_string(Role r) {
  for (const auto& [role, name] : kRoles)
    if (role == r) return name;
  return "unknown";
}

std::optional<Role> role_from_string(std::string_view s) {
  for (const auto& [role, name] : kRoles)
    if (name == s) return role;
  return std::nullopt;
}

}  // namespace kvmfleet
