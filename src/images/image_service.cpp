#include "kvmfleet/images/image_service.hpp"

#include "kvmfleet/common/validate.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kvmfleet::images {
namespace fs = std::filesystem;
using nlohmann::json;

std::string_view to_string(ImageState s) {
  switch (s) {
    case ImageState::uploading:
      return "uploading";
    case ImageState::ready:
      return "ready";
  }
  return "uploading";
}

json to_json(const Image& i) {
  json j = {{"name", i.name},
            {"state", to_string(i.state)},
            {"created_at", i.created_at},
            {"expected_sha256", i.expected_sha256.empty() ? json() : json(i.expected_sha256)},
            {"format_hint", i.format_hint.empty() ? json() : json(i.format_hint)}};
  if (i.state == ImageState::ready) {
    j["format"] = i.format;
    j["sha256"] = i.sha256;
    j["size"] = i.size;
    j["virtual_size"] = i.virtual_size;
  } else {
    j["format"] = nullptr;
    j["sha256"] = nullptr;
    j["size"] = nullptr;
    j["virtual_size"] = nullptr;
  }
  return j;
}

Result<Image> image_from_json(const json& j) {
  try {
    Image i;
    i.name = j.at("name").get<std::string>();
    if (!is_valid_name(i.name)) return invalid("bad image name in record");
    const auto state = j.at("state").get<std::string>();
    if (state != "uploading" && state != "ready") return invalid("bad image state in record");
    i.state = state == "ready" ? ImageState::ready : ImageState::uploading;
    i.created_at = j.at("created_at").get<std::string>();
    if (j.at("expected_sha256").is_string())
      i.expected_sha256 = j["expected_sha256"].get<std::string>();
    if (j.at("format_hint").is_string()) i.format_hint = j["format_hint"].get<std::string>();
    if (i.state == ImageState::ready) {
      i.format = j.at("format").get<std::string>();
      i.sha256 = j.at("sha256").get<std::string>();
      i.size = j.at("size").get<std::uint64_t>();
      i.virtual_size = j.at("virtual_size").get<std::uint64_t>();
    }
    return i;
  } catch (const json::exception& e) {
    return invalid(std::string("bad image record: ") + e.what());
  }
}

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

Result<ImageCreate> parse_image_create(const json& body) {
  if (!body.is_object()) return invalid("body must be a JSON object");
  if (auto st = check_known_fields(body, {"name", "sha256", "format"}); !st) return st.error();
  ImageCreate req;
  auto name = get_string(body, "name", true);
  if (!name) return name.error();
  if (auto st = check_name("name", *name); !st) return st.error();
  req.name = *name;
  auto sha = get_string(body, "sha256", false);
  if (!sha) return sha.error();
  if (!sha->empty() && !is_sha256_hex(*sha))
    return invalid("sha256 must be 64 hex digits", {{"field", "sha256"}});
  for (char c : *sha) req.sha256 += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto format = get_string(body, "format", false);
  if (!format) return format.error();
  if (!format->empty() && *format != "raw" && *format != "qcow2" && *format != "iso")
    return invalid("format must be raw, qcow2 or iso", {{"field", "format"}});
  req.format = *format;
  return req;
}

// --- Sha256

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_DigestInit_ex failed");
}
Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}
void Sha256::update(const char* data, std::size_t size) {
  if (EVP_DigestUpdate(ctx_, data, size) != 1) throw std::runtime_error("EVP_DigestUpdate failed");
}
std::string Sha256::hex() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, md.data(), &len) != 1)
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

// --- Upload

Upload::Upload(ImageService& service, std::string name, std::string expected_sha256, int fd)
    : service_(service),
      name_(std::move(name)),
      expected_sha256_(std::move(expected_sha256)),
      fd_(fd) {}

Upload::~Upload() {
  if (!ended_) abort();
}

