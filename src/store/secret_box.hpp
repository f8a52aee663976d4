#pragma once

// Encryption at rest for the secrets the controller must replay (a host's agent
// credential, CHAP passwords): AES-256-GCM (OpenSSL EVP) under a key kept in a file of
// its own, a random nonce per value, the value's place in the store as associated data
// so that a sealed value cannot be moved to another record.

#include "kvmfleet/common/result.hpp"

#include <array>
#include <string>
#include <string_view>

namespace kvmfleet {

class SecretBox {
 public:
  static constexpr std::size_t kKeyBytes = 32;
  // What every sealed value starts with; a value without it was stored in plain text
  // by an older controller.
  static constexpr std::string_view kPrefix = "kvf-enc-v1:";

  // Reads the key file, or creates it (mode 0600 whatever the umask) with a new
  // random key when it does not exist. A file of another size is an error.
  static Result<SecretBox> load_or_create(const std::string& path);
  explicit SecretBox(const std::array<unsigned char, kKeyBytes>& key) : key_(key) {}

  // kPrefix + base64(nonce || ciphertext || tag). `context` names the value's place
  // (e.g. "hosts/node1/agent_secret") and must be given again to open it.
  Result<std::string> seal(std::string_view plain, std::string_view context) const;
  // The plain value; invalid data, a wrong key or another context is an error.
  Result<std::string> open(std::string_view sealed, std::string_view context) const;
  static bool is_sealed(std::string_view value) { return value.starts_with(kPrefix); }

 private:
  std::array<unsigned char, kKeyBytes> key_;
};

// Creates `dir` and any missing parents as 0700 (whatever the umask); an existing
// directory is left as it is.
Status make_private_dirs(const std::string& dir);
// Creates `path` if absent and sets its mode to 0600 (an existing file too).
Status make_private_file(const std::string& path);

}  // namespace kvmfleet
