// ImageService over a FakeImageTool and a temp directory: records, uploads, refusals
// that leave nothing behind, what a restart finds.
#include "kvmfleet/images/image_service.hpp"

#include "image_test_support.hpp"
#include "kvmfleet/common/ids.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/images/fake_image_tool.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace kvmfleet::images {
namespace {

using nlohmann::json;
using testing_support::files_in;
using testing_support::TempDir;

std::string reason_of(const Error& e) {
  return e.details.value("reason", "");
}

class ImageServiceTest : public ::testing::Test {
 protected:
  std::string store() const { return tmp_.file("store"); }
  ImageService& service() {
    if (!service_) service_ = std::make_unique<ImageService>(store(), tool_, clock_);
    return *service_;
  }
  void restart() { service_.reset(); }

  Image create(const std::string& name, const std::string& sha = {}, const std::string& fmt = {}) {
    auto image = service().create({name, sha, fmt});
    EXPECT_TRUE(image.ok()) << image.error().message;
    return image.ok() ? *image : Image{};
  }
  // Streams `data` in pieces of `piece` bytes, then finishes.
  Result<Image> upload(const std::string& name, const std::string& data, std::size_t piece = 7) {
    auto up = service().begin_upload(name);
    if (!up) return up.error();
    for (std::size_t at = 0; at < data.size(); at += piece) {
      const auto n = std::min(piece, data.size() - at);
      if (auto st = (*up)->write(data.data() + at, n); !st) return st.error();
    }
    return (*up)->finish();
  }

  TempDir tmp_;
  FakeImageTool tool_;
  ManualClock clock_;
  std::unique_ptr<ImageService> service_;
};

TEST(ParseImageCreate, ChecksNameSha256AndFormat) {
  auto ok = parse_image_create(
      {{"name", "debian-12"}, {"sha256", std::string(64, 'A')}, {"format", "qcow2"}});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->sha256, std::string(64, 'a'));
  EXPECT_TRUE(parse_image_create({{"name", "x"}}).ok());
  for (const json& bad : {json{{"name", "Debian"}}, json{{"name", "../etc"}}, json::object(),
                          json{{"name", std::string(64, 'a')}}, json{{"name", 7}},
                          json{{"name", "x"}, {"sha256", "abc"}},
                          json{{"name", "x"}, {"sha256", std::string(64, 'g')}},
                          json{{"name", "x"}, {"sha256", std::string(65, 'a')}},
                          json{{"name", "x"}, {"format", "vmdk"}},
                          json{{"name", "x"}, {"url", "http://x"}}, json::array()}) {
    auto r = parse_image_create(bad);
    ASSERT_FALSE(r.ok()) << bad.dump();
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument) << bad.dump();
  }
}

