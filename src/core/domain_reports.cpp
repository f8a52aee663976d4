#include "kvmfleet/core/domain_reports.hpp"

#include <algorithm>
#include <unordered_map>

namespace kvmfleet {
namespace {

// Whether a report stamped `stamp` about domain `uuid` on `host` is older than what is
// known: the host list's entry (`known`, if any) or the VM's last answer from that host.
bool stale(const ClusterState::Data& d, const std::string& host, const std::string& uuid,
           const DomainStatus* known, const ReportStamp& stamp) {
  if (known && older_than(stamp, known->stamp)) return true;
  const Vm* vm = d.find_vm(uuid);
  if (!vm) return false;
  auto seen = vm->seen.find(host);
  return seen != vm->seen.end() && older_than(stamp, seen->second);
}

}  // namespace

std::vector<DomainStatus> merge_domain_report(const ClusterState::Data& d, const std::string& host,
                                              const std::vector<DomainStatus>& known,
                                              const std::vector<DomainStatus>& reported,
                                              const ReportStamp& stamp) {
  std::unordered_map<std::string, const DomainStatus*> had;
  for (const auto& k : known) had.emplace(k.uuid, &k);
  std::vector<DomainStatus> out;
  out.reserve(reported.size());
  for (const auto& r : reported) {
    auto it = had.find(r.uuid);
    const DomainStatus* k = it == had.end() ? nullptr : it->second;
    if (stale(d, host, r.uuid, k, stamp)) {
      if (k) out.push_back(*k);  // else: gone since, as an operation found
    } else {
      out.push_back(r);
      out.back().stamp = stamp;
    }
    if (k) had.erase(it);
  }
  // Not in the report: gone, unless the controller learned of it after the report looked
  // (an answer or event stamped later).
  for (const auto& k : known)
    if (had.count(k.uuid) && stale(d, host, k.uuid, &k, stamp)) out.push_back(k);
  return out;
}

bool apply_domain_event(const ClusterState::Data& d, const std::string& host,
                        std::vector<DomainStatus>& domains, const ObservedChange& change) {
  auto it = std::find_if(domains.begin(), domains.end(),
                         [&](const DomainStatus& s) { return s.uuid == change.uuid; });
  const DomainStatus* known = it == domains.end() ? nullptr : &*it;
  if (stale(d, host, change.uuid, known, change.stamp)) return false;
  if (change.state == "undefined") {
    if (it != domains.end()) domains.erase(it);
    return true;
  }
  if (it == domains.end()) {
    DomainStatus s;
    s.uuid = change.uuid;
    s.name = change.name;
    s.managed = d.find_vm(change.uuid) != nullptr;
    domains.push_back(std::move(s));
    it = std::prev(domains.end());
  }
  it->state = change.state;
  it->stamp = change.stamp;
  return true;
}

void note_domain_answer(std::vector<DomainStatus>& domains, const std::string& uuid,
                        const DomainStatus* answer, const ReportStamp& stamp) {
  auto it = std::find_if(domains.begin(), domains.end(),
                         [&](const DomainStatus& s) { return s.uuid == uuid; });
  // A report that came in meanwhile and looked later stays.
  if (it != domains.end() && older_than(stamp, it->stamp)) return;
  if (!answer) {
    if (it != domains.end()) domains.erase(it);
    return;
  }
  if (it == domains.end())
    domains.push_back(*answer);
  else
    *it = *answer;
}

}  // namespace kvmfleet
