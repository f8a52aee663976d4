#include <gtest/gtest.h>
#include <sqlite3.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kvmfleet/model/json.hpp"
#include "kvmfleet/store/store.hpp"

namespace kvmfleet {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

Clock::time_point at_ms(std::int64_t ms) {
  return from_unix_ms(1'700'000'000'000 + ms);
}

Host make_host(const std::string& name, bool with_heartbeat) {
  Host h;
  h.name = name;
  h.agent_url = "http://127.0.0.1:7100";
  h.state = HostState::up;
  h.schedulable = false;
  h.inventory.hostname = name + ".lab";
  h.inventory.host_uuid = "7b1a0f4e-3c55-4d7e-9a3e-0a6f2b4c9d10";
  h.inventory.cpus = 16;
  h.inventory.cpu_model = "EPYC";
  h.inventory.memory_total_mib = 65536;
  h.inventory.memory_free_mib = 30000;
  h.inventory.libvirt_version = "9.0.0";
  h.inventory.qemu_version = "7.2.0";
  h.inventory.domain_type = "kvm";
  h.inventory.domains.push_back(
      {"0c8f3a61-2a0e-4d7b-8a5e-4d1e2c3b4a59", "web1", "running", true, 7, true});
  if (with_heartbeat) h.last_heartbeat = at_ms(1234);
  h.created_at = at_ms(5);
  return h;
}

Vm make_vm(const std::string& id, const std::string& name) {
  Vm vm;
  vm.id = id;
  vm.spec.name = name;
  vm.spec.vcpus = 2;
  vm.spec.memory_mib = 2048;
  vm.spec.disks = {{20, DiskBus::virtio}, {5, DiskBus::scsi}};
  vm.spec.pinned_host = "node1";
  vm.spec.anti_affinity_group = "web";
  vm.spec.ha.enabled = true;
  vm.host = "node1";
  vm.desired = DesiredState::running;
  vm.state = VmState::running;
  vm.generation = 4;
  vm.created_at = at_ms(10);
  vm.updated_at = at_ms(20);
  return vm;
}

Operation make_op(const std::string& id, const std::string& key, const std::string& by) {
  Operation op;
  op.id = id;
  op.kind = std::string(op_kind::vm_create);
  op.target_type = "vm";
  op.target_id = "0c8f3a61-2a0e-4d7b-8a5e-4d1e2c3b4a59";
  op.state = OpState::failed;
  op.progress = 40;
  op.step = "defining domain";
  op.error = Error(ErrorCode::unavailable, "agent unreachable", {{"host", "node1"}});
  op.params = {{"name", "web1"}};
  op.result = {{"note", "none"}};
  op.idempotency_key = key;
  op.requested_by = by;
  op.requester_id = by;
  op.attempts = 2;
  op.created_at = at_ms(100);
  op.started_at = at_ms(101);
  op.finished_at = at_ms(150);
  return op;
}

TokenRecord make_token(const std::string& id, const std::string& hash) {
  TokenRecord t;
  t.id = id;
  t.name = "host:node1";
  t.role = Role::agent;
  t.hash = hash;
  t.host = "node1";
  t.created_at = at_ms(7);
  return t;
}

// Runs SQL on the database file behind the store's back, as a tool or a disk fault would.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  int exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }
  // Runs `sql` with text parameters; returns the first column of each row.
  std::vector<std::string> query(const std::string& sql,
                                 const std::vector<std::string>& args = {}) {
    std::vector<std::string> out;
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
    for (std::size_t i = 0; i < args.size(); ++i)
      sqlite3_bind_text(s, static_cast<int>(i + 1), args[i].c_str(), -1, SQLITE_TRANSIENT);
    int rc = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const auto* p = sqlite3_column_text(s, 0);
      out.emplace_back(p ? reinterpret_cast<const char*>(p) : "");
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db_);
    sqlite3_finalize(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "kvmfleet-store-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    path_ = (dir_ / "state.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<Store> open_ok(const SqliteStoreOptions& options = {}) {
    auto s = open_sqlite_store(path_, options);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
    return s.ok() ? std::move(*s) : nullptr;
  }

  StoreSnapshot load_ok(Store& store) {
    auto snap = store.load();
    EXPECT_TRUE(snap.ok()) << (snap.ok() ? "" : snap.error().message);
    return snap.ok() ? std::move(*snap) : StoreSnapshot{};
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, CreatesTheSchemaInAnEmptyFile) {
  { std::ofstream(path_).flush(); }
  ASSERT_EQ(fs::file_size(path_), 0u);
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    auto snap = load_ok(*store);
    EXPECT_TRUE(snap.hosts.empty() && snap.vms.empty() && snap.operations.empty() &&
                snap.tokens.empty());
  }
  RawDb raw(path_);
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::vector<std::string>{"3"});
  EXPECT_EQ(raw.query("PRAGMA journal_mode"), std::vector<std::string>{"wal"});
  EXPECT_EQ(raw.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"),
            (std::vector<std::string>{"hosts", "networks", "operations", "storage_pools", "tokens",
                                      "vms", "volumes"}));
  const auto index_sql =
      raw.query("SELECT sql FROM sqlite_master WHERE name = 'operations_idempotency'");
  ASSERT_EQ(index_sql.size(), 1u);
  EXPECT_NE(index_sql[0].find("UNIQUE"), std::string::npos);
  EXPECT_NE(index_sql[0].find("WHERE idempotency_key != ''"), std::string::npos);
}

