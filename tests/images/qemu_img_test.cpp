// The real qemu-img (package qemu-utils): images it makes with a backing file or an
// external data file are refused, a clean qcow2, a raw file and an ISO accepted.
#include "kvmfleet/images/image_service.hpp"
#include "kvmfleet/images/image_tool.hpp"

#include "image_test_support.hpp"
#include "tests/doubles/common/manual_clock.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace kvmfleet::images {
namespace {

using testing_support::files_in;
using testing_support::TempDir;

class QemuImgTest : public ::testing::Test {
 protected:
  void qemu_img(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"qemu-img"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto out = runner_.run(argv);
    ASSERT_TRUE(out.ok()) << out.error().message;
    ASSERT_TRUE(out->success()) << out->err;
  }
  Result<ImageInfo> check(const std::string& path) {
    auto text = tool_.info_json(path);
    if (!text) return text.error();
    return check_image_info(*text, has_iso9660_signature(path));
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  // Uploads the file at `path` through an ImageService in pieces.
  Result<Image> upload(ImageService& svc, const std::string& name, const std::string& path) {
    if (auto c = svc.create({name, "", ""}); !c) return c.error();
    auto up = svc.begin_upload(name);
    if (!up) return up.error();
    const std::string data = read(path);
    for (std::size_t at = 0; at < data.size(); at += 65536)
      if (auto st = (*up)->write(data.data() + at, std::min<std::size_t>(65536, data.size() - at));
          !st)
        return st.error();
    return (*up)->finish();
  }

  TempDir tmp_;
  SystemProcessRunner runner_;
  QemuImgTool tool_{runner_};
  ManualClock clock_;
};

TEST_F(QemuImgTest, ACleanQcow2IsAccepted) {
  qemu_img({"create", "-q", "-f", "qcow2", tmp_.file("clean.qcow2"), "3M"});
  auto info = check(tmp_.file("clean.qcow2"));
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->format, "qcow2");
  EXPECT_EQ(info->virtual_size, 3u << 20);
}

TEST_F(QemuImgTest, AQcow2WithABackingFileIsRefused) {
  // The backing file names one of the host's own files.
  qemu_img({"create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw",
            tmp_.file("crafted.qcow2"), "1M"});
  auto info = check(tmp_.file("crafted.qcow2"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().details.value("reason", ""), "backing_file");
}

TEST_F(QemuImgTest, AQcow2WithAnExternalDataFileIsRefused) {
  qemu_img({"create", "-q", "-f", "qcow2", "-o", "data_file=" + tmp_.file("data.raw"),
            tmp_.file("datafile.qcow2"), "1M"});
  auto info = check(tmp_.file("datafile.qcow2"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().details.value("reason", ""), "data_file");
}

TEST_F(QemuImgTest, OtherFormatsAreRefused) {
  qemu_img({"create", "-q", "-f", "vmdk", tmp_.file("disk.vmdk"), "1M"});
  auto info = check(tmp_.file("disk.vmdk"));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().details.value("reason", ""), "unsupported_format");
}

TEST_F(QemuImgTest, RawAndIsoAreTold) {
  std::string raw(1 << 20, '\0');
  std::ofstream(tmp_.file("disk.raw"), std::ios::binary) << raw;
  raw.replace(32769, 5, "CD001");
  std::ofstream(tmp_.file("disk.iso"), std::ios::binary) << raw;
  EXPECT_EQ(check(tmp_.file("disk.raw"))->format, "raw");
  EXPECT_EQ(check(tmp_.file("disk.iso"))->format, "iso");
}

TEST_F(QemuImgTest, UploadsThroughTheServiceKeepOnlyTheCleanImage) {
  qemu_img({"create", "-q", "-f", "qcow2", tmp_.file("clean.qcow2"), "2M"});
  qemu_img({"create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw",
            tmp_.file("crafted.qcow2"), "1M"});
  ImageService svc(tmp_.file("store"), tool_, clock_);
  auto clean = upload(svc, "clean", tmp_.file("clean.qcow2"));
  ASSERT_TRUE(clean.ok()) << clean.error().message;
  EXPECT_EQ(clean->format, "qcow2");
  EXPECT_EQ(clean->virtual_size, 2u << 20);
  auto crafted = upload(svc, "crafted", tmp_.file("crafted.qcow2"));
  ASSERT_FALSE(crafted.ok());
  EXPECT_EQ(crafted.error().details.value("reason", ""), "backing_file");
  EXPECT_EQ(files_in(tmp_.file("store")), (std::vector<std::string>{"clean.img", "clean.json"}));
}

}  // namespace
}  // namespace kvmfleet::images
