#include "console.hpp"

#include <fcntl.h>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "errors.hpp"

namespace kvmfleet::agent::libvirt {
namespace {

constexpr int kReadEvents =
    VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;
constexpr std::size_t kMaxPendingInput = 64 * 1024;  // typed ahead of a stalled guest

std::string libvirt_message(const char* what) {
  const virError* err = virGetLastError();
  return std::string(what) + ": " + (err && err->message ? err->message : "failed");
}

// What the event loop's callback and the session share. The callback's reference is
// released by libvirt (free_state) once the callback is removed.
struct State {
  std::mutex mu;
  virStreamPtr stream = nullptr;
  ConsoleSink sink;
  std::string pending;  // input not yet taken by the stream
  bool ended = false;
  bool writable_wanted = false;

  ~State() {
    if (stream) virStreamFree(stream);
  }

  // Under mu. Stops the stream; the sink is told by the caller, outside the lock.
  void stop_locked() {
    ended = true;
    virStreamEventRemoveCallback(stream);
    virStreamAbort(stream);
  }
};

void free_state(void* opaque) {
  delete static_cast<std::shared_ptr<State>*>(opaque);
}

void on_event(virStreamPtr st, int events, void* opaque) {
  auto state = *static_cast<std::shared_ptr<State>*>(opaque);
  std::string out;
  std::string end_reason;
  {
    std::lock_guard lk(state->mu);
    if (state->ended) return;
    if (events & VIR_STREAM_EVENT_READABLE) {
      char buf[16 * 1024];
      while (out.size() < 256 * 1024) {
        const int n = virStreamRecv(st, buf, sizeof buf);
        if (n > 0) {
          out.append(buf, static_cast<std::size_t>(n));
          continue;
        }
        if (n == -2) break;  // nothing more now
        end_reason = n == 0 ? "the console was closed (the guest stopped or another session "
                              "took it over)"
                            : libvirt_message("console stream failed");
        break;
      }
    }
    if (end_reason.empty() && (events & VIR_STREAM_EVENT_WRITABLE)) {
      while (!state->pending.empty()) {
        const int n = virStreamSend(st, state->pending.data(), state->pending.size());
        if (n == -2) break;
        if (n < 0) {
          end_reason = libvirt_message("console stream failed");
          break;
        }
        state->pending.erase(0, static_cast<std::size_t>(n));
      }
      if (state->pending.empty() && state->writable_wanted) {
        state->writable_wanted = false;
        virStreamEventUpdateCallback(st, kReadEvents);
      }
    }
    if (end_reason.empty() && (events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP)))
      end_reason = "the console hung up (the guest stopped or another session took it over)";
    if (!end_reason.empty()) state->stop_locked();
  }
  // The sink is called outside the lock: it may call back into the session.
  if (!out.empty() && state->sink.on_data) state->sink.on_data(std::move(out));
  if (!end_reason.empty() && state->sink.on_end) state->sink.on_end(std::move(end_reason));
}

class Session final : public ConsoleStream {
 public:
  explicit Session(std::shared_ptr<State> state) : state_(std::move(state)) {}
  ~Session() override { close(); }

  void write(std::string bytes) override {
    std::lock_guard lk(state_->mu);
    if (state_->ended) return;
    if (state_->pending.size() + bytes.size() > kMaxPendingInput) {
      spdlog::warn("console input dropped: the guest is not reading its serial port");
      return;
    }
    state_->pending += bytes;
    if (!state_->writable_wanted) {
      state_->writable_wanted = true;
      virStreamEventUpdateCallback(state_->stream, kReadEvents | VIR_STREAM_EVENT_WRITABLE);
    }
  }

  void close() override {
    std::lock_guard lk(state_->mu);
    if (!state_->ended) state_->stop_locked();
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

Result<std::shared_ptr<ConsoleStream>> open_console(virConnectPtr conn, virDomainPtr dom,
                                                    ConsoleSink sink) {
  auto state = std::make_shared<State>();
  state->sink = std::move(sink);
  state->stream = virStreamNew(conn, VIR_STREAM_NONBLOCK);
  if (!state->stream) return internal_error(libvirt_message("creating a console stream"));
  if (virDomainOpenConsole(dom, nullptr, state->stream, VIR_DOMAIN_CONSOLE_FORCE) < 0) {
    const int code = last_libvirt_error_code();
    auto msg = libvirt_message("opening the console");
    if (code == VIR_ERR_OPERATION_INVALID) return conflict(msg);
    if (code == VIR_ERR_OPERATION_UNSUPPORTED || code == VIR_ERR_NO_SUPPORT)
      return Error(ErrorCode::conflict, msg, {{"reason", "console_unsupported"}});
    return internal_error(msg);
  }
  auto* opaque = new std::shared_ptr<State>(state);
  if (virStreamEventAddCallback(state->stream, kReadEvents, on_event, opaque, free_state) < 0) {
    delete opaque;
    virStreamAbort(state->stream);
    return internal_error(libvirt_message("watching the console stream"));
  }
  return std::shared_ptr<ConsoleStream>(std::make_shared<Session>(std::move(state)));
}

Result<std::string> read_file_tail(const std::string& path, std::size_t max_bytes) {
  if (path.empty()) return std::string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return std::string();
    return internal_error("cannot open the console log: " + std::string(std::strerror(errno)));
  }
  struct stat sb {};
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    return internal_error("the console log is not a regular file");
  }
  const auto size = static_cast<std::size_t>(sb.st_size);
  const std::size_t want = size < max_bytes ? size : max_bytes;
  std::string out(want, '\0');
  std::size_t got = 0;
  const auto offset = static_cast<off_t>(size - want);
  while (got < want) {
    const ssize_t n = ::pread(fd, out.data() + got, want - got, offset + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

}  // namespace kvmfleet::agent::libvirt
