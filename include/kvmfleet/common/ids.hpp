#pragma once

#include <string>
#include <string_view>

namespace kvmfleet {

// Random version-4 UUID from OpenSSL's CSPRNG, lowercase.
std::string new_uuid();
// A bearer token: "kvf_" + 43 base64url characters (256 random bits).
std::string new_token();
// Hex SHA-256, for storing token hashes instead of tokens.
std::string sha256_hex(std::string_view data);
// Comparison whose time does not depend on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace kvmfleet
