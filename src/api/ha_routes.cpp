// GET /v1/ha: what HA is doing (docs/ha.md).
#include "handlers.hpp"

namespace kvmfleet::api {

void get_ha(Controller& svc, Call& c) {
  c.ok(HttpStatus::ok, svc.ha().view());
}

}  // namespace kvmfleet::api
