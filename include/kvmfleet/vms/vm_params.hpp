#pragma once

// The params and results of the VM lifecycle's operations, as stored and shown by the
// API (api/openapi.yaml, components/schemas/Vm*Params and Vm*Result).

#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/strict_json.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace kvmfleet {

struct VmCreateParams {
  static constexpr std::string_view kind = op_kind::vm_create;
  std::string name;
  bool start = false;
};
struct VmCreateResult {
  std::optional<std::string> host;  // once the domain is defined there
};

struct VmStartParams : NoFields {
  static constexpr std::string_view kind = op_kind::vm_start;
};
struct VmStartResult : NoFields {};

struct VmStopParams {
  static constexpr std::string_view kind = op_kind::vm_stop;
  int timeout_s = 0;   // how long the guest has to shut down
  bool force = false;  // power it off after that
};
struct VmStopResult {
  bool forced = false;  // it had to be powered off (written only then)
  std::optional<std::string> storage_warning;
};

struct VmRebootParams : NoFields {
  static constexpr std::string_view kind = op_kind::vm_reboot;
};
struct VmRebootResult : NoFields {};

struct VmDestroyParams : NoFields {
  static constexpr std::string_view kind = op_kind::vm_destroy;
};
struct VmDestroyResult {
  std::optional<std::string> storage_warning;
};

struct VmDeleteParams {
  static constexpr std::string_view kind = op_kind::vm_delete;
  bool force = false;  // power a running VM off first
};
struct VmDeleteResult : NoFields {};

// What VmService::vm_action is given besides the kind: vm.stop its VmStopParams,
// vm.delete its VmDeleteParams, the kinds without params (vm.start, vm.reboot,
// vm.destroy) nothing.
using VmActionParams = std::variant<std::monostate, VmStopParams, VmDeleteParams>;

void to_json(nlohmann::json& j, const VmCreateParams& p);
void from_json(const nlohmann::json& j, VmCreateParams& p);
void to_json(nlohmann::json& j, const VmCreateResult& r);
void from_json(const nlohmann::json& j, VmCreateResult& r);
void to_json(nlohmann::json& j, const VmStopParams& p);
void from_json(const nlohmann::json& j, VmStopParams& p);
void to_json(nlohmann::json& j, const VmStopResult& r);
void from_json(const nlohmann::json& j, VmStopResult& r);
void to_json(nlohmann::json& j, const VmDestroyResult& r);
void from_json(const nlohmann::json& j, VmDestroyResult& r);
void to_json(nlohmann::json& j, const VmDeleteParams& p);
void from_json(const nlohmann::json& j, VmDeleteParams& p);

}  // namespace kvmfleet
