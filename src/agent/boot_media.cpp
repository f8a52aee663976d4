#include "kvmfleet/agent/boot_media.hpp"

#include "kvmfleet/cloud_init/cloud_init.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/http/client.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace kvmfleet::agent {
namespace {

namespace fs = std::filesystem;

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Error io_error(const std::string& what, const std::string& path) {
  return internal_error(what + " " + path + ": " + std::strerror(errno));
}

// A file of this agent's making: created new, 0600.
Status write_private(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error("cannot create", path);
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto e = io_error("cannot write", path);
      ::close(fd);
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return io_error("cannot write", path);
  return {};
}

Status ensure_private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return io_error("cannot make", dir);
  return {};
}

Status run_checked(ProcessRunner& runner, const std::vector<std::string>& argv,
                   std::chrono::milliseconds timeout) {
  RunOptions o;
  o.timeout = timeout;
  auto r = require_success(runner.run(argv, o), argv);
  if (!r) return r.take_error();
  return {};
}

std::string url_escape_name(const std::string& name) {
  return name;  // image names match kvmfleet's name pattern: nothing to escape
}

}  // namespace

// --- ControllerImageSource

ControllerImageSource::ControllerImageSource(http::Client& client, std::string controller_url,
                                             std::string token)
    : client_(client), controller_url_(std::move(controller_url)), token_(std::move(token)) {}

Result<std::string> ControllerImageSource::read(const std::string& image, std::uint64_t offset,
                                                std::size_t length) {
  if (!is_valid_name(image)) return invalid("bad image name");
  const std::string url = controller_url_ + "/v1/agent/images/" + url_escape_name(image) +
                          "/data?offset=" + std::to_string(offset) +
                          "&length=" + std::to_string(length);
  auto res = client_.request("GET", url, token_, "", std::chrono::seconds(60));
  if (!res) return res.take_error();
  if (res->status != 200) {
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    std::string message = "the controller refused image " + image + " data (HTTP " +
                          std::to_string(res->status) + ")";
    if (j.is_object() && j.contains("error") && j["error"].is_object() &&
        j["error"].value("message", nlohmann::json()).is_string())
      message += ": " + j["error"]["message"].get<std::string>();
    if (res->status == 404) return not_found(message, {{"image", image}});
    return unavailable(message, {{"image", image}});
  }
  if (res->body.size() > length) return unavailable("the controller sent more than asked");
  return std::move(res->body);
}

// --- CommandDiskTool

Status CommandDiskTool::make_disk(const std::string& source, const std::string& format,
                                  const std::string& target, std::uint64_t size_bytes) {
  if (format != "raw" && format != "qcow2")
    return invalid("image format must be raw or qcow2", {{"format", format}});
  // Explicit formats on both sides: qemu-img never probes what it reads.
  if (auto st = run_checked(
          runner_, {"qemu-img", "convert", "-q", "-f", format, "-O", "qcow2", source, target},
          std::chrono::minutes(60));
      !st)
    return st;
  return run_checked(
      runner_, {"qemu-img", "resize", "-q", "-f", "qcow2", target, std::to_string(size_bytes)},
      std::chrono::minutes(5));
}

Status CommandDiskTool::make_iso(const std::string& label, const std::vector<std::string>& files,
                                 const std::string& target) {
  std::vector<std::string> argv{"genisoimage", "-quiet", "-output", target,
                                "-volid",      label,    "-joliet", "-rock"};
  argv.insert(argv.end(), files.begin(), files.end());
  return run_checked(runner_, argv, std::chrono::minutes(2));
}

// --- ImageCache

ImageCache::ImageCache(std::string dir, ImageSource& source, std::size_t piece_bytes)
    : dir_(std::move(dir)), source_(source), piece_bytes_(piece_bytes) {}

