#pragma once

// The double of fencing::FenceAgent (include/kvmfleet/fencing/fence_agent.hpp): each
// device, told apart by its `ip` option, is a simulated power switch that `off` turns
// off and `on` turns on; a test can make a device unreachable, make its `off` not take
// effect, or remove an agent. Every request is recorded.

#include "kvmfleet/fencing/fence_agent.hpp"

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace kvmfleet::fencing {

class FakeFenceAgent final : public FenceAgent {
 public:
  struct Device {
    PowerStatus power = PowerStatus::on;
    bool reachable = true;     // false: every call fails (exit 1, "connection timed out")
    bool off_works = true;     // false: `off` exits 0 but the power stays on
    int off_after_status = 0;  // the power turns off only after this many status calls
  };

  Device& device(const std::string& ip) {
    std::lock_guard lk(mu_);
    return devices_[ip];
  }
  void remove_agent(const std::string& agent) {
    std::lock_guard lk(mu_);
    missing_.insert(agent);
  }
  std::vector<FenceRequest> requests() const {
    std::lock_guard lk(mu_);
    return requests_;
  }
  // The requests for one device, as "action" strings in order.
  std::vector<std::string> actions(const std::string& ip) const {
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    for (const auto& r : requests_)
      if (ip_of(r) == ip) out.emplace_back(to_string(r.action));
    return out;
  }

  Result<FenceResult> run(const FenceRequest& request) override {
    if (auto st = check_agent_name(request.agent); !st) return st.take_error();
    for (const auto& [k, v] : request.options)
      if (auto st = check_option(k, v); !st) return st.take_error();
    std::lock_guard lk(mu_);
    requests_.push_back(request);
    if (missing_.count(request.agent))
      return unavailable("no fence agent " + request.agent, {{"agent", request.agent}});
    Device& d = devices_[ip_of(request)];
    FenceResult r;
    if (!d.reachable) {
      r.exit_code = 1;
      r.output_tail = "Failed: Unable to obtain correct plug status or plug is not available\n";
      return r;
    }
    switch (request.action) {
      case FenceAction::off:
        if (d.off_works && d.off_after_status == 0) d.power = PowerStatus::off;
        r.exit_code = 0;
        break;
      case FenceAction::on:
        d.power = PowerStatus::on;
        r.exit_code = 0;
        break;
      case FenceAction::reboot:
        r.exit_code = 0;
        break;
      case FenceAction::status:
        if (d.off_works && d.off_after_status > 0 && --d.off_after_status == 0)
          d.power = PowerStatus::off;
        r.exit_code = d.power == PowerStatus::off ? 2 : 0;
        r.status = d.power;
        r.output_tail = d.power == PowerStatus::off ? "Status: OFF\n" : "Status: ON\n";
        break;
      case FenceAction::monitor:
        r.exit_code = 0;
        break;
    }
    return r;
  }

  Status check_available(const std::string& agent) override {
    if (auto st = check_agent_name(agent); !st) return st;
    std::lock_guard lk(mu_);
    if (missing_.count(agent))
      return not_found("no fence agent " + agent,
                       {{"agent", agent}, {"reason", "agent_not_found"}});
    return ok_status();
  }

 private:
  static std::string ip_of(const FenceRequest& r) {
    auto it = r.options.find("ip");
    return it == r.options.end() ? r.agent : it->second;
  }
  mutable std::mutex mu_;
  std::map<std::string, Device> devices_;
  std::set<std::string> missing_;
  std::vector<FenceRequest> requests_;
};

}  // namespace kvmfleet::fencing
