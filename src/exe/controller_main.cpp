// kvmfleet-controller: cluster state, REST API, scheduler, operations.
#include "kvmfleet/api/api.hpp"
#include "kvmfleet/console/console_service.hpp"
#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/core/agent_api.hpp"
#include "kvmfleet/http/server.hpp"
#include "kvmfleet/metadata/controller_hook.hpp"
#include "kvmfleet/metadata/metadata_import.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/program_options.hpp>

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <thread>

namespace po = boost::program_options;
using namespace kvmfleet;

namespace {

Result<ControllerConfig> load_config(const std::string& path) {
  if (path.empty()) return ControllerConfig{};
  std::ifstream in(path);
  if (!in) return invalid("cannot read config file " + path);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return invalid("config file " + path + " is not valid JSON");
  return ControllerConfig::from_json(j);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "controller";
  return buf;
}

// kvmfleet-controller --import DIR: rebuilds the VM inventory from a metadata
// directory into the store, then exits (non-zero when any record was refused).
int run_import(const std::string& dir, const ControllerConfig& config, bool dry_run) {
  auto store = open_sqlite_store(config.database_path);
  if (!store) {
    std::cerr << "kvmfleet-controller: cannot open the store: " << store.error().message << "\n";
    return 2;
  }
  auto fs = metadata::make_posix_metadata_fs(dir);
  metadata::ImportOptions opts;
  opts.dry_run = dry_run;
  auto report = metadata::import_metadata(*fs, **store, SystemClock::instance(), opts);
  if (!report) {
    std::cerr << "kvmfleet-controller: import failed: " << report.error().message << "\n";
    return 2;
  }
  std::cout << metadata::format_report(*report);
  if (dry_run) std::cout << "dry run: nothing was written to the store\n";
  return report->refused == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description opts("kvmfleet-controller options");
  opts.add_options()("help,h", "show this help")(
      "config,c", po::value<std::string>()->default_value(""), "JSON config file")(
      "database", po::value<std::string>(), "SQLite database path (overrides the config)")(
      "listen-address", po::value<std::string>(), "API listen address (overrides the config)")(
      "listen-port", po::value<int>(), "API listen port (overrides the config)")(
      "bootstrap-token-file", po::value<std::string>(), "where the first admin token is written")(
      "metadata-dir", po::value<std::string>(),
      "write each VM's metadata record here (overrides the config)")(
      "import", po::value<std::string>(),
      "import the VM records of this metadata directory into the store, then exit")(
      "dry-run", "with --import: verify and report, write nothing")(
      "log-level", po::value<std::string>()->default_value("info"), "trace|debug|info|warn|error");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "kvmfleet-controller: " << e.what() << "\n" << opts;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(vm["log-level"].as<std::string>()));

  auto cfg = load_config(vm["config"].as<std::string>());
  if (!cfg) {
    std::cerr << "kvmfleet-controller: " << cfg.error().message << "\n";
    return 2;
  }
  ControllerConfig config = *cfg;
  if (vm.count("database")) config.database_path = vm["database"].as<std::string>();
  if (vm.count("listen-address")) config.listen_address = vm["listen-address"].as<std::string>();
  if (vm.count("listen-port")) {
    const int p = vm["listen-port"].as<int>();
    if (p < 0 || p > 65535) {
      std::cerr << "kvmfleet-controller: listen-port out of range\n";
      return 2;
    }
    config.listen_port = static_cast<std::uint16_t>(p);
  }
  if (vm.count("bootstrap-token-file"))
    config.bootstrap_token_file = vm["bootstrap-token-file"].as<std::string>();
  if (vm.count("metadata-dir")) config.metadata_dir = vm["metadata-dir"].as<std::string>();
  if (vm.count("import"))
    return run_import(vm["import"].as<std::string>(), config, vm.count("dry-run") > 0);

  auto store = open_sqlite_store(config.database_path);
  if (!store) {
    spdlog::critical("cannot open the store: {}", store.error().message);
    return 1;
  }
  ClusterState state(**store);
  if (auto st = state.load(); !st) {
    spdlog::critical("cannot load the store: {}", st.error().message);
    return 1;
  }

  boost::asio::io_context ioc;
  // Connections to each agent stay open across calls. Every call that changes
  // something carries an op id, so the one resend a closed idle connection may cause
  // is harmless.
  http::KeepAliveOptions agent_link;
  agent_link.ca_file = config.agent_ca_file;
  http::KeepAliveClient client(agent_link);
  HttpAgentApi agents(client);
  Controller controller(state, agents, config, SystemClock::instance(), ioc);
  if (auto st = controller.tokens().bootstrap_admin(config.bootstrap_token_file); !st) {
    spdlog::critical("cannot write the admin token: {}", st.error().message);
    return 1;
  }

  api::Metrics metrics;
  std::unique_ptr<metadata::MetadataWriter> metadata_writer;
  if (!config.metadata_dir.empty()) {
    metadata::MetadataWriterOptions mopts;
    mopts.queue_capacity = config.metadata_queue_capacity;
    mopts.write_timeout = config.metadata_write_timeout;
    mopts.pool.path = config.metadata_pool_path;
    mopts.writer_id = host_name();
    metadata_writer = std::make_unique<metadata::MetadataWriter>(
        metadata::make_posix_metadata_fs(config.metadata_dir), SystemClock::instance(), mopts,
        metadata::refetch_from(state));
    metadata::attach_metadata_writer(state, *metadata_writer);
    metadata_writer->start();
    metrics.add_source(
        [w = metadata_writer.get()] { return metadata::render_metrics(w->health()); });
    metrics.add_health_source(
        "metadata", [w = metadata_writer.get()] { return metadata::to_json(w->health()); });
    spdlog::info("writing VM metadata records to {}", config.metadata_dir);
  }
  metrics.add_source([&controller] { return controller.storage_monitor().metrics(); });
  api::Api api(controller, metrics);
  http::ServerOptions sopts;
  sopts.address = config.listen_address;
  sopts.port = config.listen_port;
  sopts.body_limit = config.body_limit_bytes;
  sopts.read_timeout = config.read_timeout;
  sopts.tls_cert_file = config.tls_cert_file;
  sopts.tls_key_file = config.tls_key_file;
  sopts.open_body = [&api](const http::RequestHeader& header) { return api.open_body(header); };
  sopts.open_upgrade = [&api](const http::Request& req) { return api.open_upgrade(req); };
  sopts.websocket_message_limit = console::kMaxClientMessage;
  http::Server server(ioc, sopts, [&api](http::Request&& req, http::Responder respond) {
    api.handle(std::move(req), std::move(respond));
  });
  if (auto st = server.start(); !st) {
    spdlog::critical("cannot start the API: {}", st.error().message);
    return 1;
  }
  controller.start();
  spdlog::info("kvmfleet-controller serving {}://{}:{}", server.tls() ? "https" : "http",
               config.listen_address, server.port());

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    spdlog::info("signal {}: shutting down", sig);
    server.stop();
    ioc.stop();
  });

  std::vector<std::thread> threads;
  for (int i = 1; i < config.api_threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  // Operations still running stay "running" in the store; the next start resumes them.
  controller.stop();
  if (metadata_writer) metadata_writer->stop();
  spdlog::info("kvmfleet-controller stopped");
  return 0;
}
