// A VM's boot media made for real (no doubles): an image imported into the controller's
// ImageService (checked by the real qemu-img), fetched by the agent's ImageCache in
// pieces through ImageService::read_data (what GET /v1/agent/images/{image}/data
// serves), made into a VM disk by the real qemu-img convert/resize, and a NoCloud seed
// made by the real genisoimage, read back with isoinfo. Everything lives in one temp
// directory the test made and removes by its recorded path.
#include "kvmfleet/agent/boot_media.hpp"
#include "kvmfleet/images/image_service.hpp"
#include "kvmfleet/images/image_tool.hpp"

#include "image_test_support.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/process.hpp"
#include "tests/doubles/common/manual_clock.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace kvmfleet {
namespace {

using images::testing_support::TempDir;

constexpr const char* kUuid = "0b7d9a52-1c3e-4f60-9a8b-7c6d5e4f3a21";

// The agent's view of the controller, in process.
class ServiceImageSource final : public agent::ImageSource {
 public:
  explicit ServiceImageSource(images::ImageService& s) : s_(s) {}
  Result<std::string> read(const std::string& image, std::uint64_t offset,
                           std::size_t length) override {
    ++reads;
    return s_.read_data(image, offset, length);
  }
  int reads = 0;

 private:
  images::ImageService& s_;
};

std::string run_ok(SystemProcessRunner& r, const std::vector<std::string>& argv) {
  auto out = require_success(r.run(argv), argv);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error().message);
  return out.ok() ? out->out : "";
}

class BootMediaLab : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"qemu-img", "genisoimage", "isoinfo"}) {
      auto r = runner_.run({tool, "--version"});
      ASSERT_TRUE(r.ok()) << tool << " is missing: scripts/install-deps.sh installs it";
    }
  }
  // Imports `path` as image `name` the way the upload route does: record, data, check.
  images::Image import(const std::string& name, const std::string& path) {
    auto created = images_.create({name, {}, {}});
    EXPECT_TRUE(created.ok());
    auto up = images_.begin_upload(name);
    EXPECT_TRUE(up.ok());
    std::ifstream in(path, std::ios::binary);
    char buf[65536];
    while (in.read(buf, sizeof buf) || in.gcount() > 0)
      EXPECT_TRUE((*up)->write(buf, static_cast<std::size_t>(in.gcount())).ok());
    auto done = (*up)->finish();
    EXPECT_TRUE(done.ok()) << (done.ok() ? "" : done.error().message);
    return done.ok() ? *done : images::Image{};
  }

  TempDir tmp_;
  SystemProcessRunner runner_;
  ManualClock clock_;
  images::QemuImgTool qemu_img_{runner_};
  images::ImageService images_{tmp_.file("controller-images"), qemu_img_, clock_};
  ServiceImageSource source_{images_};
  agent::CommandDiskTool tool_{runner_};
  std::string pool_ = [this] {
    std::filesystem::create_directory(tmp_.file("pool"));
    return tmp_.file("pool");
  }();
  agent::ImageCache cache_{pool_ + "/cache", source_, 1 << 20};
  agent::BootMedia media_{pool_, cache_, tool_};
};

TEST_F(BootMediaLab, AVmDiskFromARealQcow2Image) {
  // A 64 MiB qcow2 holding 3 MiB of known bytes at its start.
  const std::string raw = tmp_.file("src.raw");
  {
    std::ofstream out(raw, std::ios::binary);
    for (int i = 0; i < 3 * 1024 * 1024; ++i) out.put(static_cast<char>(i * 7 % 251));
  }
  run_ok(runner_, {"qemu-img", "resize", "-q", "-f", "raw", raw, "64M"});
  const std::string qcow2 = tmp_.file("debian.qcow2");
  run_ok(runner_, {"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2});
  auto image = import("debian", qcow2);
  ASSERT_EQ(image.format, "qcow2");

  DomainDisk disk;
  disk.volume = std::string(kUuid) + "-disk0.qcow2";
  disk.size_gib = 2;
  disk.target_dev = "vda";
  disk.image = "debian";
  disk.image_sha256 = image.sha256;
  disk.image_size = image.size;
  disk.image_format = image.format;
  const std::string path = pool_ + "/" + disk.volume;
  auto st = media_.make_disk(disk, path);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_GE(source_.reads, 1);

  auto info = nlohmann::json::parse(
      run_ok(runner_, {"qemu-img", "info", "--output=json", "-f", "qcow2", path}));
  EXPECT_EQ(info["format"], "qcow2");
  EXPECT_EQ(info["virtual-size"].get<std::uint64_t>(), std::uint64_t{2} << 30);
  EXPECT_FALSE(info.contains("backing-filename"));
  // The guest sees the image's bytes, then zeros: the same content.
  auto cmp = runner_.run({"qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, path});
  ASSERT_TRUE(cmp.ok());
  EXPECT_EQ(cmp->exit_code, 0) << cmp->out << cmp->err;
  // The cache holds the image under its hash; the pool only complete files.
  EXPECT_TRUE(std::filesystem::exists(pool_ + "/cache/" + image.sha256 + ".img"));
  EXPECT_FALSE(std::filesystem::exists(path + ".part"));
}

TEST_F(BootMediaLab, ARealNoCloudSeedReadsBack) {
  DomainSpec spec;
  spec.uuid = kUuid;
  spec.name = "web1";
  CloudInit ci;
  ci.user_data = "#cloud-config\nruncmd:\n  - [touch, /run/seeded]\n";
  ci.hostname = "web1.lab";
  ci.network_config =
      "version: 2\nethernets:\n  eth0:\n    match: {macaddress: '52:54:00:12:34:56'}\n"
      "    addresses: [192.0.2.10/24]\n";
  ci.ssh_authorized_keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPo labkey"};
  spec.cloud_init = ci;
  auto seed = media_.make_seed(spec);
  ASSERT_TRUE(seed.ok()) << seed.error().message;

  const std::string pvd = run_ok(runner_, {"isoinfo", "-d", "-i", *seed});
  EXPECT_NE(pvd.find("Volume id: cidata"), std::string::npos) << pvd;
  const std::string listing = run_ok(runner_, {"isoinfo", "-R", "-f", "-i", *seed});
  EXPECT_NE(listing.find("/user-data"), std::string::npos) << listing;
  EXPECT_NE(listing.find("/meta-data"), std::string::npos) << listing;
  EXPECT_NE(listing.find("/network-config"), std::string::npos) << listing;
  EXPECT_EQ(run_ok(runner_, {"isoinfo", "-R", "-i", *seed, "-x", "/user-data"}), ci.user_data);
  EXPECT_EQ(run_ok(runner_, {"isoinfo", "-R", "-i", *seed, "-x", "/network-config"}),
            ci.network_config);
  const std::string meta = run_ok(runner_, {"isoinfo", "-R", "-i", *seed, "-x", "/meta-data"});
  EXPECT_NE(meta.find("instance-id: " + std::string(kUuid)), std::string::npos) << meta;
  EXPECT_NE(meta.find("local-hostname: web1.lab"), std::string::npos) << meta;
  EXPECT_NE(meta.find("labkey"), std::string::npos) << meta;
  // Only the ISO is left in the pool: the files it was made from are gone.
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(pool_))
    left.push_back(e.path().filename());
  EXPECT_EQ(left, (std::vector<std::string>{std::string(kUuid) + "-seed.iso"}));
}

}  // namespace
}  // namespace kvmfleet
