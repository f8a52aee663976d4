#pragma once

#include "kvmfleet/api/metrics.hpp"
#include "kvmfleet/api/page_cache.hpp"
#include "kvmfleet/api/router.hpp"
#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/http/types.hpp"

#include <memory>
#include <optional>
#include <vector>

namespace kvmfleet::api {

// The REST API v1 as a request→response function (Beast's shape): the route table
// (routes.hpp) decides who may call what; the work itself is recorded as an operation
// through the Controller's services. No network I/O here.
class Api {
 public:
  Api(Controller& service, Metrics& metrics);
  // The same over another route table (tests replace handlers with stubs).
  Api(Controller& service, Metrics& metrics, std::vector<Route> routes);
  void handle(http::Request&& req, http::Responder respond);
  // For the server's open_body (http::BodyOpener): the sink of a route that streams its
  // body (Route::open_body) once the request passes the checks handle() makes; nullptr
  // for every other request, whose body is read whole and goes to handle().
  Result<std::shared_ptr<http::BodySink>> open_body(const http::RequestHeader& header);
  // For the server's open_upgrade (http::UpgradeOpener): a WebSocket route's handler
  // (Route::open_upgrade) once the request passes the checks handle() makes, or their
  // refusal, before the upgrade; nullptr for a route that is no WebSocket endpoint, which
  // handle() then serves as a plain request.
  Result<std::shared_ptr<http::WebSocketHandler>> open_upgrade(const http::Request& req);

 private:
  void dispatch(Call& c);
  // The checks every request passes, in order (see dispatch): its route, or the refusal.
  Result<const Route*> admit(Call& c, std::optional<Router::Match>& match);
  // For a route that takes the connection over (a streamed body, a WebSocket): a call
  // like handle()'s over `req`, once it passed admit(); a refusal is counted.
  Result<std::shared_ptr<Call>> admitted_call(http::Request req);
  void count(const Call& c, unsigned status);

  Controller& service_;
  Metrics& metrics_;
  PageCache pages_;
  Router router_;
};

}  // namespace kvmfleet::api
