#include "kvmfleet/api/router.hpp"

#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/network.hpp"

#include <algorithm>
#include <stdexcept>

namespace kvmfleet::api {
namespace {

// A path parameter's kind: what its segment may be, and how a bad one is refused.
struct ParamKind {
  std::string_view name;
  bool uuid;
  bool name_pattern;
  std::string_view message;
  bool detail;               // whether the error names the value under `name`
  bool mac_address = false;  // a MAC address (any case; handlers normalize it)
};

constexpr ParamKind kParamKinds[] = {
    {"vm", true, true, "bad VM id or name", true},
    {"host", false, true, "bad host name", true},
    {"operation", true, false, "bad operation id", true},
    {"pool", false, true, "bad storage pool name", true},
    {"volume", true, true, "bad volume id or name", true},
    {"snapshot", true, true, "bad snapshot id or name", true},
    {"token", true, false, "bad token id", false},
    {"network", false, true, "bad network name", true},
    {"image", false, true, "bad image name", true},
    {"mac", false, false, "bad MAC address", true, true},
};

const ParamKind* param_kind(std::string_view name) {
  for (const auto& k : kParamKinds)
    if (k.name == name) return &k;
  return nullptr;
}

bool is_param(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

std::vector<std::string> split_pattern(std::string_view pattern) {
  if (!pattern.starts_with('/') || pattern.ends_with('/'))
    throw std::logic_error("route pattern must start with / and not end with one: " +
                           std::string(pattern));
  std::vector<std::string> out;
  pattern.remove_prefix(1);
  while (true) {
    const auto slash = pattern.find('/');
    const std::string_view seg = pattern.substr(0, slash);
    if (seg.empty())
      throw std::logic_error("route pattern has an empty segment: " + std::string(pattern));
    if (seg.find_first_of("{}") != std::string_view::npos && !is_param(seg))
      throw std::logic_error("route pattern has a malformed parameter: " + std::string(pattern));
    if (is_param(seg) && !param_kind(seg.substr(1, seg.size() - 2)))
      throw std::logic_error("route pattern has an unknown parameter kind: " +
                             std::string(pattern));
    out.emplace_back(seg);
    if (slash == std::string_view::npos) break;
    pattern.remove_prefix(slash + 1);
  }
  return out;
}

// Two patterns overlap when some path matches both with the same specificity: same
// length and, at every position, the same literal or a parameter in both.
bool same_shape(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (is_param(a[i]) != is_param(b[i])) return false;
    if (!is_param(a[i]) && a[i] != b[i]) return false;
  }
  return true;
}

}  // namespace

Status check_path_param(std::string_view kind, std::string_view value) {
  const ParamKind* k = param_kind(kind);
  if (!k) return internal_error("unknown path parameter kind " + std::string(kind));
  if ((k->uuid && is_valid_uuid(value)) || (k->name_pattern && is_valid_name(value)) ||
      (k->mac_address && normalize_mac(value)))
    return {};
  if (!k->detail) return invalid(std::string(k->message));
  return invalid(std::string(k->message), {{std::string(k->name), std::string(value)}});
}

const Route* Router::Resource::find(http::Verb method) const {
  for (const Route* r : routes)
    if (r->method == method) return r;
  return nullptr;
}

Router::Router(std::vector<Route> routes) : routes_(std::move(routes)) {
  for (const Route& route : routes_) {
    auto it = std::find_if(resources_.begin(), resources_.end(),
                           [&](const auto& r) { return r->pattern == route.pattern; });
    if (it == resources_.end()) {
      auto res = std::make_unique<Resource>();
      res->pattern = std::string(route.pattern);
      res->segments = split_pattern(route.pattern);
      for (const auto& other : resources_)
        if (same_shape(other->segments, res->segments))
          throw std::logic_error("route patterns " + other->pattern + " and " + res->pattern +
                                 " match the same paths");
      res->open = route.need == Need::anyone;
      resources_.push_back(std::move(res));
      it = std::prev(resources_.end());
    }
    Resource& res = **it;
    if (res.find(route.method))
      throw std::logic_error("route " + res.pattern + " has a method twice");
    if (res.open != (route.need == Need::anyone))
      throw std::logic_error("route " + res.pattern + " mixes open and protected methods");
    if (route.handle == nullptr) throw std::logic_error("route " + res.pattern + " has no handler");
    res.routes.push_back(&route);
    const auto name = http::bhttp::to_string(route.method);
    if (!res.allow.empty()) res.allow += ", ";
    res.allow.append(name.data(), name.size());
  }
}

std::optional<Router::Match> Router::match(const std::vector<std::string_view>& segments) const {
  const Resource* best = nullptr;
  // Of two matching patterns, the one with a literal where the other has a parameter
  // first wins; same_shape() keeps any two patterns from tying.
  auto more_specific = [](const Resource& a, const Resource& b) {
    for (std::size_t i = 0; i < a.segments.size(); ++i)
      if (is_param(a.segments[i]) != is_param(b.segments[i])) return !is_param(a.segments[i]);
    return false;
  };
  for (const auto& res : resources_) {
    if (res->segments.size() != segments.size()) continue;
    bool matches = true;
    for (std::size_t i = 0; i < segments.size() && matches; ++i)
      matches = is_param(res->segments[i]) || res->segments[i] == segments[i];
    if (matches && (!best || more_specific(*res, *best))) best = res.get();
  }
  if (!best) return std::nullopt;
  Match m;
  m.resource = best;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string_view seg = best->segments[i];
    if (is_param(seg))
      m.params.emplace_back(seg.substr(1, seg.size() - 2), std::string(segments[i]));
  }
  return m;
}

}  // namespace kvmfleet::api
