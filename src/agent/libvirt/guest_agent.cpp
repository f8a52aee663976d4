#include "guest_agent.hpp"

#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include "errors.hpp"

namespace kvmfleet::agent::libvirt {

GuestAgent::GuestAgent(Connection& connection, int timeout_s)
    : connection_(connection), timeout_s_(timeout_s) {}

Result<int> GuestAgent::freeze(virDomainPtr dom, const std::string& uuid) {
  return filesystems(dom, uuid, true);
}

Result<int> GuestAgent::thaw(virDomainPtr dom, const std::string& uuid) {
  return filesystems(dom, uuid, false);
}

Result<int> GuestAgent::filesystems(virDomainPtr dom, const std::string& uuid, bool freeze) {
  // libvirt's default is to wait for the guest agent for minutes (or forever); a guest
  // without one must not hold the request that long. Drivers without the call (test://)
  // keep their own behaviour.
  if (virDomainAgentSetResponseTimeout(dom, timeout_s_, 0) < 0 &&
      last_libvirt_error_code() != VIR_ERR_NO_SUPPORT)
    spdlog::debug("{}", last_libvirt_error("setting the guest agent timeout of " + uuid).message);
  const char* verb = freeze ? "freezing" : "thawing";
  const int n =
      freeze ? virDomainFSFreeze(dom, nullptr, 0, 0) : virDomainFSThaw(dom, nullptr, 0, 0);
  if (n < 0) {
    const std::string what = std::string(verb) + " the filesystems of domain " + uuid;
    auto err = last_libvirt_error(what);
    // The guest's agent, not libvirt's connection: no reconnect for that.
    if (is_guest_agent_unavailable(last_libvirt_error_code(), err.message))
      return guest_agent_unavailable(uuid, std::move(err));
    return connection_.failed(what);
  }
  spdlog::info("{} domain {}: {} filesystem(s)", freeze ? "froze" : "thawed", uuid, n);
  return n;
}

}  // namespace kvmfleet::agent::libvirt
