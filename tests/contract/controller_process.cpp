#include "controller_process.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace kvmfleet::contract {

namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Result<std::unique_ptr<ControllerProcess>> ControllerProcess::start(const std::string& binary,
                                                                    const nlohmann::json& config) {
  std::unique_ptr<ControllerProcess> p(new ControllerProcess());
  const fs::path base = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
  std::string templ = (base / "kvmfleet-contract-XXXXXX").string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) return internal_error("mkdtemp failed in " + base.string());
  p->dir_ = buf.data();

  nlohmann::json cfg = {{"listen_address", "127.0.0.1"},
                        {"listen_port", 0},
                        {"database_path", p->dir_ + "/controller.db"},
                        {"bootstrap_token_file", p->dir_ + "/admin.token"}};
  cfg.merge_patch(config);
  {
    std::ofstream out(p->dir_ + "/controller.json");
    out << cfg.dump(2) << '\n';
    if (!out.good()) return internal_error("cannot write the controller config");
  }
  SpawnOptions opts;
  opts.stdout_path = p->dir_ + "/controller.log";
  opts.stderr_path = opts.stdout_path;
  auto pid = p->runner_.spawn(
      {binary, "--config", p->dir_ + "/controller.json", "--log-level", "info"}, opts);
  if (!pid) return pid.take_error();
  p->pid_ = *pid;
  if (auto st = p->wait_until_serving(); !st) return st.take_error();
  return p;
}

Status ControllerProcess::wait_until_serving() {
  // The controller logs the port the kernel gave it; that line also means the admin
  // token file is written (bootstrap comes before serving).
  constexpr std::string_view kServing = "serving http://127.0.0.1:";
  for (int i = 0; i < 1200; ++i) {  // a generous bound against a hung start
    if (auto exited = runner_.wait(pid_, std::chrono::milliseconds(0)); exited) {
      pid_ = -1;
      return internal_error("kvmfleet-controller exited during start (code " +
                            std::to_string(exited->exit_code) + "):\n" + log());
    }
    const std::string text = log();
    const auto at = text.find(kServing);
    if (at != std::string::npos) {
      std::size_t end = at + kServing.size();
      int port = 0;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end])))
        port = port * 10 + (text[end++] - '0');
      if (port <= 0 || port > 65535)
        return internal_error("cannot read the port from the log:\n" + text);
      port_ = static_cast<std::uint16_t>(port);
      admin_token_ = read_file(dir_ + "/admin.token");
      while (!admin_token_.empty() && (admin_token_.back() == '\n' || admin_token_.back() == '\r'))
        admin_token_.pop_back();
      if (admin_token_.empty()) return internal_error("the bootstrap admin token file is empty");
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Error(ErrorCode::timeout, "kvmfleet-controller did not start serving:\n" + log());
}

std::string ControllerProcess::log() const {
  return read_file(dir_ + "/controller.log");
}

ControllerProcess::~ControllerProcess() {
  if (pid_ > 0) (void)runner_.terminate(pid_, std::chrono::seconds(10));
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

}  // namespace kvmfleet::contract
