// check_image_info: what qemu-img info's JSON may say for an image to be accepted.
#include "kvmfleet/images/image_tool.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kvmfleet::images {
namespace {

using nlohmann::json;

// What qemu-img 7.2 prints for a clean qcow2 (qemu-img create -f qcow2 x.qcow2 1M).
json clean_qcow2() {
  return json::parse(R"({
    "virtual-size": 1048576, "filename": "/s/x.part", "cluster-size": 65536,
    "format": "qcow2", "actual-size": 200704,
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib",
      "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false, "extended-l2": false}},
    "dirty-flag": false})");
}

std::string reason_of(const Result<ImageInfo>& r) {
  if (r.ok()) return "accepted";
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  return r.error().details.value("reason", "");
}

TEST(CheckImageInfo, AcceptsACleanQcow2) {
  auto info = check_image_info(clean_qcow2().dump(), false);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->format, "qcow2");
  EXPECT_EQ(info->virtual_size, 1048576u);
}

TEST(CheckImageInfo, RawIsRawOrIsoBySignature) {
  const json raw = {{"virtual-size", 4096}, {"filename", "/s/x.part"}, {"format", "raw"}};
  EXPECT_EQ(check_image_info(raw.dump(), false)->format, "raw");
  EXPECT_EQ(check_image_info(raw.dump(), true)->format, "iso");
}

TEST(CheckImageInfo, RefusesABackingFile) {
  for (const char* key : {"backing-filename", "full-backing-filename", "backing-filename-format"}) {
    json j = clean_qcow2();
    j[key] = "/etc/passwd";
    EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "backing_file") << key;
  }
}

TEST(CheckImageInfo, RefusesAnExternalDataFile) {
  json j = clean_qcow2();
  j["format-specific"]["data"]["data-file"] = "/dev/sda";
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "data_file");
  j = clean_qcow2();
  j["format-specific"]["data"]["data-file-raw"] = true;
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "data_file");
}

TEST(CheckImageInfo, RefusesAnyChildButItsOwnFile) {
  json j = clean_qcow2();
  j["children"] = json::array({{{"name", "file"}, {"info", json::object()}}});
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "accepted");
  j["children"].push_back({{"name", "data-file"}, {"info", json::object()}});
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "external_reference");
  j = clean_qcow2();
  j["filename"] = R"(json:{"driver":"qcow2","file":{"driver":"file","filename":"/etc/shadow"}})";
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "external_reference");
}

TEST(CheckImageInfo, RefusesOtherFormatsAndFeatures) {
  json j = clean_qcow2();
  j["format"] = "vmdk";  // whose extents may name other files
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "unsupported_format");
  j = clean_qcow2();
  j["encrypted"] = true;
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "encrypted");
  j = clean_qcow2();
  j["format-specific"]["data"]["encrypt"] = {{"format", "luks"}};
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "encrypted");
  j = clean_qcow2();
  j["format-specific"]["data"]["corrupt"] = true;
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "corrupt");
  j = clean_qcow2();
  j["format-specific"]["data"]["something-new"] = 1;
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "unsupported_feature");
}

TEST(CheckImageInfo, RefusesWhatIsNotQemuImgInfo) {
  EXPECT_EQ(reason_of(check_image_info("not json", false)), "unreadable_image");
  EXPECT_EQ(reason_of(check_image_info("[]", false)), "unreadable_image");
  json j = clean_qcow2();
  j.erase("virtual-size");
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "unreadable_image");
  j = clean_qcow2();
  j["virtual-size"] = -1;
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "unreadable_image");
  j = clean_qcow2();
  j["virtual-size"] = 0;
  EXPECT_EQ(reason_of(check_image_info(j.dump(), false)), "unreadable_image");
}

}  // namespace
}  // namespace kvmfleet::images
