// The shared-storage parts of the contract that the live test cannot reach without
// agents (no pool ever becomes ready there): the controller's own view functions render
// pools, volumes, snapshots and VMs on volumes, and openapi_check.py checks those bodies
// against api/openapi.yaml; and the controller's own request parsers judge a table of
// request bodies, which the contract's request schemas must judge the same way.
#include "checker.hpp"

#include "kvmfleet/api/request_parsing.hpp"
#include "kvmfleet/api/views.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <functional>

namespace kvmfleet::contract {
namespace {

using nlohmann::json;

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
const Clock::time_point kT0{std::chrono::seconds{1'780'000'000}};
const std::string kVmId = "5c1d6f0e-2b3a-4c5d-8e9f-0a1b2c3d4e5f";
const std::string kVol1Id = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const std::string kVol2Id = "1a2b3c4d-5e6f-4a0b-9c1d-2e3f4a5b6c7d";
const std::string kVol3Id = "2b3c4d5e-6f7a-4b1c-8d2e-3f4a5b6c7d8e";
const std::string kChapSecret = "0123456789abcdef";

// A cluster as the controller would hold it with pools, volumes and snapshots made.
ClusterState::Data storage_cluster() {
  ClusterState::Data d;
  WriteBatch b;
  StoragePool iscsi;
  iscsi.name = "pool1";
  iscsi.type = PoolType::iscsi;
  iscsi.targets = {{"10.77.0.1:3260", "iqn.2026-01.io.kvmfleet:san", 1, "kvmfleet", kChapSecret},
                   {"[fd00::1]:3260", "iqn.2026-01.io.kvmfleet:san", 2, "", ""}};
  iscsi.state = PoolState::ready;
  iscsi.size_bytes = 100 * kGiB;
  iscsi.free_bytes = 60 * kGiB;
  iscsi.hosts["node1"] = {
      true,
      {"/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-iqn.2026-01.io.kvmfleet:san-lun-1"},
      true,
      "",
      kT0};
  iscsi.hosts["node2"] = {
      false, {}, false, "login to iqn.2026-01.io.kvmfleet:san at 10.77.0.1:3260: unavailable", kT0};
  iscsi.all_hosts = true;
  iscsi.created_at = kT0;
  iscsi.updated_at = kT0 + std::chrono::seconds(40);
  b.put_pools.push_back(iscsi);

  StoragePool fc;
  fc.name = "fc1";
  fc.type = PoolType::fc;
  fc.wwids = {"3600a0b80000f1e2d0000a1b2c3d4e5f6", "0x5000c500a1b2c3d4"};
  fc.state = PoolState::creating;
  fc.created_at = fc.updated_at = kT0;
  b.put_pools.push_back(fc);

  Vm vm;
  vm.id = kVmId;
  vm.spec.name = "db1";
  vm.spec.vcpus = 2;
  vm.spec.memory_mib = 2048;
  vm.spec.disks.push_back(DiskSpec{10, DiskBus::virtio, "", ""});
  vm.spec.disks.push_back(DiskSpec{20, DiskBus::scsi, kVol1Id, "/dev/pool1/vol1"});
  vm.host = "node1";
  vm.desired = DesiredState::running;
  vm.state = VmState::running;
  vm.generation = 3;
  vm.created_at = vm.updated_at = kT0;
  b.put_vms.push_back(vm);

  Volume v1;
  v1.id = kVol1Id;
  v1.name = "vol1";
  v1.pool = "pool1";
  v1.size_bytes = 20 * kGiB;
  v1.state = VolumeState::ready;
  v1.attached_to = kVmId;
  Snapshot s1;
  s1.id = "3c4d5e6f-7a8b-4c2d-9e3f-4a5b6c7d8e9f";
  s1.name = "before-upgrade";
  s1.lv = snapshot_lv_name(v1.name, s1.name);
  s1.size_bytes = 5 * kGiB;
  s1.consistency = SnapshotConsistency::quiesced;
  s1.fill_percent = 12.5;
  s1.created_at = kT0;
  Snapshot s2 = s1;
  s2.id = "4d5e6f7a-8b9c-4d3e-8f4a-5b6c7d8e9fa0";
  s2.name = "nightly";
  s2.lv = snapshot_lv_name(v1.name, s2.name);
  s2.consistency = SnapshotConsistency::crash_consistent;
  s2.fill_percent.reset();
  s2.merge_pending = true;
  Snapshot s3 = s1;
  s3.id = "5e6f7a8b-9cad-4e4f-9a5b-6c7d8e9fa0b1";
  s3.name = "overflowed";
  s3.lv = snapshot_lv_name(v1.name, s3.name);
  s3.fill_percent = 100.0;
  s3.invalid = true;
  v1.snapshots = {s1, s2, s3};
  v1.created_at = v1.updated_at = kT0;

  Volume v2;
  v2.id = kVol2Id;
  v2.name = "scratch";
  v2.pool = "pool1";
  v2.size_bytes = 512;
  v2.state = VolumeState::creating;
  v2.created_at = v2.updated_at = kT0;

  Volume v3 = v2;  // attached to a VM whose record is gone
  v3.id = kVol3Id;
  v3.name = "orphan";
  v3.size_bytes = 1024 * 1024 * kGiB;
  v3.state = VolumeState::deleting;
  v3.attached_to = "6f7a8b9c-adbe-4f5a-8b6c-7d8e9fa0b1c2";

  b.put_volumes = {v1, v2, v3};
  d.apply(b);
  return d;
}

std::string exchange(const std::string& templ, const std::string& path, const json& body) {
  return json{{"method", "GET"},
              {"path_template", templ},
              {"path", path},
              {"status", 200},
              {"content_type", "application/json"},
              {"headers", json::object()},
              {"body", body.dump()}}
      .dump();
}

TEST(StorageContract, ViewsMatchTheContract) {
  const ClusterState::Data d = storage_cluster();
  json pools = json::array();
  for (const auto& [_, p] : d.pools) pools.push_back(api::pool_view(p, d));
  json volumes = json::array();
  for (const auto& [_, id] : d.volume_ids) volumes.push_back(api::volume_view(d.volumes.at(id), d));
  const Volume& vol1 = d.volumes.at(kVol1Id);
  json snapshots = json::array();
  for (const auto& s : vol1.snapshots) snapshots.push_back(api::snapshot_view(s, vol1));
  const json vm = api::vm_view(d.vms.at(kVmId));

  // What the views say, beyond their shape.
  EXPECT_EQ(pools.dump().find(kChapSecret), std::string::npos) << "a CHAP secret is shown";
  const json pool1 = api::pool_view(d.pools.at("pool1"), d);
  EXPECT_TRUE(pool1["targets"][0].value("chap", false));
  EXPECT_FALSE(pool1["targets"][1].value("chap", true));
  EXPECT_TRUE(pool1["hosts"]["node1"].value("usable", false));
  EXPECT_FALSE(pool1["hosts"]["node2"].value("usable", true));
  EXPECT_EQ(pool1.value("volume_count", 0), 3);
  EXPECT_TRUE(pool1.value("all_hosts", false));
  EXPECT_FALSE(api::pool_view(d.pools.at("fc1"), d).value("all_hosts", true));
  const json v1 = api::volume_view(vol1, d);
  EXPECT_EQ(v1.value("device", ""), "/dev/pool1/vol1");
  EXPECT_EQ(v1.value("attached_vm_name", ""), "db1");
  EXPECT_EQ(v1["snapshots"].size(), 3u);
  EXPECT_EQ(snapshots[0].value("lv", ""), "vol1.snap.before-upgrade");
  EXPECT_EQ(vm["disks"][1].value("volume", ""), kVol1Id);
  EXPECT_EQ(vm["disks"][1].value("device", ""), "/dev/pool1/vol1");
  EXPECT_FALSE(vm["disks"][0].contains("volume"));

  const std::vector<std::string> lines = {
      exchange("/v1/storage-pools", "/v1/storage-pools", {{"items", pools}}),
      exchange("/v1/storage-pools/{name}", "/v1/storage-pools/pool1", pool1),
      exchange("/v1/storage-pools/{name}", "/v1/storage-pools/fc1",
               api::pool_view(d.pools.at("fc1"), d)),
      exchange("/v1/volumes", "/v1/volumes?pool=pool1", {{"items", volumes}}),
      exchange("/v1/volumes/{id}", "/v1/volumes/vol1", v1),
      exchange("/v1/volumes/{id}", "/v1/volumes/" + kVol3Id,
               api::volume_view(d.volumes.at(kVol3Id), d)),
      exchange("/v1/volumes/{id}/snapshots", "/v1/volumes/vol1/snapshots", {{"items", snapshots}}),
      exchange("/v1/volumes/{id}/snapshots/{snapshot}", "/v1/volumes/vol1/snapshots/nightly",
               snapshots[1]),
      exchange("/v1/vms/{id}", "/v1/vms/db1", vm),
      exchange("/v1/vms", "/v1/vms", {{"items", {vm}}, {"next_cursor", nullptr}}),
  };
  const std::string path = kRecordDir + "/recorded-storage-views.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({path});
  EXPECT_EQ(check.exit_code, 0) << "api/openapi.yaml does not describe the storage views (" << path
                                << "):\n"
                                << check.out << check.err;
}

// ---- request schemas against the controller's parsers -----------------------------------

struct Case {
  std::string label;
  json body;
  bool looser = false;  // a rule the contract states in prose only
};

using Parser = std::function<bool(const json&)>;

void add_cases(std::vector<std::string>& out, const std::string& schema, const Parser& accepts,
               const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    out.push_back(json{
        {"label", schema.substr(schema.rfind('/') + 1) + ": " + c.label},
        {"schema", schema},
        {"instance", c.body},
        {"accepted", accepts(c.body)},
        {"looser",
         c.looser}}.dump());
  }
}

json with(json base, const std::string& key, const json& value) {
  if (value.is_discarded())
    base.erase(key);
  else
    base[key] = value;
  return base;
}

TEST(StorageContract, RequestSchemasAcceptWhatTheParsersAccept) {
  const json gone(json::value_t::discarded);
  const json target = {{"portal", "10.77.0.1"}, {"iqn", "iqn.2026-01.io.kvmfleet:san"}};
  const json pool = {{"name", "pool1"}, {"type", "iscsi"}, {"targets", {target}}};
  auto pool_target = [&](const std::string& key, const json& value) {
    return with(pool, "targets", json::array({with(target, key, value)}));
  };
  const json fc = {
      {"name", "fc1"}, {"type", "fc"}, {"wwids", {"3600a0b80000f1e2d0000a1b2c3d4e5f6"}}};
  json many_targets = json::array();
  for (int lun = 0; lun < 17; ++lun) many_targets.push_back(with(target, "lun", lun));
  json many_wwids = json::array();
  for (int i = 0; i < 17; ++i) many_wwids.push_back("36000" + std::to_string(100 + i));
  json many_hosts = json::array();
  for (int i = 0; i < 257; ++i) many_hosts.push_back("node" + std::to_string(i));
  const std::string long_label(63, 'a');
  const std::string long_dns =
      long_label + "." + long_label + "." + long_label + "." + long_label + ".example";

  std::vector<std::string> lines;
  add_cases(
      lines, "/components/schemas/StoragePoolCreateRequest",
      [](const json& b) { return api::parse_pool_create(b).ok(); },
      {
          {"minimal iSCSI", pool},
          {"IPv4 portal with port", pool_target("portal", "10.77.0.1:3261")},
          {"port with leading zeros", pool_target("portal", "10.77.0.1:03260")},
          {"DNS portal", pool_target("portal", "SAN-1.example.com:3260")},
          {"IPv6 portal", pool_target("portal", "[fd00::1]:3260")},
          {"IPv6 portal without port", pool_target("portal", "[fd00::1]")},
          {"eui name", pool_target("iqn", "eui.0123456789ABCDEF")},
          {"naa name of 32 digits", pool_target("iqn", "naa.600a0b80000f1e2d0000a1b2c3d4e5f6")},
          {"IQN identifier characters", pool_target("iqn", "iqn.2026-12.io.kvmfleet:a_B.c:d-9")},
          {"LUN 0", pool_target("lun", 0)},
          {"LUN 16383", pool_target("lun", 16383)},
          {"LUN null", pool_target("lun", nullptr)},
          {"CHAP", pool_target("chap", {{"username", "k"}, {"password", "0123456789ab"}})},
          {"CHAP null", pool_target("chap", nullptr)},
          {"two LUNs of one target", with(pool, "targets", {target, with(target, "lun", 2)})},
          {"16 targets",
           with(pool, "targets",
                json(std::vector<json>(many_targets.begin(), many_targets.begin() + 16)))},
          {"hosts", with(pool, "hosts", {"node1", "node2"})},
          {"hosts null", with(pool, "hosts", nullptr)},
          {"hosts empty", with(pool, "hosts", json::array())},
          {"minimal FC", fc},
          {"FC WWID with 0x", with(fc, "wwids", {"0x5000c500a1b2c3d4"})},
          {"FC with hosts", with(fc, "hosts", {"node1"})},
          {"VG name LVM reserves", with(pool, "name", "mapper")},
          {"VG name block", with(pool, "name", "block")},
          {"bad name", with(pool, "name", "Pool1")},
          {"no name", with(pool, "name", gone)},
          {"no type", with(pool, "type", gone)},
          {"type nfs", with(pool, "type", "nfs")},
          {"no targets", with(pool, "targets", gone)},
          {"targets null", with(pool, "targets", nullptr)},
          {"targets empty", with(pool, "targets", json::array())},
          {"17 targets", with(pool, "targets", many_targets)},
          {"target not an object", with(pool, "targets", {"10.77.0.1"})},
          {"no portal", pool_target("portal", gone)},
          {"portal octet 256", pool_target("portal", "10.77.0.256")},
          {"portal octet with leading zero", pool_target("portal", "10.77.0.01")},
          {"portal of digits", pool_target("portal", "10.77.1")},
          {"portal port 0", pool_target("portal", "10.77.0.1:0")},
          {"portal empty port", pool_target("portal", "10.77.0.1:")},
          {"portal port 65536", pool_target("portal", "10.77.0.1:65536"), true},
          {"portal DNS name over 253", pool_target("portal", long_dns), true},
          {"portal unclosed [", pool_target("portal", "[fd00::1")},
          {"portal IPv6 without brackets", pool_target("portal", "fd00::1")},
          {"portal bad IPv6", pool_target("portal", "[fdxx::1]")},
          {"portal empty label", pool_target("portal", "san..example")},
          {"no IQN", pool_target("iqn", gone)},
          {"IQN month 00", pool_target("iqn", "iqn.2026-00.io.kvmfleet:san")},
          {"IQN upper case authority", pool_target("iqn", "iqn.2026-01.IO.kvmfleet:san")},
          {"IQN empty identifier", pool_target("iqn", "iqn.2026-01.io.kvmfleet:")},
          {"IQN with space", pool_target("iqn", "iqn.2026-01.io.kvmfleet:s an")},
          {"IQN of 224 bytes",
           pool_target("iqn", "iqn.2026-01.io.kvmfleet:" + std::string(200, 'a'))},
          {"eui of 15 digits", pool_target("iqn", "eui.0123456789abcde")},
          {"naa of 17 digits", pool_target("iqn", "naa.0123456789abcdef0")},
          {"LUN -1", pool_target("lun", -1)},
          {"LUN 16384", pool_target("lun", 16384)},
          {"LUN as text", pool_target("lun", "1")},
          {"CHAP empty", pool_target("chap", json::object())},
          {"CHAP empty username",
           pool_target("chap", {{"username", ""}, {"password", "0123456789ab"}})},
          {"CHAP password of 11",
           pool_target("chap", {{"username", "k"}, {"password", "0123456789a"}})},
          {"CHAP password with space",
           pool_target("chap", {{"username", "k"}, {"password", "0123456789 ab"}})},
          {"CHAP unknown field",
           pool_target("chap",
                       {{"username", "k"}, {"password", "0123456789ab"}, {"method", "md5"}})},
          {"CHAP as text", pool_target("chap", "k:0123456789ab")},
          {"unknown target field", pool_target("iface", "default")},
          {"a LUN twice", with(pool, "targets", {target, target}), true},
          {"wwids on iSCSI", with(pool, "wwids", {"3600a0b8"})},
          {"wwids null on iSCSI", with(pool, "wwids", nullptr)},
          {"targets on FC", with(fc, "targets", {target})},
          {"targets null on FC", with(fc, "targets", nullptr)},
          {"FC no wwids", with(fc, "wwids", gone)},
          {"FC wwids empty", with(fc, "wwids", json::array())},
          {"FC 17 wwids", with(fc, "wwids", many_wwids)},
          {"FC WWID not hex", with(fc, "wwids", {"36zz"})},
          {"FC WWID with 0X", with(fc, "wwids", {"0X5000c500"})},
          {"FC WWID of 65", with(fc, "wwids", {std::string(65, 'a')})},
          {"FC WWID twice", with(fc, "wwids", {"3600a0b8", "3600a0b8"})},
          {"FC WWID number", with(fc, "wwids", {3600})},
          {"hosts as text", with(pool, "hosts", "node1")},
          {"bad host name", with(pool, "hosts", {"Node1"})},
          {"257 hosts", with(pool, "hosts", many_hosts)},
          {"unknown field", with(pool, "vg", "pool1")},
      });

  add_cases(
      lines, "/components/schemas/StoragePoolHostsRequest",
      [](const json& b) { return api::parse_pool_hosts(b).ok(); },
      {
          {"one host", {{"hosts", {"node1"}}}},
          {"two hosts", {{"hosts", {"node1", "node2"}}}},
          {"256 hosts",
           {{"hosts", json(std::vector<json>(many_hosts.begin(), many_hosts.begin() + 256))}}},
          {"no hosts", json::object()},
          {"hosts null", {{"hosts", nullptr}}},
          {"hosts empty", {{"hosts", json::array()}}},
          {"257 hosts", {{"hosts", many_hosts}}},
          {"hosts as text", {{"hosts", "node1"}}},
          {"bad host name", {{"hosts", {"Node1"}}}},
          {"host as number", {{"hosts", {1}}}},
          {"a host twice", {{"hosts", {"node1", "node1"}}}},
          {"unknown field", {{"hosts", {"node1"}}, {"force", true}}},
      });

  const json vol = {{"name", "vol1"}, {"pool", "pool1"}, {"size_gib", 1}};
  const json vol_bytes = with(vol, "size_gib", gone);
  add_cases(lines, "/components/schemas/VolumeCreateRequest",
            [](const json& b) { return api::parse_volume_create(b).ok(); },
            {
                {"size_gib", vol},
                {"size_gib at most", with(vol, "size_gib", 1048576)},
                {"size_bytes 512", with(vol_bytes, "size_bytes", 512)},
                {"size_bytes 1 PiB", with(vol_bytes, "size_bytes", 1125899906842624LL)},
                {"name snap", with(vol, "name", "snap")},
                {"name lvmlock2", with(vol, "name", "lvmlock2")},
                {"name of 63", with(vol, "name", long_label)},
                {"name of 64", with(vol, "name", long_label + "a")},
                {"name snapshot", with(vol, "name", "snapshot")},
                {"name snapshot1", with(vol, "name", "snapshot1")},
                {"name pvmove0", with(vol, "name", "pvmove0")},
                {"name lvmlock", with(vol, "name", "lvmlock")},
                {"bad name", with(vol, "name", "Vol1")},
                {"no name", with(vol, "name", gone)},
                {"name null", with(vol, "name", nullptr)},
                {"no pool", with(vol, "pool", gone)},
                {"bad pool", with(vol, "pool", "pool_1")},
                {"no size", with(vol, "size_gib", gone)},
                {"both sizes", with(vol, "size_bytes", 1073741824)},
                {"size_bytes null with size_gib", with(vol, "size_bytes", nullptr)},
                {"size_gib null", with(vol, "size_gib", nullptr)},
                {"size_gib 0", with(vol, "size_gib", 0)},
                {"size_gib above 1 PiB", with(vol, "size_gib", 1048577)},
                {"size_bytes 511", with(vol_bytes, "size_bytes", 511)},
                {"size_bytes 1000", with(vol_bytes, "size_bytes", 1000)},
                {"size_bytes above 1 PiB", with(vol_bytes, "size_bytes", 1125899906843136LL)},
                {"size_bytes fraction", with(vol_bytes, "size_bytes", 1024.5)},
                {"size_bytes as text", with(vol_bytes, "size_bytes", "1024")},
                {"unknown field", with(vol, "thin", true)},
            });

  add_cases(lines, "/components/schemas/VolumeGrowRequest",
            [](const json& b) { return api::parse_volume_grow(b).ok(); },
            {
                {"size_bytes", {{"size_bytes", 2147483648LL}}},
                {"size_gib", {{"size_gib", 2}}},
                {"empty", json::object()},
                {"both", {{"size_bytes", 2147483648LL}, {"size_gib", 2}}},
                {"size_bytes 100", {{"size_bytes", 100}}},
                {"size_gib null", {{"size_gib", nullptr}}},
                {"unknown field", {{"size_gib", 2}, {"online", true}}},
            });

  const json snap = {{"name", "s1"}};
  add_cases(lines, "/components/schemas/SnapshotCreateRequest",
            [](const json& b) { return api::parse_snapshot_create(b).ok(); },
            {
                {"name only", snap},
                {"size_bytes", with(snap, "size_bytes", 4194304)},
                {"size_ratio", with(snap, "size_ratio", 0.1)},
                {"size_ratio 1", with(snap, "size_ratio", 1)},
                {"quiesce false", with(snap, "quiesce", false)},
                {"quiesce null", with(snap, "quiesce", nullptr)},
                {"name snapshot1", with(snap, "name", "snapshot1")},
                {"no name", json::object()},
                {"name null", with(snap, "name", nullptr)},
                {"bad name", with(snap, "name", "Snap1")},
                {"both sizes", with(with(snap, "size_bytes", 4194304), "size_ratio", 0.5)},
                {"size_ratio 0", with(snap, "size_ratio", 0)},
                {"size_ratio negative", with(snap, "size_ratio", -0.1)},
                {"size_ratio above 1", with(snap, "size_ratio", 1.01)},
                {"size_ratio as text", with(snap, "size_ratio", "0.5")},
                {"size_ratio null", with(snap, "size_ratio", nullptr)},
                {"size_bytes null", with(snap, "size_bytes", nullptr)},
                {"size_bytes 1000", with(snap, "size_bytes", 1000)},
                {"size_gib", with(snap, "size_gib", 1)},
                {"quiesce as text", with(snap, "quiesce", "no")},
                {"unknown field", with(snap, "memory", true)},
            });

  const json vm = {{"name", "db1"}, {"memory_mib", 64}};
  auto disks = [&](const json& d) { return with(vm, "disks", json::array({d})); };
  const Parser vm_parser = [](const json& b) { return api::parse_vm_create(b).ok(); };
  const std::vector<Case> vm_cases = {
      {"local disk", disks({{"size_gib", 1}})},
      {"volume by name", disks({{"volume", "vol1"}})},
      {"volume by id", disks({{"volume", kVol1Id}, {"bus", "scsi"}})},
      {"volume with bus null", disks({{"volume", "vol1"}, {"bus", nullptr}})},
      {"local disk, volume null", disks({{"size_gib", 1}, {"volume", nullptr}})},
      {"local disk, volume empty", disks({{"size_gib", 1}, {"volume", ""}})},
      {"volume and size_gib", disks({{"volume", "vol1"}, {"size_gib", 1}})},
      {"volume and size_gib null", disks({{"volume", "vol1"}, {"size_gib", nullptr}})},
      {"volume null alone", disks({{"volume", nullptr}})},
      {"volume empty alone", disks({{"volume", ""}})},
      {"bad volume name", disks({{"volume", "Vol1"}})},
      {"volume as number", disks({{"volume", 5}})},
      {"device given", disks({{"volume", "vol1"}, {"device", "/dev/pool1/vol1"}})},
      {"empty disk", disks(json::object())},
      {"local disk too big", disks({{"size_gib", 65537}})},
  };
  add_cases(lines, "/components/schemas/VmCreateRequest", vm_parser, vm_cases);
  add_cases(
      lines, "/components/schemas/PlacementRequest",
      [](const json& b) { return api::parse_vm_create(b, false).ok(); }, vm_cases);

  const std::string path = kRecordDir + "/storage-request-cases.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({"--agreement", path});
  EXPECT_EQ(check.exit_code, 0)
      << "api/openapi.yaml's request schemas and the controller's parsers disagree (" << path
      << "):\n"
      << check.out << check.err;
}

// The agreement check is only as good as its ability to say no.
TEST(OpenApiCheck, ReportsSchemasThatDisagreeWithTheParser) {
  const std::string schema = "/components/schemas/VolumeGrowRequest";
  const std::vector<json> cases = {
      {{"label", "accepted by the parser, refused by the schema"},
       {"schema", schema},
       {"instance", {{"size_bytes", 100}}},
       {"accepted", true}},
      {{"label", "refused by the parser, accepted by the schema"},
       {"schema", schema},
       {"instance", {{"size_gib", 2}}},
       {"accepted", false}},
      {{"label", "marked looser, but the schema refuses"},
       {"schema", schema},
       {"instance", json::object()},
       {"accepted", false},
       {"looser", true}},
      {{"label", "agreement"},
       {"schema", schema},
       {"instance", {{"size_gib", 2}}},
       {"accepted", true}},
      {{"label", "marked legacy, but the schema accepts"},
       {"schema", schema},
       {"instance", {{"size_gib", 2}}},
       {"accepted", true},
       {"legacy", true}},
      {{"label", "legacy: the parser reads what the schema refuses"},
       {"schema", schema},
       {"instance", {{"size_bytes", 100}}},
       {"accepted", true},
       {"legacy", true}},
  };
  const std::string path = kRecordDir + "/agreement-negative.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& c : cases) out << c.dump() << '\n';
  }
  const ProcessOutput check = run_checker({"--agreement", path});
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  for (int n = 1; n <= 3; ++n)
    EXPECT_NE(check.out.find("FAIL case " + std::to_string(n) + " "), std::string::npos)
        << "case " << n << " was not reported:\n"
        << check.out;
  EXPECT_EQ(check.out.find("FAIL case 4 "), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("FAIL case 5 "), std::string::npos) << "case 5 was not reported:\n"
                                                               << check.out;
  EXPECT_EQ(check.out.find("FAIL case 6 "), std::string::npos) << check.out;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kvmfleet::contract
