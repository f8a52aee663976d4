// Live and cold moves of one VM, and host maintenance (the drain).
#include "handlers.hpp"

namespace kvmfleet::api {

void migrate_vm(Controller& svc, Call& c) {
  auto body = optional_body_of(c);
  if (!body) return c.fail(body.error());
  auto mig = parse_migrate(*body, MigrationPolicy{});
  if (!mig) return c.fail(mig.error());
  answer_submitted(svc, c,
                   svc.migration().migrate_vm(*c.who, c.param("vm"), mig->target_host, mig->policy,
                                              submit_options(c)));
}

void set_maintenance(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto req = parse_maintenance(*body, MigrationPolicy{});
  if (!req) return c.fail(req.error());
  answer_submitted(svc, c,
                   svc.migration().set_maintenance(*c.who, c.param("host"), req->enabled,
                                                   req->policy, submit_options(c)));
}

}  // namespace kvmfleet::api
