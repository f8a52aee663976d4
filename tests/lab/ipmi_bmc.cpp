#include "ipmi_bmc.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

namespace kvmfleet::lab {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A UDP port free on loopback now.
int free_udp_port() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// Writes `text` to `path` whole (through a temporary and a rename).
void write_whole(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  std::ofstream(tmp) << text;
  fs::rename(tmp, path);
}

}  // namespace

Result<std::unique_ptr<IpmiBmc>> IpmiBmc::start(ProcessRunner& runner, const fs::path& dir,
                                                const std::string& password, BmcPower power) {
  if (!fs::exists(kIpmiSim)) return unavailable("openipmi is not installed (ipmi_sim)");
  std::error_code ec;
  fs::create_directories(dir / "state", ec);
  fs::create_directories(dir / "requests", ec);
  if (ec) return internal_error("making " + dir.string() + ": " + ec.message());
  std::unique_ptr<IpmiBmc> bmc(new IpmiBmc(runner, dir, std::move(power)));
  const std::string d = dir.string();
  {
    std::ofstream s(dir / "power.sh");
    s << "#!/bin/sh\n"
         "# ipmi_sim's chassis control: power.sh 0x20 get power | power.sh 0x20 set power 0|1\n"
         "# The request is handed to the test (requests/), which answers it.\n"
         "req='"
      << d
      << "/requests/'\"$$\"\n"
         "printf '%s %s\\n' \"$2\" \"$4\" > \"$req.tmp\" && mv \"$req.tmp\" \"$req\"\n"
         "i=0\n"
         "while [ ! -e \"$req.answer\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
         "cat \"$req.answer\" 2>/dev/null\n"
         "rm -f \"$req\" \"$req.answer\"\n"
         "exit 0\n";
  }
  fs::permissions(dir / "power.sh", fs::perms::owner_all, ec);
  bmc->port_ = free_udp_port();
  if (bmc->port_ <= 0) return unavailable("no free UDP port on loopback");
  std::ofstream(dir / "lan.conf") << "name \"kvmfleet-lab\"\n"
                                     "set_working_mc 0x20\n"
                                     "  startlan 1\n"
                                     "    addr 127.0.0.1 "
                                  << bmc->port_
                                  << "\n"
                                     "    priv_limit admin\n"
                                     "    allowed_auths_callback none md2 md5 straight\n"
                                     "    allowed_auths_user none md2 md5 straight\n"
                                     "    allowed_auths_operator none md2 md5 straight\n"
                                     "    allowed_auths_admin none md2 md5 straight\n"
                                     "    guid a123456789abcdefa123456789abcdef\n"
                                     "  endlan\n"
                                     "  chassis_control \""
                                  << d
                                  << "/power.sh 0x20\"\n"
                                     "user 2 true \""
                                  << kUser << "\" \"" << password
                                  << "\" admin 10 none md2 md5 straight\n";
  std::ofstream(dir / "sim.emu")
      << "mc_setbmc 0x20\n"
         "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
         "sel_enable 0x20 1000 0x0a\n"
         "mc_enable 0x20\n";
  bmc->server_ = std::thread([b = bmc.get()] { b->serve(); });
  SpawnOptions so;
  so.stdout_path = so.stderr_path = d + "/ipmi_sim.log";
  auto sim = runner.spawn(
      {kIpmiSim, "-c", d + "/lan.conf", "-f", d + "/sim.emu", "-s", d + "/state", "-n"}, so);
  if (!sim) return sim.take_error();
  bmc->sim_ = *sim;
  // Ready once it answers a power status over IPMI.
  for (int i = 0; i < 50; ++i) {
    RunOptions ro;
    ro.timeout = 10s;
    ro.env = {{"IPMI_PASSWORD", password}};
    auto r =
        runner.run({"ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p",
                    std::to_string(bmc->port_), "-U", kUser, "-E", "chassis", "power", "status"},
                   ro);
    if (r && r->success()) return bmc;
    std::this_thread::sleep_for(200ms);
  }
  return unavailable("ipmi_sim on 127.0.0.1:" + std::to_string(bmc->port_) + " did not answer");
}

IpmiBmc::~IpmiBmc() {
  if (sim_ > 0) (void)runner_.terminate(sim_, 2s);
  stop_ = true;
  if (server_.joinable()) server_.join();
}

std::map<std::string, std::string> IpmiBmc::fence_options(const std::string& password) const {
  return {{"ip", "127.0.0.1"}, {"ipport", std::to_string(port_)},
          {"username", kUser}, {"password", password},
          {"lanplus", "1"},    {"cipher", "3"}};
}

std::string IpmiBmc::requests() const {
  std::ifstream in(dir_ / "requests.log");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void IpmiBmc::serve() {
  while (!stop_) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_ / "requests", ec)) {
      const fs::path p = entry.path();
      if (p.has_extension() || fs::exists(p.string() + ".answer")) continue;
      std::ifstream in(p);
      std::string verb, arg;
      in >> verb >> arg;
      std::ofstream(dir_ / "requests.log", std::ios::app) << verb << " power " << arg << "\n";
      std::string answer;
      if (verb == "get") {
        answer = power_.is_on() ? "power:1\n" : "power:0\n";
      } else if (verb == "set" && arg == "0") {
        if (power_.is_on()) power_.power_off();
      } else if (verb == "set" && arg == "1") {
        if (!power_.is_on() && power_.power_on) power_.power_on();
      }
      write_whole(p.string() + ".answer", answer);
    }
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace kvmfleet::lab
