#include "kvmfleet/cli/console_terminal.hpp"

#include "kvmfleet/http/websocket_client.hpp"

#include <termios.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <memory>

namespace kvmfleet::cli {
namespace {

constexpr char kEscape = 0x1d;  // Ctrl-]

// Raw mode for as long as it lives, when stdin is a terminal.
class RawTerminal {
 public:
  RawTerminal() {
    if (::isatty(STDIN_FILENO) != 1 || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

void write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

int run_console_terminal(const std::string& console_url, const std::string& token,
                         const std::string& ca_file, std::ostream& err) {
  boost::asio::io_context ioc;
  boost::asio::posix::stream_descriptor input(ioc, ::dup(STDIN_FILENO));
  int code = 0;
  std::string end_message;
  http::WebSocketClientOptions options;
  options.ca_file = ca_file;
  options.message_limit = 1 << 20;
  http::WebSocketCallbacks callbacks;
  callbacks.on_open = [&] { err << "connected to the console; Ctrl-] leaves\r\n" << std::flush; };
  callbacks.on_message = [](std::string bytes) { write_all(STDOUT_FILENO, bytes); };
  callbacks.on_closed = [&](Status why) {
    if (!why) {
      code = 1;
      end_message = why.error().message;
    }
    boost::system::error_code ignored;
    input.cancel(ignored);
    ioc.stop();
  };
  RawTerminal raw;
  auto ws = http::connect_websocket(ioc, console_url, token, options, std::move(callbacks));
  auto buffer = std::make_shared<std::array<char, 4096>>();
  std::function<void()> read_input = [&] {
    input.async_read_some(boost::asio::buffer(*buffer),
                          [&](boost::system::error_code ec, std::size_t n) {
                            if (ec) {
                              ws->close();
                              return;
                            }
                            std::string bytes(buffer->data(), n);
                            const auto esc = bytes.find(kEscape);
                            if (esc != std::string::npos) {
                              if (esc > 0) ws->send(bytes.substr(0, esc));
                              ws->close();
                              return;
                            }
                            ws->send(std::move(bytes));
                            read_input();
                          });
  };
  read_input();
  ioc.run();
  if (!end_message.empty()) err << "\r\nkvmfleet: console: " << end_message << "\r\n";
  return code;
}

}  // namespace kvmfleet::cli
