#include <gtest/gtest.h>

#include "captured_output.hpp"
#include "kvmfleet/storage/storage_names.hpp"
#include "kvmfleet/storage/volume_manager.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"

namespace kvmfleet::storage {
namespace {

using testing::captured;
using Argv = std::vector<std::string>;

constexpr const char* kConfig =
    "devices { global_filter = [ \"a|^/dev/sdb$|\", \"r|.*|\" ] filter = [ \"a|^/dev/sdb$|\", "
    "\"r|.*|\" ] use_devicesfile = 0 obtain_device_list_from_udev = 0 } global { use_lvmlockd = 1 "
    "use_lvmpolld = 0 } local { host_id = 1 } activation { udev_sync = 0 udev_rules = 0 "
    "verify_udev_operations = 1 }";

LvmOptions lab_options() {
  LvmOptions o;
  o.devices = {"/dev/sdb"};
  o.host_id = 1;
  o.udev = false;
  return o;
}

Argv lvm(const std::string& command, Argv args) {
  Argv argv{"lvm", command, "--config", kConfig};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

class Lvm2CliTest : public ::testing::Test {
 protected:
  FakeProcessRunner runner_;
  Lvm2Cli lvm_{runner_, lab_options()};
};

TEST_F(Lvm2CliTest, ConfigRestrictsDevicesAndSetsLocking) {
  auto c = lvm_.config_string();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, kConfig);

  LvmOptions o;
  o.devices = {"/dev/disk/by-path/ip-10.77.0.1:3260-iscsi-iqn.2026-01.io.x:a+b-lun-1",
               "/dev/mapper/mpatha"};
  o.host_id = 7;
  FakeProcessRunner r;
  Lvm2Cli with_udev(r, o);
  EXPECT_EQ(
      *with_udev.config_string(),
      "devices { global_filter = [ \"a|^/dev/disk/by-path/ip-10[.]77[.]0[.]1:3260-iscsi-iqn[.]"
      "2026-01[.]io[.]x:a[+]b-lun-1$|\", \"a|^/dev/mapper/mpatha$|\", \"r|.*|\" ] filter = [ "
      "\"a|^/dev/disk/by-path/ip-10[.]77[.]0[.]1:3260-iscsi-iqn[.]2026-01[.]io[.]x:a[+]b-lun-"
      "1$|\", \"a|^/dev/mapper/mpatha$|\", \"r|.*|\" ] use_devicesfile = 0 } global { "
      "use_lvmlockd = 1 use_lvmpolld = 0 } local { host_id = 7 }");
}

TEST_F(Lvm2CliTest, AddedDevicesJoinTheFilterOnce) {
  LvmOptions o = lab_options();
  o.devices.clear();
  FakeProcessRunner r;
  Lvm2Cli lvm(r, o);
  EXPECT_FALSE(lvm.config_string().ok());  // no device yet: LVM would see every disk
  ASSERT_TRUE(lvm.add_device("/dev/sdb").ok());
  ASSERT_TRUE(lvm.add_device("/dev/sdb").ok());
  EXPECT_FALSE(lvm.add_device("/dev/../etc/passwd").ok());
  auto c = lvm.config_string();
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->find("\"a|^/dev/sdb$|\", \"r|.*|\" ]"), std::string::npos) << *c;
  EXPECT_EQ(c->find("passwd"), std::string::npos);
  // A device never added stays out.
  EXPECT_EQ(lvm.create_shared_vg("vg1", {"/dev/sdc"}).error().code, ErrorCode::invalid_argument);
}

TEST_F(Lvm2CliTest, MisconfiguredBackendRunsNothing) {
  for (LvmOptions o : {LvmOptions{},
                       [] {
                         auto x = lab_options();
                         x.host_id = 0;
                         return x;
                       }(),
                       [] {
                         auto x = lab_options();
                         x.devices = {"/dev/sd|b"};
                         return x;
                       }()}) {
    FakeProcessRunner r;
    Lvm2Cli cli(r, o);
    auto s = cli.list_vgs();
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
    EXPECT_TRUE(r.calls().empty());
  }
}

TEST_F(Lvm2CliTest, ReportsAreAskedInBytesAsJson) {
  runner_.expect({"lvm", "vgs"}, captured("vgs_full"));
  auto vg = lvm_.get_vg("kvmvg");
  ASSERT_TRUE(vg.ok()) << vg.error().message;
  ASSERT_EQ(runner_.calls().size(), 1u);
  EXPECT_EQ(runner_.calls()[0],
            lvm("vgs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                        "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_lock_type,vg_shared,"
                        "pv_count,lv_count,snap_count",
                        "kvmvg"}));
  EXPECT_EQ(vg->name, "kvmvg");
  EXPECT_EQ(vg->size_bytes, 2143289344u);
  EXPECT_EQ(vg->free_bytes, 935329792u);
  EXPECT_EQ(vg->extent_bytes, 4194304u);
  EXPECT_EQ(vg->lock_type, "sanlock");
  EXPECT_TRUE(vg->shared);
  EXPECT_EQ(vg->lv_count, 2);
  EXPECT_EQ(vg->pv_count, 1);
}

