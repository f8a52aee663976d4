#include "guest_runner.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

namespace kvmfleet::klab {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// How long past its own timeout a command may take to be reported: the agent polls
// every 100 ms and TCG guests are slow to start processes.
constexpr auto kReplySlack = 60s;

Status write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) return internal_error("cannot create " + p.string());
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) return internal_error("cannot write " + p.string());
  return ok_status();
}

std::string read_file(const fs::path& p, std::size_t limit, bool& truncated) {
  std::ifstream in(p, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  truncated = data.size() > limit;
  if (truncated) data.resize(limit);
  return data;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

nlohmann::json argv_json(const std::vector<std::string>& argv) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : argv) a.push_back(s);
  return a;
}

Error unsupported(const std::string& what) {
  return unavailable(
      what + " is not offered inside a kernel-lab guest; run a command that forks the daemon");
}

}  // namespace

std::string GuestRunner::next_id() {
  // Zero-padded wall-clock nanoseconds first: the agent runs requests in the order of
  // their names, also when several processes (a test, the klab CLI) send them.
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%020lld-%d-%u", static_cast<long long>(ns.count()),
                static_cast<int>(::getpid()), counter_.fetch_add(1));
  return buf;
}

Result<ProcessOutput> GuestRunner::run(const std::vector<std::string>& argv,
                                       const RunOptions& options) {
  if (argv.empty()) return invalid("empty argv");
  for (const auto& a : argv) {
    if (a.find('\0') != std::string::npos) return invalid("an argument holds a NUL byte");
  }
  std::vector<std::string> full;
  if (!options.env.empty() || !options.working_dir.empty()) {
    full.push_back("env");
    if (!options.working_dir.empty()) {
      full.push_back("-C");
      full.push_back(options.working_dir);
    }
    for (const auto& [k, v] : options.env) {
      if (k.empty() || k.find('=') != std::string::npos)
        return invalid("bad environment variable name: " + k);
      full.push_back(k + "=" + v);
    }
  }
  full.insert(full.end(), argv.begin(), argv.end());

  std::lock_guard lock(mu_);
  if (!process_alive(qemu_)) return unavailable("guest " + name_ + " is not running");

  const fs::path req = job_dir_ / "req";
  const fs::path out = job_dir_ / "out";
  const std::string id = next_id();
  if (options.input) {
    if (auto s = write_file(req / (id + ".stdin"), *options.input); !s.ok()) return s.take_error();
  }
  double seconds = std::chrono::duration<double>(options.timeout).count();
  {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.3f\n", seconds);
    if (auto s = write_file(req / (id + ".timeout"), buf); !s.ok()) return s.take_error();
  }
  std::string packed;
  for (const auto& a : full) {
    packed += a;
    packed += '\0';
  }
  if (auto s = write_file(req / (id + ".tmp"), packed); !s.ok()) return s.take_error();
  std::error_code ec;
  // The rename makes the request appear whole to the agent.
  fs::rename(req / (id + ".tmp"), req / (id + ".argv"), ec);
  if (ec) return internal_error("rename request: " + ec.message());

  const fs::path rc_path = out / (id + ".rc");
  auto deadline = std::chrono::steady_clock::now() + options.timeout + kReplySlack;
  auto pause = 5ms;
  int polls = 0;
  while (!fs::exists(rc_path)) {
    if (std::chrono::steady_clock::now() > deadline ||
        (++polls % 20 == 0 && !process_alive(qemu_))) {
      // Withdraw the request if the agent has not taken it yet.
      fs::remove(req / (id + ".argv"), ec);
      fs::remove(req / (id + ".stdin"), ec);
      fs::remove(req / (id + ".timeout"), ec);
      if (!process_alive(qemu_))
        return unavailable("guest " + name_ + " stopped while running " + argv[0]);
      return Error(ErrorCode::timeout, "guest " + name_ + " did not answer for " + argv[0],
                   {{"argv", argv_json(argv)}});
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 50ms);
  }

  ProcessOutput result;
  std::string rc_text;
  {
    std::ifstream in(rc_path);
    std::getline(in, rc_text);
  }
  result.out = read_file(out / (id + ".out"), options.output_limit, result.out_truncated);
  result.err = read_file(out / (id + ".err"), options.output_limit, result.err_truncated);
  for (const char* ext : {".rc", ".out", ".err"}) fs::remove(out / (id + ext), ec);

  rc_text = trim(rc_text);
  if (rc_text == "timeout") {
    return Error(ErrorCode::timeout,
                 argv[0] + " did not finish within " + std::to_string(options.timeout.count()) +
                     " ms in " + name_,
                 {{"argv", argv_json(argv)}, {"stdout", result.out}, {"stderr", result.err}});
  }
  try {
    result.exit_code = std::stoi(rc_text);
  } catch (...) {
    return internal_error("guest " + name_ + " wrote an odd exit status: " + rc_text);
  }
  return result;
}

Result<pid_t> GuestRunner::spawn(const std::vector<std::string>&, const SpawnOptions&) {
  return unsupported("spawn");
}
Result<ExitStatus> GuestRunner::wait(pid_t, std::chrono::milliseconds) {
  return unsupported("wait");
}
Status GuestRunner::kill(pid_t, int) {
  return unsupported("kill");
}
Result<ExitStatus> GuestRunner::terminate(pid_t, std::chrono::milliseconds) {
  return unsupported("terminate");
}

}  // namespace kvmfleet::klab