TEST_F(SqliteStoreTest, CreatesAMissingFile) {
  ASSERT_FALSE(fs::exists(path_));
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::exists(path_));
}

TEST_F(SqliteStoreTest, RoundTripsEveryRecordType) {
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.put_hosts = {make_host("node2", false), make_host("node1", true)};
  b.put_vms = {make_vm("0c8f3a61-2a0e-4d7b-8a5e-4d1e2c3b4a59", "web1")};
  Vm plain;
  plain.id = "1d9a3b72-3b1f-4e8c-9b6f-5e2f3d4c5b6a";
  plain.spec.name = "db1";
  plain.spec.memory_mib = 512;
  b.put_vms.push_back(plain);
  b.put_operations = {make_op("op-1", "k1", "admin")};
  Operation pending;
  pending.id = "op-2";
  pending.kind = std::string(op_kind::vm_start);
  pending.target_type = "vm";
  pending.target_id = plain.id;
  pending.created_at = at_ms(200);
  b.put_operations.push_back(pending);
  TokenRecord admin{"tok-a", "admin", Role::admin, "aaaa", "", at_ms(1)};
  b.put_tokens = {make_token("tok-b", "bbbb"), admin};
  ASSERT_TRUE(store->commit(b).ok());

  const auto snap = load_ok(*store);
  ASSERT_EQ(snap.hosts.size(), 2u);
  EXPECT_EQ(json(snap.hosts[0]), json(b.put_hosts[1]));  // ordered by name
  EXPECT_EQ(json(snap.hosts[1]), json(b.put_hosts[0]));
  EXPECT_FALSE(snap.hosts[1].last_heartbeat.has_value());
  ASSERT_EQ(snap.vms.size(), 2u);
  EXPECT_EQ(json(snap.vms[0]), json(plain));  // "db1" < "web1"
  EXPECT_EQ(json(snap.vms[1]), json(b.put_vms[0]));
  EXPECT_EQ(snap.vms[1].spec, b.put_vms[0].spec);
  ASSERT_EQ(snap.operations.size(), 2u);
  EXPECT_EQ(json(snap.operations[0]), json(b.put_operations[0]));  // ordered by creation
  EXPECT_EQ(json(snap.operations[1]), json(pending));
  ASSERT_TRUE(snap.operations[0].error.has_value());
  EXPECT_EQ(snap.operations[0].error->code, ErrorCode::unavailable);
  ASSERT_EQ(snap.tokens.size(), 2u);
  EXPECT_EQ(snap.tokens[0], admin);
  EXPECT_EQ(snap.tokens[1], b.put_tokens[0]);
}

