#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "file_lock.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/store/store.hpp"
#include "secret_box.hpp"
#include "sqlite_statement.hpp"

#include <filesystem>

namespace kvmfleet {
namespace {

using nlohmann::json;

// Entry i moves the schema from version i to i + 1; PRAGMA user_version records how
// many have run, so an old file is upgraded in place and a newer one is refused.
constexpr std::string_view kMigrations[] = {
    R"sql(
CREATE TABLE hosts (
  name TEXT PRIMARY KEY NOT NULL,
  json TEXT NOT NULL
);
CREATE TABLE vms (
  id   TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL UNIQUE,
  json TEXT NOT NULL
);
CREATE TABLE operations (
  id              TEXT PRIMARY KEY NOT NULL,
  kind            TEXT NOT NULL,
  state           TEXT NOT NULL,
  target_id       TEXT NOT NULL,
  idempotency_key TEXT NOT NULL DEFAULT '',
  requester_id    TEXT NOT NULL DEFAULT '',
  created_at_ms   INTEGER NOT NULL,
  json            TEXT NOT NULL
);
-- A retried request carrying the same key from the same caller must find the first
-- operation; the store refuses a second one even if the controller's check raced.
CREATE UNIQUE INDEX operations_idempotency ON operations (requester_id, idempotency_key)
  WHERE idempotency_key != '';
CREATE INDEX operations_state ON operations (state);
CREATE TABLE tokens (
  id            TEXT PRIMARY KEY NOT NULL,
  name          TEXT NOT NULL,
  role          TEXT NOT NULL,
  hash          TEXT NOT NULL UNIQUE,
  host          TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL
);
)sql",
    // Shared storage: pools (one shared VG each) and volumes (LVs, with snapshots).
    R"sql(
CREATE TABLE storage_pools (
  name TEXT PRIMARY KEY NOT NULL,
  json TEXT NOT NULL
);
CREATE TABLE volumes (
  id   TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL UNIQUE,
  json TEXT NOT NULL
);
)sql",
    // Logical networks (src/network/).
    R"sql(
CREATE TABLE networks (
  name TEXT PRIMARY KEY NOT NULL,
  json TEXT NOT NULL
);
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// The one place where SQLite's result codes become kvmfleet's error categories.
Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  json details = {{"sqlite_code", rc}};
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return unavailable(std::move(msg), std::move(details));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return conflict(std::move(msg), std::move(details));
      break;
    default:
      break;
  }
  return internal_error(std::move(msg), std::move(details));
}

// Open-time failures all mean "this file cannot serve as the store now".
Error open_error(sqlite3* db, int rc, const std::string& path, std::string_view what) {
  Error e = sqlite_error(db, rc, std::string(what) + " " + path);
  e.code = ErrorCode::unavailable;
  e.details["path"] = path;
  return e;
}

// Fixed SQL with no values in it (DDL, transaction control).
int exec_fixed(sqlite3* db, const std::string& sql) {
  return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
}

Error bad_row(std::string_view table, const std::string& key, const std::string& why) {
  return internal_error("stored " + std::string(table) + " row '" + key + "' " + why,
                        {{"table", std::string(table)}, {"key", key}});
}

// A row that does not parse is reported, never skipped: skipping would make the
// controller forget a VM or an operation without anyone noticing.
template <typename T>
Result<T> parse_row(std::string_view table, const std::string& key, const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad_row(table, key, "holds text that is not JSON");
  try {
    return j.get<T>();
  } catch (const std::exception& e) {
    return bad_row(table, key, std::string("does not hold a valid record: ") + e.what());
  }
}

