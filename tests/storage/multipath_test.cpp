#include "kvmfleet/storage/multipath.hpp"

#include <gtest/gtest.h>

#include "captured_output.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"

namespace kvmfleet::storage {
namespace {

using testing::captured;
using Argv = std::vector<std::string>;

TEST(Multipath, TwoHealthyPaths) {
  FakeProcessRunner runner;
  runner.expect({"multipathd"}, captured("multipathd_show_maps_json"));
  Multipath mp(runner);
  auto m = mp.map_with_path("/dev/sda");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(runner.calls()[0], (Argv{"multipathd", "show", "maps", "json"}));
  EXPECT_EQ(m->name, "360000000000000000e00000000010001");
  EXPECT_EQ(m->wwid, "360000000000000000e00000000010001");
  EXPECT_EQ(m->device(), "/dev/mapper/360000000000000000e00000000010001");
  EXPECT_EQ(m->sysfs, "dm-0");
  ASSERT_EQ(m->paths.size(), 2u);
  EXPECT_EQ(m->paths[0].dev, "sdb");
  EXPECT_EQ(m->paths[0].target, "iqn.2026-01.io.kvmfleet.klab:mp");
  EXPECT_EQ(m->healthy_paths(), 2);
  EXPECT_FALSE(m->degraded());
  EXPECT_EQ(m->path_faults, 0);
}

TEST(Multipath, FailedPathIsReported) {
  FakeProcessRunner runner;
  runner.expect({"multipathd"}, captured("multipathd_show_maps_json_failed"));
  Multipath mp(runner);
  auto maps = mp.maps();
  ASSERT_TRUE(maps.ok()) << maps.error().message;
  ASSERT_EQ(maps->size(), 1u);
  const auto& m = (*maps)[0];
  EXPECT_TRUE(m.degraded());
  EXPECT_EQ(m.healthy_paths(), 1);
  EXPECT_EQ(m.path_faults, 1);
  EXPECT_EQ(m.paths[0].dev, "sdb");
  EXPECT_FALSE(m.paths[0].healthy());
  EXPECT_EQ(m.paths[0].checker_state, "faulty");
  EXPECT_EQ(m.paths[0].dev_state, "offline");
  EXPECT_TRUE(m.paths[1].healthy());
}

TEST(Multipath, NoMapsAndNoDaemon) {
  FakeProcessRunner runner;
  runner.expect({"multipathd"}, captured("multipathd_show_maps_json_none"));
  runner.expect({"multipathd"}, captured("multipathd_show_maps_json_nodaemon"));
  Multipath mp(runner);
  EXPECT_EQ(mp.map_with_path("sda").error().code, ErrorCode::not_found);
  EXPECT_EQ(mp.maps().error().code, ErrorCode::unavailable);
}

TEST(Multipath, HostileOutput) {
  const std::string good = captured("multipathd_show_maps_json").out;
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  for (const std::string& text :
       {std::string(""), std::string("[]"), std::string("{\"maps\": 1}"),
        good.substr(0, good.size() / 2), replace("\"dev\" : \"sdb\"", "\"dev\" : \"../sdb\""),
        replace("\"dev\" : \"sdb\"", "\"dev\" : 5"),
        replace("\"name\" : \"360000000000000000e00000000010001\"", "\"name\" : \"a/b\""),
        replace("\"path_faults\" : 0", "\"path_faults\" : -1"),
        replace("\"chk_st\" : \"ready\",", "")}) {
    auto r = parse_multipathd_maps(text);
    ASSERT_FALSE(r.ok()) << text.substr(0, 200);
    EXPECT_EQ(r.error().code, ErrorCode::internal);
  }
}

}  // namespace
}  // namespace kvmfleet::storage
