#pragma once

// The agent's one narrow interface to the hypervisor. LibvirtHypervisor is the real
// one; tests/agent holds a double. Every mutating call is idempotent so a retried
// controller request is harmless, and kvmfleet acts only on domains it defined
// (those carrying its metadata): anything else is a conflict.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvmfleet/agent/lifecycle_event.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"
#include "kvmfleet/model/host.hpp"

namespace kvmfleet::agent {

using EventCallback = std::function<void(const LifecycleEvent&)>;

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  virtual Result<HostInventory> inventory() = 0;
  virtual Result<std::vector<DomainStatus>> list_domains() = 0;
  // not_found when no domain has this uuid.
  virtual Result<DomainStatus> get_domain(const std::string& uuid) = 0;

  // Same uuid and generation as what is defined: no-op. Another generation: redefine.
  // Missing disk volumes are created first. A running domain keeps running and picks
  // a new definition up at its next start.
  virtual Result<DomainStatus> define(const DomainSpec& spec) = 0;
  virtual Result<DomainStatus> start(const std::string& uuid) = 0;     // running: no-op
  virtual Result<DomainStatus> shutdown(const std::string& uuid) = 0;  // ACPI; stopped: no-op
  virtual Result<DomainStatus> reboot(const std::string& uuid) = 0;    // stopped: conflict
  virtual Result<DomainStatus> destroy(const std::string& uuid) = 0;   // stopped: no-op
  // Running: conflict. Absent: ok.
  virtual Status undefine(const std::string& uuid, bool remove_volumes) = 0;

  // Lifecycle events, pushed as they happen. Callbacks run on the hypervisor's event
  // thread, must be quick and must not call unsubscribe(). After unsubscribe()
  // returns, that callback is not running and will not run again.
  virtual std::uint64_t subscribe(EventCallback callback) = 0;
  virtual void unsubscribe(std::uint64_t id) = 0;
};

}  // namespace kvmfleet::agent