void Upload::end() {
  ended_ = true;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status Upload::write(const char* data, std::size_t size) {
  if (ended_) return internal_error("upload already ended");
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd_, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = std::strerror(errno);
      abort();
      return Error(ErrorCode::internal, "cannot store the image: " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  hash_.update(data, size);
  size_ += size;
  return {};
}

Result<Image> Upload::finish() {
  if (ended_) return internal_error("upload already ended");
  const bool synced = ::fsync(fd_) == 0;
  end();
  if (!synced) {
    service_.drop_upload(name_);
    return internal_error("cannot store the image: fsync failed");
  }
  return service_.complete(name_, hash_.hex(), size_, expected_sha256_);
}

void Upload::abort() {
  if (ended_) return;
  end();
  spdlog::info("image {}: upload ended early, image removed", name_);
  service_.drop_upload(name_);
}

// --- ImageService

ImageService::ImageService(std::string dir, ImageTool& tool, const Clock& clock)
    : dir_(std::move(dir)), tool_(tool), clock_(clock) {
  load();
}

std::string ImageService::data_path(const std::string& name) const {
  return dir_ + "/" + name + ".img";
}

Result<std::string> ImageService::read_data(const std::string& name, std::uint64_t offset,
                                            std::size_t length) const {
  if (length < 1 || length > kMaxReadPiece)
    return invalid("length must be 1.." + std::to_string(kMaxReadPiece),
                   {{"field", "length"}, {"min", 1}, {"max", kMaxReadPiece}});
  auto image = get(name);
  if (!image) return image.take_error();
  if (image->state != ImageState::ready)
    return conflict("image has no data yet", {{"image", name}, {"reason", "image_not_ready"}});
  std::string out;
  if (offset >= image->size) return out;
  const int fd = ::open(data_path(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return not_found("no such image", {{"image", name}});
  out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(length, image->size - offset)));
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}
std::string ImageService::record_path(const std::string& name) const {
  return dir_ + "/" + name + ".json";
}
std::string ImageService::part_path(const std::string& name) const {
  return dir_ + "/" + name + ".part";
}

Status ImageService::ensure_dir() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return internal_error("cannot make the image directory: " + ec.message());
  if (::chmod(dir_.c_str(), 0700) != 0)
    return internal_error("cannot set the image directory's mode");
  return {};
}

Status ImageService::save(const Image& image) {
  if (auto st = ensure_dir(); !st) return st;
  const std::string path = record_path(image.name);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return internal_error("cannot write the image record");
  const std::string text = to_json(image).dump();
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  if (!written || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return internal_error("cannot write the image record");
  }
  return {};
}

void ImageService::load() {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return;
  if (::chmod(dir_.c_str(), 0700) != 0) spdlog::warn("cannot set {} to mode 0700", dir_);
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const auto path = entry.path();
    const auto ext = path.extension().string();
    if (ext == ".part" || ext == ".tmp") {
      spdlog::info("removing unfinished image file {}", path.string());
      fs::remove(path, ec);
      continue;
    }
    if (ext != ".json") continue;
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    auto image = image_from_json(json::parse(text.str(), nullptr, false));
    if (!image || path.stem().string() != image->name) {
      spdlog::warn("ignoring unreadable image record {}", path.string());
      continue;
    }
    if (image->state == ImageState::ready && !fs::exists(data_path(image->name), ec)) {
      spdlog::warn("image {} has no data file: record removed", image->name);
      fs::remove(path, ec);
      continue;
    }
    images_.emplace(image->name, std::move(*image));
  }
}

Result<Image> ImageService::create(const ImageCreate& request) {
  if (!is_valid_name(request.name)) return invalid("bad image name");
  std::lock_guard lk(mu_);
  if (images_.count(request.name)) return conflict("image name taken", {{"image", request.name}});
  Image image;
  image.name = request.name;
  image.expected_sha256 = request.sha256;
  image.format_hint = request.format;
  image.created_at = format_time(clock_.now());
  if (auto st = save(image); !st) return st.error();
  images_.emplace(image.name, image);
  return image;
}

std::vector<Image> ImageService::list() const {
  std::lock_guard lk(mu_);
  std::vector<Image> out;
  for (const auto& [_, image] : images_) out.push_back(image);
  return out;
}

Result<Image> ImageService::get(const std::string& name) const {
  std::lock_guard lk(mu_);
  const auto it = images_.find(name);
  if (it == images_.end()) return not_found("no such image", {{"image", name}});
  return it->second;
}

