#pragma once

// Routes as data: a row per route (method, path pattern, role, accepted query keys,
// handler) and the router that finds a request's row. Matching is pure: no I/O, no
// authentication; Api::handle applies the rest of the row.

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/http/types.hpp"
#include "kvmfleet/http/websocket.hpp"
#include "kvmfleet/store/store.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvmfleet {
class Controller;
}

namespace kvmfleet::api {

// Who may do what. Agents may only use the agent endpoints.
enum class Need { anyone, viewer, operator_, admin, agent };

inline bool allowed(Role role, Need need) {
  switch (need) {
    case Need::anyone:
      return true;
    case Need::viewer:
      return role == Role::viewer || role == Role::operator_ || role == Role::admin;
    case Need::operator_:
      return role == Role::operator_ || role == Role::admin;
    case Need::admin:
      return role == Role::admin;
    case Need::agent:
      return role == Role::agent;
  }
  return false;
}

struct Call;  // one request in flight (src/api/call.hpp)
using Handler = void (*)(Controller& svc, Call& c);
// For a route whose body may be of any size: the sink its body streams into once the
// header passed every check (see Api::open_body); `handle` then serves the same route
// when its body was read whole.
using BodyOpener = Result<std::shared_ptr<http::BodySink>> (*)(Controller& svc, Call& c);
// For a WebSocket route: the handler its connection is handed to once the request passed
// every check (token, role, path, query: see Api::open_upgrade) and the capability's own
// (the VM runs...); an error is the HTTP answer instead of the upgrade. `handle` then
// answers the same route asked without an upgrade.
using UpgradeOpener = Result<std::shared_ptr<http::WebSocketHandler>> (*)(Controller& svc, Call& c);

// One route. A pattern's segments are literals or parameters named after their kind:
// {vm} (a VM id or name), {host} (a host name), {operation} (an operation id), {pool}
// (a storage pool name), {volume} (a volume id or name), {snapshot} (a snapshot id or
// name), {token} (a token id), {image} (an image name). The router checks each parameter by its
// kind before the handler runs, and refuses query keys not in `query`; "wait" is validated as well.
struct Route {
  http::Verb method;
  std::string_view pattern;
  Need need;
  std::vector<std::string_view> query;
  Handler handle;
  BodyOpener open_body = nullptr;        // set: the body is streamed (see BodyOpener)
  UpgradeOpener open_upgrade = nullptr;  // set: a WebSocket endpoint (see UpgradeOpener)
};

// Checks a bound path parameter against its kind: the 400 answer for a malformed one.
Status check_path_param(std::string_view kind, std::string_view value);

class Router {
 public:
  // Every route of one pattern.
  struct Resource {
    std::string pattern;
    std::vector<std::string> segments;  // a parameter is kept as "{kind}"
    std::vector<const Route*> routes;
    std::string allow;  // its methods, for the Allow header of a 405
    bool open = false;  // needs no token (all its routes need Need::anyone)

    const Route* find(http::Verb method) const;
  };
  struct Match {
    const Resource* resource = nullptr;
    std::vector<std::pair<std::string_view, std::string>> params;  // kind → segment
  };

  // Refuses (std::logic_error) a malformed pattern, an unknown parameter kind, a method
  // given twice for one pattern, two patterns that would match the same paths, and a
  // pattern with both open and protected routes.
  explicit Router(std::vector<Route> routes);
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // The resource whose pattern matches the path's segments, literal segments winning
  // over parameters; its parameters bound but not yet checked.
  std::optional<Match> match(const std::vector<std::string_view>& segments) const;

  const std::vector<Route>& routes() const { return routes_; }
  const std::vector<std::unique_ptr<Resource>>& resources() const { return resources_; }

 private:
  std::vector<Route> routes_;
  std::vector<std::unique_ptr<Resource>> resources_;
};

}  // namespace kvmfleet::api
