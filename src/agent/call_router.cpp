#include "kvmfleet/agent/call_router.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

namespace kvmfleet::agent {
namespace {

namespace proto = agent_protocol;

// The table's own consistency, checked by the compiler: rows in CallId order, one row
// per method and path, and a body with an op_id exactly for the calls that change
// something.
constexpr bool rows_in_id_order() {
  for (std::size_t i = 0; i < proto::kCalls.size(); ++i)
    if (static_cast<std::size_t>(proto::kCalls[i].id) != i) return false;
  return true;
}
static_assert(rows_in_id_order(), "kCalls must list its rows in CallId order");

constexpr bool method_and_path_unique() {
  for (std::size_t i = 0; i < proto::kCalls.size(); ++i)
    for (std::size_t j = i + 1; j < proto::kCalls.size(); ++j)
      if (proto::kCalls[i].method == proto::kCalls[j].method &&
          proto::kCalls[i].path == proto::kCalls[j].path)
        return false;
  return true;
}
static_assert(method_and_path_unique(), "two rows of kCalls have the same method and path");

constexpr bool op_id_exactly_on_posts() {
  for (const auto& c : proto::kCalls) {
    const bool post = c.method == "POST";
    if (!post && c.method != "GET") return false;
    if (post != (c.replay != proto::Replay::none)) return false;
    if (post != (!c.fields.empty() && c.fields.front() == "op_id")) return false;
  }
  return true;
}
static_assert(op_id_exactly_on_posts(),
              "a POST row has a replay rule and op_id first among its fields; a GET row neither");

// "/a/b/c" → {"a", "b", "c"}; "/a/" → {"a", ""}.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.starts_with('/')) return out;
  path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

enum class Param { none, uuid, vg, lv };

Param param_of(std::string_view pattern_segment) {
  if (pattern_segment == "{uuid}") return Param::uuid;
  if (pattern_segment == "{vg}") return Param::vg;
  if (pattern_segment == "{lv}") return Param::lv;
  return Param::none;
}

struct Candidate {
  const proto::Call* call;
  proto::PathParams params;
  std::vector<Param> kinds;  // per segment: a literal or which parameter
};

std::optional<Candidate> match_path(const proto::Call& call,
                                    const std::vector<std::string_view>& path) {
  const auto pattern = segments(call.path);
  if (pattern.size() != path.size()) return std::nullopt;
  Candidate c{&call, {}, {}};
  for (std::size_t i = 0; i < path.size(); ++i) {
    const Param kind = param_of(pattern[i]);
    c.kinds.push_back(kind);
    if (kind == Param::none) {
      if (pattern[i] != path[i]) return std::nullopt;
      continue;
    }
    if (path[i].empty()) return std::nullopt;
    std::string& slot = kind == Param::uuid ? c.params.uuid
                        : kind == Param::vg ? c.params.vg
                                            : c.params.lv;
    slot = std::string(path[i]);
  }
  return c;
}

std::size_t literal_count(const Candidate& c) {
  return static_cast<std::size_t>(std::count(c.kinds.begin(), c.kinds.end(), Param::none));
}

}  // namespace

CallMatch match_call(std::string_view method, std::string_view path) {
  const auto parts = segments(path);
  std::vector<Candidate> found;
  for (const auto& call : proto::kCalls) {
    if (auto c = match_path(call, parts)) found.push_back(std::move(*c));
  }
  // A literal wins over {uuid} at the same place: no UUID spells a word like "define".
  // All candidates have as many segments as the path.
  std::vector<bool> literal_at(parts.size(), false);
  for (const auto& c : found)
    for (std::size_t i = 0; i < parts.size(); ++i)
      if (c.kinds[i] == Param::none) literal_at[i] = true;
  std::erase_if(found, [&](const Candidate& c) {
    for (std::size_t i = 0; i < parts.size(); ++i)
      if (c.kinds[i] == Param::uuid && literal_at[i]) return true;
    return false;
  });

  const Candidate* best = nullptr;
  for (const auto& c : found) {
    if (c.call->method != method) continue;
    if (best == nullptr || literal_count(c) > literal_count(*best)) best = &c;
  }
  CallMatch out;
  if (best != nullptr) {
    out.call = best->call;
    out.params = best->params;
    return out;
  }
  std::vector<std::string_view> methods;
  for (const auto& c : found) methods.push_back(c.call->method);
  std::sort(methods.begin(), methods.end());
  methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
  for (auto m : methods) {
    if (!out.allow.empty()) out.allow += ", ";
    out.allow += m;
  }
  return out;
}

std::string path_for(const proto::Call& call, const proto::PathParams& params) {
  std::string out;
  for (auto seg : segments(call.path)) {
    out += '/';
    switch (param_of(seg)) {
      case Param::none:
        out += seg;
        break;
      case Param::uuid:
        out += params.uuid;
        break;
      case Param::vg:
        out += params.vg;
        break;
      case Param::lv:
        out += params.lv;
        break;
    }
  }
  return out;
}

}  // namespace kvmfleet::agent
