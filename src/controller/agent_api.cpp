#include "kvmfleet/controller/agent_api.hpp"

#include "kvmfleet/agent/protocol.hpp"
#include "kvmfleet/model/json.hpp"

namespace kvmfleet {
namespace {

namespace proto = agent_protocol;

std::string url_for(const Host& host, const proto::Call& call, const std::string& uuid = {}) {
  std::string path(call.path);
  if (auto pos = path.find("{uuid}"); pos != std::string::npos) path.replace(pos, 6, uuid);
  std::string base = host.agent_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + path;
}

Result<nlohmann::json> invoke(http::Client& client, const Host& host, const proto::Call& call,
                              const std::string& uuid, const nlohmann::json* body) {
  auto r = http::call_json(client, call.method, url_for(host, call, uuid), host.agent_secret, body,
                           proto::timeout_for(call.timeout));
  if (!r) {
    Error e = r.take_error();
    e.details["host"] = host.name;
    e.details["agent_call"] = std::string(call.name);
    return e;
  }
  return r;
}

template <typename T>
Result<T> decode(Result<nlohmann::json> r) {
  if (!r) return r.take_error();
  try {
    return r->get<T>();
  } catch (const std::exception& e) {
    return internal_error(std::string("malformed agent answer: ") + e.what());
  }
}

Result<DomainStatus> action(http::Client& client, const Host& host, const proto::Call& call,
                            const std::string& op_id, const std::string& uuid) {
  const nlohmann::json body = {{"op_id", op_id}};
  return decode<DomainStatus>(invoke(client, host, call, uuid, &body));
}

}  // namespace

Result<HostInventory> HttpAgentApi::inventory(const Host& host) {
  return decode<HostInventory>(invoke(client_, host, proto::kInventory, {}, nullptr));
}

Result<DomainStatus> HttpAgentApi::get_domain(const Host& host, const std::string& uuid) {
  return decode<DomainStatus>(invoke(client_, host, proto::kDomainGet, uuid, nullptr));
}

Result<DomainStatus> HttpAgentApi::define(const Host& host, const std::string& op_id,
                                          const DomainSpec& spec) {
  const nlohmann::json body = {{"op_id", op_id}, {"spec", spec}};
  return decode<DomainStatus>(invoke(client_, host, proto::kDefine, {}, &body));
}

Result<DomainStatus> HttpAgentApi::start(const Host& host, const std::string& op_id,
                                         const std::string& uuid) {
  return action(client_, host, proto::kStart, op_id, uuid);
}
Result<DomainStatus> HttpAgentApi::shutdown(const Host& host, const std::string& op_id,
                                            const std::string& uuid) {
  return action(client_, host, proto::kShutdown, op_id, uuid);
}
Result<DomainStatus> HttpAgentApi::reboot(const Host& host, const std::string& op_id,
                                          const std::string& uuid) {
  return action(client_, host, proto::kReboot, op_id, uuid);
}
Result<DomainStatus> HttpAgentApi::destroy(const Host& host, const std::string& op_id,
                                           const std::string& uuid) {
  return action(client_, host, proto::kDestroy, op_id, uuid);
}

Status HttpAgentApi::undefine(const Host& host, const std::string& op_id, const std::string& uuid,
                              bool remove_volumes) {
  const nlohmann::json body = {{"op_id", op_id}, {"remove_volumes", remove_volumes}};
  auto r = invoke(client_, host, proto::kUndefine, uuid, &body);
  if (!r) return r.take_error();
  return {};
}

Result<MigrationStatus> HttpAgentApi::migrate(const Host& source, const std::string& uuid,
                                              const MigrationRequest& request) {
  nlohmann::json body = request.policy;
  body["op_id"] = request.op_id;
  body["destination_uri"] = request.destination_uri;
  body["migrate_uri"] = request.migrate_uri;
  return decode<MigrationStatus>(invoke(client_, source, proto::kMigrate, uuid, &body));
}

Result<MigrationStatus> HttpAgentApi::migration_status(const Host& source, const std::string& uuid) {
  return decode<MigrationStatus>(invoke(client_, source, proto::kMigration, uuid, nullptr));
}

Result<MigrationStatus> HttpAgentApi::abort_migration(const Host& source, const std::string& op_id,
                                                      const std::string& uuid) {
  const nlohmann::json body = {{"op_id", op_id}};
  return decode<MigrationStatus>(invoke(client_, source, proto::kMigrationAbort, uuid, &body));
}

}  // namespace kvmfleet