Result<std::string> ImageCache::ensure(const std::string& image, const std::string& sha256,
                                       std::uint64_t size) {
  if (!is_sha256_hex(sha256)) return invalid("image sha256 must be 64 lowercase hex digits");
  const std::string path = dir_ + "/" + sha256 + ".img";
  std::lock_guard lk(mu_);
  if (struct stat st{};
      ::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == size)
    return path;  // complete: it was renamed to this name only once checked
  if (auto st = ensure_private_dir(dir_); !st) return st.take_error();
  const std::string part = path + ".part";
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error("cannot create", part);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  auto fail = [&](Error e) -> Result<std::string> {
    ::close(fd);
    ::unlink(part.c_str());
    return e;
  };
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1)
    return fail(internal_error("cannot start a SHA-256"));
  std::uint64_t offset = 0;
  while (offset < size) {
    const auto want =
        static_cast<std::size_t>(std::min<std::uint64_t>(piece_bytes_, size - offset));
    auto piece = source_.read(image, offset, want);
    if (!piece) return fail(piece.take_error());
    if (piece->empty())
      return fail(unavailable("image " + image + " ended before its recorded size",
                              {{"image", image}, {"reason", "image_checksum_mismatch"}}));
    EVP_DigestUpdate(md.get(), piece->data(), piece->size());
    std::size_t done = 0;
    while (done < piece->size()) {
      const ssize_t n = ::write(fd, piece->data() + done, piece->size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(io_error("cannot write", part));
      }
      done += static_cast<std::size_t>(n);
    }
    offset += piece->size();
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(md.get(), digest, &len);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", digest[i]);
    hex += b;
  }
  if (hex != sha256 || offset != size)
    return fail(unavailable("image " + image + " does not match its recorded SHA-256",
                            {{"image", image}, {"reason", "image_checksum_mismatch"}}));
  if (::fsync(fd) != 0) return fail(io_error("cannot write", part));
  ::close(fd);
  if (::rename(part.c_str(), path.c_str()) != 0) {
    auto e = io_error("cannot rename", part);
    ::unlink(part.c_str());
    return e;
  }
  spdlog::info("fetched image {} ({} bytes) into {}", image, size, path);
  return path;
}

// --- BootMedia

BootMedia::BootMedia(std::string pool_dir, ImageCache& cache, DiskTool& tool)
    : pool_dir_(std::move(pool_dir)), cache_(cache), tool_(tool) {}

Status BootMedia::make_disk(const DomainDisk& disk, const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) return {};
  auto image = cache_.ensure(disk.image, disk.image_sha256, disk.image_size);
  if (!image) return image.take_error();
  const std::string part = path + ".part";
  ::unlink(part.c_str());
  const auto size = static_cast<std::uint64_t>(disk.size_gib) << 30;
  if (auto st = tool_.make_disk(*image, disk.image_format, part, size); !st) {
    ::unlink(part.c_str());
    return st;
  }
  ::chmod(part.c_str(), 0600);
  if (::rename(part.c_str(), path.c_str()) != 0) {
    auto e = io_error("cannot rename", part);
    ::unlink(part.c_str());
    return e;
  }
  spdlog::info("made disk {} from image {} ({} GiB)", path, disk.image, disk.size_gib);
  return {};
}

Result<std::string> BootMedia::cdrom(const CdromSpec& cdrom) {
  return cache_.ensure(cdrom.image, cdrom.image_sha256, cdrom.image_size);
}

Result<std::string> BootMedia::make_seed(const DomainSpec& spec) {
  if (!spec.cloud_init) return invalid("the domain has no cloud_init");
  auto files = cloud_init::seed_files(*spec.cloud_init, spec.uuid, spec.name);
  if (!files) return files.take_error();
  // A private directory per seed: the files may hold secrets.
  std::string tmpl = pool_dir_ + "/" + spec.uuid + "-seed.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return io_error("cannot make a directory in", pool_dir_);
  const std::string dir = tmpl;
  std::vector<std::string> paths{dir + "/user-data", dir + "/meta-data"};
  Status st = write_private(paths[0], files->user_data);
  if (st) st = write_private(paths[1], files->meta_data);
  if (st && !files->network_config.empty()) {
    paths.push_back(dir + "/network-config");
    st = write_private(paths.back(), files->network_config);
  }
  const std::string target = pool_dir_ + "/" + seed_name(spec.uuid);
  const std::string part = target + ".part";
  if (st) st = tool_.make_iso("cidata", paths, part);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!st) {
    ::unlink(part.c_str());
    return st.take_error();
  }
  ::chmod(part.c_str(), 0600);
  if (::rename(part.c_str(), target.c_str()) != 0) {
    auto e = io_error("cannot rename", part);
    ::unlink(part.c_str());
    return e;
  }
  return target;
}

}  // namespace kvmfleet::agent
