#include "kvmfleet/common/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace kvmfleet {
namespace {

using steady = std::chrono::steady_clock;

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// glibc 2.36's <sys/pidfd.h> lacks C linkage for C++, so the system call directly.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

std::string errno_text(int err) {
  return std::strerror(err);
}

nlohmann::json argv_json(const std::vector<std::string>& argv) {
  return nlohmann::json(argv);
}

// The caller's environment with `overrides` applied; kept as strings for execve.
std::vector<std::string> build_env(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto key = entry.substr(0, entry.find('='));
    bool replaced = std::any_of(overrides.begin(), overrides.end(),
                                [&](const auto& kv) { return kv.first == key; });
    if (!replaced) env.emplace_back(entry);
  }
  for (const auto& [k, v] : overrides) env.push_back(k + "=" + v);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

ExitStatus decode_status(int status) {
  ExitStatus st;
  if (WIFEXITED(status)) {
    st.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    st.term_signal = WTERMSIG(status);
  }
  return st;
}

// Reaps pid if it has exited; nullopt while it runs. ECHILD is reported through `err`.
std::optional<ExitStatus> try_reap(pid_t pid, int* err) {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode_status(status);
    if (r == 0) return std::nullopt;
    if (errno == EINTR) continue;
    *err = errno;
    return std::nullopt;
  }
}

ExitStatus reap_blocking(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return {};
  }
  return decode_status(status);
}

int remaining_ms(steady::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left, 1'000'000));
}

