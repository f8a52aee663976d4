#include "kvmfleet/common/validate.hpp"

#include <algorithm>

namespace kvmfleet {

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return lower_or_digit(c) || c == '-'; });
}

Status check_name(std::string_view field, std::string_view name) {
  if (is_valid_name(name)) return {};
  return invalid(std::string(field) + " must match [a-z0-9][a-z0-9-]{0,62}",
                 {{"field", std::string(field)}});
}

bool is_valid_uuid(std::string_view id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Status check_known_fields(const nlohmann::json& obj,
                          std::initializer_list<std::string_view> allowed, std::string_view where) {
  return check_known_fields(obj, std::span<const std::string_view>(allowed.begin(), allowed.size()),
                            where);
}

Status check_known_fields(const nlohmann::json& obj, std::span<const std::string_view> allowed,
                          std::string_view where) {
  if (!obj.is_object()) return invalid(std::string(where) + " must be a JSON object");
  for (const auto& [key, _] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      // The offending key is untrusted; it is reported as JSON data, never interpreted.
      return invalid("unknown field in " + std::string(where), {{"field", key}});
    }
  }
  return {};
}

Result<std::string> get_string(const nlohmann::json& obj, std::string_view field, bool required,
                               std::string fallback) {
  auto it = obj.find(std::string(field));
  if (it == obj.end() || it->is_null()) {
    if (required) return invalid(std::string(field) + " is required", {{"field", field}});
    return fallback;
  }
  if (!it->is_string())
    return invalid(std::string(field) + " must be a string", {{"field", field}});
  return it->get<std::string>();
}

Result<std::int64_t> get_int(const nlohmann::json& obj, std::string_view field, bool required,
                             std::int64_t fallback, std::int64_t min, std::int64_t max) {
  auto it = obj.find(std::string(field));
  if (it == obj.end() || it->is_null()) {
    if (required) return invalid(std::string(field) + " is required", {{"field", field}});
    return fallback;
  }
  if (!it->is_number_integer())
    return invalid(std::string(field) + " must be an integer", {{"field", field}});
  // Unsigned values above int64 range would wrap; compare in the unsigned domain first.
  if (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(max))
    return invalid(std::string(field) + " is out of range",
                   {{"field", field}, {"min", min}, {"max", max}});
  const auto v = it->get<std::int64_t>();
  if (v < min || v > max)
    return invalid(std::string(field) + " is out of range",
                   {{"field", field}, {"min", min}, {"max", max}});
  return v;
}

Result<bool> get_bool(const nlohmann::json& obj, std::string_view field, bool fallback) {
  auto it = obj.find(std::string(field));
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    return invalid(std::string(field) + " must be a boolean", {{"field", field}});
  return it->get<bool>();
}

}  // namespace kvmfleet
