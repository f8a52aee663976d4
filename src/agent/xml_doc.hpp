#pragma once

// Small RAII layer over libxml2 shared by the domain, storage and capabilities XML
// code. Parsing is locked down: no network, no DTD, no entity substitution.

#include <libxml/tree.h>
#include <libxml/xmlwriter.h>
#include <libxml/xpath.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent::xml {

struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using DocPtr = std::unique_ptr<xmlDoc, DocDeleter>;

// libxml2 wants one xmlInitParser() before it is used from several threads.
void init_once();

// Parses untrusted XML. Documents with a DOCTYPE are refused outright: libvirt never
// writes one, and refusing it removes entity expansion from the picture entirely.
Result<DocPtr> parse(std::string_view text, std::string_view what);

// XPath over one document, with the namespaces the caller registers.
class XPath {
 public:
  explicit XPath(xmlDoc* doc);
  ~XPath();
  XPath(const XPath&) = delete;
  XPath& operator=(const XPath&) = delete;

  void register_ns(const char* prefix, const char* uri);
  // The string value of the first match; nullopt if nothing matches.
  std::optional<std::string> string(const char* expr, xmlNode* context = nullptr);
  std::vector<xmlNode*> nodes(const char* expr, xmlNode* context = nullptr);

 private:
  xmlXPathContext* ctx_;
};

// Attribute value of a node, or nullopt.
std::optional<std::string> attribute(xmlNode* node, const char* name);
// Sets (or adds) an attribute of a parsed document's node; libxml2 escapes the value.
Status set_attribute(xmlNode* node, const char* name, std::string_view value);
// A parsed (and perhaps edited) document as text, without the XML declaration.
Result<std::string> serialize(xmlDoc* doc);

// Writes a document into memory with xmlTextWriter. Each call records the first
// failure; finish() reports it, so callers need not check every step.
class Writer {
 public:
  Writer();
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void start(const char* name);
  void start_ns(const char* prefix, const char* name, const char* uri);
  void attr(const char* name, std::string_view value);
  void attr(const char* name, std::int64_t value);
  void text(std::string_view value);
  void element(const char* name, std::string_view value);  // <name>value</name>
  void empty(const char* name);                            // <name/>
  void end();
  Result<std::string> finish();

 private:
  void check(int rc);
  xmlBuffer* buf_;
  xmlTextWriter* writer_;
  bool failed_ = false;
};

}  // namespace kvmfleet::agent::xml
