#include "domain_lookup.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet::agent::libvirt {

std::string vm_state_name(int state, int reason) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
      return "running";
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      return "paused";
    case VIR_DOMAIN_SHUTDOWN:
      return "shutting_down";
    case VIR_DOMAIN_SHUTOFF:
      return reason == VIR_DOMAIN_SHUTOFF_CRASHED ? "crashed" : "stopped";
    case VIR_DOMAIN_CRASHED:
      return "crashed";
    default:
      return "unknown";
  }
}

Result<Described> DomainLookup::describe(virDomainPtr dom) {
  Described d;
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(dom, uuid) < 0) return connection_.failed("reading a domain's uuid");
  d.status.uuid = uuid;
  const char* name = virDomainGetName(dom);
  if (!name) return connection_.failed("reading the name of domain " + d.status.uuid);
  d.status.name = name;
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0)
    return connection_.failed("reading the state of domain " + d.status.uuid);
  d.status.state = vm_state_name(state, reason);
  const int persistent = virDomainIsPersistent(dom);
  if (persistent < 0) return connection_.failed("reading domain " + d.status.uuid);
  d.status.persistent = persistent == 1;
  // The inactive definition is what define() wrote; a running domain keeps its boot
  // time definition until restarted.
  CString xml(virDomainGetXMLDesc(dom, d.status.persistent ? VIR_DOMAIN_XML_INACTIVE : 0));
  if (!xml) return connection_.failed("reading the XML of domain " + d.status.uuid);
  auto info = read_domain_xml(xml.get());
  if (!info) {
    spdlog::warn("domain {}: {}; treating it as unmanaged", d.status.uuid, info.error().message);
    return d;
  }
  d.info = std::move(*info);
  // Metadata copied into a domain with another uuid does not make it ours.
  if (d.info.managed && d.info.vm_id == d.status.uuid) {
    d.status.managed = true;
    d.status.generation = d.info.generation;
  } else {
    d.info.managed = false;
  }
  return d;
}

Result<DomainStatus> DomainLookup::status(virDomainPtr dom) {
  auto d = describe(dom);
  if (!d) return d.take_error();
  return std::move(d->status);
}

Result<DomainHandle> DomainLookup::lookup(virConnectPtr c, const std::string& uuid) {
  virDomainPtr d = virDomainLookupByUUIDString(c, uuid.c_str());
  if (!d) return connection_.failed("looking up domain " + uuid);
  return DomainHandle(d);
}

Result<Managed> DomainLookup::lookup_managed(virConnectPtr c, const std::string& uuid) {
  auto dom = lookup(c, uuid);
  if (!dom) return dom.take_error();
  auto desc = describe(dom->get());
  if (!desc) return desc.take_error();
  if (!desc->status.managed)
    return conflict("domain " + uuid + " is not managed by kvmfleet", {{"uuid", uuid}});
  return Managed{std::move(*dom), std::move(*desc)};
}

Result<bool> DomainLookup::is_active(virDomainPtr dom, const std::string& uuid) {
  const int a = virDomainIsActive(dom);
  if (a < 0) return connection_.failed("reading the state of domain " + uuid);
  return a == 1;
}

Status DomainLookup::require_running(virDomainPtr dom, const std::string& uuid) {
  auto active = is_active(dom, uuid);
  if (!active) return active.take_error();
  if (!*active) return conflict("domain " + uuid + " is not running", {{"uuid", uuid}});
  return {};
}

}  // namespace kvmfleet::agent::libvirt
