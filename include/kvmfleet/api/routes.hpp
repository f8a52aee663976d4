#pragma once

#include "kvmfleet/api/router.hpp"

#include <vector>

namespace kvmfleet::api {

// Every route of the REST API v1, one row each (src/api/routes.cpp). api/openapi.yaml
// declares the same routes; tests/contract checks that the two agree.
const std::vector<Route>& routes();

}  // namespace kvmfleet::api