Result<std::unique_ptr<Upload>> ImageService::begin_upload(const std::string& name) {
  std::lock_guard lk(mu_);
  const auto it = images_.find(name);
  if (it == images_.end()) return not_found("no such image", {{"image", name}});
  if (it->second.state == ImageState::ready)
    return conflict("image data already uploaded", {{"image", name}});
  if (uploading_.count(name)) return conflict("image data is being uploaded", {{"image", name}});
  if (auto st = ensure_dir(); !st) return st.error();
  const std::string part = part_path(name);
  ::unlink(part.c_str());
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return internal_error("cannot store the image");
  uploading_.insert(name);
  return std::unique_ptr<Upload>(new Upload(*this, name, it->second.expected_sha256, fd));
}

void ImageService::erase(const std::string& name) {
  std::error_code ec;
  fs::remove(part_path(name), ec);
  fs::remove(data_path(name), ec);
  fs::remove(record_path(name), ec);
  images_.erase(name);
  uploading_.erase(name);
}

void ImageService::drop_upload(const std::string& name) {
  std::lock_guard lk(mu_);
  erase(name);
}

Result<Image> ImageService::complete(const std::string& name, const std::string& sha256,
                                     std::uint64_t size, const std::string& expected_sha256) {
  auto refuse = [&](Error e) -> Result<Image> {
    spdlog::info("image {} refused: {}", name, e.message);
    drop_upload(name);
    return e;
  };
  if (!expected_sha256.empty() && sha256 != expected_sha256)
    return refuse(invalid(
        "image data does not match the given sha256",
        {{"reason", "sha256_mismatch"}, {"expected_sha256", expected_sha256}, {"sha256", sha256}}));
  if (size == 0) return refuse(invalid("image is empty", {{"reason", "empty_image"}}));
  // The file is ours alone while it is uploading_: qemu-img runs without the lock.
  const std::string part = part_path(name);
  auto text = tool_.info_json(part);
  if (!text) return refuse(text.error());
  auto info = check_image_info(*text, has_iso9660_signature(part));
  if (!info) return refuse(info.error());
  std::lock_guard lk(mu_);
  auto it = images_.find(name);
  if (it == images_.end()) return internal_error("image vanished during its upload");
  if (!it->second.format_hint.empty() && it->second.format_hint != info->format) {
    Error e = invalid("image is " + info->format + ", not " + it->second.format_hint,
                      {{"reason", "format_mismatch"}, {"format", info->format}});
    erase(name);
    return e;
  }
  Image ready = it->second;
  ready.state = ImageState::ready;
  ready.format = info->format;
  ready.sha256 = sha256;
  ready.size = size;
  ready.virtual_size = info->virtual_size;
  if (std::rename(part.c_str(), data_path(name).c_str()) != 0) {
    erase(name);
    return internal_error("cannot store the image");
  }
  if (auto st = save(ready); !st) {
    erase(name);
    return st.error();
  }
  it->second = ready;
  uploading_.erase(name);
  return ready;
}

Status ImageService::remove(const std::string& name) {
  std::lock_guard lk(mu_);
  if (!images_.count(name)) return not_found("no such image", {{"image", name}});
  if (uploading_.count(name)) return conflict("image data is being uploaded", {{"image", name}});
  if (const auto it = in_use_.find(name); it != in_use_.end() && it->second > 0)
    return conflict("a VM is being made from the image", {{"image", name}});
  erase(name);
  return {};
}

Status ImageService::acquire(const std::string& name) {
  std::lock_guard lk(mu_);
  const auto it = images_.find(name);
  if (it == images_.end()) return not_found("no such image", {{"image", name}});
  if (it->second.state != ImageState::ready)
    return conflict("image data not uploaded yet", {{"image", name}});
  ++in_use_[name];
  return {};
}

void ImageService::release(const std::string& name) {
  std::lock_guard lk(mu_);
  if (const auto it = in_use_.find(name); it != in_use_.end() && --it->second <= 0)
    in_use_.erase(it);
}

}  // namespace kvmfleet::images
