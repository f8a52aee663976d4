#include "kvmfleet/agent/capabilities_xml.hpp"

#include "xml_doc.hpp"

namespace kvmfleet::agent {

Result<HostCapabilities> read_capabilities_xml(std::string_view text) {
  auto doc = xml::parse(text, "capabilities");
  if (!doc) return doc.take_error();
  xml::XPath xp(doc->get());
  if (xp.nodes("/capabilities").empty()) return invalid("not a libvirt capabilities document");
  HostCapabilities caps;
  caps.host_uuid = xp.string("/capabilities/host/uuid").value_or("");
  caps.cpu_model = xp.string("/capabilities/host/cpu/model").value_or("");
  const bool kvm = !xp.nodes(
                          "/capabilities/guest[os_type='hvm']/arch[@name='x86_64']"
                          "/domain[@type='kvm']")
                        .empty();
  caps.domain_type = kvm ? "kvm" : "qemu";
  return caps;
}

}  // namespace kvmfleet::agent