TEST_F(SqliteStoreTest, PutReplacesAndDeleteRemoves) {
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch first;
  first.put_hosts = {make_host("node1", true)};
  first.put_vms = {make_vm("vm-1", "web1")};
  first.put_operations = {make_op("op-1", "k1", "admin")};
  first.put_tokens = {make_token("tok-1", "h1")};
  ASSERT_TRUE(store->commit(first).ok());

  WriteBatch second;
  Vm renamed = make_vm("vm-1", "web2");
  renamed.generation = 9;
  second.put_vms = {renamed};
  Operation done = make_op("op-1", "k1", "admin");
  done.state = OpState::succeeded;
  done.error.reset();
  second.put_operations = {done};
  second.delete_hosts = {"node1", "no-such-host"};
  second.delete_tokens = {"tok-1"};
  second.delete_vms = {"no-such-vm"};
  second.delete_operations = {"no-such-op"};
  ASSERT_TRUE(store->commit(second).ok());

  const auto snap = load_ok(*store);
  EXPECT_TRUE(snap.hosts.empty());
  EXPECT_TRUE(snap.tokens.empty());
  ASSERT_EQ(snap.vms.size(), 1u);
  EXPECT_EQ(json(snap.vms[0]), json(renamed));
  ASSERT_EQ(snap.operations.size(), 1u);
  EXPECT_EQ(snap.operations[0].state, OpState::succeeded);
  EXPECT_FALSE(snap.operations[0].error.has_value());

  WriteBatch third;
  third.delete_vms = {"vm-1"};
  third.delete_operations = {"op-1"};
  ASSERT_TRUE(store->commit(third).ok());
  const auto empty = load_ok(*store);
  EXPECT_TRUE(empty.vms.empty());
  EXPECT_TRUE(empty.operations.empty());
  EXPECT_TRUE(store->commit(WriteBatch{}).ok());
}

TEST_F(SqliteStoreTest, BatchWithAConflictingIdempotencyKeyWritesNothing) {
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch first;
  first.put_operations = {make_op("op-1", "retry-me", "alice")};
  ASSERT_TRUE(store->commit(first).ok());

  // The new VM comes first in the batch and is written before the clash is found;
  // it must not survive the failed batch.
  WriteBatch second;
  second.put_hosts = {make_host("node9", false)};
  second.put_vms = {make_vm("vm-2", "web2")};
  second.put_operations = {make_op("op-2", "retry-me", "alice")};
  second.delete_operations = {"op-unrelated"};
  const auto st = store->commit(second);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::conflict);
  EXPECT_NE(st.error().message.find("op-2"), std::string::npos) << st.error().message;

  const auto snap = load_ok(*store);
  EXPECT_TRUE(snap.hosts.empty());
  EXPECT_TRUE(snap.vms.empty());
  ASSERT_EQ(snap.operations.size(), 1u);
  EXPECT_EQ(snap.operations[0].id, "op-1");

  // The store is still usable after the rolled-back batch.
  WriteBatch third;
  third.put_vms = {make_vm("vm-2", "web2")};
  EXPECT_TRUE(store->commit(third).ok());
}

TEST_F(SqliteStoreTest, IdempotencyKeysAreScopedToTheCallerAndEmptyKeysNeverClash) {
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.put_operations = {make_op("op-1", "k", "alice"), make_op("op-2", "k", "bob"),
                      make_op("op-3", "", "alice"), make_op("op-4", "", "alice")};
  ASSERT_TRUE(store->commit(b).ok());
  EXPECT_EQ(load_ok(*store).operations.size(), 4u);
}

TEST_F(SqliteStoreTest, DuplicateVmNameOrTokenHashIsAConflict) {
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.put_vms = {make_vm("vm-1", "web1")};
  b.put_tokens = {make_token("tok-1", "same-hash")};
  ASSERT_TRUE(store->commit(b).ok());

  WriteBatch vm_clash;
  vm_clash.put_vms = {make_vm("vm-2", "web1")};
  auto st = store->commit(vm_clash);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::conflict);

  WriteBatch token_clash;
  token_clash.put_tokens = {make_token("tok-2", "same-hash")};
  st = store->commit(token_clash);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::conflict);

  // The first rows are untouched (an upsert must not delete the row it clashed with).
  const auto snap = load_ok(*store);
  ASSERT_EQ(snap.vms.size(), 1u);
  EXPECT_EQ(snap.vms[0].id, "vm-1");
  ASSERT_EQ(snap.tokens.size(), 1u);
  EXPECT_EQ(snap.tokens[0].id, "tok-1");
}

TEST_F(SqliteStoreTest, DeleteAndRecreateUnderTheSameNameInOneBatch) {
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch first;
  first.put_vms = {make_vm("vm-1", "web1")};
  ASSERT_TRUE(store->commit(first).ok());
  WriteBatch second;
  second.delete_vms = {"vm-1"};
  second.put_vms = {make_vm("vm-2", "web1")};
  ASSERT_TRUE(store->commit(second).ok());
  const auto snap = load_ok(*store);
  ASSERT_EQ(snap.vms.size(), 1u);
  EXPECT_EQ(snap.vms[0].id, "vm-2");
}

