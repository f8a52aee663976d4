// ImageCache and BootMedia over the doubles of ImageSource and DiskTool, in a temp
// directory: images fetched once, in pieces, checked by SHA-256; disks and seeds appear
// under their names only when complete; the seed's files are what cloud-init reads.
#include "kvmfleet/agent/boot_media.hpp"

#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/model/json.hpp"
#include "tests/doubles/agent/fake_boot_media.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

namespace kvmfleet::agent {
namespace {

constexpr const char* kUuid = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

class BootMediaTest : public ::testing::Test {
 protected:
  static std::string make_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvmfleet-boot-XXXXXX").string();
    return ::mkdtemp(tmpl.data());
  }
  ~BootMediaTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  DomainDisk image_disk(const std::string& data) {
    DomainDisk d;
    d.volume = std::string(kUuid) + "-disk0.qcow2";
    d.size_gib = 4;
    d.target_dev = "vda";
    d.image = "debian";
    d.image_sha256 = sha256_hex(data);
    d.image_size = data.size();
    d.image_format = "qcow2";
    return d;
  }

  std::string dir_ = make_dir();
  FakeImageSource source_;
  FakeDiskTool tool_;
  ImageCache cache_{dir_ + "/cache", source_, 1000};
  BootMedia media_{dir_, cache_, tool_};
};

TEST_F(BootMediaTest, ADiskIsMadeFromTheImageFetchedOnceInPieces) {
  const std::string data(10'500, 'q');
  source_.put("debian", data);
  const std::string path = dir_ + "/" + kUuid + "-disk0.qcow2";
  ASSERT_TRUE(media_.make_disk(image_disk(data), path).ok());
  EXPECT_EQ(source_.reads(), 11);  // 10 500 bytes in pieces of 1000
  EXPECT_EQ(source_.largest_read(), 1000u);
  ASSERT_EQ(tool_.disks.size(), 1u);
  EXPECT_EQ(tool_.disks[0].source, dir_ + "/cache/" + sha256_hex(data) + ".img");
  EXPECT_EQ(tool_.disks[0].format, "qcow2");
  EXPECT_EQ(tool_.disks[0].target, path + ".part");
  EXPECT_EQ(tool_.disks[0].size_bytes, std::uint64_t{4} << 30);
  EXPECT_TRUE(std::filesystem::exists(path));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/cache").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(tool_.disks[0].source.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A second disk from the same image: no fetch; an existing disk: nothing at all.
  const std::string second = dir_ + "/" + kUuid + "-disk1.qcow2";
  ASSERT_TRUE(media_.make_disk(image_disk(data), second).ok());
  EXPECT_EQ(source_.reads(), 11);
  ASSERT_TRUE(media_.make_disk(image_disk(data), path).ok());
  EXPECT_EQ(tool_.disks.size(), 2u);
}

TEST_F(BootMediaTest, DataThatDoesNotMatchItsHashIsNotKept) {
  const std::string data(3000, 'q');
  source_.put("debian", std::string(3000, 'x'));
  auto st = media_.make_disk(image_disk(data), dir_ + "/d.qcow2");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().details.value("reason", ""), "image_checksum_mismatch");
  EXPECT_TRUE(tool_.disks.empty());
  EXPECT_EQ(files(), (std::vector<std::string>{"cache"}));
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/cache"));
  // Short data is no better.
  source_.put("debian", data.substr(0, 2000));
  EXPECT_FALSE(media_.make_disk(image_disk(data), dir_ + "/d.qcow2").ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/cache"));
}

TEST_F(BootMediaTest, AFailedConversionLeavesNoDisk) {
  const std::string data(100, 'q');
  source_.put("debian", data);
  tool_.fail_disks = true;
  EXPECT_FALSE(media_.make_disk(image_disk(data), dir_ + "/d.qcow2").ok());
  EXPECT_EQ(files(), (std::vector<std::string>{"cache"}));
}

TEST_F(BootMediaTest, TheSeedHoldsUserDataMetaDataAndNetworkConfig) {
  DomainSpec spec;
  spec.uuid = kUuid;
  spec.name = "web1";
  CloudInit ci;
  ci.user_data = "#cloud-config\npackages: [nginx]\n";
  ci.hostname = "web1.example";
  ci.network_config = "version: 2\n";
  ci.ssh_authorized_keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI key"};
  spec.cloud_init = ci;
  auto seed = media_.make_seed(spec);
  ASSERT_TRUE(seed.ok()) << seed.error().message;
  EXPECT_EQ(*seed, dir_ + "/" + kUuid + "-seed.iso");
  ASSERT_EQ(tool_.isos.size(), 1u);
  const auto& iso = tool_.isos[0];
  EXPECT_EQ(iso.label, "cidata");
  EXPECT_EQ(iso.target, *seed + ".part");
  EXPECT_EQ(iso.files.at("user-data"), ci.user_data);
  EXPECT_NE(iso.files.at("meta-data").find("local-hostname: web1.example"), std::string::npos);
  EXPECT_NE(iso.files.at("meta-data").find("instance-id: " + std::string(kUuid)),
            std::string::npos);
  EXPECT_EQ(iso.files.at("network-config"), ci.network_config);
  // The files that held the secrets are gone; only the ISO stays, private.
  EXPECT_EQ(files(), (std::vector<std::string>{std::string(kUuid) + "-seed.iso"}));
  struct stat st {};
  ASSERT_EQ(::stat(seed->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Made anew on every define.
  ASSERT_TRUE(media_.make_seed(spec).ok());
  EXPECT_EQ(tool_.isos.size(), 2u);
}

TEST(DomainSpecWire, ImagesCdromBootAndCloudInitReachTheAgent) {
  DomainSpec s;
  s.uuid = kUuid;
  s.name = "web1";
  s.memory_mib = 64;
  DomainDisk d;
  d.volume = std::string(kUuid) + "-disk0.qcow2";
  d.size_gib = 2;
  d.target_dev = "vda";
  d.image = "debian";
  d.image_sha256 = std::string(64, 'a');
  d.image_size = 100;
  d.image_format = "raw";
  s.disks.push_back(d);
  s.cdrom = CdromSpec{"installer", std::string(64, 'b'), 200};
  s.boot = {BootDevice::cdrom, BootDevice::disk};
  s.cloud_init = CloudInit{"#cloud-config\n{}\n", "", "web1", "", {}};
  auto parsed = parse_domain_spec(nlohmann::json(s));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, s);

  auto bad = s;
  bad.disks[0].image_sha256 = "abc";
  EXPECT_FALSE(parse_domain_spec(nlohmann::json(bad)).ok());
  bad = s;
  bad.boot = {BootDevice::disk, BootDevice::disk};
  EXPECT_FALSE(parse_domain_spec(nlohmann::json(bad)).ok());
  bad = s;
  bad.cdrom.reset();  // boot names cdrom
  EXPECT_FALSE(parse_domain_spec(nlohmann::json(bad)).ok());
  bad = s;
  bad.cloud_init->user_data = "#cloud-config\n: [\n";
  EXPECT_FALSE(parse_domain_spec(nlohmann::json(bad)).ok());
  bad = s;
  bad.disks[0].image_format = "vmdk";
  EXPECT_FALSE(parse_domain_spec(nlohmann::json(bad)).ok());
}

}  // namespace
}  // namespace kvmfleet::agent