TEST_F(Lvm2CliTest, PvsReport) {
  runner_.expect({"lvm", "pvs"}, captured("pvs_vg"));
  auto pvs = lvm_.list_pvs();
  ASSERT_TRUE(pvs.ok()) << pvs.error().message;
  ASSERT_EQ(pvs->size(), 1u);
  EXPECT_EQ((*pvs)[0].name, "/dev/sdb");
  EXPECT_EQ((*pvs)[0].vg_name, "kvmvg");
  EXPECT_EQ((*pvs)[0].size_bytes, 2143289344u);
  EXPECT_EQ((*pvs)[0].free_bytes, 1002438656u);

  runner_.expect({"lvm", "pvs"}, captured("pvs_empty"));
  auto none = lvm_.list_pvs();
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(Lvm2CliTest, LvsWithSnapshotAndLocks) {
  runner_.expect({"lvm", "lvs"}, captured("lvs_snap"));
  runner_.expect({"lvmlockctl"},
                 FakeProcessRunner::exited(0,
                                           "VG kvmvg lock_type=sanlock x\n"
                                           "LS sanlock lvm_kvmvg\n"
                                           "LK VG un ver 5\n"
                                           "LK LV ex pr1pdO-FURh-q5CX-YVpS-oGDQ-uUHa-8vXUqt\n"));
  auto lvs = lvm_.list_lvs("kvmvg");
  ASSERT_TRUE(lvs.ok()) << lvs.error().message;
  EXPECT_EQ(runner_.calls()[0],
            lvm("lvs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                        "lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_path,lv_active_locally,"
                        "lv_active_exclusively,origin,data_percent",
                        "kvmvg"}));
  EXPECT_EQ(runner_.calls()[1], (Argv{"lvmlockctl", "--info"}));
  ASSERT_EQ(lvs->size(), 2u);
  const auto& snap = (*lvs)[0];
  EXPECT_EQ(snap.name, "snap2");
  EXPECT_TRUE(snap.is_snapshot);
  EXPECT_EQ(snap.origin, "vol2");
  ASSERT_TRUE(snap.data_percent.has_value());
  EXPECT_DOUBLE_EQ(*snap.data_percent, 0.07);
  EXPECT_EQ(snap.activation, LvActivation::exclusive);  // under its origin's lock
  const auto& origin = (*lvs)[1];
  EXPECT_EQ(origin.name, "vol2");
  EXPECT_TRUE(origin.is_origin);
  EXPECT_TRUE(origin.active);
  EXPECT_EQ(origin.size_bytes, 67108864u);
  EXPECT_EQ(origin.path, "/dev/kvmvg/vol2");
  EXPECT_FALSE(origin.data_percent.has_value());
}

