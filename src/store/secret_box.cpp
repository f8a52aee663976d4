#include "secret_box.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

namespace kvmfleet {
namespace {

constexpr std::size_t kNonceBytes = 12;
constexpr std::size_t kTagBytes = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Error sys_error(const std::string& what, const std::string& path) {
  return internal_error(what + " " + path + ": " + std::strerror(errno), {{"path", path}});
}

std::string base64(const std::vector<unsigned char>& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(),
                                static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Result<std::vector<unsigned char>> unbase64(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return invalid("sealed value is not base64");
  std::vector<unsigned char> out(in.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return invalid("sealed value is not base64");
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  for (std::size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) --len;
  out.resize(len);
  return out;
}

Status write_all(int fd, const unsigned char* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot write", path);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

}  // namespace

Status make_private_dirs(const std::string& dir) {
  if (dir.empty()) return {};
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  const auto parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty() && parent != dir)
    if (auto st = make_private_dirs(parent.string()); !st) return st;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("cannot create", dir);
  // mkdir's mode passes through the umask, which may only take bits away; set it
  // exactly anyway.
  if (::chmod(dir.c_str(), 0700) != 0) return sys_error("cannot chmod", dir);
  return {};
}

Status make_private_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)};
  if (f.fd < 0) return sys_error("cannot open", path);
  if (::fchmod(f.fd, 0600) != 0) return sys_error("cannot chmod", path);
  return {};
}

Result<SecretBox> SecretBox::load_or_create(const std::string& path) {
  std::array<unsigned char, kKeyBytes> key{};
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (f.fd < 0 && errno == ENOENT) {
    if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1)
      return internal_error("cannot draw a random key");
    const std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());
    Fd w{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
    if (w.fd < 0) return sys_error("cannot create", tmp);
    if (::fchmod(w.fd, 0600) != 0) return sys_error("cannot chmod", tmp);
    if (auto st = write_all(w.fd, key.data(), key.size(), tmp); !st) return st.take_error();
    if (::fsync(w.fd) != 0) return sys_error("cannot sync", tmp);
    // link() fails when another process made the key meanwhile: that key wins.
    if (::link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST)
      return sys_error("cannot create", path);
    ::unlink(tmp.c_str());
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  }
  if (f.fd < 0) return sys_error("cannot open", path);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return sys_error("cannot stat", path);
  if (!S_ISREG(st.st_mode) || st.st_size != static_cast<off_t>(kKeyBytes))
    return internal_error("key file " + path + " must hold exactly 32 bytes", {{"path", path}});
  if ((st.st_mode & 077) != 0 && ::fchmod(f.fd, 0600) != 0) return sys_error("cannot chmod", path);
  std::size_t got = 0;
  while (got < key.size()) {
    const ssize_t r = ::read(f.fd, key.data() + got, key.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return sys_error("cannot read", path);
    got += static_cast<std::size_t>(r);
  }
  return SecretBox(key);
}

Result<std::string> SecretBox::seal(std::string_view plain, std::string_view context) const {
  std::vector<unsigned char> out(kNonceBytes + plain.size() + kTagBytes);
  if (RAND_bytes(out.data(), static_cast<int>(kNonceBytes)) != 1)
    return internal_error("cannot draw a random nonce");
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), out.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + kNonceBytes, &len,
                        reinterpret_cast<const unsigned char*>(plain.data()),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + kNonceBytes + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes),
                          out.data() + kNonceBytes + plain.size()) != 1)
    return internal_error("cannot encrypt a secret");
  return std::string(kPrefix) + base64(out);
}

Result<std::string> SecretBox::open(std::string_view sealed, std::string_view context) const {
  if (!is_sealed(sealed)) return invalid("value is not sealed");
  auto raw = unbase64(sealed.substr(kPrefix.size()));
  if (!raw) return raw.take_error();
  if (raw->size() < kNonceBytes + kTagBytes) return invalid("sealed value is too short");
  const std::size_t n = raw->size() - kNonceBytes - kTagBytes;
  std::string plain(n, '\0');
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), raw->data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &len,
                        raw->data() + kNonceBytes, static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes),
                          raw->data() + kNonceBytes + n) != 1)
    return internal_error("cannot decrypt a secret");
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()) + len, &len) !=
      1)
    return invalid("sealed value does not authenticate (wrong key, place or data)");
  return plain;
}

}  // namespace kvmfleet
