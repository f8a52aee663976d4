// The route table of the REST API v1: every route in one place, one row each — method,
// path pattern, the role it needs, the query keys it accepts, its handler — grouped by
// capability. The order of the rows does not matter (see Router).
#include "kvmfleet/api/routes.hpp"

#include "handlers.hpp"

namespace kvmfleet::api {

const std::vector<Route>& routes() {
  using enum Need;
  using enum Verb;
  // clang-format off
  static const std::vector<Route> table = {
      // health
      {get, "/v1/healthz", anyone, {}, get_health},
      {get, "/metrics", viewer, {}, get_metrics},

      // HA
      {get, "/v1/ha", viewer, {}, get_ha},

      // tokens
      {get, "/v1/tokens", admin, {}, list_tokens},
      {post, "/v1/tokens", admin, {}, create_token},
      {delete_, "/v1/tokens/{token}", admin, {}, delete_token},

      // hosts
      {get, "/v1/hosts", viewer, {"limit", "cursor"}, list_hosts},
      {post, "/v1/hosts", admin, {}, register_host},
      {get, "/v1/hosts/{host}", viewer, {}, get_host},
      {patch, "/v1/hosts/{host}", admin, {}, patch_host},
      {delete_, "/v1/hosts/{host}", admin, {}, delete_host},

      // fencing
      {get, "/v1/hosts/{host}/fencing", admin, {}, get_fencing},
      {put, "/v1/hosts/{host}/fencing", admin, {}, put_fencing},
      {post, "/v1/hosts/{host}/fence", admin, {"wait"}, fence_host},
      {post, "/v1/hosts/{host}/confirm-down", admin, {}, confirm_host_down},

      // agent
      {post, "/v1/agent/heartbeat", agent, {}, agent_heartbeat},
      {post, "/v1/agent/events", agent, {}, agent_events},
      {get, "/v1/agent/images/{image}/data", agent, {"offset", "length"}, agent_image_data},

      // vms
      {get, "/v1/vms", viewer, {"limit", "cursor", "host", "state"}, list_vms},
      {post, "/v1/vms", operator_, {"wait"}, create_vm},
      {get, "/v1/vms/{vm}", viewer, {}, get_vm},
      {delete_, "/v1/vms/{vm}", operator_, {"wait", "force"}, delete_vm},
      {post, "/v1/vms/{vm}/start", operator_, {"wait"}, start_vm},
      {post, "/v1/vms/{vm}/stop", operator_, {"wait"}, stop_vm},
      {post, "/v1/vms/{vm}/reboot", operator_, {"wait"}, reboot_vm},
      {post, "/v1/vms/{vm}/destroy", operator_, {"wait"}, destroy_vm},
      {post, "/v1/placements", operator_, {}, place_vm},

      // migration
      {post, "/v1/vms/{vm}/migrate", operator_, {"wait"}, migrate_vm},
      {post, "/v1/hosts/{host}/maintenance", admin, {"wait"}, set_maintenance},

      // operations
      {get, "/v1/operations", viewer, {"limit", "cursor", "state", "target"}, list_operations},
      {get, "/v1/operations/{operation}", viewer, {"wait"}, get_operation},
      {delete_, "/v1/operations/{operation}", operator_, {}, cancel_operation},

      // shared storage
      {get, "/v1/storage-pools", viewer, {}, list_pools},
      {post, "/v1/storage-pools", admin, {"wait"}, create_pool},
      {get, "/v1/storage-pools/{pool}", viewer, {}, get_pool},
      {delete_, "/v1/storage-pools/{pool}", admin, {"wait"}, delete_pool},
      {post, "/v1/storage-pools/{pool}/hosts", admin, {"wait"}, connect_pool},
      {get, "/v1/volumes", viewer, {"pool"}, list_volumes},
      {post, "/v1/volumes", operator_, {"wait"}, create_volume},
      {get, "/v1/volumes/{volume}", viewer, {}, get_volume},
      {delete_, "/v1/volumes/{volume}", operator_, {"wait"}, delete_volume},
      {post, "/v1/volumes/{volume}/grow", operator_, {"wait"}, grow_volume},
      {get, "/v1/volumes/{volume}/snapshots", viewer, {}, list_snapshots},
      {post, "/v1/volumes/{volume}/snapshots", operator_, {"wait"}, create_snapshot},
      {get, "/v1/volumes/{volume}/snapshots/{snapshot}", viewer, {}, get_snapshot},
      {delete_, "/v1/volumes/{volume}/snapshots/{snapshot}", operator_, {"wait"}, delete_snapshot},
      {post, "/v1/volumes/{volume}/snapshots/{snapshot}/revert", operator_, {"wait"}, revert_snapshot},
      {post, "/v1/vms/{vm}/snapshots", operator_, {"wait"}, create_vm_snapshot},

      // networks
      {get, "/v1/networks", viewer, {}, list_networks},
      {post, "/v1/networks", admin, {"wait"}, create_network},
      {get, "/v1/networks/{network}", viewer, {}, get_network},
      {delete_, "/v1/networks/{network}", admin, {}, delete_network},
      {post, "/v1/vms/{vm}/nics", operator_, {"wait"}, add_vm_nic},
      {delete_, "/v1/vms/{vm}/nics/{mac}", operator_, {"wait"}, remove_vm_nic},
      // images: the data's body is streamed, of any size
      {get, "/v1/images", viewer, {}, list_images},
      {post, "/v1/images", operator_, {}, create_image},
      {get, "/v1/images/{image}", viewer, {}, get_image},
      {delete_, "/v1/images/{image}", operator_, {}, delete_image},
      {put, "/v1/images/{image}/data", operator_, {}, upload_image, open_image_upload},

      // console: a WebSocket (the token and role are checked before the upgrade)
      {get, "/v1/vms/{vm}/console", operator_, {}, console_without_upgrade, nullptr, open_console},
      {get, "/v1/vms/{vm}/console/log", viewer, {"tail"}, get_console_log},
  };
  // clang-format on
  return table;
}

}  // namespace kvmfleet::api
