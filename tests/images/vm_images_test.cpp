// A VM made from images: POST /v1/vms' disks[].image, cdrom, boot and cloud_init parsed
// (pure), then resolved against ImageService records over a FakeImageTool; and the
// pieces hosts fetch an image's data in.
#include "kvmfleet/images/vm_images.hpp"

#include "image_test_support.hpp"
#include "kvmfleet/api/request_parsing.hpp"
#include "kvmfleet/common/ids.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/images/fake_image_tool.hpp"

#include <gtest/gtest.h>

namespace kvmfleet::images {
namespace {

using nlohmann::json;
using testing_support::TempDir;

std::string reason_of(const Error& e) {
  return e.details.value("reason", "");
}

json vm(json extra) {
  json b = {{"name", "web1"}, {"memory_mib", 256}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

class VmImagesTest : public ::testing::Test {
 protected:
  VmImagesTest() : service_(tmp_.file("store"), tool_, clock_) {}

  void ready(const std::string& name, const std::string& data) {
    ASSERT_TRUE(service_.create({name, {}, {}}).ok());
    auto up = service_.begin_upload(name);
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->write(data.data(), data.size()).ok());
    auto done = (*up)->finish();
    ASSERT_TRUE(done.ok()) << done.error().message;
  }
  Result<VmSpec> resolve(const json& body) {
    auto r = api::parse_vm_create(body);
    if (!r) return r.error();
    if (auto st = resolve_vm_images(service_, r->spec); !st) return st.error();
    return r->spec;
  }

  TempDir tmp_;
  FakeImageTool tool_;
  ManualClock clock_;
  ImageService service_;
};

std::string iso_bytes() {
  std::string data(40'000, '\0');
  data.replace(32769, 5, "CD001");
  return data;
}

TEST_F(VmImagesTest, ADiskFromAnImageGetsItsHashSizeAndFormat) {
  const std::string data(3 * 1024 * 1024, 'd');
  ready("debian", data);
  auto spec = resolve(vm({{"disks", json::array({json{{"image", "debian"}, {"size_gib", 8}}})}}));
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  ASSERT_EQ(spec->disks.size(), 1u);
  EXPECT_EQ(spec->disks[0].image, "debian");
  EXPECT_EQ(spec->disks[0].image_sha256, sha256_hex(data));
  EXPECT_EQ(spec->disks[0].image_size, data.size());
  EXPECT_EQ(spec->disks[0].image_format, "raw");
  EXPECT_EQ(spec->disks[0].size_gib, 8);
  // Without size_gib: the image's own size, in whole GiB.
  auto own = resolve(vm({{"disks", json::array({json{{"image", "debian"}}})}}));
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_EQ(own->disks[0].size_gib, 1);
}

TEST_F(VmImagesTest, UnknownAndNotReadyImagesAreRefusedWithStableReasons) {
  auto unknown = resolve(vm({{"disks", json::array({json{{"image", "nope"}}})}}));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::not_found);
  EXPECT_EQ(reason_of(unknown.error()), "unknown_image");
  EXPECT_EQ(unknown.error().details["field"], "disks[0].image");
  ASSERT_TRUE(service_.create({"half", {}, {}}).ok());  // no data yet
  auto half = resolve(vm({{"disks", json::array({json{{"image", "half"}}})}}));
  ASSERT_FALSE(half.ok());
  EXPECT_EQ(half.error().code, ErrorCode::conflict);
  EXPECT_EQ(reason_of(half.error()), "image_not_ready");
  auto cd = resolve(vm({{"cdrom", {{"image", "nope"}}}}));
  ASSERT_FALSE(cd.ok());
  EXPECT_EQ(reason_of(cd.error()), "unknown_image");
}

TEST_F(VmImagesTest, IsosAreCdromsAndDisksAreNot) {
  ready("installer", iso_bytes());
  ready("disk", std::string(1000, 'x'));
  auto ok = resolve(vm({{"cdrom", {{"image", "installer"}}}, {"boot", {"cdrom"}}}));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  ASSERT_TRUE(ok->cdrom.has_value());
  EXPECT_EQ(ok->cdrom->image_size, iso_bytes().size());
  EXPECT_EQ(ok->boot, (std::vector<BootDevice>{BootDevice::cdrom}));
  auto iso_disk = resolve(vm({{"disks", json::array({json{{"image", "installer"}}})}}));
  ASSERT_FALSE(iso_disk.ok());
  EXPECT_EQ(reason_of(iso_disk.error()), "image_format");
  auto disk_cd = resolve(vm({{"cdrom", {{"image", "disk"}}}}));
  ASSERT_FALSE(disk_cd.ok());
  EXPECT_EQ(reason_of(disk_cd.error()), "image_format");
}

TEST_F(VmImagesTest, ADiskSmallerThanItsImageIsRefused) {
  tool_.answer(std::string(R"({"virtual-size": 3221225472, "format": "raw", "filename": "x"})"));
  ready("big", "x");
  auto r = resolve(vm({{"disks", json::array({json{{"image", "big"}, {"size_gib", 2}}})}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(reason_of(r.error()), "disk_smaller_than_image");
}

TEST(VmCreateParsing, BadBootOrdersAreRefused) {
  const json disk = json::array({json{{"size_gib", 1}}});
  for (const json& boot :
       {json::array(), json{"floppy"}, json{"disk", "disk"}, json{"cdrom"}, json{"network"},
        json{"disk", "cdrom", "network", "disk"}, json("disk"), json{1}}) {
    auto r = api::parse_vm_create(vm({{"disks", disk}, {"boot", boot}}));
    ASSERT_FALSE(r.ok()) << boot.dump();
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(reason_of(r.error()), "bad_boot_order") << boot.dump();
  }
  auto ok = api::parse_vm_create(vm({{"disks", disk}, {"boot", {"disk"}}}));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
}

TEST(VmCreateParsing, ImageDisksAndCloudInit) {
  auto r = api::parse_vm_create(
      vm({{"disks", json::array({json{{"image", "debian"}, {"size_gib", 4}}})},
          {"cloud_init", {{"user_data", "#cloud-config\n{}\n"}, {"hostname", "web1"}}}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r->spec.cloud_init.has_value());
  EXPECT_EQ(r->spec.cloud_init->hostname, "web1");
  // An image disk on a shared volume is not made here; bad names never pass.
  EXPECT_FALSE(
      api::parse_vm_create(vm({{"disks", json::array({json{{"image", "d"}, {"volume", "v"}}})}}))
          .ok());
  EXPECT_FALSE(
      api::parse_vm_create(vm({{"disks", json::array({json{{"image", "../etc"}}})}})).ok());
  EXPECT_FALSE(api::parse_vm_create(vm({{"cdrom", {{"image", "a"}, {"x", 1}}}})).ok());
  auto big =
      api::parse_vm_create(vm({{"cloud_init", {{"network_config", std::string(100'000, 'x')}}}}));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(reason_of(big.error()), "cloud_init_too_large");
  auto yaml = api::parse_vm_create(vm({{"cloud_init", {{"user_data", "#cloud-config\n: : [\n"}}}}));
  ASSERT_FALSE(yaml.ok());
  EXPECT_EQ(reason_of(yaml.error()), "malformed_yaml");
}

TEST_F(VmImagesTest, HostsReadAnImageInBoundedPieces) {
  std::string data;
  for (int i = 0; i < 100'000; ++i) data.push_back(static_cast<char>('a' + i % 26));
  ready("img", data);
  auto a = service_.read_data("img", 0, 4096);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, data.substr(0, 4096));
  auto b = service_.read_data("img", 99'000, 4096);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, data.substr(99'000));
  EXPECT_TRUE(service_.read_data("img", 100'000, 10)->empty());
  EXPECT_EQ(service_.read_data("img", 0, 0).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(service_.read_data("img", 0, ImageService::kMaxReadPiece + 1).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(service_.read_data("nope", 0, 10).error().code, ErrorCode::not_found);
  ASSERT_TRUE(service_.create({"half", {}, {}}).ok());
  EXPECT_EQ(service_.read_data("half", 0, 10).error().code, ErrorCode::conflict);
}

}  // namespace
}  // namespace kvmfleet::images
