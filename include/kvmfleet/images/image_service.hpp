#pragma once

// Images on the controller (docs/images.md): a record made by POST /v1/images, then its
// data streamed in by one upload (hashed as it arrives, checked with qemu-img once
// complete). Files and records live in one directory of the controller's state (mode
// 0700, files 0600): <name>.json the record, <name>.img the data once ready,
// <name>.part an upload in progress. An upload that fails or ends early removes the
// image: nothing is left half-made.

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/images/image_tool.hpp"

#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet::images {

enum class ImageState { uploading, ready };
std::string_view to_string(ImageState s);

struct Image {
  std::string name;
  ImageState state = ImageState::uploading;
  std::string expected_sha256;  // as given at creation; empty: none given
  std::string format_hint;      // as given at creation; empty: none given
  std::string format;           // raw, qcow2 or iso, once ready
  std::string sha256;           // of the data, once ready
  std::uint64_t size = 0;       // bytes, once ready
  std::uint64_t virtual_size = 0;
  std::string created_at;
};

nlohmann::json to_json(const Image& image);
Result<Image> image_from_json(const nlohmann::json& j);

// POST /v1/images: {name, sha256?, format?}.
struct ImageCreate {
  std::string name;
  std::string sha256;  // lowercase hex; empty: none given
  std::string format;  // raw, qcow2 or iso; empty: none given
};
Result<ImageCreate> parse_image_create(const nlohmann::json& body);
// 64 hex digits.
bool is_sha256_hex(std::string_view s);

// SHA-256 over data given piece by piece (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const char* data, std::size_t size);
  std::string hex();  // ends the digest

 private:
  EVP_MD_CTX* ctx_;
};

class ImageService;

// One upload of an image's data, from ImageService::begin_upload. Ended by finish or
// abort; destroyed unended, it aborts.
class Upload {
 public:
  ~Upload();
  Upload(const Upload&) = delete;
  Upload& operator=(const Upload&) = delete;

  // Appends to the image's file and to its hash. An error (the disk refused) aborts.
  Status write(const char* data, std::size_t size);
  // The data is complete: checks its SHA-256 against the one given, its format with
  // qemu-img, and makes the image ready. Any refusal removes the image (invalid_argument
  // with details.reason: sha256_mismatch, format_mismatch, or those of check_image_info).
  Result<Image> finish();
  // The data will not be complete: removes the image.
  void abort();

 private:
  friend class ImageService;
  Upload(ImageService& service, std::string name, std::string expected_sha256, int fd);
  void end();

  ImageService& service_;
  std::string name_;
  std::string expected_sha256_;
  int fd_;
  Sha256 hash_;
  std::uint64_t size_ = 0;
  bool ended_ = false;
};

class ImageService {
 public:
  // `dir` need not exist: it is made (0700) with the first image. Records found there
  // are loaded; uploads a previous controller left unfinished are removed.
  ImageService(std::string dir, ImageTool& tool, const Clock& clock);

  // 409 conflict when the name is taken.
  Result<Image> create(const ImageCreate& request);
  std::vector<Image> list() const;
  // 404 not_found.
  Result<Image> get(const std::string& name) const;
  // 404 no such image; 409 its data is already uploaded or being uploaded.
  Result<std::unique_ptr<Upload>> begin_upload(const std::string& name);
  // 404; 409 while its data is being uploaded or while a VM is being made from it.
  Status remove(const std::string& name);

  // Marks a VM being made from a ready image (404, 409 not ready), until release.
  Status acquire(const std::string& name);
  void release(const std::string& name);

  // Where a ready image's data is.
  std::string data_path(const std::string& name) const;

  // Up to `length` (1..kMaxReadPiece) bytes of a ready image's data from `offset`
  // (fewer only at its end, none at or past it): how hosts fetch an image, a piece at a
  // time, so neither side holds more than a piece. 404 no such image; 409 not ready;
  // 400 a length out of range.
  static constexpr std::size_t kMaxReadPiece = std::size_t{8} << 20;
  Result<std::string> read_data(const std::string& name, std::uint64_t offset,
                                std::size_t length) const;
  const std::string& dir() const { return dir_; }

 private:
  friend class Upload;
  std::string record_path(const std::string& name) const;
  std::string part_path(const std::string& name) const;
  Status ensure_dir();
  Status save(const Image& image);  // atomically, 0600
  void load();
  // Removes every file and the record of an image (under mu_).
  void erase(const std::string& name);
  Result<Image> complete(const std::string& name, const std::string& sha256, std::uint64_t size,
                         const std::string& expected_sha256);
  void drop_upload(const std::string& name);

  std::string dir_;
  ImageTool& tool_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, Image> images_;
  std::set<std::string> uploading_;    // an Upload is open
  std::map<std::string, int> in_use_;  // VMs being made from it
};

}  // namespace kvmfleet::images
