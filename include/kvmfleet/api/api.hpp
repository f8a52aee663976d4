#pragma once

#include "kvmfleet/api/metrics.hpp"
#include "kvmfleet/api/page_cache.hpp"
#include "kvmfleet/api/router.hpp"
#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/http/types.hpp"

#include <memory>
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

 private:
  void dispatch(Call& c);

  Controller& service_;
  Metrics& metrics_;
  PageCache pages_;
  Router router_;
};

}  // namespace kvmfleet::api