TEST_F(SqliteStoreTest, DataSurvivesCloseAndReopen) {
  WriteBatch b;
  b.put_hosts = {make_host("node1", true)};
  b.put_vms = {make_vm("vm-1", "web1")};
  b.put_operations = {make_op("op-1", "k1", "admin")};
  b.put_tokens = {make_token("tok-1", "h1")};
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->commit(b).ok());
  }
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  const auto snap = load_ok(*store);
  ASSERT_EQ(snap.hosts.size(), 1u);
  EXPECT_EQ(json(snap.hosts[0]), json(b.put_hosts[0]));
  ASSERT_EQ(snap.vms.size(), 1u);
  EXPECT_EQ(json(snap.vms[0]), json(b.put_vms[0]));
  ASSERT_EQ(snap.operations.size(), 1u);
  EXPECT_EQ(json(snap.operations[0]), json(b.put_operations[0]));
  ASSERT_EQ(snap.tokens.size(), 1u);
  EXPECT_EQ(snap.tokens[0], b.put_tokens[0]);

  // Unique constraints still hold after reopening.
  WriteBatch clash;
  clash.put_operations = {make_op("op-2", "k1", "admin")};
  const auto st = store->commit(clash);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::conflict);
}

TEST_F(SqliteStoreTest, ASecondOpenerIsRefusedWhileTheFirstHoldsTheFile) {
  auto first = open_ok();
  ASSERT_NE(first, nullptr);
  auto second = open_sqlite_store(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::unavailable);
  EXPECT_NE(second.error().message.find("another controller"), std::string::npos)
      << second.error().message;
  EXPECT_NE(second.error().message.find(path_ + ".lock"), std::string::npos);

  first.reset();
  auto third = open_sqlite_store(path_);
  EXPECT_TRUE(third.ok());
}

TEST_F(SqliteStoreTest, AWriteLockHeldOutsideTheStoreIsUnavailable) {
  auto store = open_ok(SqliteStoreOptions{std::chrono::milliseconds(20)});
  ASSERT_NE(store, nullptr);
  RawDb raw(path_);
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  WriteBatch b;
  b.put_vms = {make_vm("vm-1", "web1")};
  const auto st = store->commit(b);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::unavailable);
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);

  EXPECT_TRUE(load_ok(*store).vms.empty());
  EXPECT_TRUE(store->commit(b).ok());
  EXPECT_EQ(load_ok(*store).vms.size(), 1u);
}

TEST_F(SqliteStoreTest, ARowThatIsNotJsonIsAnErrorNamingIt) {
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    WriteBatch b;
    b.put_vms = {make_vm("vm-1", "web1"), make_vm("vm-2", "web2")};
    ASSERT_TRUE(store->commit(b).ok());
  }
  {
    RawDb raw(path_);
    raw.query("UPDATE vms SET json = ?1 WHERE id = ?2", {"{\"id\": \"vm-2\", ", "vm-2"});
  }
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  const auto snap = store->load();
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.error().code, ErrorCode::internal);
  EXPECT_NE(snap.error().message.find("vm-2"), std::string::npos) << snap.error().message;
  EXPECT_EQ(snap.error().details.value("table", ""), "vms");
  EXPECT_EQ(snap.error().details.value("key", ""), "vm-2");
}

TEST_F(SqliteStoreTest, JsonOfTheWrongShapeIsAnErrorNamingTheRow) {
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    WriteBatch b;
    b.put_operations = {make_op("op-1", "", "admin")};
    b.put_hosts = {make_host("node1", false)};
    ASSERT_TRUE(store->commit(b).ok());
  }
  {
    RawDb raw(path_);
    raw.query("UPDATE operations SET json = ?1 WHERE id = ?2", {"{\"id\": \"op-1\"}", "op-1"});
  }
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  auto snap = store->load();
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.error().code, ErrorCode::internal);
  EXPECT_NE(snap.error().message.find("op-1"), std::string::npos) << snap.error().message;

  // A host row whose JSON names a different host is just as wrong.
  {
    RawDb raw(path_);
    raw.query("DELETE FROM operations");
    raw.query("UPDATE hosts SET json = json_set(json, '$.name', 'node2')");
  }
  snap = store->load();
  ASSERT_FALSE(snap.ok());
  EXPECT_NE(snap.error().message.find("node1"), std::string::npos) << snap.error().message;
}