// Invalid UTF-8 (say, from a host's CPU model string) is replaced rather than made
// fatal: one odd byte must not stop heartbeats from being recorded.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Where a sealed secret belongs: the associated data that ties it to its record.
std::string agent_secret_place(const std::string& host) {
  return "hosts/" + host + "/agent_secret";
}
std::string fence_secret_place(const std::string& host, std::size_t device,
                               const std::string& key) {
  return "hosts/" + host + "/fence_devices/" + std::to_string(device) + "/" + key;
}
std::string chap_place(const std::string& pool, std::size_t target) {
  return "storage_pools/" + pool + "/targets/" + std::to_string(target) + "/chap";
}

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::string& path,
                                             const SqliteStoreOptions& options);

  Result<StoreSnapshot> load() override;
  Status commit_all(std::span<const WriteBatch* const> batches) override;

 private:
  struct DbCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  using DbHandle = std::unique_ptr<sqlite3, DbCloser>;

  SqliteStore(FileLock lock, DbHandle db, SecretBox box)
      : lock_(std::move(lock)), db_(std::move(db)), box_(std::move(box)) {}

  // The records' JSON with their replayed secrets sealed, and back.
  Result<json> host_row(const Host& h) const;
  Result<json> pool_row(const StoragePool& p) const;
  Status open_secrets(Host& h) const;
  Status open_secrets(StoragePool& p) const;

  Status prepare_statements();
  // Runs a statement that returns no rows.
  Status run(SqliteStatement& s, std::string_view what);
  Status write(const WriteBatch& batch);
  Result<StoreSnapshot> read();
  void rollback_if_open();

  // Declaration order is destruction order in reverse: statements are finalized
  // before the connection closes, and the lock is released last.
  FileLock lock_;
  DbHandle db_;
  SecretBox box_;
  SqliteStatement begin_read_, begin_write_, commit_, rollback_;
  SqliteStatement put_host_, delete_host_, put_vm_, delete_vm_;
  SqliteStatement put_operation_, delete_operation_, put_token_, delete_token_;
  SqliteStatement select_hosts_, select_vms_, select_operations_, select_tokens_;
  SqliteStatement put_pool_, delete_pool_, put_volume_, delete_volume_;
  SqliteStatement select_pools_, select_volumes_;
  SqliteStatement put_network_, delete_network_, select_networks_;
  std::mutex mu_;
};

Result<std::unique_ptr<Store>> SqliteStore::open(const std::string& path,
                                                 const SqliteStoreOptions& options) {
  // The state is private to the controller's user whatever the umask: a directory
  // made here is 0700; the database, its lock and key files are 0600, and SQLite gives
  // the -wal and -shm files the database file's mode.
  const auto dir = std::filesystem::path(path).parent_path().string();
  if (auto st = make_private_dirs(dir); !st)
    return unavailable(st.error().message, {{"path", path}});
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    std::error_code ec;
    if (file != path && !std::filesystem::exists(file, ec)) continue;
    if (auto st = make_private_file(file); !st)
      return unavailable(st.error().message, {{"path", file}});
  }
  auto lock = FileLock::acquire(path + ".lock");
  if (!lock) return lock.take_error();
  auto box = SecretBox::load_or_create(options.key_file.empty() ? path + ".key" : options.key_file);
  if (!box) {
    Error e = box.take_error();
    e.code = ErrorCode::unavailable;
    return e;
  }

  sqlite3* raw = nullptr;
  const int open_rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbHandle db(raw);
  if (open_rc != SQLITE_OK) return open_error(db.get(), open_rc, path, "cannot open");
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), static_cast<int>(options.busy_timeout.count()));

  // The first statement that reads the file: a file that is not a database fails here.
  {
    SqliteStatement wal(db.get(), "PRAGMA journal_mode=WAL");
    if (wal.prepare_rc() != SQLITE_OK)
      return open_error(db.get(), wal.prepare_rc(), path, "cannot read");
    const int rc = wal.step();
    if (rc != SQLITE_ROW) return open_error(db.get(), rc, path, "cannot read");
    if (const auto mode = wal.column_text(0); mode != "wal") {
      return unavailable("cannot switch " + path + " to WAL mode (journal mode is " + mode + ")",
                         {{"path", path}});
    }
  }
  // FULL makes every commit fsync the WAL, so a commit that returned ok survives a
  // power cut; NORMAL would not.
  for (const char* pragma : {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (const int rc = exec_fixed(db.get(), pragma); rc != SQLITE_OK)
      return open_error(db.get(), rc, path, "cannot configure");
  }

  int version = 0;
  {
    SqliteStatement uv(db.get(), "PRAGMA user_version");
    const int rc = uv.prepare_rc() == SQLITE_OK ? uv.step() : uv.prepare_rc();
    if (rc != SQLITE_ROW)
      return open_error(db.get(), rc, path, "cannot read the schema version of");
    version = static_cast<int>(uv.column_int64(0));
  }
  if (version > kSchemaVersion || version < 0) {
    return unavailable(path + " has schema version " + std::to_string(version) +
                           ", newer than this controller knows (" + std::to_string(kSchemaVersion) +
                           ")",
                       {{"path", path}});
  }
  if (version < kSchemaVersion) {
    if (const int rc = exec_fixed(db.get(), "BEGIN IMMEDIATE"); rc != SQLITE_OK)
      return open_error(db.get(), rc, path, "cannot create the schema of");
    for (int v = version; v < kSchemaVersion; ++v) {
      int rc = exec_fixed(db.get(), std::string(kMigrations[v]));
      if (rc == SQLITE_OK)
        rc = exec_fixed(db.get(), "PRAGMA user_version = " + std::to_string(v + 1));
      if (rc != SQLITE_OK) {
        Error e = open_error(db.get(), rc, path,
                             "cannot migrate to schema version " + std::to_string(v + 1) + " in");
        exec_fixed(db.get(), "ROLLBACK");
        return e;
      }
    }
    if (const int rc = exec_fixed(db.get(), "COMMIT"); rc != SQLITE_OK) {
      Error e = open_error(db.get(), rc, path, "cannot create the schema of");
      exec_fixed(db.get(), "ROLLBACK");
      return e;
    }
  }

  std::unique_ptr<SqliteStore> store(
      new SqliteStore(std::move(*lock), std::move(db), std::move(*box)));
  if (auto st = store->prepare_statements(); !st) {
    Error e = st.take_error();
    e.code = ErrorCode::unavailable;
    return e;
  }
  return std::unique_ptr<Store>(std::move(store));
}