// Waits until pid exits or the deadline passes. pidfd wakes us exactly at exit; a
// kernel without pidfd_open gets short sleeps instead.
void wait_exit_or_deadline(pid_t pid, steady::time_point deadline) {
  Fd pidfd(open_pidfd(pid));
  if (pidfd.valid()) {
    pollfd p{pidfd.get(), POLLIN, 0};
    while (::poll(&p, 1, remaining_ms(deadline)) < 0 && errno == EINTR) {
    }
    return;
  }
  while (steady::now() < deadline) {
    if (::kill(pid, 0) != 0) return;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Spawn attributes shared by run and spawn: own process group (so a timeout can kill
// the whole tree), default signal dispositions and an empty signal mask.
class SpawnAttr {
 public:
  SpawnAttr() {
    ::posix_spawnattr_init(&attr_);
    sigset_t all;
    sigset_t none;
    sigfillset(&all);
    sigemptyset(&none);
    ::posix_spawnattr_setsigdefault(&attr_, &all);
    ::posix_spawnattr_setsigmask(&attr_, &none);
    ::posix_spawnattr_setpgroup(&attr_, 0);
    ::posix_spawnattr_setflags(
        &attr_, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnAttr() { ::posix_spawnattr_destroy(&attr_); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

class FileActions {
 public:
  FileActions() { ::posix_spawn_file_actions_init(&fa_); }
  ~FileActions() { ::posix_spawn_file_actions_destroy(&fa_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

Error spawn_error(int rc, const std::vector<std::string>& argv) {
  auto details = nlohmann::json{{"argv", argv_json(argv)}, {"errno", errno_text(rc)}};
  if (rc == ENOENT || rc == EACCES || rc == ENOEXEC || rc == ENOTDIR || rc == ELOOP) {
    return {ErrorCode::unavailable, "cannot run " + argv[0] + ": " + errno_text(rc), details};
  }
  return internal_error("cannot start " + argv[0] + ": " + errno_text(rc), details);
}

// One output stream of the child, kept up to a limit.
struct Capture {
  Fd fd;
  std::string* text = nullptr;
  bool* truncated = nullptr;
  std::size_t limit = 0;

  // Reads what is available; returns false at end of file or on error.
  bool drain() {
    std::array<char, 16384> buf{};
    for (;;) {
      ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n > 0) {
        auto take = std::min<std::size_t>(static_cast<std::size_t>(n),
                                          limit - std::min(limit, text->size()));
        text->append(buf.data(), take);
        if (take < static_cast<std::size_t>(n)) *truncated = true;
        continue;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }
};

}  // namespace

Result<ProcessOutput> SystemProcessRunner::run(const std::vector<std::string>& argv,
                                               const RunOptions& options) {
  if (argv.empty() || argv[0].empty()) return invalid("empty argument vector");

  std::array<int, 2> out_pipe{-1, -1};
  std::array<int, 2> err_pipe{-1, -1};
  if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0) return internal_error("pipe: " + errno_text(errno));
  Fd out_r(out_pipe[0]);
  Fd out_w(out_pipe[1]);
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) return internal_error("pipe: " + errno_text(errno));
  Fd err_r(err_pipe[0]);
  Fd err_w(err_pipe[1]);
  // stdin is a socket so that writing to a child that stopped reading yields EPIPE
  // (MSG_NOSIGNAL) instead of a SIGPIPE that would kill the caller.
  Fd in_parent;
  Fd in_child;
  if (options.input) {
    std::array<int, 2> sp{-1, -1};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp.data()) != 0)
      return internal_error("socketpair: " + errno_text(errno));
    in_parent = Fd(sp[0]);
    in_child = Fd(sp[1]);
    ::shutdown(in_child.get(), SHUT_WR);
  }

  FileActions fa;
  if (in_child.valid()) {
    ::posix_spawn_file_actions_adddup2(fa.get(), in_child.get(), STDIN_FILENO);
  } else {
    ::posix_spawn_file_actions_addopen(fa.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  ::posix_spawn_file_actions_adddup2(fa.get(), out_w.get(), STDOUT_FILENO);
  ::posix_spawn_file_actions_adddup2(fa.get(), err_w.get(), STDERR_FILENO);
  if (!options.working_dir.empty())
    ::posix_spawn_file_actions_addchdir_np(fa.get(), options.working_dir.c_str());

  SpawnAttr attr;
  std::vector<std::string> args = argv;
  std::vector<std::string> env = build_env(options.env);
  auto c_args = c_strings(args);
  auto c_env = c_strings(env);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0].c_str(), fa.get(), attr.get(), c_args.data(), c_env.data());
  if (rc != 0) return spawn_error(rc, argv);
  out_w.reset();
  err_w.reset();
  in_child.reset();

  ProcessOutput result;
  std::array<Capture, 2> caps;
  caps[0] = Capture{std::move(out_r), &result.out, &result.out_truncated, options.output_limit};
  caps[1] = Capture{std::move(err_r), &result.err, &result.err_truncated, options.output_limit};
  for (auto& c : caps) ::fcntl(c.fd.get(), F_SETFL, ::fcntl(c.fd.get(), F_GETFL) | O_NONBLOCK);
  std::string_view pending_input =
      options.input ? std::string_view(*options.input) : std::string_view{};
  if (in_parent.valid()) {
    ::fcntl(in_parent.get(), F_SETFL, ::fcntl(in_parent.get(), F_GETFL) | O_NONBLOCK);
    if (pending_input.empty()) in_parent.reset();
  }
  Fd pidfd(open_pidfd(pid));

  auto deadline = steady::now() + options.timeout;
  bool timed_out = false;
  bool term_sent = false;
  std::optional<ExitStatus> status;
  int reap_err = 0;

  for (;;) {
    if (!status) status = try_reap(pid, &reap_err);
    if (status) {
      // The child is gone; whatever it wrote is in the pipes. Descendants that kept
      // the pipes open (a daemon that forked) must not hold us up.
      for (auto& c : caps) {
        if (c.fd.valid()) c.drain();
        c.fd.reset();
      }
      break;
    }
    if (reap_err != 0) return internal_error("waitpid: " + errno_text(reap_err));

    auto now = steady::now();
    if (now >= deadline) {
      if (!term_sent) {
        timed_out = true;
        term_sent = true;
        ::kill(-pid, SIGTERM);
        deadline = now + options.kill_grace;
        continue;
      }
      ::kill(-pid, SIGKILL);
      status = reap_blocking(pid);
      continue;
    }

    std::vector<pollfd> fds;
    std::vector<int> who;  // 0,1: captures; 2: stdin; 3: pidfd
    for (int i = 0; i < 2; ++i) {
      if (caps[static_cast<std::size_t>(i)].fd.valid()) {
        fds.push_back({caps[static_cast<std::size_t>(i)].fd.get(), POLLIN, 0});
        who.push_back(i);
      }
    }
    if (in_parent.valid()) {
      fds.push_back({in_parent.get(), POLLOUT, 0});
      who.push_back(2);
    }
    if (pidfd.valid()) {
      fds.push_back({pidfd.get(), POLLIN, 0});
      who.push_back(3);
    }
    // Without a pidfd the exit of a child whose pipes stay open is noticed by polling.
    int wait_ms = remaining_ms(deadline);
    if (!pidfd.valid()) wait_ms = std::min(wait_ms, 20);
    int n = ::poll(fds.data(), fds.size(), wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return internal_error("poll: " + errno_text(errno));
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      if (who[i] < 2) {
        auto& c = caps[static_cast<std::size_t>(who[i])];
        if (!c.drain()) c.fd.reset();
      } else if (who[i] == 2) {
        ssize_t w =
            ::send(in_parent.get(), pending_input.data(), pending_input.size(), MSG_NOSIGNAL);
        if (w > 0) {
          pending_input.remove_prefix(static_cast<std::size_t>(w));
          if (pending_input.empty()) in_parent.reset();
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          in_parent.reset();  // the child closed its stdin; the rest is not wanted
        }
      }
      // who == 3: the pidfd became readable, the reap at the top of the loop follows.
    }
  }

  result.exit_code = status->exit_code;
  result.term_signal = status->term_signal;
  if (timed_out) {
    ::kill(-pid, SIGKILL);  // descendants left in the group
    return Error(
        ErrorCode::timeout,
        argv[0] + " did not finish within " + std::to_string(options.timeout.count()) + " ms",
        {{"argv", argv_json(argv)}, {"stdout", result.out}, {"stderr", result.err}});
  }
  return result;
}

Result<pid_t> SystemProcessRunner::spawn(const std::vector<std::string>& argv,
                                         const SpawnOptions& options) {
  if (argv.empty() || argv[0].empty()) return invalid("empty argument vector");
  FileActions fa;
  ::posix_spawn_file_actions_addopen(fa.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  constexpr int kOutFlags = O_WRONLY | O_CREAT | O_APPEND;
  const std::string& out =
      options.stdout_path.empty() ? std::string("/dev/null") : options.stdout_path;
  ::posix_spawn_file_actions_addopen(fa.get(), STDOUT_FILENO, out.c_str(), kOutFlags, 0644);
  if (options.stderr_path == options.stdout_path) {
    ::posix_spawn_file_actions_adddup2(fa.get(), STDOUT_FILENO, STDERR_FILENO);
  } else {
    const std::string& err =
        options.stderr_path.empty() ? std::string("/dev/null") : options.stderr_path;
    ::posix_spawn_file_actions_addopen(fa.get(), STDERR_FILENO, err.c_str(), kOutFlags, 0644);
  }
  if (!options.working_dir.empty())
    ::posix_spawn_file_actions_addchdir_np(fa.get(), options.working_dir.c_str());

  SpawnAttr attr;
  std::vector<std::string> args = argv;
  std::vector<std::string> env = build_env(options.env);
  auto c_args = c_strings(args);
  auto c_env = c_strings(env);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0].c_str(), fa.get(), attr.get(), c_args.data(), c_env.data());
  if (rc != 0) return spawn_error(rc, argv);
  return pid;
}

Result<ExitStatus> SystemProcessRunner::wait(pid_t pid, std::chrono::milliseconds timeout) {
  if (pid <= 0) return invalid("bad pid " + std::to_string(pid));
  int err = 0;
  if (auto st = try_reap(pid, &err)) return *st;
  if (err != 0)
    return not_found("process " + std::to_string(pid) + " is not a child: " + errno_text(err));
  if (timeout.count() > 0) {
    wait_exit_or_deadline(pid, steady::now() + timeout);
    if (auto st = try_reap(pid, &err)) return *st;
    if (err != 0)
      return not_found("process " + std::to_string(pid) + " is not a child: " + errno_text(err));
  }
  return Error(ErrorCode::timeout, "process " + std::to_string(pid) + " still running");
}

Status SystemProcessRunner::kill(pid_t pid, int signal) {
  if (pid <= 0) return invalid("bad pid " + std::to_string(pid));
  if (::kill(pid, signal) != 0) {
    if (errno == ESRCH) return not_found("no process " + std::to_string(pid));
    return internal_error("kill " + std::to_string(pid) + ": " + errno_text(errno));
  }
  return ok_status();
}

Result<ExitStatus> SystemProcessRunner::terminate(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return invalid("bad pid " + std::to_string(pid));
  int err = 0;
  if (auto st = try_reap(pid, &err)) return *st;
  if (err != 0)
    return not_found("process " + std::to_string(pid) + " is not a child: " + errno_text(err));
  ::kill(pid, SIGTERM);
  auto waited = wait(pid, grace);
  if (waited.ok()) return waited;
  ::kill(pid, SIGKILL);
  return reap_blocking(pid);
}

Result<ProcessOutput> require_success(Result<ProcessOutput> result,
                                      const std::vector<std::string>& argv) {
  if (!result.ok()) return result;
  if (result->success()) return result;
  std::string why = result->term_signal != 0
                        ? "killed by signal " + std::to_string(result->term_signal)
                        : "exit code " + std::to_string(result->exit_code);
  std::string err = result->err;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  return internal_error(
      argv.at(0) + " failed (" + why + ")" + (err.empty() ? "" : ": " + err),
      {{"argv", argv_json(argv)}, {"exit_code", result->exit_code}, {"stderr", result->err}});
}

}  // namespace kvmfleet
