// kvmfleet: the admin command line.
#include "kvmfleet/cli/cli.hpp"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  kvmfleet::cli::Environment env;
  if (const char* u = std::getenv("KVMFLEET_URL")) env.url = u;
  if (const char* t = std::getenv("KVMFLEET_TOKEN")) env.token = t;
  env.terminal = ::isatty(STDERR_FILENO) == 1;
  kvmfleet::http::BeastClient client(
      std::getenv("KVMFLEET_CA_FILE") ? std::getenv("KVMFLEET_CA_FILE") : "");
  return kvmfleet::cli::run(args, env, client, std::cout, std::cerr);
}
