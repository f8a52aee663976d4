#pragma once

#include "kvmfleet/api/metrics.hpp"
#include "kvmfleet/api/page_cache.hpp"
#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/http/types.hpp"

namespace kvmfleet::api {

// The REST API v1 as a request→response function (Beast's shape): routing,
// authentication, authorization, strict validation; the work itself is recorded as
// an operation through the Controller's services. No network I/O here.
class Api {
 public:
  Api(Controller& service, Metrics& metrics) : service_(service), metrics_(metrics) {}
  void handle(http::Request&& req, http::Responder respond);

 private:
  Controller& service_;
  Metrics& metrics_;
  PageCache pages_;
};

}  // namespace kvmfleet::api
