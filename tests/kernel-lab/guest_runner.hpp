#pragma once

#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "lab_journal.hpp"

namespace kvmfleet::klab {

// Runs programs inside one kernel-lab guest, through the job dir its agent watches
// (see guest/agent.sh for the file protocol). Being a ProcessRunner, it lets code
// written against that interface (LVM, iSCSI, sanlock backends) run against the
// guest's real kernel unchanged.
//
// What differs from SystemProcessRunner:
// - exit_code is what the guest's shell saw: 128+N for a command that signal N ended
//   (term_signal stays 0);
// - RunOptions::timeout is enforced by the guest agent, which kills the command's
//   process group; RunOptions::env and working_dir go through env(1) in the guest;
// - commands on one guest run one after another (the agent is a single loop), so
//   concurrent callers queue; different guests run in parallel;
// - spawn/wait/kill/terminate are not offered: start daemons with a command that
//   forks them (they outlive the command and stop when the guest powers off).
class GuestRunner final : public ProcessRunner {
 public:
  GuestRunner(std::string guest_name, std::filesystem::path job_dir, ProcessId qemu)
      : name_(std::move(guest_name)), job_dir_(std::move(job_dir)), qemu_(qemu) {}

  using ProcessRunner::run;
  Result<ProcessOutput> run(const std::vector<std::string>& argv,
                            const RunOptions& options) override;
  Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& options) override;
  Result<ExitStatus> wait(pid_t pid, std::chrono::milliseconds timeout) override;
  Status kill(pid_t pid, int signal) override;
  Result<ExitStatus> terminate(pid_t pid, std::chrono::milliseconds grace) override;

  const std::string& name() const { return name_; }

 private:
  std::string next_id();

  std::string name_;
  std::filesystem::path job_dir_;
  ProcessId qemu_;
  std::mutex mu_;
  std::atomic<unsigned> counter_{0};
};

}  // namespace kvmfleet::klab
