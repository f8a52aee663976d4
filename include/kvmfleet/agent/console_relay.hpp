#pragma once

// The agent's end of a VM's serial console: a WebSocket whose messages go to the
// guest's serial port and whose output comes from it, through the Hypervisor's console
// stream; and the reading of the console log. No I/O of its own.

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/http/websocket.hpp"

namespace kvmfleet::agent {

class ConsoleRelay final : public http::WebSocketHandler,
                           public std::enable_shared_from_this<ConsoleRelay> {
 public:
  ConsoleRelay(Hypervisor& hv, std::string uuid) : hv_(hv), uuid_(std::move(uuid)) {}
  ~ConsoleRelay() override;

  // Opens the console; a failure (not running, unknown) closes the socket with its
  // message as the reason.
  void on_open(std::shared_ptr<http::WebSocketChannel> channel) override;
  void on_message(std::string bytes) override;
  void on_closed() override;

 private:
  Hypervisor& hv_;
  std::string uuid_;
  std::mutex mu_;
  std::shared_ptr<ConsoleStream> stream_;
};

struct ConsoleLogTail {
  std::string text;
  int lines = 0;           // lines in text (a last line without a newline counts)
  bool truncated = false;  // the log had more before text
};

// The last `lines` lines of `log`: the whole log when `starts_at_log_start`, else only
// its end (then the answer is marked truncated).
ConsoleLogTail tail_lines(std::string_view log, int lines, bool starts_at_log_start);

// ?lines=N of a console log request: the whole query string (after '?'), empty for
// the default. Anything but "lines=N" with N in 1..kConsoleLogMaxLines is 400.
Result<int> parse_console_log_query(std::string_view query);

}  // namespace kvmfleet::agent
