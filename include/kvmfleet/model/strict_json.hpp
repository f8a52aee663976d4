#pragma once

// Strict reading of JSON that the controller writes and later reads back itself, such as
// an operation's params and result: a missing required field, a field of another type
// (no number for a boolean, no negative number for a size) or a field no reader knows is
// an error, never a silent default. Readers throw std::invalid_argument naming the
// field; code that reads stored records turns that into an error value
// (core/typed_operation.hpp).

#include "kvmfleet/common/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kvmfleet {

// The params or result of an operation kind that has none: the JSON is {}.
struct NoFields {};
void to_json(nlohmann::json& j, const NoFields&);
void from_json(const nlohmann::json& j, NoFields&);

namespace strict_json {

// Throws "PATH: expected WHAT".
[[noreturn]] void fail(const std::string& path, std::string_view what);
// Throws unless `j` is an object whose keys are all in `known`.
void expect_object(const nlohmann::json& j, std::initializer_list<std::string_view> known);

// How a T is read: by default the type's own from_json, which must be strict itself.
template <typename T>
struct Reader {
  static T read(const nlohmann::json& v) { return v.get<T>(); }
};
// An error body {code, message, details}: all three, code one of the closed set.
template <>
struct Reader<Error> {
  static Error read(const nlohmann::json& v);
};

template <typename T>
struct is_vector : std::false_type {};
template <typename T>
struct is_vector<std::vector<T>> : std::true_type {};
template <typename T>
struct is_string_map : std::false_type {};
template <typename T>
struct is_string_map<std::map<std::string, T>> : std::true_type {};

// `v` as a T, its type checked; `path` names it in the error.
template <typename T>
T as(const nlohmann::json& v, const std::string& path) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) fail(path, "a boolean");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) fail(path, "an integer");
    if constexpr (std::is_unsigned_v<T>) {
      if (!v.is_number_unsigned() && v.get<std::int64_t>() < 0)
        fail(path, "a non-negative integer");
      const auto u = v.get<std::uint64_t>();
      if (u > std::numeric_limits<T>::max()) fail(path, "a smaller integer");
      return static_cast<T>(u);
    } else {
      if (v.is_number_unsigned() &&
          v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
        fail(path, "a smaller integer");
      const auto i = v.get<std::int64_t>();
      if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max())
        fail(path, "an integer in range");
      return static_cast<T>(i);
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) fail(path, "a string");
    return v.get<std::string>();
  } else if constexpr (is_vector<T>::value) {
    if (!v.is_array()) fail(path, "an array");
    T out;
    for (std::size_t i = 0; i < v.size(); ++i)
      out.push_back(as<typename T::value_type>(v[i], path + "[" + std::to_string(i) + "]"));
    return out;
  } else if constexpr (is_string_map<T>::value) {
    if (!v.is_object()) fail(path, "an object");
    T out;
    for (const auto& [k, e] : v.items())
      out.emplace(k, as<typename T::mapped_type>(e, path + "." + k));
    return out;
  } else {
    try {
      return Reader<T>::read(v);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(path + ": " + e.what());
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(path + ": " + e.what());
    }
  }
}

// j[key] as a T; a missing key is an error.
template <typename T>
T get(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) throw std::invalid_argument(std::string("missing field ") + key);
  return as<T>(*it, key);
}

// j[key] as a T, or nothing when the key is absent.
template <typename T>
std::optional<T> get_optional(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  return as<T>(*it, key);
}

// Writes `value` under `key` when it is set.
template <typename T>
void put_optional(nlohmann::json& j, const char* key, const std::optional<T>& value) {
  if (value) j[key] = *value;
}

}  // namespace strict_json
}  // namespace kvmfleet