TEST_F(SqliteStoreTest, ATokenWithAnUnknownRoleIsAnError) {
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    WriteBatch b;
    b.put_tokens = {make_token("tok-1", "h1")};
    ASSERT_TRUE(store->commit(b).ok());
  }
  {
    RawDb raw(path_);
    raw.query("UPDATE tokens SET role = 'root'");
  }
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  const auto snap = store->load();
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.error().code, ErrorCode::internal);
  EXPECT_NE(snap.error().message.find("tok-1"), std::string::npos);
}

TEST_F(SqliteStoreTest, AVersionOneFileIsUpgradedInPlaceAndKeepsItsRows) {
  {
    auto store = open_ok();
    WriteBatch b;
    TokenRecord t;
    t.id = "3c9f1a2b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    t.name = "admin";
    t.role = Role::admin;
    t.hash = "h1";
    b.put_tokens.push_back(t);
    ASSERT_TRUE(store->commit(b).ok());
  }
  {
    // What a controller of schema version 1 left behind.
    RawDb raw(path_);
    ASSERT_EQ(raw.exec("DROP TABLE storage_pools; DROP TABLE volumes; DROP TABLE networks; "
                       "PRAGMA user_version = 1"),
              SQLITE_OK);
  }
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(load_ok(*store).tokens.size(), 1u);
  StoragePool p;
  p.name = "pool1";
  p.state = PoolState::ready;
  p.targets.push_back(
      IscsiPoolTarget{"10.0.0.1:3260", "iqn.2026-01.io.kvmfleet:a", 1, "u", "secret-123456"});
  p.hosts["node1"].connected = true;
  p.hosts["node1"].devices = {"/dev/sda"};
  Volume v;
  v.id = "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a";
  v.name = "disk1";
  v.pool = "pool1";
  v.size_bytes = 1 << 30;
  v.state = VolumeState::ready;
  Snapshot sn;
  sn.id = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
  sn.name = "s1";
  sn.lv = "disk1.snap.s1";
  sn.fill_percent = 12.5;
  v.snapshots.push_back(sn);
  WriteBatch b;
  b.put_pools.push_back(p);
  b.put_volumes.push_back(v);
  ASSERT_TRUE(store->commit(b).ok());
  auto snap = load_ok(*store);
  ASSERT_EQ(snap.pools.size(), 1u);
  EXPECT_EQ(snap.pools[0].targets, p.targets);
  EXPECT_EQ(snap.pools[0].hosts.at("node1"), p.hosts.at("node1"));
  ASSERT_EQ(snap.volumes.size(), 1u);
  EXPECT_EQ(snap.volumes[0].snapshots, v.snapshots);
  EXPECT_EQ(snap.volumes[0].size_bytes, v.size_bytes);
  RawDb raw(path_);
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::vector<std::string>{"3"});
}

TEST_F(SqliteStoreTest, NetworksRoundTripAndAVersionTwoFileGainsTheirTable) {
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
  }
  {
    // What a controller of schema version 2 (before networks) left behind.
    RawDb raw(path_);
    ASSERT_EQ(raw.exec("DROP TABLE networks; PRAGMA user_version = 2"), SQLITE_OK);
  }
  Network n;
  n.name = "lab";
  n.bridge = "br-lab";
  n.vlan = 42;
  n.uplink = "eth1";
  n.mtu = 9000;
  n.hosts["node1"].ready = true;
  n.hosts["node2"].error = "not_found: uplink eth1 does not exist on this host";
  Network plain;
  plain.name = "mgmt";
  plain.bridge = "br0";
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    WriteBatch b;
    b.put_networks = {n, plain};
    ASSERT_TRUE(store->commit(b).ok());
  }
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  auto snap = load_ok(*store);
  ASSERT_EQ(snap.networks.size(), 2u);
  EXPECT_EQ(snap.networks[0].name, "lab");  // by name
  EXPECT_EQ(snap.networks[0].vlan, 42);
  EXPECT_EQ(snap.networks[0].uplink, "eth1");
  EXPECT_EQ(snap.networks[0].mtu, 9000);
  EXPECT_EQ(snap.networks[0].hosts, n.hosts);
  EXPECT_EQ(snap.networks[1].name, "mgmt");
  EXPECT_FALSE(snap.networks[1].vlan.has_value());
  WriteBatch del;
  del.delete_networks = {"lab"};
  ASSERT_TRUE(store->commit(del).ok());
  snap = load_ok(*store);
  ASSERT_EQ(snap.networks.size(), 1u);
  EXPECT_EQ(snap.networks[0].name, "mgmt");
  RawDb raw(path_);
  EXPECT_EQ(raw.query("PRAGMA user_version"), std::vector<std::string>{"3"});
}