TEST_F(Lvm2CliTest, SharedActivationComesFromLvmlockd) {
  // lvs says "active exclusively" for a shared activation; lvmlockd knows better.
  runner_.expect({"lvm", "lvs"}, captured("lvs_shared"));
  runner_.expect({"lvmlockctl"}, captured("lvmlockctl_info_lvs"));
  auto lv = lvm_.get_lv("kvmvg", "vol2");
  ASSERT_TRUE(lv.ok()) << lv.error().message;
  EXPECT_TRUE(lv->active);
  EXPECT_EQ(lv->activation, LvActivation::shared);
}

TEST_F(Lvm2CliTest, InactiveLvOnTheOtherHost) {
  runner_.expect({"lvm", "lvs"}, captured("lvs_active_node2"));
  runner_.expect({"lvmlockctl"}, captured("lvmlockctl_info_vg"));
  auto lv = lvm_.get_lv("kvmvg", "vol1");
  ASSERT_TRUE(lv.ok());
  EXPECT_FALSE(lv->active);
  EXPECT_EQ(lv->activation, LvActivation::inactive);
}

TEST_F(Lvm2CliTest, MissingLvAndVg) {
  runner_.expect({"lvm", "lvs"}, captured("lvs_active"));
  auto lv = lvm_.get_lv("kvmvg", "nope");
  ASSERT_FALSE(lv.ok());
  EXPECT_EQ(lv.error().code, ErrorCode::not_found);

  runner_.expect({"lvm", "vgs"}, captured("vgs_notfound"));
  auto vg = lvm_.get_vg("kvmvg");
  ASSERT_FALSE(vg.ok());
  EXPECT_EQ(vg.error().code, ErrorCode::not_found);
  EXPECT_NE(vg.error().message.find("vgs"), std::string::npos) << vg.error().message;
}

TEST_F(Lvm2CliTest, MutatingCommandsHaveExactArgv) {
  ASSERT_TRUE(lvm_.create_shared_vg("kvmvg", {"/dev/sdb"}).ok());
  ASSERT_TRUE(lvm_.create_lv("kvmvg", "vol1", std::uint64_t{64} << 20, {}).ok());
  ASSERT_TRUE(lvm_.create_lv("kvmvg", "vol2", std::uint64_t{64} << 20, {true}).ok());
  ASSERT_TRUE(lvm_.extend_lv("kvmvg", "vol1", std::uint64_t{128} << 20).ok());
  ASSERT_TRUE(lvm_.activate("kvmvg", "vol1", LvActivation::exclusive).ok());
  ASSERT_TRUE(lvm_.activate("kvmvg", "vol1", LvActivation::shared).ok());
  ASSERT_TRUE(lvm_.activate("kvmvg", "vol1", LvActivation::inactive).ok());
  ASSERT_TRUE(lvm_.create_snapshot("kvmvg", "vol1", "snap1", std::uint64_t{16} << 20).ok());
  ASSERT_TRUE(lvm_.lock_start("kvmvg").ok());
  ASSERT_TRUE(lvm_.lock_stop("kvmvg").ok());
  const std::vector<Argv> expected{
      lvm("vgcreate", {"--shared", "kvmvg", "/dev/sdb"}),
      lvm("lvcreate", {"-an", "--zero", "n", "--yes", "-L", "67108864b", "-n", "vol1", "kvmvg"}),
      lvm("lvcreate", {"-aey", "--zero", "y", "--wipesignatures", "y", "--yes", "-L", "67108864b",
                       "-n", "vol2", "kvmvg"}),
      lvm("lvextend", {"-L", "134217728b", "kvmvg/vol1"}),
      lvm("lvchange", {"-aey", "kvmvg/vol1"}),
      lvm("lvchange", {"-asy", "kvmvg/vol1"}),
      lvm("lvchange", {"-an", "kvmvg/vol1"}),
      lvm("lvcreate", {"--yes", "-s", "-L", "16777216b", "-n", "snap1", "kvmvg/vol1"}),
      lvm("vgchange", {"--lockstart", "kvmvg"}),
      lvm("vgchange", {"--lockstop", "kvmvg"}),
  };
  EXPECT_EQ(runner_.calls(), expected);
}

