#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kvmfleet/common/process.hpp"

namespace kvmfleet {

// The test double of ProcessRunner (include/kvmfleet/common/process.hpp): records every
// argv and answers from a script, so that code driving lvm, iscsiadm or ip can be
// unit-tested without running them.
class FakeProcessRunner final : public ProcessRunner {
 public:
  using Handler = std::function<Result<ProcessOutput>(const std::vector<std::string>& argv)>;

  // The next call whose argv starts with `prefix` gets `answer` (FIFO per prefix);
  // the longest matching prefix wins.
  void expect(std::vector<std::string> prefix, Result<ProcessOutput> answer) {
    answers_[std::move(prefix)].push_back(std::move(answer));
  }
  // Answers for calls that match no expectation; by default exit 0 with no output.
  void set_default(Handler h) { default_ = std::move(h); }

  static ProcessOutput exited(int code, std::string out = {}, std::string err = {}) {
    ProcessOutput o;
    o.exit_code = code;
    o.out = std::move(out);
    o.err = std::move(err);
    return o;
  }

  const std::vector<std::vector<std::string>>& calls() const { return calls_; }
  const std::vector<std::vector<std::string>>& spawned() const { return spawned_; }
  const std::vector<std::pair<pid_t, int>>& signals() const { return signals_; }

  using ProcessRunner::run;
  Result<ProcessOutput> run(const std::vector<std::string>& argv,
                            const RunOptions& /*options*/) override {
    if (argv.empty()) return invalid("empty argument vector");
    calls_.push_back(argv);
    auto best = answers_.end();
    for (auto it = answers_.begin(); it != answers_.end(); ++it) {
      const auto& prefix = it->first;
      if (it->second.empty() || prefix.size() > argv.size()) continue;
      if (!std::equal(prefix.begin(), prefix.end(), argv.begin())) continue;
      if (best == answers_.end() || prefix.size() > best->first.size()) best = it;
    }
    if (best != answers_.end()) {
      auto answer = std::move(best->second.front());
      best->second.pop_front();
      return answer;
    }
    if (default_) return default_(argv);
    return exited(0);
  }

  Result<pid_t> spawn(const std::vector<std::string>& argv,
                      const SpawnOptions& /*options*/) override {
    if (argv.empty()) return invalid("empty argument vector");
    spawned_.push_back(argv);
    return next_pid_++;
  }
  Result<ExitStatus> wait(pid_t /*pid*/, std::chrono::milliseconds /*timeout*/) override {
    return ExitStatus{0, 0};
  }
  Status kill(pid_t pid, int signal) override {
    signals_.emplace_back(pid, signal);
    return ok_status();
  }
  Result<ExitStatus> terminate(pid_t pid, std::chrono::milliseconds /*grace*/) override {
    signals_.emplace_back(pid, 15);
    return ExitStatus{-1, 15};
  }

 private:
  std::map<std::vector<std::string>, std::deque<Result<ProcessOutput>>> answers_;
  Handler default_;
  std::vector<std::vector<std::string>> calls_;
  std::vector<std::vector<std::string>> spawned_;
  std::vector<std::pair<pid_t, int>> signals_;
  pid_t next_pid_ = 100000;
};

}  // namespace kvmfleet
