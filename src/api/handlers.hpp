#pragma once

// The handlers of the REST API v1, by capability; routes.cpp puts them in the route
// table. Each runs once the router has authenticated the caller, checked the role, the
// path parameters, the query keys and ?wait: it parses the body strictly, calls the
// capability's service and answers. Internal to src/api.

#include "call.hpp"

namespace kvmfleet::api {

// health_routes.cpp
void get_health(Controller& svc, Call& c);
void get_metrics(Controller& svc, Call& c);
void get_ha(Controller& svc, Call& c);

// token_routes.cpp
void list_tokens(Controller& svc, Call& c);
void create_token(Controller& svc, Call& c);
void delete_token(Controller& svc, Call& c);

// host_routes.cpp
void list_hosts(Controller& svc, Call& c);
void register_host(Controller& svc, Call& c);
void get_host(Controller& svc, Call& c);
void patch_host(Controller& svc, Call& c);
void delete_host(Controller& svc, Call& c);

// fencing_routes.cpp
void get_fencing(Controller& svc, Call& c);
void put_fencing(Controller& svc, Call& c);
void fence_host(Controller& svc, Call& c);
void confirm_host_down(Controller& svc, Call& c);

// agent_routes.cpp
void agent_heartbeat(Controller& svc, Call& c);
void agent_events(Controller& svc, Call& c);

// vm_routes.cpp
void list_vms(Controller& svc, Call& c);
void create_vm(Controller& svc, Call& c);
void get_vm(Controller& svc, Call& c);
void delete_vm(Controller& svc, Call& c);
void start_vm(Controller& svc, Call& c);
void stop_vm(Controller& svc, Call& c);
void reboot_vm(Controller& svc, Call& c);
void destroy_vm(Controller& svc, Call& c);
void place_vm(Controller& svc, Call& c);

// migration_routes.cpp
void migrate_vm(Controller& svc, Call& c);
void set_maintenance(Controller& svc, Call& c);

// operation_routes.cpp
void list_operations(Controller& svc, Call& c);
void get_operation(Controller& svc, Call& c);
void cancel_operation(Controller& svc, Call& c);

// storage_routes.cpp
void list_pools(Controller& svc, Call& c);
void create_pool(Controller& svc, Call& c);
void get_pool(Controller& svc, Call& c);
void delete_pool(Controller& svc, Call& c);
void connect_pool(Controller& svc, Call& c);
void list_volumes(Controller& svc, Call& c);
void create_volume(Controller& svc, Call& c);
void get_volume(Controller& svc, Call& c);
void delete_volume(Controller& svc, Call& c);
void grow_volume(Controller& svc, Call& c);
void list_snapshots(Controller& svc, Call& c);
void create_snapshot(Controller& svc, Call& c);
void get_snapshot(Controller& svc, Call& c);
void delete_snapshot(Controller& svc, Call& c);
void revert_snapshot(Controller& svc, Call& c);
void create_vm_snapshot(Controller& svc, Call& c);

// network_routes.cpp
void list_networks(Controller& svc, Call& c);
void create_network(Controller& svc, Call& c);
void get_network(Controller& svc, Call& c);
void delete_network(Controller& svc, Call& c);
void add_vm_nic(Controller& svc, Call& c);
void remove_vm_nic(Controller& svc, Call& c);
// image_routes.cpp
void list_images(Controller& svc, Call& c);
void agent_image_data(Controller& svc, Call& c);
void create_image(Controller& svc, Call& c);
void get_image(Controller& svc, Call& c);
void delete_image(Controller& svc, Call& c);
void upload_image(Controller& svc, Call& c);
Result<std::shared_ptr<http::BodySink>> open_image_upload(Controller& svc, Call& c);

// console_routes.cpp
void console_without_upgrade(Controller& svc, Call& c);
Result<std::shared_ptr<http::WebSocketHandler>> open_console(Controller& svc, Call& c);
void get_console_log(Controller& svc, Call& c);

}  // namespace kvmfleet::api
