#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/model/migration.hpp"

#include <gtest/gtest.h>

using namespace kvmfleet;

TEST(Time, FormatAndParseRoundTrip) {
  const auto t = from_unix_ms(1'795'000'123'456);
  const std::string s = format_time(t);
  EXPECT_EQ(s.back(), 'Z');
  auto back = parse_time(s);
  ASSERT_TRUE(back);
  EXPECT_EQ(to_unix_ms(*back), 1'795'000'123'456);
  EXPECT_FALSE(parse_time("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_time("2026-11-24 17:00:00"));
  EXPECT_FALSE(parse_time("2026-11-24T17:00:00.Z"));
}

TEST(ModelJson, VmRoundTrip) {
  Vm vm;
  vm.id = new_uuid();
  vm.spec = {"web1", 2, 1024, {{10, DiskBus::virtio}, {2, DiskBus::scsi}}, "node1", "grp", true};
  vm.host = "node1";
  vm.desired = DesiredState::running;
  vm.state = VmState::shutting_down;
  vm.generation = 7;
  vm.created_at = from_unix_ms(1000);
  vm.updated_at = from_unix_ms(2000);
  nlohmann::json j = vm;
  Vm back = j.get<Vm>();
  EXPECT_EQ(back.id, vm.id);
  EXPECT_EQ(back.spec, vm.spec);
  EXPECT_EQ(back.host, "node1");
  EXPECT_EQ(back.desired, DesiredState::running);
  EXPECT_EQ(back.state, VmState::shutting_down);
  EXPECT_EQ(back.generation, 7);
  EXPECT_EQ(to_unix_ms(back.updated_at), 2000);
}

TEST(ModelJson, OperationRoundTripKeepsErrorAndTimes) {
  Operation op;
  op.id = new_uuid();
  op.kind = "vm.stop";
  op.target_type = "vm";
  op.target_id = new_uuid();
  op.state = OpState::failed;
  op.progress = 40;
  op.error = Error(ErrorCode::timeout, "too slow", {{"timeout_s", 5}});
  op.params = {{"force", false}};
  op.idempotency_key = "k1";
  op.request_hash = "h";
  op.created_at = from_unix_ms(5);
  op.started_at = from_unix_ms(6);
  op.finished_at = from_unix_ms(7);
  nlohmann::json j = op;
  Operation back = j.get<Operation>();
  EXPECT_EQ(back.state, OpState::failed);
  ASSERT_TRUE(back.error);
  EXPECT_EQ(back.error->code, ErrorCode::timeout);
  EXPECT_EQ(back.error->details["timeout_s"], 5);
  EXPECT_EQ(back.idempotency_key, "k1");
  EXPECT_EQ(back.request_hash, "h");
  ASSERT_TRUE(back.finished_at);
  EXPECT_EQ(to_unix_ms(*back.finished_at), 7);
}

TEST(ModelJson, HostRoundTripKeepsSecretAndInventory) {
  Host h;
  h.name = "node1";
  h.agent_url = "http://127.0.0.1:7100";
  h.agent_secret = "kvf_x";
  h.state = HostState::unreachable;
  h.inventory.cpus = 8;
  h.inventory.domains.push_back({new_uuid(), "vm", "running", true, 3, true});
  h.last_heartbeat = from_unix_ms(99);
  nlohmann::json j = h;
  Host back = j.get<Host>();
  EXPECT_EQ(back.agent_secret, "kvf_x");
  EXPECT_EQ(back.state, HostState::unreachable);
  EXPECT_EQ(back.inventory.domains, h.inventory.domains);
  EXPECT_EQ(to_unix_ms(*back.last_heartbeat), 99);
}

TEST(DomainSpec, VolumesAreNamedByVmIdAndDevicesPerBus) {
  Vm vm;
  vm.id = new_uuid();
  vm.spec.name = "db";
  vm.spec.disks = {{1, DiskBus::virtio}, {2, DiskBus::sata}, {3, DiskBus::virtio}};
  auto s = domain_spec_for(vm, "qemu");
  EXPECT_EQ(s.domain_type, "qemu");
  ASSERT_EQ(s.disks.size(), 3u);
  EXPECT_EQ(s.disks[0].target_dev, "vda");
  EXPECT_EQ(s.disks[1].target_dev, "sda");
  EXPECT_EQ(s.disks[2].target_dev, "vdb");
  EXPECT_EQ(s.disks[2].volume, vm.id + "-disk2.qcow2");
  nlohmann::json j = s;
  EXPECT_EQ(j.get<DomainSpec>(), s);
}

TEST(Ids, UuidsAndTokensLookRight) {
  const auto u = new_uuid();
  EXPECT_TRUE(is_valid_uuid(u)) << u;
  EXPECT_NE(u, new_uuid());
  const auto t = new_token();
  EXPECT_EQ(t.rfind("kvf_", 0), 0u);
  EXPECT_EQ(t.size(), 47u);
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
}

namespace kvmfleet {
namespace {

TEST(ConvergenceLadder, RaisesDowntimeThenPostCopyThenAborts) {
  MigrationPolicy p;
  p.max_downtime_ms = 300;
  p.downtime_ceiling_ms = 1000;
  p.converge_timeout_s = 40;  // steps at 10, 20, 30 and 40 s
  EXPECT_EQ(next_ladder_action(p, 9'999, 0).step, 0);
  auto a1 = next_ladder_action(p, 10'000, 0);
  EXPECT_EQ(a1.step, 1);
  EXPECT_EQ(a1.kind, LadderAction::Kind::raise_downtime);
  EXPECT_EQ(a1.downtime_ms, 600);
  EXPECT_EQ(next_ladder_action(p, 15'000, 1).step, 0);  // step 1 taken, step 2 not due
  auto a2 = next_ladder_action(p, 20'000, 1);
  EXPECT_EQ(a2.kind, LadderAction::Kind::raise_downtime);
  EXPECT_EQ(a2.downtime_ms, 1000);  // 1200 capped at the ceiling
  auto a3 = next_ladder_action(p, 30'000, 2);
  EXPECT_EQ(a3.step, 3);
  EXPECT_EQ(a3.kind, LadderAction::Kind::none);  // post-copy not allowed: nothing, but a step
  p.allow_post_copy = true;
  EXPECT_EQ(next_ladder_action(p, 30'000, 2).kind, LadderAction::Kind::post_copy);
  auto a4 = next_ladder_action(p, 40'000, 3);
  EXPECT_EQ(a4.step, 4);
  EXPECT_EQ(a4.kind, LadderAction::Kind::abort);
  EXPECT_EQ(next_ladder_action(p, 99'000, 4).step, 0);  // nothing after the abort
  // A late check takes the steps one at a time, in order.
  EXPECT_EQ(next_ladder_action(p, 99'000, 0).step, 1);
  p.converge_timeout_s = 0;
  EXPECT_EQ(next_ladder_action(p, 99'000, 0).step, 0);  // no ladder
}

TEST(ConvergenceLadder, PolicyAndStatusRoundTrip) {
  MigrationPolicy p;
  p.converge_timeout_s = 60;
  p.downtime_ceiling_ms = 1500;
  const auto back = nlohmann::json(p).get<MigrationPolicy>();
  EXPECT_EQ(back.converge_timeout_s, 60);
  EXPECT_EQ(back.downtime_ceiling_ms, 1500);
  MigrationStatus s;
  s.state = MigrationState::running;
  s.ladder_step = 2;
  s.downtime_limit_ms = 1200;
  const auto sb = nlohmann::json(s).get<MigrationStatus>();
  EXPECT_EQ(sb.ladder_step, 2);
  EXPECT_EQ(sb.downtime_limit_ms, 1200);
}

}  // namespace
}  // namespace kvmfleet
