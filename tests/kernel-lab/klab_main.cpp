// klab: the kernel lab by hand. `klab up 2`, then `klab exec 1 -- lvs`, then `klab down`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "kernel_lab.hpp"

namespace {

using kvmfleet::klab::KernelLab;
using kvmfleet::klab::LabOptions;

constexpr const char* kUsage = R"(usage: klab [--name NAME] [--state-root DIR] COMMAND ...
  up K [--memory MIB]                 boot K guests; the lab stays until `klab down`
  exec N [--timeout SEC] -- PROG ARG...
                                      run PROG in guest N (1-based): its stdout and
                                      stderr are printed, its exit status is klab's
                                      (124 when it ran out of time; klab's own
                                      failures exit 2); klab's stdin, if not a tty,
                                      is PROG's
  lun NAME SIZE_MIB                   add a tgtd target NAME with one LUN of SIZE_MIB
  status                              print the lab's description (JSON)
  down                                tear the lab down by its journal
  cleanup                             tear down every lab whose owner has died
NAME defaults to $KVMFLEET_KLAB_NAME or "default".
)";

int fail(const kvmfleet::Error& e) {
  std::cerr << "klab: " << kvmfleet::to_string(e.code) << ": " << e.message << "\n";
  return 2;
}

int usage() {
  std::cerr << kUsage;
  return 2;
}

bool to_int(const std::string& s, long long& out) {
  try {
    std::size_t used = 0;
    out = std::stoll(s, &used);
    return used == s.size();
  } catch (...) {
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  LabOptions options;
  options.persistent = true;
  if (const char* n = std::getenv("KVMFLEET_KLAB_NAME")) options.name = n;

  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    if (args[i] == "--name" && i + 1 < args.size()) {
      options.name = args[++i];
    } else if (args[i] == "--state-root" && i + 1 < args.size()) {
      options.state_root = args[++i];
    } else if (args[i] == "-h" || args[i] == "--help") {
      std::cout << kUsage;
      return 0;
    } else {
      break;
    }
  }
  if (i >= args.size()) return usage();
  const std::string command = args[i++];
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());

  if (command == "up") {
    long long k = 0;
    if (rest.empty() || !to_int(rest[0], k)) return usage();
    options.guests = static_cast<int>(k);
    for (std::size_t j = 1; j < rest.size(); ++j) {
      long long mib = 0;
      if (rest[j] == "--memory" && j + 1 < rest.size() && to_int(rest[j + 1], mib)) {
        options.memory_mib = static_cast<int>(mib);
        ++j;
      } else {
        return usage();
      }
    }
    auto lab = KernelLab::up(options);
    if (!lab.ok()) return fail(lab.error());
    std::cout << "lab " << (*lab)->name() << ": kernel " << (*lab)->kernel_version() << ", "
              << (*lab)->guest_count() << " guests ready in " << (*lab)->boot_time().count()
              << " ms; netns " << (*lab)->netns() << ", tgtd at " << KernelLab::kBridgeAddress
              << ":3260\n";
    for (int g = 1; g <= (*lab)->guest_count(); ++g) {
      const auto& info = (*lab)->guest(g);
      std::cout << "  " << g << ": " << info.hostname << " " << info.address
                << " host_id=" << info.host_id << " qemu pid " << info.qemu.pid << " console "
                << info.console_log.string() << "\n";
    }
    return 0;
  }
  if (command == "exec") {
    long long n = 0;
    long long timeout = 600;
    std::size_t j = 0;
    if (rest.empty() || !to_int(rest[0], n)) return usage();
    for (j = 1; j < rest.size() && rest[j] != "--"; ++j) {
      if (rest[j] == "--timeout" && j + 1 < rest.size() && to_int(rest[j + 1], timeout)) {
        ++j;
      } else {
        return usage();
      }
    }
    if (j >= rest.size() || j + 1 >= rest.size()) return usage();
    std::vector<std::string> prog(rest.begin() + static_cast<std::ptrdiff_t>(j + 1), rest.end());
    auto lab = KernelLab::attach(options.name, options.state_root);
    if (!lab.ok()) return fail(lab.error());
    kvmfleet::RunOptions ro;
    ro.timeout = std::chrono::seconds(timeout);
    // Whatever klab itself is given on stdin goes to the program when it is not a tty.
    if (!::isatty(0)) {
      std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
      ro.input = std::move(in);
    }
    auto out = (*lab)->exec(static_cast<int>(n), prog, ro);
    if (!out.ok()) {
      fail(out.error());
      // As timeout(1) does.
      return out.error().code == kvmfleet::ErrorCode::timeout ? 124 : 2;
    }
    std::cout << out->out << std::flush;
    std::cerr << out->err << std::flush;
    return out->exit_code;
  }
  if (command == "lun") {
    long long mib = 0;
    if (rest.size() != 2 || !to_int(rest[1], mib) || mib <= 0) return usage();
    auto lab = KernelLab::attach(options.name, options.state_root);
    if (!lab.ok()) return fail(lab.error());
    auto lun = (*lab)->add_lun(rest[0], static_cast<std::uint64_t>(mib) << 20);
    if (!lun.ok()) return fail(lun.error());
    std::cout << lun->iqn << " " << lun->portal << " lun 1 (" << lun->backing_file.string()
              << ")\n";
    return 0;
  }
  if (command == "status") {
    std::ifstream in(options.state_root / options.name / "lab.json");
    if (!in) {
      std::cerr << "klab: no lab " << options.name << "\n";
      return 1;
    }
    std::cout << in.rdbuf();
    return 0;
  }
  if (command == "down") {
    auto s = KernelLab::destroy(options.name, options.state_root);
    if (!s.ok()) return fail(s.error());
    return 0;
  }
  if (command == "cleanup") {
    auto s = KernelLab::cleanup_stale(options.state_root);
    if (!s.ok()) return fail(s.error());
    return 0;
  }
  return usage();
}
