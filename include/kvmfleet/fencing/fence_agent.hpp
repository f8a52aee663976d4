#pragma once

// Fence agents: the programs of the fence-agents family (fence_ipmilan, fence_redfish,
// fence_virsh, ...) that power a host off, on, or tell its power state. kvmfleet runs
// one by argument vector, never through a shell, with the fence-agents protocol: its
// options as `key=value` lines on stdin, `action=<action>` among them. Exit codes:
// 0 = done (for `status`: the power is on), 2 = for `status`: the power is off, anything
// else = failed.

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace kvmfleet::fencing {

enum class FenceAction { off, on, reboot, status, monitor };
std::string_view to_string(FenceAction a);

enum class PowerStatus { on, off, unknown };
std::string_view to_string(PowerStatus s);

// Limits on what reaches a fence agent's stdin.
inline constexpr std::size_t kMaxOptions = 64;
inline constexpr std::size_t kMaxKeyBytes = 64;
inline constexpr std::size_t kMaxValueBytes = 1024;
// How much of an agent's output is kept (its end: where fence agents say why).
inline constexpr std::size_t kOutputTailBytes = 2048;

// `^fence_[a-z0-9_]+$`, at most 64 characters.
Status check_agent_name(std::string_view agent);
// A key: `^[a-z][a-z0-9_]*$` up to kMaxKeyBytes, not `action` (kvmfleet sets it per call).
// A value: up to kMaxValueBytes, no line break, no NUL, no other control character.
// Errors are invalid_argument with details.reason.
Status check_option(std::string_view key, std::string_view value);
// Whether an option of a fence agent is a secret (write-only, sealed at rest, never shown
// or logged): the table of the fence-agents family's secret options, and any key that
// names a password, a secret or a token.
bool is_secret_option(std::string_view key);

struct FenceRequest {
  std::string agent;  // e.g. fence_ipmilan
  FenceAction action = FenceAction::status;
  std::map<std::string, std::string> options;  // secrets included
  std::chrono::milliseconds timeout{std::chrono::seconds{60}};
};

struct FenceResult {
  int exit_code = -1;  // -1: killed (timeout) or ended by a signal
  // For status and monitor: what the exit code says; unknown otherwise.
  PowerStatus status = PowerStatus::unknown;
  bool timed_out = false;
  // The end of what the agent wrote (stderr after stdout), secret values masked.
  std::string output_tail;
  bool ok() const { return !timed_out && exit_code == 0; }
};

// Runs fence agents: one interface, the real implementation below and one double
// (tests/doubles/fencing/fake_fence_agent.hpp).
class FenceAgent {
 public:
  virtual ~FenceAgent() = default;
  // Errors: invalid_argument (a bad name or option), unavailable (no such agent, or it
  // cannot be started). An agent that ran is a result, whatever its exit code.
  virtual Result<FenceResult> run(const FenceRequest& request) = 0;
  // Whether the agent exists here (not_found naming it otherwise).
  virtual Status check_available(const std::string& agent) = 0;
};

// The real thing: `<agent_dir>/<agent>` through a ProcessRunner.
class CommandFenceAgent final : public FenceAgent {
 public:
  explicit CommandFenceAgent(ProcessRunner& processes, std::string agent_dir = "/usr/sbin")
      : processes_(processes), agent_dir_(std::move(agent_dir)) {}
  Result<FenceResult> run(const FenceRequest& request) override;
  Status check_available(const std::string& agent) override;

 private:
  ProcessRunner& processes_;
  std::string agent_dir_;
};

// What the agent reads on stdin: `action=<a>` then each option, one per line. The
// arguments must have passed check_option.
std::string fence_input(FenceAction action, const std::map<std::string, std::string>& options);
// The power status an exit code reports for `action` (status/monitor only).
PowerStatus status_of(FenceAction action, int exit_code);
// The last `limit` bytes of `text` with every secret value of `options` masked.
std::string masked_tail(std::string text, const std::map<std::string, std::string>& options,
                        std::size_t limit = kOutputTailBytes);

}  // namespace kvmfleet::fencing
