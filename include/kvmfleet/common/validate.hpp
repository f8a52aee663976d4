#pragma once

#include "kvmfleet/common/result.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace kvmfleet {

// Names of VMs, hosts, groups: [a-z0-9][a-z0-9-]{0,62}. Checked before a name may
// reach libvirt, the XML writer, the store or an argument vector.
bool is_valid_name(std::string_view name);
Status check_name(std::string_view field, std::string_view name);

// Canonical lowercase UUID (8-4-4-4-12 hex).
bool is_valid_uuid(std::string_view id);

// Rejects any key of `obj` not in `allowed`, naming the first offender.
Status check_known_fields(const nlohmann::json& obj,
                          std::initializer_list<std::string_view> allowed,
                          std::string_view where = "body");
Status check_known_fields(const nlohmann::json& obj, std::span<const std::string_view> allowed,
                          std::string_view where = "body");

// Typed field readers: a missing required field, a wrong type or a value out of range
// is an invalid_argument error that names the field.
Result<std::string> get_string(const nlohmann::json& obj, std::string_view field, bool required,
                               std::string fallback = {});
Result<std::int64_t> get_int(const nlohmann::json& obj, std::string_view field, bool required,
                             std::int64_t fallback, std::int64_t min, std::int64_t max);
Result<bool> get_bool(const nlohmann::json& obj, std::string_view field, bool fallback);

}  // namespace kvmfleet
