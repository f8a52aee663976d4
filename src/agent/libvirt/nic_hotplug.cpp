#include "nic_hotplug.hpp"

#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "errors.hpp"
#include "handles.hpp"
#include "kvmfleet/agent/domain_xml.hpp"

namespace kvmfleet::agent::libvirt {
namespace {

constexpr std::chrono::milliseconds kDetachPoll{250};

// The domain's XML, live (as it runs) or as defined.
Result<std::string> xml_of(Connection& connection, virDomainPtr dom, bool inactive) {
  CString xml(virDomainGetXMLDesc(dom, inactive ? VIR_DOMAIN_XML_INACTIVE : 0));
  if (!xml) return connection.failed("reading a domain's definition");
  return std::string(xml.get());
}

Result<bool> has_nic(Connection& connection, virDomainPtr dom, bool inactive,
                     const std::string& mac) {
  auto xml = xml_of(connection, dom, inactive);
  if (!xml) return xml.take_error();
  auto info = read_domain_xml(*xml);
  if (!info) return info.take_error();
  return std::find(info->nic_macs.begin(), info->nic_macs.end(), mac) != info->nic_macs.end();
}

Status set_generation(Connection& connection, virDomainPtr dom, const std::string& uuid,
                      std::int64_t generation, bool live) {
  auto meta = write_metadata_xml(uuid, generation);
  if (!meta) return meta.take_error();
  unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
  if (live) flags |= VIR_DOMAIN_AFFECT_LIVE;
  if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, meta->c_str(), kMetadataPrefix,
                           kMetadataNamespace, flags) < 0)
    return connection.failed("setting the generation of domain " + uuid);
  return {};
}

}  // namespace

Result<DomainStatus> attach_nic(Connection& connection, DomainLookup& domains,
                                const Managed& domain, const std::string& uuid,
                                const DomainNic& nic, std::int64_t generation) {
  virDomainPtr dom = domain.dom.get();
  auto device = write_interface_xml(nic);
  if (!device) return device.take_error();
  auto active = domains.is_active(dom, uuid);
  if (!active) return active.take_error();
  for (const bool live : {true, false}) {
    if (live && !*active) continue;
    auto there = has_nic(connection, dom, !live, nic.mac);
    if (!there) return there.take_error();
    if (*there) continue;
    if (virDomainAttachDeviceFlags(dom, device->c_str(),
                                   live ? VIR_DOMAIN_AFFECT_LIVE : VIR_DOMAIN_AFFECT_CONFIG) < 0)
      return connection.failed(std::string("attaching NIC ") + nic.mac + " to domain " + uuid +
                               (live ? " (running)" : " (definition)"));
    spdlog::info("attached NIC {} on {} to domain {}{}", nic.mac, nic.bridge, uuid,
                 live ? " (running)" : " (definition)");
  }
  if (auto st = set_generation(connection, dom, uuid, generation, *active); !st)
    return st.take_error();
  return domains.status(dom);
}

Result<DomainStatus> detach_nic(Connection& connection, DomainLookup& domains, Clock& clock,
                                const Managed& domain, const std::string& uuid,
                                const std::string& mac, std::int64_t generation,
                                std::chrono::milliseconds patience) {
  virDomainPtr dom = domain.dom.get();
  auto active = domains.is_active(dom, uuid);
  if (!active) return active.take_error();
  for (const bool live : {true, false}) {
    if (live && !*active) continue;
    auto xml = xml_of(connection, dom, !live);
    if (!xml) return xml.take_error();
    auto device = interface_xml_of(*xml, mac);
    if (!device) return device.take_error();
    if (!*device) continue;
    if (virDomainDetachDeviceFlags(dom, (*device)->c_str(),
                                   live ? VIR_DOMAIN_AFFECT_LIVE : VIR_DOMAIN_AFFECT_CONFIG) < 0)
      return connection.failed("detaching NIC " + mac + " from domain " + uuid +
                               (live ? " (running)" : " (definition)"));
    if (live) {
      // libvirt returns once QEMU was asked; the guest completes the unplug.
      for (auto waited = std::chrono::milliseconds{0};; waited += kDetachPoll) {
        auto still = has_nic(connection, dom, false, mac);
        if (!still) return still.take_error();
        if (!*still) break;
        if (waited >= patience)
          return conflict("the guest of domain " + uuid + " has not let NIC " + mac +
                              " go yet (it must answer the ACPI hot unplug); the definition "
                              "keeps it",
                          {{"uuid", uuid}, {"mac", mac}, {"reason", "detach_pending"}});
        clock.sleep_for(kDetachPoll);
      }
    }
    spdlog::info("detached NIC {} from domain {}{}", mac, uuid,
                 live ? " (running)" : " (definition)");
  }
  if (auto st = set_generation(connection, dom, uuid, generation, *active); !st)
    return st.take_error();
  return domains.status(dom);
}

}  // namespace kvmfleet::agent::libvirt
