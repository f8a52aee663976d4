// kvmfleet: the admin command line.
#include "kvmfleet/cli/cli.hpp"
#include "kvmfleet/cli/console_terminal.hpp"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  kvmfleet::cli::Environment env;
  if (const char* u = std::getenv("KVMFLEET_URL")) env.url = u;
  if (const char* t = std::getenv("KVMFLEET_TOKEN")) env.token = t;
  env.terminal = ::isatty(STDERR_FILENO) == 1;
  const std::string ca_file =
      std::getenv("KVMFLEET_CA_FILE") ? std::getenv("KVMFLEET_CA_FILE") : "";
  kvmfleet::http::BeastClient client(ca_file);
  env.console = [&ca_file](const std::string& url, const std::string& token) {
    return kvmfleet::cli::run_console_terminal(url, token, ca_file, std::cerr);
  };
  return kvmfleet::cli::run(args, env, client, std::cout, std::cerr);
}
