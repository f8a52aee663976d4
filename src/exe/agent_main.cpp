// kvmfleet-agent: one per host. Serves the agent API to the controller, heartbeats
// its inventory and pushes lifecycle events (each on a connection of its own). Starting or stopping
// the agent never touches guests: it only reports what libvirt has.

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "kvmfleet/agent/agent_config.hpp"
#include "kvmfleet/agent/agent_service.hpp"
#include "kvmfleet/agent/boot_media.hpp"
#include "kvmfleet/agent/heartbeat.hpp"
#include "kvmfleet/agent/libvirt_hypervisor.hpp"
#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/agent/storage_backend.hpp"
#include "kvmfleet/agent/storage_devices.hpp"
#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/process.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/http/server.hpp"

namespace {

constexpr const char* kUsage =
    "usage: kvmfleet-agent [--config PATH] [--log-level trace|debug|info|warn|error]\n"
    "  --config     agent configuration (default /etc/kvmfleet/agent.json)\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace kvmfleet;
  std::string config_path = "/etc/kvmfleet/agent.json";
  std::string log_level = "info";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string_view name) -> const char* {
      if (arg == name && i + 1 < argc) return argv[++i];
      if (arg.size() > name.size() + 1 && arg.starts_with(name) && arg[name.size()] == '=')
        return argv[i] + name.size() + 1;
      return nullptr;
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (const char* v = value("--config")) {
      config_path = v;
    } else if (const char* v = value("--log-level")) {
      log_level = v;
    } else {
      std::fprintf(stderr, "unknown argument: %s\n%s", argv[i], kUsage);
      return 2;
    }
  }
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  const auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") {
    std::fprintf(stderr, "unknown log level: %s\n", log_level.c_str());
    return 2;
  }
  spdlog::set_level(level);

  auto config = agent::load_agent_config(config_path);
  if (!config) {
    spdlog::critical("{}: {}", config_path, config.error().message);
    return 2;
  }
  // Sockets use MSG_NOSIGNAL, but a peer closing mid-write must never kill the agent.
  std::signal(SIGPIPE, SIG_IGN);

  // Disks from the controller's images, CD-ROMs and cloud-init seeds (docs/images.md):
  // image data fetched from the controller, kept once in the image pool's cache.
  http::KeepAliveOptions image_link;
  image_link.ca_file = config->controller_ca_file;
  image_link.max_idle_per_origin = 1;
  http::KeepAliveClient image_client(image_link);
  agent::ControllerImageSource image_source(image_client, config->controller_url, config->token);
  SystemProcessRunner media_runner;
  agent::CommandDiskTool disk_tool(media_runner);
  agent::ImageCache image_cache(config->image_pool_path + "/cache", image_source);
  agent::BootMedia boot_media(config->image_pool_path, image_cache, disk_tool);

  agent::LibvirtOptions lv;
  lv.uri = config->libvirt_uri;
  lv.pool_path = config->image_pool_path;
  lv.migration_address = config->migration_address;
  lv.boot_media = &boot_media;
  lv.console_log_dir = config->console_log_dir;
  lv.tcg_only = config->guest_accelerator == "tcg";
  {
    // Console logs may hold whatever a guest printed: readable by root only.
    std::error_code ec;
    std::filesystem::create_directories(config->console_log_dir, ec);
    if (!ec)
      std::filesystem::permissions(config->console_log_dir, std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::replace, ec);
    if (ec) spdlog::warn("console log directory {}: {}", config->console_log_dir, ec.message());
  }
  agent::LibvirtHypervisor hypervisor(lv);

  // Shared storage only when configured; otherwise the storage routes answer 409.
  SystemProcessRunner runner;
  std::unique_ptr<storage::OpenIscsiInitiator> iscsi;
  std::unique_ptr<storage::Lvm2Cli> lvm;
  std::unique_ptr<storage::LockDaemons> locks;
  std::unique_ptr<storage::Multipath> multipath;
  std::unique_ptr<agent::AgentService> service_holder;
  if (config->storage) {
    storage::LvmOptions lvm_options;
    lvm_options.devices = config->storage->devices;
    lvm_options.host_id = config->storage->host_id;
    lvm_options.udev = config->storage->udev;
    iscsi = std::make_unique<storage::OpenIscsiInitiator>(runner);
    lvm = std::make_unique<storage::Lvm2Cli>(runner, std::move(lvm_options));
    locks = std::make_unique<storage::LockDaemons>(runner);
    if (config->storage->multipath) multipath = std::make_unique<storage::Multipath>(runner);
    agent::StorageBackend backend{*iscsi, *lvm, SystemClock::instance(), locks.get(),
                                  multipath.get()};
    service_holder = std::make_unique<agent::AgentService>(hypervisor, backend, config->token);
    // LUNs of the sessions this host has now (logged in before a restart, or by
    // open-iscsi at boot) are cluster devices too, like those a login adds later.
    const auto added = agent::add_session_luns(backend);
    spdlog::info(
        "shared storage: host_id {}, {} LVM device(s) configured, {} from iSCSI "
        "sessions, lock manager {}, multipath {}",
        config->storage->host_id, config->storage->devices.size(), added.size(),
        config->storage->lock_manager, config->storage->multipath ? "on" : "off");
  } else {
    service_holder = std::make_unique<agent::AgentService>(hypervisor, config->token);
  }
  agent::AgentService& service = *service_holder;
  // The host's links through `ip`: reported in the inventory, made by network calls.
  network::IpLinkControl links(runner);
  service.set_link_control(links);

  boost::asio::io_context ioc;
  // libvirt calls block for up to seconds; they run here, never on the I/O threads.
  boost::asio::thread_pool workers(static_cast<std::size_t>(config->worker_threads));
  http::Handler handler = [&](http::Request&& req, http::Responder respond) {
    boost::asio::post(workers,
                      [&service, req = std::move(req), respond = std::move(respond)]() mutable {
                        service.handle(std::move(req), std::move(respond));
                      });
  };

  http::ServerOptions server_options;
  server_options.address = config->listen_address;
  server_options.port = config->listen_port;
  server_options.tls_cert_file = config->tls_cert_file;
  server_options.tls_key_file = config->tls_key_file;
  // The serial console's WebSocket: checked (token, path) before the upgrade.
  server_options.open_upgrade = [&service](const http::Request& req) {
    return service.open_upgrade(req);
  };
  server_options.websocket_message_limit = agent_protocol::kConsoleMessageLimit;
  http::Server server(ioc, server_options, handler);
  if (auto st = server.start(); !st) {
    spdlog::critical("cannot serve on {}:{}: {}", config->listen_address, config->listen_port,
                     st.error().message);
    return 1;
  }
  spdlog::info("kvmfleet-agent {} serving {} on {}:{} (libvirt {})", config->host,
               server.tls() ? "https" : "http", config->listen_address, server.port(),
               config->libvirt_uri);

  // Heartbeats and events each keep a connection of their own open to the
  // controller, so a heartbeat never waits for an events POST.
  http::KeepAliveOptions controller_link;
  controller_link.ca_file = config->controller_ca_file;
  controller_link.max_idle_per_origin = 1;
  http::KeepAliveClient heartbeat_client(controller_link);
  http::KeepAliveClient events_client(controller_link);
  agent::HeartbeatOptions hb;
  hb.host = config->host;
  hb.agent_url = config->agent_url;
  hb.controller_url = config->controller_url;
  hb.token = config->token;
  hb.interval = config->heartbeat_interval;
  hb.links = &links;
  agent::HeartbeatLoop heartbeat(hypervisor, service.reports(), heartbeat_client, events_client,
                                 SystemClock::instance(), hb);
  heartbeat.start();

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: stopping", sig);
    server.stop();
    ioc.stop();
  });

  std::thread io_thread([&] { ioc.run(); });
  ioc.run();
  io_thread.join();

  // In-flight libvirt calls finish; then nothing else is started.
  workers.join();
  heartbeat.stop();
  spdlog::info("kvmfleet-agent stopped; guests were left as they are");
  return 0;
}