TEST_F(SqliteStoreTest, ANewerSchemaIsRefused) {
  { ASSERT_NE(open_ok(), nullptr); }
  {
    RawDb raw(path_);
    ASSERT_EQ(raw.exec("PRAGMA user_version = 99"), SQLITE_OK);
  }
  const auto store = open_sqlite_store(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code, ErrorCode::unavailable);
  EXPECT_NE(store.error().message.find("99"), std::string::npos);
}

TEST_F(SqliteStoreTest, AFileThatIsNotADatabaseIsUnavailable) {
  {
    std::ofstream out(path_);
    out << std::string(8192, 'x');
  }
  const auto store = open_sqlite_store(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code, ErrorCode::unavailable);
  EXPECT_NE(store.error().message.find(path_), std::string::npos) << store.error().message;
}

TEST_F(SqliteStoreTest, AnUnopenablePathIsUnavailable) {
  { std::ofstream(dir_ / "a-file") << "x"; }
  const auto store = open_sqlite_store((dir_ / "a-file" / "state.db").string());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code, ErrorCode::unavailable);
}

// Restores the process's umask when the test ends.
class Umask {
 public:
  explicit Umask(mode_t m) : old_(::umask(m)) {}
  ~Umask() { ::umask(old_); }

 private:
  mode_t old_;
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

StoragePool chap_pool(const std::string& name, const std::string& password) {
  StoragePool p;
  p.name = name;
  p.state = PoolState::ready;
  p.targets.push_back(
      IscsiPoolTarget{"10.0.0.1:3260", "iqn.2026-01.io.kvmfleet:a", 1, "chapuser", password});
  p.targets.push_back(IscsiPoolTarget{"10.0.0.2:3260", "iqn.2026-01.io.kvmfleet:b", 1, "", ""});
  return p;
}

TEST_F(SqliteStoreTest, StateFilesArePrivateWhateverTheUmask) {
  Umask loose(022);
  const fs::path state = dir_ / "var" / "kvmfleet";
  const std::string db = (state / "state.db").string();
  auto store = open_sqlite_store(db);
  ASSERT_TRUE(store.ok()) << store.error().message;
  WriteBatch b;
  b.put_hosts = {make_host("node1", true)};
  ASSERT_TRUE((*store)->commit(b).ok());
  EXPECT_EQ(mode_of(dir_ / "var"), 0700u);
  EXPECT_EQ(mode_of(state), 0700u);
  for (const char* suffix : {"", "-wal", "-shm", ".key", ".lock"}) {
    ASSERT_TRUE(fs::exists(db + suffix)) << suffix;
    EXPECT_EQ(mode_of(db + suffix), 0600u) << suffix;
  }
}

TEST_F(SqliteStoreTest, AnExistingWorldReadableDatabaseIsMadePrivate) {
  { auto store = open_ok(); }
  ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(mode_of(path_), 0600u);
}

TEST_F(SqliteStoreTest, ReplayedSecretsAreEncryptedAtRestAndNeverInTheFilesInPlainText) {
  const std::string agent_secret = "kvf_AgentSecretThatMustNotBeReadable0123456789";
  const std::string chap = "ChapPasswordKept-1";
  const std::string rolled_back = "ChapPasswordRolledBack-2";
  auto store = open_ok();
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  Host h = make_host("node1", true);
  h.agent_secret = agent_secret;
  b.put_hosts = {h};
  b.put_pools = {chap_pool("pool1", chap)};
  ASSERT_TRUE(store->commit(b).ok());
  // A pool whose batch fails (a clashing token hash) is rolled back.
  WriteBatch seed;
  seed.put_tokens = {make_token("tok-1", "same-hash")};
  ASSERT_TRUE(store->commit(seed).ok());
  WriteBatch failing;
  failing.put_pools = {chap_pool("pool2", rolled_back)};
  failing.put_tokens = {make_token("tok-2", "same-hash")};
  ASSERT_FALSE(store->commit(failing).ok());
  // A pool whose creation failed is deleted again: its row stays in the WAL.
  const std::string deleted = "ChapPasswordOfADeletedPool-3";
  WriteBatch created, undone;
  created.put_pools = {chap_pool("pool3", deleted)};
  ASSERT_TRUE(store->commit(created).ok());
  undone.delete_pools = {"pool3"};
  ASSERT_TRUE(store->commit(undone).ok());

  const auto snap = load_ok(*store);
  ASSERT_EQ(snap.hosts.size(), 1u);
  EXPECT_EQ(snap.hosts[0].agent_secret, agent_secret);
  ASSERT_EQ(snap.pools.size(), 1u);
  EXPECT_EQ(snap.pools[0].targets[0].chap_password, chap);
  EXPECT_EQ(snap.pools[0].targets[1].chap_username, "");

  // The rows hold sealed values, and no file holds a secret's bytes.
  RawDb raw(path_);
  const auto host_json = json::parse(raw.query("SELECT json FROM hosts")[0]);
  EXPECT_TRUE(host_json["agent_secret"].get<std::string>().starts_with("kvf-enc-v1:"));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string bytes = bytes_of(path_ + suffix);
    for (const std::string& secret : {agent_secret, chap, rolled_back, deleted})
      EXPECT_EQ(bytes.find(secret), std::string::npos) << secret << " in " << path_ << suffix;
  }
}

