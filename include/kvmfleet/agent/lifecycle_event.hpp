#pragma once

// A domain lifecycle change as the agent pushes it to the controller
// (POST /v1/agent/events). Header-only so the controller can read it without
// linking the agent.

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet::agent {

struct LifecycleEvent {
  std::string uuid;
  std::string name;    // the domain's name
  std::string state;   // VmState name after the event; "stopped" once a domain is gone
  std::string reason;  // libvirt's event and detail, e.g. "started:booted", "stopped:destroyed"
  Clock::time_point at{};
  ReportStamp stamp;  // given when the agent queues it (report_clock.hpp)
  bool operator==(const LifecycleEvent&) const = default;
};

inline void to_json(nlohmann::json& j, const LifecycleEvent& e) {
  j = {{"uuid", e.uuid},
       {"name", e.name},
       {"state", e.state},
       {"reason", e.reason},
       {"at", format_time(e.at)}};
  if (!e.stamp.empty()) j["stamp"] = e.stamp;
}

inline void from_json(const nlohmann::json& j, LifecycleEvent& e) {
  e.uuid = j.at("uuid").get<std::string>();
  e.name = j.at("name").get<std::string>();
  e.state = j.at("state").get<std::string>();
  e.reason = j.value("reason", "");
  auto at = parse_time(j.at("at").get<std::string>());
  if (!at) throw std::invalid_argument("bad time in at");
  e.at = *at;
  if (auto it = j.find("stamp"); it != j.end()) e.stamp = it->get<ReportStamp>();
}

}  // namespace kvmfleet::agent