TEST_F(Lvm2CliTest, BadNamesAndSizesRunNothing) {
  const auto big = kMaxVolumeBytes + 512;
  std::vector<Status> refused{
      lvm_.create_lv("kvmvg", "snapshot1", 1 << 20, {}),
      lvm_.create_lv("kvmvg", "-rf", 1 << 20, {}),
      lvm_.create_lv("kvm vg", "vol", 1 << 20, {}),
      lvm_.create_lv("kvmvg", "vol", 0, {}),
      lvm_.create_lv("kvmvg", "vol", 1000, {}),
      lvm_.create_lv("kvmvg", "vol", big, {}),
      lvm_.extend_lv("kvmvg", "vol;x", 1 << 20),
      lvm_.create_snapshot("kvmvg", "vol", "pvmove1", 1 << 20),
      lvm_.create_snapshot("kvmvg", "vol", "s", 7),
      lvm_.activate("../etc", "vol", LvActivation::exclusive),
      lvm_.create_shared_vg("kvmvg", {"/dev/sdc"}),  // not a cluster device
      lvm_.create_shared_vg("kvmvg", {}),
      lvm_.lock_start("-a"),
      lvm_.remove_lv("kvmvg", "lvmlock"),
  };
  for (const auto& s : refused) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument) << s.error().message;
  }
  EXPECT_TRUE(runner_.calls().empty());
}

struct Mapping {
  const char* capture;
  ErrorCode code;
};

TEST(LvmErrors, CapturedMessagesMapToTheTaxonomy) {
  for (const auto& [name, code] : std::vector<Mapping>{
           {"lvchange_aey_other", ErrorCode::conflict},
           {"lvchange_asy_other", ErrorCode::conflict},
           {"lvchange_aey_while_shared", ErrorCode::conflict},
           {"lvremove_other", ErrorCode::conflict},
           {"lvcreate_exists", ErrorCode::conflict},
           {"vgcreate_exists", ErrorCode::conflict},
           {"vgchange_lockstop_busy", ErrorCode::conflict},
           {"lvcreate_toobig", ErrorCode::insufficient_capacity},
           {"lvremove_notfound", ErrorCode::not_found},
           {"lvchange_notfound", ErrorCode::not_found},
           {"lvchange_vgnotfound", ErrorCode::not_found},
           {"lvcreate_vgnotfound", ErrorCode::not_found},
           {"vgs_notfound", ErrorCode::not_found},
           {"lvs_missing_lv", ErrorCode::not_found},
           {"lvcreate_lockstopped", ErrorCode::unavailable},
           {"lvchange_aey_nolockspace", ErrorCode::unavailable},
           {"lvextend_nolockspace", ErrorCode::unavailable},
           {"vgchange_lockstart_1", ErrorCode::unavailable},
           {"lvextend_shrink", ErrorCode::invalid_argument},
           {"lvcreate_badname", ErrorCode::invalid_argument},
           {"lvconvert_merge_notsnap", ErrorCode::invalid_argument},
       }) {
    auto out = captured(name);
    ASSERT_NE(out.exit_code, 0) << name;
    Error e = lvm_error("lvchange", out.exit_code, out.err);
    EXPECT_EQ(e.code, code) << name << ": " << e.message;
    EXPECT_EQ(e.message.rfind("lvchange: ", 0), 0u) << e.message;
    EXPECT_EQ(e.details["command"], "lvchange");
  }
  EXPECT_EQ(lvm_error("lvs", 5, "  something new\n").code, ErrorCode::internal);
}

