// kvmfleet-lab: the lab by hand.
//   kvmfleet-lab up N --dir D [--local] [-- CMD ARGS...]
//                                         N hosts (host1..hostN), left running; CMD
//                                         (e.g. kvmfleet-agent) is exec'd inside each
//   kvmfleet-lab down --dir D             removes everything the lab in D made
//   kvmfleet-lab cleanup [--base B]       removes labs under B (default /tmp) whose
//                                         owner process died
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lab.hpp"

namespace {

int usage() {
  std::cerr << "usage: kvmfleet-lab up N --dir DIR [--local] [-- COMMAND ARGS...]\n"
               "       kvmfleet-lab down --dir DIR\n"
               "       kvmfleet-lab cleanup [--base DIR]\n";
  return 2;
}

int fail(const kvmfleet::Error& e) {
  std::cerr << "kvmfleet-lab: " << e.message << "\n";
  if (!e.details.empty()) std::cerr << e.details.dump(2) << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvmfleet;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  const std::string cmd = args[0];
  std::string dir;
  std::string base = "/tmp";
  bool local = false;
  int count = -1;
  std::vector<std::string> command;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--" && cmd == "up") {
      command.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (args[i] == "--dir" && i + 1 < args.size()) {
      dir = args[++i];
    } else if (args[i] == "--base" && i + 1 < args.size()) {
      base = args[++i];
    } else if (args[i] == "--local") {
      local = true;
    } else if (cmd == "up" && count < 0 && !args[i].empty() &&
               args[i].find_first_not_of("0123456789") == std::string::npos) {
      count = std::atoi(args[i].c_str());
    } else {
      return usage();
    }
  }

  SystemProcessRunner runner;
  if (cmd == "up") {
    if (dir.empty() || count < 1 || count > 32) return usage();
    lab::LabOptions options;
    options.work_dir = dir;
    options.network = !local;
    auto created = lab::Lab::create(runner, options);
    if (!created.ok()) return fail(created.error());
    auto& lab = *created;
    nlohmann::json hosts = nlohmann::json::array();
    for (int i = 1; i <= count; ++i) {
      const std::string name = "host" + std::to_string(i);
      lab::HostOptions ho;
      ho.command = command;
      auto h = local ? lab->add_local_host(name, ho) : lab->add_host(name, ho);
      if (!h.ok()) return fail(h.error());  // the lab's destructor removes what was made
      hosts.push_back({{"name", h->name},
                       {"address", h->address},
                       {"libvirt_uri", h->libvirt_uri},
                       {"netns", h->netns},
                       {"init_pid", h->init_pid},
                       {"host_uuid", h->host_uuid},
                       {"dir", h->dir.string()}});
    }
    nlohmann::json out = {{"id", lab->id()},
                          {"work_dir", lab->work_dir().string()},
                          {"subnet", lab->subnet()},
                          {"bridge", lab->bridge()},
                          {"bridge_address", lab->bridge_address()},
                          {"hosts", hosts}};
    lab->detach();
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (cmd == "down") {
    if (dir.empty()) return usage();
    auto s = lab::Lab::cleanup_stale(runner, dir, /*force=*/true);
    if (!s.ok()) return fail(s.error());
    return 0;
  }
  if (cmd == "cleanup") {
    auto s = lab::Lab::cleanup_stale(runner, base);
    if (!s.ok()) return fail(s.error());
    return 0;
  }
  return usage();
}