TEST_F(SqliteStoreTest, SealedSecretsOpenOnlyWithTheirKeyAndInTheirRecord) {
  {
    auto store = open_ok();
    WriteBatch b;
    Host h = make_host("node1", true);
    h.agent_secret = "kvf_first";
    Host other = make_host("node2", true);
    other.agent_secret = "kvf_second";
    b.put_hosts = {h, other};
    ASSERT_TRUE(store->commit(b).ok());
  }
  {
    // A sealed value moved to another record does not open there.
    RawDb raw(path_);
    ASSERT_EQ(raw.exec("UPDATE hosts SET json = (SELECT json FROM hosts WHERE name = 'node1') "
                       "WHERE name = 'node2'"),
              SQLITE_OK);
    ASSERT_EQ(raw.exec("UPDATE hosts SET json = json_set(json, '$.name', 'node2') "
                       "WHERE name = 'node2'"),
              SQLITE_OK);
  }
  {
    auto store = open_ok();
    ASSERT_NE(store, nullptr);
    auto snap = store->load();
    ASSERT_FALSE(snap.ok());
    EXPECT_NE(snap.error().message.find("node2"), std::string::npos) << snap.error().message;
  }
  // Another key opens nothing.
  SqliteStoreOptions other_key;
  other_key.key_file = (dir_ / "other.key").string();
  auto store = open_sqlite_store(path_, other_key);
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE((*store)->load().ok());
  EXPECT_EQ(mode_of(dir_ / "other.key"), 0600u);
}

TEST_F(SqliteStoreTest, APlainTextSecretOfAnOlderControllerIsReadAndSealedOnTheNextWrite) {
  {
    auto store = open_ok();
    WriteBatch b;
    b.put_hosts = {make_host("node1", true)};
    ASSERT_TRUE(store->commit(b).ok());
  }
  {
    RawDb raw(path_);
    ASSERT_EQ(raw.exec("UPDATE hosts SET json = json_set(json, '$.agent_secret', 'kvf_old')"),
              SQLITE_OK);
  }
  auto store = open_ok();
  auto snap = load_ok(*store);
  ASSERT_EQ(snap.hosts.size(), 1u);
  EXPECT_EQ(snap.hosts[0].agent_secret, "kvf_old");
  WriteBatch b;
  b.put_hosts = {snap.hosts[0]};
  ASSERT_TRUE(store->commit(b).ok());
  RawDb raw(path_);
  EXPECT_TRUE(json::parse(raw.query("SELECT json FROM hosts")[0])["agent_secret"]
                  .get<std::string>()
                  .starts_with("kvf-enc-v1:"));
  EXPECT_EQ(load_ok(*store).hosts[0].agent_secret, "kvf_old");
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role r : {Role::admin, Role::operator_, Role::viewer, Role::agent})
    EXPECT_EQ(role_from_string(to_string(r)), r);
  EXPECT_EQ(to_string(Role::operator_), "operator");
  EXPECT_FALSE(role_from_string("root").has_value());
  EXPECT_FALSE(role_from_string("").has_value());
}

}  // namespace
}  // namespace kvmfleet
