#pragma once

#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/network.hpp"
#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/storage.hpp"
#include "kvmfleet/model/vm.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvmfleet {

enum class Role { admin, operator_, viewer, agent };
std::string_view to_string(Role r);
std::optional<Role> role_from_string(std::string_view s);

// A bearer token as stored: only its SHA-256 is kept.
struct TokenRecord {
  std::string id;    // UUID
  std::string name;  // who it is for, e.g. "admin" or "host:node1"
  Role role = Role::viewer;
  std::string hash;  // sha256_hex(token)
  std::string host;  // for Role::agent: the host it speaks for
  Clock::time_point created_at{};
  bool operator==(const TokenRecord&) const = default;
};

// Everything the controller holds, as loaded at start.
struct StoreSnapshot {
  std::vector<Host> hosts;
  std::vector<Vm> vms;
  std::vector<Operation> operations;
  std::vector<TokenRecord> tokens;
  std::vector<StoragePool> pools;
  std::vector<Volume> volumes;
  std::vector<Network> networks;
};

// Writes that must land together or not at all (e.g. a new VM and the operation
// that creates it). Deletes of absent keys are not errors.
struct WriteBatch {
  std::vector<Host> put_hosts;
  std::vector<std::string> delete_hosts;  // by name
  std::vector<Vm> put_vms;
  std::vector<std::string> delete_vms;  // by id
  std::vector<Operation> put_operations;
  std::vector<std::string> delete_operations;  // by id
  std::vector<TokenRecord> put_tokens;
  std::vector<std::string> delete_tokens;  // by id
  std::vector<StoragePool> put_pools;
  std::vector<std::string> delete_pools;  // by name
  std::vector<Volume> put_volumes;
  std::vector<std::string> delete_volumes;  // by id
  std::vector<Network> put_networks;
  std::vector<std::string> delete_networks;  // by name
  bool empty() const {
    return put_hosts.empty() && delete_hosts.empty() && put_vms.empty() && delete_vms.empty() &&
           put_operations.empty() && delete_operations.empty() && put_tokens.empty() &&
           delete_tokens.empty() && put_pools.empty() && delete_pools.empty() &&
           put_volumes.empty() && delete_volumes.empty() && put_networks.empty() &&
           delete_networks.empty();
  }
};

// Durable cluster state. The controller keeps the working copy in memory and
// writes through this interface; SQLite is the embedded implementation, etcd
// comes later for several controllers.
class Store {
 public:
  virtual ~Store() = default;
  virtual Result<StoreSnapshot> load() = 0;
  // Commits the batches in order, in one transaction: all or none, durable when it
  // returns ok (one sync for all of them).
  virtual Status commit_all(std::span<const WriteBatch* const> batches) = 0;
  Status commit(const WriteBatch& batch) {
    const WriteBatch* one[] = {&batch};
    return commit_all(one);
  }
};

// SQLite in WAL mode at `path` (created with its schema if missing). Errors:
// unavailable when the file cannot be opened or is locked by another controller.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path);

struct SqliteStoreOptions {
  // How long a write waits for SQLite's own lock (held, say, by a backup tool) before
  // commit() gives up with unavailable.
  std::chrono::milliseconds busy_timeout{5000};
  // The key (32 bytes, AES-256-GCM) that seals the secrets the controller replays (a
  // host's agent credential, CHAP passwords) before they are written; created 0600
  // when absent. Empty: the database's path + ".key".
  std::string key_file;
};
Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path,
                                                 const SqliteStoreOptions& options);

}  // namespace kvmfleet
