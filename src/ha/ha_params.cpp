#include "kvmfleet/ha/ha_params.hpp"

namespace kvmfleet {

using nlohmann::json;
using namespace strict_json;

void to_json(json& j, const VmHaRestartParams& p) {
  j = {{"reason", p.reason},
       {"from_host", p.from_host},
       {"target_host", p.target_host},
       {"evidence",
        {{"kind", p.evidence.kind},
         {"detail", p.evidence.detail},
         {"by", p.evidence.by},
         {"at", format_time(p.evidence.at)}}}};
}
void from_json(const json& j, VmHaRestartParams& p) {
  expect_object(j, {"reason", "from_host", "target_host", "evidence"});
  p.reason = get<std::string>(j, "reason");
  if (p.reason != kHostFailed && p.reason != kCrashed) fail("reason", "host_failed or crashed");
  p.from_host = get<std::string>(j, "from_host");
  p.target_host = get<std::string>(j, "target_host");
  const json& e = j.at("evidence");
  expect_object(e, {"kind", "detail", "by", "at"});
  p.evidence.kind = get<std::string>(e, "kind");
  p.evidence.detail = get<std::string>(e, "detail");
  p.evidence.by = get<std::string>(e, "by");
  const auto at = parse_time(get<std::string>(e, "at"));
  if (!at) fail("evidence.at", "a time");
  p.evidence.at = *at;
}

void to_json(json& j, const VmHaRestartResult& r) {
  j = {{"started", r.started}};
  put_optional(j, "host", r.host);
}
void from_json(const json& j, VmHaRestartResult& r) {
  expect_object(j, {"host", "started"});
  r.host = get_optional<std::string>(j, "host");
  r.started = get_optional<bool>(j, "started").value_or(false);
}

}  // namespace kvmfleet
