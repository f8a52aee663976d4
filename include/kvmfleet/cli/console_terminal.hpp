#pragma once

// `kvmfleet vm console NAME`: the terminal's raw bytes to the VM's console WebSocket
// and back, until Ctrl-] (or the console closes).

#include <ostream>
#include <string>

namespace kvmfleet::cli {

// `console_url`: http(s)://.../v1/vms/NAME/console. Returns the exit code: 0 when the
// user left or the console closed normally, 1 when it could not open or broke.
int run_console_terminal(const std::string& console_url, const std::string& token,
                         const std::string& ca_file, std::ostream& err);

}  // namespace kvmfleet::cli
