#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet {

// Options of a run-to-completion program.
struct RunOptions {
  // After this the child's process group gets SIGTERM, then SIGKILL after kill_grace.
  std::chrono::milliseconds timeout{std::chrono::seconds{60}};
  std::chrono::milliseconds kill_grace{std::chrono::seconds{2}};
  // Bytes kept of each of stdout and stderr; the rest is read and dropped so that a
  // chatty child never blocks on a full pipe.
  std::size_t output_limit = std::size_t{4} << 20;
  // Written to the child's stdin, which is then closed; without it stdin is /dev/null.
  std::optional<std::string> input;
  // Added to (or replacing entries of) the caller's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Working directory of the child; empty keeps the caller's.
  std::string working_dir;
};

// What a finished program left behind. A non-zero exit is a value here, not an error:
// callers decide what a given exit code means.
struct ProcessOutput {
  int exit_code = -1;   // exit status, or -1 when a signal ended the child
  int term_signal = 0;  // the signal that ended the child, or 0
  std::string out;
  std::string err;
  bool out_truncated = false;
  bool err_truncated = false;

  bool success() const { return exit_code == 0; }
};

// Options of a long-running child (a daemon kept in the foreground, an agent).
struct SpawnOptions {
  // Files that receive stdout and stderr (created, appended to); empty means /dev/null.
  std::string stdout_path;
  std::string stderr_path;
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;
};

// How a waited-for child ended.
struct ExitStatus {
  int exit_code = -1;
  int term_signal = 0;
};

// Every program kvmfleet runs goes through this interface, so that callers can be
// tested with a double and so that no caller is tempted to build a shell command.
// argv[0] is looked up in PATH; the arguments reach the program literally.
class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;

  // Runs argv to completion. Errors: invalid_argument (empty argv), unavailable
  // (program not found or not executable), timeout (the child was killed; details
  // hold what it had written), internal (the system refused pipes or fork).
  virtual Result<ProcessOutput> run(const std::vector<std::string>& argv,
                                    const RunOptions& options) = 0;
  Result<ProcessOutput> run(const std::vector<std::string>& argv) {
    return run(argv, RunOptions{});
  }

  // Starts argv in its own process group and returns its pid; the caller must reap it
  // with wait or terminate.
  virtual Result<pid_t> spawn(const std::vector<std::string>& argv,
                              const SpawnOptions& options) = 0;

  // Waits for a child started by spawn. timeout when it is still running after
  // `timeout` (zero polls once); not_found when pid is not a child of this process.
  virtual Result<ExitStatus> wait(pid_t pid, std::chrono::milliseconds timeout) = 0;

  // Sends a signal to pid (not to its group). not_found when no such process.
  virtual Status kill(pid_t pid, int signal) = 0;

  // SIGTERM, up to `grace` for the child to exit, then SIGKILL; always reaps it.
  virtual Result<ExitStatus> terminate(pid_t pid, std::chrono::milliseconds grace) = 0;
};

// The real thing: posix_spawnp, pipes and poll; never a shell.
class SystemProcessRunner final : public ProcessRunner {
 public:
  using ProcessRunner::run;
  Result<ProcessOutput> run(const std::vector<std::string>& argv,
                            const RunOptions& options) override;
  Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& options) override;
  Result<ExitStatus> wait(pid_t pid, std::chrono::milliseconds timeout) override;
  Status kill(pid_t pid, int signal) override;
  Result<ExitStatus> terminate(pid_t pid, std::chrono::milliseconds grace) override;
};

// Turns a non-zero exit into an internal error naming the program and its stderr;
// for callers to whom any failure of the program is unexpected.
Result<ProcessOutput> require_success(Result<ProcessOutput> result,
                                      const std::vector<std::string>& argv);

}  // namespace kvmfleet
