#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "kvmfleet/metadata/metadata_fs.hpp"

namespace kvmfleet::metadata {
namespace {

Error errno_error(const std::string& what, int err) {
  std::string m = what + ": " + std::strerror(err);
  if (err == ENOENT) return not_found(std::move(m));
  return unavailable(std::move(m));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // close() reports write-back errors on NFS, so it is checked where data was written.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

bool plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

class PosixMetadataFs final : public MetadataFs {
 public:
  explicit PosixMetadataFs(std::string dir) : dir_(std::move(dir)) {}

  Status write_atomic(const std::string& name, std::string_view data) override {
    if (!plain_name(name)) return invalid("not a plain file name: " + name);
    std::string tmp = dir_ + "/" + std::string(kTempPrefix) + name + ".XXXXXX";
    Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (fd.get() < 0) return errno_error("creating a temp file in " + dir_, errno);
    auto fail = [&](const std::string& what) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return errno_error(what, err);
    };
    if (::fchmod(fd.get(), 0644) != 0) return fail("chmod " + tmp);
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("writing " + tmp);
      off += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return fail("fsync " + tmp);
    if (fd.close() != 0) return fail("closing " + tmp);
    const std::string path = dir_ + "/" + name;
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("renaming to " + path);
    return sync_dir();
  }

  Status remove(const std::string& name) override {
    if (!plain_name(name)) return invalid("not a plain file name: " + name);
    const std::string path = dir_ + "/" + name;
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) return {};
      return errno_error("removing " + path, errno);
    }
    return sync_dir();
  }

  Result<std::string> read(const std::string& name, std::size_t max_bytes) override {
    if (!plain_name(name)) return invalid("not a plain file name: " + name);
    const std::string path = dir_ + "/" + name;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) return errno_error("opening " + path, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_error("stat " + path, errno);
    if (!S_ISREG(st.st_mode)) return invalid(path + " is not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
      return invalid(path + " is larger than " + std::to_string(max_bytes) + " bytes");
    std::string out;
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("reading " + path, errno);
      if (n == 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      if (out.size() > max_bytes)
        return invalid(path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    return out;
  }

  Result<std::vector<std::string>> list() override {
    DIR* d = ::opendir(dir_.c_str());
    if (!d) return errno_error("listing " + dir_, errno);
    std::vector<std::string> out;
    errno = 0;
    while (const dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(std::move(n));
      errno = 0;
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return errno_error("listing " + dir_, err);
    return out;
  }

 private:
  Status sync_dir() {
    Fd dfd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() < 0) return errno_error("opening " + dir_, errno);
    if (::fsync(dfd.get()) != 0 && errno != EINVAL) return errno_error("fsync " + dir_, errno);
    return {};
  }

  std::string dir_;
};

}  // namespace

std::shared_ptr<MetadataFs> make_posix_metadata_fs(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return std::make_shared<PosixMetadataFs>(std::move(dir));
}

}  // namespace kvmfleet::metadata
