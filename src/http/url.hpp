#pragma once

// An http(s):// URL split into what a connection needs. Internal to src/http: the
// clients (client.cpp, websocket_client.cpp) share it.

#include "kvmfleet/common/result.hpp"

#include <string>
#include <string_view>

namespace kvmfleet::http::detail {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

inline Result<Url> parse_url(const std::string& url) {
  Url u;
  std::string_view rest(url);
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    u.tls = true;
  } else {
    return invalid("URL must start with http:// or https://", {{"url", url}});
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return invalid("bad URL host", {{"url", url}});
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(":")) u.port = std::string(authority.substr(1));
  } else {
    const auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) return invalid("URL has no host", {{"url", url}});
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  return u;
}

}  // namespace kvmfleet::http::detail
