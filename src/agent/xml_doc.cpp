#include "xml_doc.hpp"

#include <libxml/parser.h>
#include <libxml/xpathInternals.h>

#include <mutex>

namespace kvmfleet::agent::xml {
namespace {

// Inputs are domain definitions and capabilities, a few KiB each; anything this big
// is not one of them.
constexpr std::size_t kMaxDocumentBytes = 16u << 20;

const xmlChar* as_xml(const char* s) {
  return reinterpret_cast<const xmlChar*>(s);
}

}  // namespace

void init_once() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

Result<DocPtr> parse(std::string_view text, std::string_view what) {
  init_once();
  if (text.size() > kMaxDocumentBytes) return invalid(std::string(what) + " XML is too large");
  if (text.find("<!DOCTYPE") != std::string_view::npos)
    return invalid(std::string(what) + " XML must not carry a DOCTYPE");
  std::unique_ptr<xmlParserCtxt, decltype(&xmlFreeParserCtxt)> ctxt(xmlNewParserCtxt(),
                                                                    &xmlFreeParserCtxt);
  if (!ctxt) return internal_error("out of memory creating an XML parser");
  // NONET: never fetch anything. No NOENT (entities stay unexpanded), no DTDLOAD,
  // no HUGE (keeps libxml2's size limits). Errors go to the context, not stderr.
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                      XML_PARSE_NOCDATA | XML_PARSE_NOBLANKS;
  DocPtr doc(xmlCtxtReadMemory(ctxt.get(), text.data(), static_cast<int>(text.size()), nullptr,
                               "UTF-8", options));
  if (!doc) {
    std::string message = "malformed " + std::string(what) + " XML";
    if (const xmlError* err = xmlCtxtGetLastError(ctxt.get()); err && err->message) {
      message += ": ";
      message += err->message;
      while (!message.empty() && message.back() == '\n') message.pop_back();
    }
    return invalid(std::move(message));
  }
  if (doc->intSubset != nullptr || doc->extSubset != nullptr)
    return invalid(std::string(what) + " XML must not carry a DOCTYPE");
  if (xmlDocGetRootElement(doc.get()) == nullptr)
    return invalid(std::string(what) + " XML has no root element");
  return doc;
}

XPath::XPath(xmlDoc* doc) : ctx_(xmlXPathNewContext(doc)) {}

XPath::~XPath() {
  if (ctx_) xmlXPathFreeContext(ctx_);
}

void XPath::register_ns(const char* prefix, const char* uri) {
  if (ctx_) xmlXPathRegisterNs(ctx_, as_xml(prefix), as_xml(uri));
}

std::vector<xmlNode*> XPath::nodes(const char* expr, xmlNode* context) {
  std::vector<xmlNode*> out;
  if (!ctx_) return out;
  ctx_->node = context ? context : xmlDocGetRootElement(ctx_->doc);
  xmlXPathObject* obj = xmlXPathEvalExpression(as_xml(expr), ctx_);
  if (!obj) return out;
  if (obj->type == XPATH_NODESET && obj->nodesetval) {
    for (int i = 0; i < obj->nodesetval->nodeNr; ++i) out.push_back(obj->nodesetval->nodeTab[i]);
  }
  xmlXPathFreeObject(obj);
  return out;
}

std::optional<std::string> XPath::string(const char* expr, xmlNode* context) {
  auto found = nodes(expr, context);
  if (found.empty()) return std::nullopt;
  xmlChar* content = xmlNodeGetContent(found.front());
  if (!content) return std::string{};
  std::string s(reinterpret_cast<const char*>(content));
  xmlFree(content);
  return s;
}

std::optional<std::string> attribute(xmlNode* node, const char* name) {
  xmlChar* v = xmlGetProp(node, as_xml(name));
  if (!v) return std::nullopt;
  std::string s(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return s;
}

Writer::Writer() : buf_(nullptr), writer_(nullptr) {
  init_once();
  buf_ = xmlBufferCreate();
  if (buf_) writer_ = xmlNewTextWriterMemory(buf_, 0);
  if (!writer_) {
    failed_ = true;
    return;
  }
  check(xmlTextWriterSetIndent(writer_, 1));
  check(xmlTextWriterSetIndentString(writer_, as_xml("  ")));
  check(xmlTextWriterStartDocument(writer_, nullptr, "UTF-8", nullptr));
}

Writer::~Writer() {
  if (writer_) xmlFreeTextWriter(writer_);
  if (buf_) xmlBufferFree(buf_);
}

void Writer::check(int rc) {
  if (rc < 0) failed_ = true;
}

void Writer::start(const char* name) {
  if (!failed_) check(xmlTextWriterStartElement(writer_, as_xml(name)));
}

void Writer::start_ns(const char* prefix, const char* name, const char* uri) {
  if (!failed_)
    check(xmlTextWriterStartElementNS(writer_, as_xml(prefix), as_xml(name), as_xml(uri)));
}

void Writer::attr(const char* name, std::string_view value) {
  if (failed_) return;
  const std::string v(value);
  check(xmlTextWriterWriteAttribute(writer_, as_xml(name), as_xml(v.c_str())));
}

void Writer::attr(const char* name, std::int64_t value) {
  attr(name, std::to_string(value));
}

void Writer::text(std::string_view value) {
  if (failed_) return;
  const std::string v(value);
  check(xmlTextWriterWriteString(writer_, as_xml(v.c_str())));
}

void Writer::element(const char* name, std::string_view value) {
  start(name);
  text(value);
  end();
}

void Writer::empty(const char* name) {
  start(name);
  end();
}

void Writer::end() {
  if (!failed_) check(xmlTextWriterEndElement(writer_));
}

Result<std::string> Writer::finish() {
  if (!failed_) check(xmlTextWriterEndDocument(writer_));
  if (!failed_) check(xmlTextWriterFlush(writer_));
  if (failed_) return internal_error("libxml2 failed to write XML");
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buf_)),
                     static_cast<std::size_t>(xmlBufferLength(buf_)));
}

Status set_attribute(xmlNode* node, const char* name, std::string_view value) {
  const std::string v(value);
  if (xmlSetProp(node, as_xml(name), as_xml(v.c_str())) == nullptr)
    return internal_error(std::string("cannot set XML attribute ") + name);
  return {};
}

Result<std::string> serialize(xmlDoc* doc) {
  xmlNode* root = xmlDocGetRootElement(doc);
  if (!root) return internal_error("an XML document without a root element");
  std::unique_ptr<xmlBuffer, decltype(&xmlBufferFree)> buf(xmlBufferCreate(), &xmlBufferFree);
  if (!buf || xmlNodeDump(buf.get(), doc, root, 0, 1) < 0)
    return internal_error("cannot write an XML document");
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buf.get())),
                     static_cast<std::size_t>(xmlBufferLength(buf.get())));
}

}  // namespace kvmfleet::agent::xml
