#pragma once

#include "kvmfleet/http/client.hpp"

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace kvmfleet::cli {

struct Environment {
  std::string url;        // KVMFLEET_URL
  std::string token;      // KVMFLEET_TOKEN
  bool terminal = false;  // stderr is a terminal: uploads show their progress there
  // `vm console`: relays the terminal to the console WebSocket at this URL with this
  // token, and returns the exit code (run_console_terminal); unset: not available.
  std::function<int(const std::string& url, const std::string& token)> console;
};

// Runs `kvmfleet ARGS...` against the API through `client`; returns the exit code
// (0 ok, 1 the API refused or failed, 2 bad usage).
int run(const std::vector<std::string>& args, const Environment& env, http::Client& client,
        std::ostream& out, std::ostream& err);

}  // namespace kvmfleet::cli