TEST_F(ImageServiceTest, AnUploadMakesAReadyImageWithItsHashInPrivateFiles) {
  const std::string data(100'003, 'x');
  create("img1", sha256_hex(data));
  EXPECT_EQ(service().get("img1")->state, ImageState::uploading);
  auto ready = upload("img1", data, 4096);
  ASSERT_TRUE(ready.ok()) << ready.error().message;
  EXPECT_EQ(ready->state, ImageState::ready);
  EXPECT_EQ(ready->sha256, sha256_hex(data));
  EXPECT_EQ(ready->size, data.size());
  EXPECT_EQ(ready->virtual_size, data.size());
  EXPECT_EQ(ready->format, "raw");
  EXPECT_EQ(files_in(store()), (std::vector<std::string>{"img1.img", "img1.json"}));
  struct stat st {};
  ASSERT_EQ(::stat(store().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* f : {"img1.img", "img1.json"}) {
    ASSERT_EQ(::stat((store() + "/" + f).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  // qemu-img looked at the upload before it became the image.
  ASSERT_EQ(tool_.paths().size(), 1u);
  EXPECT_EQ(tool_.paths()[0], store() + "/img1.part");
  // Ready: its data is not uploaded twice.
  auto again = service().begin_upload("img1");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::conflict);
}

TEST_F(ImageServiceTest, WithoutAGivenHashTheImageReportsItsOwn) {
  create("img1");
  auto ready = upload("img1", "some bytes");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->sha256, sha256_hex("some bytes"));
}

TEST_F(ImageServiceTest, AWrongHashRemovesTheImage) {
  create("img1", sha256_hex("other data"));
  auto r = upload("img1", "the data");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(reason_of(r.error()), "sha256_mismatch");
  EXPECT_EQ(r.error().details["sha256"], sha256_hex("the data"));
  EXPECT_EQ(service().get("img1").error().code, ErrorCode::not_found);
  EXPECT_TRUE(files_in(store()).empty());
  EXPECT_TRUE(tool_.paths().empty());  // refused before qemu-img ran
}

TEST_F(ImageServiceTest, AnUploadEndedEarlyRemovesTheImage) {
  create("img1");
  {
    auto up = service().begin_upload("img1");
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->write("partial", 7).ok());
    EXPECT_EQ(files_in(store()), (std::vector<std::string>{"img1.json", "img1.part"}));
    (*up)->abort();
  }
  EXPECT_EQ(service().get("img1").error().code, ErrorCode::not_found);
  EXPECT_TRUE(files_in(store()).empty());
  // An upload dropped without an end is aborted too.
  create("img2");
  {
    auto up = service().begin_upload("img2");
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->write("partial", 7).ok());
  }
  EXPECT_FALSE(service().get("img2").ok());
  EXPECT_TRUE(files_in(store()).empty());
}

TEST_F(ImageServiceTest, WhatQemuImgRefusesIsRemoved) {
  create("img1");
  tool_.answer(std::string(R"({"virtual-size": 1048576, "filename": "/x", "format": "qcow2",
                               "backing-filename": "/etc/passwd"})"));
  auto r = upload("img1", "QFI\xfb...");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(reason_of(r.error()), "backing_file");
  EXPECT_FALSE(service().get("img1").ok());
  EXPECT_TRUE(files_in(store()).empty());
  // qemu-img failing to run is no reason to keep half an image either.
  create("img2");
  tool_.answer(unavailable("program not found"));
  r = upload("img2", "data");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_TRUE(files_in(store()).empty());
}

TEST_F(ImageServiceTest, AFormatOtherThanTheOneGivenIsRefused) {
  create("img1", "", "qcow2");
  auto r = upload("img1", "raw bytes");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(reason_of(r.error()), "format_mismatch");
  EXPECT_TRUE(files_in(store()).empty());
}

TEST_F(ImageServiceTest, AnEmptyUploadIsRefused) {
  create("img1");
  auto r = upload("img1", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(reason_of(r.error()), "empty_image");
  EXPECT_TRUE(files_in(store()).empty());
}

TEST_F(ImageServiceTest, NamesAreUniqueAndUploadsOneAtATime) {
  create("img1");
  auto dup = service().create({"img1", "", ""});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::conflict);
  auto up = service().begin_upload("img1");
  ASSERT_TRUE(up.ok());
  auto second = service().begin_upload("img1");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::conflict);
  // Not deleted from under its upload.
  EXPECT_EQ(service().remove("img1").error().code, ErrorCode::conflict);
  EXPECT_EQ(service().begin_upload("nope").error().code, ErrorCode::not_found);
}

TEST_F(ImageServiceTest, DeleteIsRefusedWhileAVmIsMadeFromTheImage) {
  create("img1");
  EXPECT_EQ(service().acquire("img1").error().code, ErrorCode::conflict);  // not ready
  ASSERT_TRUE(upload("img1", "data").ok());
  ASSERT_TRUE(service().acquire("img1").ok());
  auto refused = service().remove("img1");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::conflict);
  service().release("img1");
  ASSERT_TRUE(service().remove("img1").ok());
  EXPECT_TRUE(files_in(store()).empty());
  EXPECT_EQ(service().remove("img1").error().code, ErrorCode::not_found);
}

TEST_F(ImageServiceTest, ARestartKeepsImagesAndDropsUnfinishedUploads) {
  create("ready1");
  ASSERT_TRUE(upload("ready1", "data").ok());
  create("waiting");
  create("midway");
  auto up = service().begin_upload("midway");
  ASSERT_TRUE(up.ok());
  ASSERT_TRUE((*up)->write("abc", 3).ok());
  // The controller stops mid-upload: its file stays until the next start.
  (*up).release();  // NOLINT: leaked on purpose, as a crash would
  restart();
  auto listed = service().list();
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(service().get("ready1")->state, ImageState::ready);
  EXPECT_EQ(service().get("ready1")->sha256, sha256_hex("data"));
  EXPECT_EQ(service().get("midway")->state, ImageState::uploading);
  EXPECT_EQ(files_in(store()),
            (std::vector<std::string>{"midway.json", "ready1.img", "ready1.json", "waiting.json"}));
  // Its upload can be made again.
  EXPECT_TRUE(upload("midway", "again").ok());
}

}  // namespace
}  // namespace kvmfleet::images
