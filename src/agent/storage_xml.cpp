#include "kvmfleet/agent/storage_xml.hpp"

#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/validate.hpp"
#include "xml_doc.hpp"

namespace kvmfleet::agent {
namespace {

bool is_safe_dir(std::string_view p) {
  if (p.empty() || p.front() != '/') return false;
  for (unsigned char c : p) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

Result<std::string> write_dir_pool_xml(std::string_view name, std::string_view path) {
  if (!is_valid_name(name)) return invalid("pool name must match [a-z0-9][a-z0-9-]{0,62}");
  if (!is_safe_dir(path)) return invalid("pool path must be absolute and printable");
  xml::Writer w;
  w.start("pool");
  w.attr("type", "dir");
  w.element("name", name);
  w.start("target");
  w.element("path", path);
  w.end();
  w.end();
  return w.finish();
}

Result<std::string> write_qcow2_volume_xml(std::string_view name, std::uint64_t capacity_bytes) {
  if (!is_valid_volume_name(name)) return invalid("invalid volume name");
  xml::Writer w;
  w.start("volume");
  w.element("name", name);
  w.start("capacity");
  w.attr("unit", "bytes");
  w.text(std::to_string(capacity_bytes));
  w.end();
  // Thin: qcow2 grows as the guest writes.
  w.start("allocation");
  w.attr("unit", "bytes");
  w.text("0");
  w.end();
  w.start("target");
  w.start("format");
  w.attr("type", "qcow2");
  w.end();
  w.end();
  w.end();
  return w.finish();
}

Result<std::string> read_pool_target_path(std::string_view text) {
  auto doc = xml::parse(text, "pool");
  if (!doc) return doc.take_error();
  xml::XPath xp(doc->get());
  auto path = xp.string("/pool/target/path");
  if (!path || path->empty()) return invalid("pool XML has no target path");
  return *path;
}

}  // namespace kvmfleet::agent