TEST_F(Lvm2CliTest, ExclusiveElsewhereIsConflict) {
  runner_.expect({"lvm", "lvchange"}, captured("lvchange_aey_other"));
  auto s = lvm_.activate("kvmvg", "vol1", LvActivation::exclusive);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::conflict);
  EXPECT_NE(s.error().message.find("LV locked by other host"), std::string::npos);
}

TEST_F(Lvm2CliTest, LockstartRetriesOnlyTheMissingDeviceError) {
  runner_.expect({"lvm", "vgchange"}, captured("vgchange_lockstart_1"));
  runner_.expect({"lvm", "vgchange"}, captured("vgchange_lockstart_2"));
  ASSERT_TRUE(lvm_.lock_start("kvmvg").ok());
  EXPECT_EQ(runner_.calls().size(), 2u);

  FakeProcessRunner r2;
  Lvm2Cli cli(r2, lab_options());
  for (int i = 0; i < 5; ++i) r2.expect({"lvm", "vgchange"}, captured("vgchange_lockstart_1"));
  auto s = cli.lock_start("kvmvg");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::unavailable);
  EXPECT_EQ(r2.calls().size(), 3u);  // lockstart_attempts

  FakeProcessRunner r3;
  Lvm2Cli cli3(r3, lab_options());
  r3.expect({"lvm", "vgchange"}, captured("vgs_notfound"));
  EXPECT_EQ(cli3.lock_start("kvmvg").error().code, ErrorCode::not_found);
  EXPECT_EQ(r3.calls().size(), 1u);  // other failures are not retried
}

TEST_F(Lvm2CliTest, RemoveRefusesActiveLvsAndOrigins) {
  runner_.expect({"lvm", "lvs"}, captured("lvs_active"));
  runner_.expect({"lvmlockctl"}, captured("lvmlockctl_info_vg"));
  auto s = lvm_.remove_lv("kvmvg", "vol1");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::conflict);

  runner_.expect({"lvm", "lvs"}, captured("lvs_snap"));
  s = lvm_.remove_lv("kvmvg", "vol2");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::conflict);
  EXPECT_NE(s.error().message.find("snapshots"), std::string::npos);

  runner_.expect({"lvm", "lvs"}, captured("lvs_active_node2"));  // inactive here
  ASSERT_TRUE(lvm_.remove_lv("kvmvg", "vol1").ok());
  EXPECT_EQ(runner_.calls().back(), lvm("lvremove", {"--yes", "kvmvg/vol1"}));
}

TEST_F(Lvm2CliTest, MergeOnlyASnapshot) {
  runner_.expect({"lvm", "lvs"}, captured("lvs_snap"));
  runner_.expect({"lvm", "lvconvert"}, captured("lvconvert_merge"));
  ASSERT_TRUE(lvm_.merge_snapshot("kvmvg", "snap2").ok());
  EXPECT_EQ(runner_.calls().back(), lvm("lvconvert", {"--merge", "kvmvg/snap2"}));

  runner_.expect({"lvm", "lvs"}, captured("lvs_snap"));
  auto s = lvm_.merge_snapshot("kvmvg", "vol2");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
}