Status SqliteStore::prepare_statements() {
  struct Entry {
    SqliteStatement* stmt;
    std::string_view sql;
  };
  const Entry entries[] = {
      {&begin_read_, "BEGIN DEFERRED"},
      {&begin_write_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      // Upserts on the primary key only: INSERT OR REPLACE would also delete any
      // other row that clashes on a UNIQUE column, silently losing it.
      {&put_host_,
       "INSERT INTO hosts (name, json) VALUES (?1, ?2) "
       "ON CONFLICT (name) DO UPDATE SET json = excluded.json"},
      {&delete_host_, "DELETE FROM hosts WHERE name = ?1"},
      {&put_vm_,
       "INSERT INTO vms (id, name, json) VALUES (?1, ?2, ?3) "
       "ON CONFLICT (id) DO UPDATE SET name = excluded.name, json = excluded.json"},
      {&delete_vm_, "DELETE FROM vms WHERE id = ?1"},
      {&put_operation_,
       "INSERT INTO operations (id, kind, state, target_id, idempotency_key, requester_id, "
       "created_at_ms, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
       "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state, "
       "target_id = excluded.target_id, idempotency_key = excluded.idempotency_key, "
       "requester_id = excluded.requester_id, created_at_ms = excluded.created_at_ms, "
       "json = excluded.json"},
      {&delete_operation_, "DELETE FROM operations WHERE id = ?1"},
      {&put_token_,
       "INSERT INTO tokens (id, name, role, hash, host, created_at_ms) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
       "ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, "
       "hash = excluded.hash, host = excluded.host, created_at_ms = excluded.created_at_ms"},
      {&delete_token_, "DELETE FROM tokens WHERE id = ?1"},
      {&put_pool_,
       "INSERT INTO storage_pools (name, json) VALUES (?1, ?2) "
       "ON CONFLICT (name) DO UPDATE SET json = excluded.json"},
      {&delete_pool_, "DELETE FROM storage_pools WHERE name = ?1"},
      {&put_volume_,
       "INSERT INTO volumes (id, name, json) VALUES (?1, ?2, ?3) "
       "ON CONFLICT (id) DO UPDATE SET name = excluded.name, json = excluded.json"},
      {&delete_volume_, "DELETE FROM volumes WHERE id = ?1"},
      {&select_pools_, "SELECT name, json FROM storage_pools ORDER BY name"},
      {&select_volumes_, "SELECT id, json FROM volumes ORDER BY name, id"},
      {&select_hosts_, "SELECT name, json FROM hosts ORDER BY name"},
      {&select_vms_, "SELECT id, json FROM vms ORDER BY name, id"},
      {&select_operations_, "SELECT id, json FROM operations ORDER BY created_at_ms, id"},
      {&put_network_,
       "INSERT INTO networks (name, json) VALUES (?1, ?2) "
       "ON CONFLICT (name) DO UPDATE SET json = excluded.json"},
      {&delete_network_, "DELETE FROM networks WHERE name = ?1"},
      {&select_networks_, "SELECT name, json FROM networks ORDER BY name"},
      {&select_tokens_,
       "SELECT id, name, role, hash, host, created_at_ms FROM tokens "
       "ORDER BY created_at_ms, id"},
  };
  for (const auto& e : entries) {
    *e.stmt = SqliteStatement(db_.get(), e.sql);
    if (e.stmt->prepare_rc() != SQLITE_OK)
      return sqlite_error(db_.get(), e.stmt->prepare_rc(), "cannot prepare " + std::string(e.sql));
  }
  return ok_status();
}

Result<json> SqliteStore::host_row(const Host& h) const {
  json j(h);
  if (!h.agent_secret.empty()) {
    auto sealed = box_.seal(h.agent_secret, agent_secret_place(h.name));
    if (!sealed) return sealed.take_error();
    j["agent_secret"] = std::move(*sealed);
  }
  for (std::size_t i = 0; i < h.fence_devices.size(); ++i)
    for (const auto& [key, value] : h.fence_devices[i].secrets) {
      auto sealed = box_.seal(value, fence_secret_place(h.name, i, key));
      if (!sealed) return sealed.take_error();
      j["fence_devices"][i]["secrets"][key] = std::move(*sealed);
    }
  return j;
}

Result<json> SqliteStore::pool_row(const StoragePool& p) const {
  json j(p);
  for (std::size_t i = 0; i < p.targets.size(); ++i) {
    if (p.targets[i].chap_username.empty()) continue;
    auto sealed = box_.seal(p.targets[i].chap_password, chap_place(p.name, i));
    if (!sealed) return sealed.take_error();
    j["targets"][i]["chap"]["password"] = std::move(*sealed);
  }
  return j;
}

// A value without the sealed prefix was written in plain text by an older controller:
// it is read as it is and sealed when its record is next written.
Status SqliteStore::open_secrets(Host& h) const {
  for (std::size_t i = 0; i < h.fence_devices.size(); ++i)
    for (auto& [key, value] : h.fence_devices[i].secrets) {
      if (!SecretBox::is_sealed(value)) continue;
      auto plain = box_.open(value, fence_secret_place(h.name, i, key));
      if (!plain) return bad_row("hosts", h.name, "has a fence secret that does not decrypt");
      value = std::move(*plain);
    }
  if (!SecretBox::is_sealed(h.agent_secret)) return ok_status();
  auto plain = box_.open(h.agent_secret, agent_secret_place(h.name));
  if (!plain) return bad_row("hosts", h.name, "has an agent secret that does not decrypt");
  h.agent_secret = std::move(*plain);
  return ok_status();
}

Status SqliteStore::open_secrets(StoragePool& p) const {
  for (std::size_t i = 0; i < p.targets.size(); ++i) {
    auto& pw = p.targets[i].chap_password;
    if (!SecretBox::is_sealed(pw)) continue;
    auto plain = box_.open(pw, chap_place(p.name, i));
    if (!plain) return bad_row("storage_pools", p.name, "has a CHAP secret that does not decrypt");
    pw = std::move(*plain);
  }
  return ok_status();
}

Status SqliteStore::run(SqliteStatement& s, std::string_view what) {
  StatementReset reset(s);
  const int rc = s.step();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sqlite_error(db_.get(), rc, what);
  return ok_status();
}

void SqliteStore::rollback_if_open() {
  if (sqlite3_get_autocommit(db_.get()) == 0) (void)run(rollback_, "rollback");
}

Status SqliteStore::write(const WriteBatch& batch) {
  // Deletes go first so that a batch may replace a row by a new one that reuses its
  // unique name (delete VM "web" with one id, create "web" with another).
  auto delete_all = [&](SqliteStatement& s, const std::vector<std::string>& keys,
                        std::string_view what) -> Status {
    for (const auto& key : keys) {
      s.bind(1, key);
      if (auto st = run(s, std::string(what) + " '" + key + "'"); !st) return st;
    }
    return ok_status();
  };
  if (auto st = delete_all(delete_host_, batch.delete_hosts, "delete host"); !st) return st;
  if (auto st = delete_all(delete_vm_, batch.delete_vms, "delete vm"); !st) return st;
  if (auto st = delete_all(delete_operation_, batch.delete_operations, "delete operation"); !st)
    return st;
  if (auto st = delete_all(delete_token_, batch.delete_tokens, "delete token"); !st) return st;
  if (auto st = delete_all(delete_volume_, batch.delete_volumes, "delete volume"); !st) return st;
  if (auto st = delete_all(delete_pool_, batch.delete_pools, "delete storage pool"); !st) return st;
  if (auto st = delete_all(delete_network_, batch.delete_networks, "delete network"); !st)
    return st;
  for (const auto& n : batch.put_networks) {
    put_network_.bind(1, n.name);
    put_network_.bind(2, dump(json(n)));
    if (auto st = run(put_network_, "put network '" + n.name + "'"); !st) return st;
  }

  for (const auto& p : batch.put_pools) {
    auto row = pool_row(p);
    if (!row) return row.take_error();
    put_pool_.bind(1, p.name);
    put_pool_.bind(2, dump(*row));
    if (auto st = run(put_pool_, "put storage pool '" + p.name + "'"); !st) return st;
  }
  for (const auto& v : batch.put_volumes) {
    put_volume_.bind(1, v.id);
    put_volume_.bind(2, v.name);
    put_volume_.bind(3, dump(json(v)));
    if (auto st = run(put_volume_, "put volume '" + v.id + "' (" + v.name + ")"); !st) return st;
  }

  for (const auto& h : batch.put_hosts) {
    auto row = host_row(h);
    if (!row) return row.take_error();
    put_host_.bind(1, h.name);
    put_host_.bind(2, dump(*row));
    if (auto st = run(put_host_, "put host '" + h.name + "'"); !st) return st;
  }
  for (const auto& vm : batch.put_vms) {
    put_vm_.bind(1, vm.id);
    put_vm_.bind(2, vm.spec.name);
    put_vm_.bind(3, dump(json(vm)));
    if (auto st = run(put_vm_, "put vm '" + vm.id + "' (" + vm.spec.name + ")"); !st) return st;
  }
  for (const auto& op : batch.put_operations) {
    put_operation_.bind(1, op.id);
    put_operation_.bind(2, op.kind);
    put_operation_.bind(3, to_string(op.state));
    put_operation_.bind(4, op.target_id);
    put_operation_.bind(5, op.idempotency_key);
    put_operation_.bind(6, op.requester_id);
    put_operation_.bind(7, to_unix_ms(op.created_at));
    put_operation_.bind(8, dump(json(op)));
    if (auto st = run(put_operation_, "put operation '" + op.id + "'"); !st) return st;
  }
  for (const auto& t : batch.put_tokens) {
    put_token_.bind(1, t.id);
    put_token_.bind(2, t.name);
    put_token_.bind(3, to_string(t.role));
    put_token_.bind(4, t.hash);
    put_token_.bind(5, t.host);
    put_token_.bind(6, to_unix_ms(t.created_at));
    if (auto st = run(put_token_, "put token '" + t.id + "' (" + t.name + ")"); !st) return st;
  }
  return ok_status();
}

Status SqliteStore::commit_all(std::span<const WriteBatch* const> batches) {
  std::lock_guard lk(mu_);
  if (std::all_of(batches.begin(), batches.end(), [](const WriteBatch* b) { return b->empty(); }))
    return ok_status();
  if (auto st = run(begin_write_, "begin a write transaction"); !st) return st;
  Status st = ok_status();
  for (const WriteBatch* b : batches) {
    st = write(*b);
    if (!st) break;
  }
  if (st) st = run(commit_, "commit");
  // Whatever failed, nothing of the batches may stay behind half-written.
  if (!st) rollback_if_open();
  return st;
}

Result<StoreSnapshot> SqliteStore::read() {
  StoreSnapshot snap;
  // Walks the rows of `s`, handing each to `row`; stops at the first error.
  auto each_row = [&](SqliteStatement& s, std::string_view table, auto&& row) -> Status {
    StatementReset reset(s);
    for (;;) {
      const int rc = s.step();
      if (rc == SQLITE_DONE) return ok_status();
      if (rc != SQLITE_ROW) return sqlite_error(db_.get(), rc, "read " + std::string(table));
      if (auto st = row(); !st) return st;
    }
  };

  auto st = each_row(select_hosts_, "hosts", [&]() -> Status {
    const auto key = select_hosts_.column_text(0);
    auto h = parse_row<Host>("hosts", key, select_hosts_.column_text(1));
    if (!h) return h.take_error();
    if (h->name != key) return bad_row("hosts", key, "names host '" + h->name + "' in its JSON");
    if (auto s = open_secrets(*h); !s) return s;
    snap.hosts.push_back(std::move(*h));
    return ok_status();
  });
  if (!st) return st.take_error();

  st = each_row(select_vms_, "vms", [&]() -> Status {
    const auto key = select_vms_.column_text(0);
    auto vm = parse_row<Vm>("vms", key, select_vms_.column_text(1));
    if (!vm) return vm.take_error();
    if (vm->id != key) return bad_row("vms", key, "holds vm id '" + vm->id + "' in its JSON");
    snap.vms.push_back(std::move(*vm));
    return ok_status();
  });
  if (!st) return st.take_error();

  st = each_row(select_pools_, "storage_pools", [&]() -> Status {
    const auto key = select_pools_.column_text(0);
    auto p = parse_row<StoragePool>("storage_pools", key, select_pools_.column_text(1));
    if (!p) return p.take_error();
    if (p->name != key)
      return bad_row("storage_pools", key, "names pool '" + p->name + "' in its JSON");
    if (auto s = open_secrets(*p); !s) return s;
    snap.pools.push_back(std::move(*p));
    return ok_status();
  });
  if (!st) return st.take_error();

  st = each_row(select_volumes_, "volumes", [&]() -> Status {
    const auto key = select_volumes_.column_text(0);
    auto v = parse_row<Volume>("volumes", key, select_volumes_.column_text(1));
    if (!v) return v.take_error();
    if (v->id != key) return bad_row("volumes", key, "holds volume id '" + v->id + "' in its JSON");
    snap.volumes.push_back(std::move(*v));
    return ok_status();
  });
  if (!st) return st.take_error();

  st = each_row(select_networks_, "networks", [&]() -> Status {
    const auto key = select_networks_.column_text(0);
    auto n = parse_row<Network>("networks", key, select_networks_.column_text(1));
    if (!n) return n.take_error();
    if (n->name != key)
      return bad_row("networks", key, "names network '" + n->name + "' in its JSON");
    snap.networks.push_back(std::move(*n));
    return ok_status();
  });
  if (!st) return st.take_error();

  st = each_row(select_operations_, "operations", [&]() -> Status {
    const auto key = select_operations_.column_text(0);
    auto op = parse_row<Operation>("operations", key, select_operations_.column_text(1));
    if (!op) return op.take_error();
    if (op->id != key)
      return bad_row("operations", key, "holds operation id '" + op->id + "' in its JSON");
    snap.operations.push_back(std::move(*op));
    return ok_status();
  });
  if (!st) return st.take_error();

  st = each_row(select_tokens_, "tokens", [&]() -> Status {
    auto& s = select_tokens_;
    TokenRecord t;
    t.id = s.column_text(0);
    t.name = s.column_text(1);
    const auto role = s.column_text(2);
    const auto parsed = role_from_string(role);
    if (!parsed) return bad_row("tokens", t.id, "has unknown role '" + role + "'");
    t.role = *parsed;
    t.hash = s.column_text(3);
    t.host = s.column_text(4);
    t.created_at = from_unix_ms(s.column_int64(5));
    snap.tokens.push_back(std::move(t));
    return ok_status();
  });
  if (!st) return st.take_error();
  return snap;
}

Result<StoreSnapshot> SqliteStore::load() {
  std::lock_guard lk(mu_);
  // One read transaction, so the four tables come from the same instant.
  if (auto st = run(begin_read_, "begin a read transaction"); !st) return st.take_error();
  auto snap = read();
  if (!snap) {
    rollback_if_open();
    return snap;
  }
  if (auto st = run(commit_, "end the read transaction"); !st) {
    rollback_if_open();
    return st.take_error();
  }
  return snap;
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path,
                                                 const SqliteStoreOptions& options) {
  return SqliteStore::open(path, options);
}

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path) {
  return SqliteStore::open(path, SqliteStoreOptions{});
}

}  // namespace kvmfleet
