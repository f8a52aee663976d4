#include "kvmfleet/agent/console_relay.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

#include "kvmfleet/agent/protocol.hpp"

namespace kvmfleet::agent {

namespace proto = agent_protocol;

ConsoleRelay::~ConsoleRelay() {
  if (stream_) stream_->close();
}

void ConsoleRelay::on_open(std::shared_ptr<http::WebSocketChannel> channel) {
  // The sink holds the channel weakly: the socket's end frees the relay and the stream.
  std::weak_ptr<http::WebSocketChannel> weak = channel;
  ConsoleSink sink;
  sink.on_data = [weak](std::string bytes) {
    if (auto ch = weak.lock()) ch->send(std::move(bytes));
  };
  sink.on_end = [weak](std::string reason) {
    if (auto ch = weak.lock()) ch->close(std::move(reason));
  };
  auto stream = hv_.open_console(uuid_, std::move(sink));
  if (!stream) {
    spdlog::info("console {}: {}", uuid_, stream.error().message);
    channel->close(stream.error().message);
    return;
  }
  spdlog::info("console {}: opened", uuid_);
  std::lock_guard lk(mu_);
  stream_ = std::move(*stream);
}

void ConsoleRelay::on_message(std::string bytes) {
  std::lock_guard lk(mu_);
  if (stream_ && !bytes.empty()) stream_->write(std::move(bytes));
}

void ConsoleRelay::on_closed() {
  std::shared_ptr<ConsoleStream> stream;
  {
    std::lock_guard lk(mu_);
    stream = std::move(stream_);
  }
  if (stream) {
    stream->close();
    spdlog::info("console {}: closed", uuid_);
  }
}

ConsoleLogTail tail_lines(std::string_view log, int lines, bool starts_at_log_start) {
  ConsoleLogTail out;
  if (lines <= 0 || log.empty()) {
    out.truncated = !log.empty() || !starts_at_log_start;
    return out;
  }
  // Walk back over `lines` line ends; a final line without its newline counts as one.
  std::size_t pos = log.size();
  if (log.back() == '\n') --pos;
  int seen = 0;
  std::size_t start = 0;
  bool cut = false;
  while (true) {
    const auto nl = pos == 0 ? std::string_view::npos : log.rfind('\n', pos - 1);
    ++seen;
    if (nl == std::string_view::npos) {
      start = 0;
      break;
    }
    if (seen == lines) {
      start = nl + 1;
      cut = true;
      break;
    }
    pos = nl;
  }
  // The first line of a log read from its middle may be a fragment: it stays, marked
  // by "truncated".
  out.text = std::string(log.substr(start));
  out.lines = seen;
  out.truncated = cut || !starts_at_log_start;
  return out;
}

Result<int> parse_console_log_query(std::string_view query) {
  if (query.empty()) return proto::kConsoleLogDefaultLines;
  constexpr std::string_view key = "lines=";
  auto bad = [] {
    return invalid("the only query parameter is lines=N with N from 1 to " +
                       std::to_string(proto::kConsoleLogMaxLines),
                   {{"field", "lines"}});
  };
  if (!query.starts_with(key)) return bad();
  const auto digits = query.substr(key.size());
  int n = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || ec != std::errc{} || ptr != digits.data() + digits.size() || n < 1 ||
      n > proto::kConsoleLogMaxLines)
    return bad();
  return n;
}

}  // namespace kvmfleet::agent