TEST(LvmReports, MalformedOrHostileOutputIsAnInternalError) {
  const std::string good = captured("lvs_active").out;
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  for (const std::string& text : {
           std::string(""),
           std::string("not json"),
           std::string("[]"),
           std::string("{\"report\": 5}"),
           std::string("{\"report\": [5]}"),
           std::string("{\"report\": [{\"lv\": {}}]}"),
           std::string("{\"report\": [{\"lv\": [7]}]}"),
           good.substr(0, good.size() / 2),
           replace("\"lv_size\":\"134217728\"", "\"lv_size\":134217728"),
           replace("\"lv_size\":\"134217728\"", "\"lv_size\":\"-1\""),
           replace("\"lv_size\":\"134217728\"", "\"lv_size\":\"99999999999999999999999\""),
           replace("\"lv_size\":\"134217728\"", "\"lv_size\":\"12abc\""),
           replace("\"lv_size\":\"134217728\", ", ""),
           replace("\"lv_name\":\"vol1\"", "\"lv_name\":\"../../etc\""),
           replace("\"lv_name\":\"vol1\"", "\"lv_name\":\"\""),
           replace("\"lv_attr\":\"-wi-a-----\"", "\"lv_attr\":\"x\""),
           replace("\"lv_path\":\"/dev/kvmvg/vol1\"", "\"lv_path\":\"/etc/shadow\""),
           replace("\"data_percent\":\"\"", "\"data_percent\":\"250.0\""),
           replace("\"data_percent\":\"\"", "\"data_percent\":\"nan\""),
           replace("\"origin\":\"\"", "\"origin\":\"a b\""),
           replace("\"lv_attr\":\"-wi-a-----\"", "\"lv_attr\":\"swi-a-s---\""),  // no origin
       }) {
    auto r = parse_lvs_report(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, ErrorCode::internal);
    EXPECT_NE(r.error().message.find("lvs"), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(parse_vgs_report("{\"report\":[{\"vg\":[{\"vg_name\":\"a\"}]}]}").ok());
  auto vg_free = captured("vgs_full").out;
  vg_free.replace(vg_free.find("\"935329792\""), 11, "\"99935329792\"");
  EXPECT_FALSE(parse_vgs_report(vg_free).ok());  // more free than total
  EXPECT_FALSE(
      parse_pvs_report("{\"report\":[{\"pv\":[{\"pv_name\":\"/dev/a|b\", \"vg_name\":\"\", "
                       "\"pv_uuid\":\"u\", \"pv_size\":\"1\", \"pv_free\":\"0\"}]}]}")
          .ok());
}

TEST(LvmReports, OverflowedSnapshotIsInvalid) {
  std::string text = captured("lvs_snap").out;
  const std::string from = "\"lv_attr\":\"swi-a-s---\"";
  text.replace(text.find(from), from.size(), "\"lv_attr\":\"swi-I-s---\"");
  auto lvs = parse_lvs_report(text);
  ASSERT_TRUE(lvs.ok()) << lvs.error().message;
  EXPECT_TRUE((*lvs)[0].snapshot_invalid);
  EXPECT_FALSE((*lvs)[1].snapshot_invalid);
}

TEST(LvmReports, LvmlockctlInfo) {
  auto vgs = parse_lvmlockctl_info(captured("lvmlockctl_info_lvs").out);
  ASSERT_TRUE(vgs.ok()) << vgs.error().message;
  ASSERT_EQ(vgs->size(), 1u);
  EXPECT_EQ((*vgs)[0].name, "kvmvg");
  EXPECT_EQ((*vgs)[0].lock_type, "sanlock");
  EXPECT_TRUE((*vgs)[0].lockspace);
  ASSERT_EQ((*vgs)[0].lv_locks.size(), 2u);
  EXPECT_EQ((*vgs)[0].lv_locks[0].first, "pr1pdO-FURh-q5CX-YVpS-oGDQ-uUHa-8vXUqt");
  EXPECT_EQ((*vgs)[0].lv_locks[0].second, LvActivation::shared);
  EXPECT_EQ((*vgs)[0].lv_locks[1].second, LvActivation::exclusive);
  EXPECT_TRUE(parse_lvmlockctl_info(captured("lvmlockctl_info_empty").out)->empty());
  EXPECT_FALSE(parse_lvmlockctl_info("LK LV ex abc\n").ok());
  EXPECT_FALSE(parse_lvmlockctl_info("VG a/b lock_type=sanlock\n").ok());
}

}  // namespace
}  // namespace kvmfleet::storage
