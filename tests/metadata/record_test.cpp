#include "kvmfleet/metadata/record.hpp"

#include <gtest/gtest.h>

#include <random>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/model/domain_spec.hpp"
#include "tests/metadata/test_support.hpp"

using namespace kvmfleet;
using namespace kvmfleet::metadata;
using kvmfleet::testing_support::sample_vm;
using kvmfleet::testing_support::TempDir;

namespace {

const auto kWrittenAt = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'100}};

RenderedRecord render(const VmMetadata& m) {
  auto r = render_record(m, PoolInfo{}, "ctl1", kWrittenAt);
  EXPECT_TRUE(r.ok()) << (r ? "" : r.error().message);
  return r.ok() ? *r : RenderedRecord{};
}

TEST(RecordTest, RendersAndVerifiesBack) {
  auto m = sample_vm("web1", 7);
  auto r = render(m);
  EXPECT_EQ(r.json_name, m.vm.id + ".json");
  EXPECT_EQ(r.xml_name, m.vm.id + ".g7.xml");
  auto v = verify_record_json(r.json_name, r.json);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->vm.id, m.vm.id);
  EXPECT_EQ(v->vm.spec, m.vm.spec);
  EXPECT_EQ(v->vm.host, "node1");
  EXPECT_EQ(v->vm.desired, DesiredState::running);
  EXPECT_EQ(v->vm.generation, 7);
  EXPECT_EQ(v->vm.state, VmState::unknown);
  EXPECT_EQ(v->vm.created_at, m.vm.created_at);
  EXPECT_EQ(v->written_at, kWrittenAt);
  EXPECT_EQ(v->writer, "ctl1");
  EXPECT_EQ(v->domain_type, "kvm");
  EXPECT_EQ(v->pool, PoolInfo{});
  EXPECT_TRUE(verify_record_xml(*v, r.xml).ok());
}

TEST(RecordTest, SharedVolumeDisksKeepTheirVolumeAndDevice) {
  auto m = sample_vm("db1", 4);
  DiskSpec shared;
  shared.size_gib = 8;
  shared.volume = "6f1c2a7e-8d3b-4c5a-9e0f-1a2b3c4d5e6f";
  shared.device = "/dev/pool1/db1-data";
  m.vm.spec.disks.push_back(shared);
  auto r = render(m);
  auto v = verify_record_json(r.json_name, r.json);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->vm.spec, m.vm.spec);
  EXPECT_TRUE(verify_record_xml(*v, r.xml).ok());
  auto info = agent::read_domain_xml(r.xml);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->block_sources, std::vector<std::string>{"/dev/pool1/db1-data"});
  // A record whose device was changed on the share no longer matches its XML.
  std::string tampered = r.json;
  const auto at = tampered.find("/dev/pool1/db1-data");
  ASSERT_NE(at, std::string::npos);
  tampered.replace(at, 19, "/dev/pool1/db1-dat2");
  EXPECT_FALSE(verify_record_json(r.json_name, tampered).ok());
}

TEST(RecordTest, CdromAndSeedAreInTheXmlButCloudInitsContentIsNot) {
  auto m = sample_vm("web1", 2);
  m.vm.spec.cdrom = CdromSpec{"installer", std::string(64, 'c'), 100};
  m.vm.spec.cloud_init = CloudInit{"#cloud-config\npassword: s3cret\n", "", "web1", "", {}};
  auto r = render(m);
  EXPECT_EQ(r.json.find("s3cret"), std::string::npos);
  EXPECT_EQ(r.xml.find("s3cret"), std::string::npos);
  auto info = agent::read_domain_xml(r.xml);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(
      info->cdrom_sources,
      (std::vector<std::string>{"/var/lib/kvmfleet/images/cache/" + std::string(64, 'c') + ".img",
                                "/var/lib/kvmfleet/images/" + m.vm.id + "-seed.iso"}));
}

TEST(RecordTest, TheXmlIsTheAgentsOwnDefinition) {
  auto m = sample_vm("web1", 3);
  auto r = render(m);
  const DomainSpec spec = domain_spec_for(m.vm, "kvm");
  std::vector<std::string> sources;
  for (const auto& d : spec.disks) sources.push_back("/var/lib/kvmfleet/images/" + d.volume);
  auto xml = agent::write_domain_xml(spec, sources);
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(r.xml, *xml);
  auto info = agent::read_domain_xml(r.xml);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->managed);
  EXPECT_EQ(info->generation, 3);
  EXPECT_EQ(info->disk_sources, sources);
}

TEST(RecordTest, AnInvalidVmIsNotRendered) {
  auto m = sample_vm("web1");
  m.vm.spec.name = "Bad Name";
  EXPECT_FALSE(render_record(m, PoolInfo{}, "ctl1", kWrittenAt).ok());
  m = sample_vm("web1");
  EXPECT_FALSE(render_record(m, PoolInfo{"kvmfleet", "relative/path"}, "ctl1", kWrittenAt).ok());
}

TEST(RecordTest, TruncationIsRefusedAtEveryLength) {
  auto r = render(sample_vm("web1"));
  // Every proper prefix: none may pass (trailing whitespace aside, which carries nothing).
  const auto end = r.json.find_last_not_of(" \n") + 1;
  for (std::size_t n = 0; n < end; ++n)
    EXPECT_FALSE(verify_record_json(r.json_name, r.json.substr(0, n)).ok()) << n;
}

TEST(RecordTest, AnAlteredValueIsRefused) {
  auto r = render(sample_vm("web1"));
  std::string j = r.json;
  j.replace(j.find("\"memory_mib\": 512"), 17, "\"memory_mib\": 513");
  auto v = verify_record_json(r.json_name, j);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("digest mismatch"), std::string::npos);
}

TEST(RecordTest, AnAlteredRecordWithARecomputedDigestStillMustBeConsistent) {
  auto r = render(sample_vm("web1"));
  auto doc = nlohmann::json::parse(r.json);
  doc["disks"][0]["source"] = "/etc/shadow";
  doc["sha256"] = canonical_digest(doc);
  auto v = verify_record_json(r.json_name, doc.dump());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("does not match the VM's volumes"), std::string::npos);

  doc = nlohmann::json::parse(r.json);
  doc["vm_id"] = new_uuid();
  doc["sha256"] = canonical_digest(doc);
  EXPECT_FALSE(verify_record_json(r.json_name, doc.dump()).ok());
}

TEST(RecordTest, AnXmlThatIsNotTheNamedOneIsRefused) {
  auto m = sample_vm("web1", 4);
  auto r = render(m);
  auto v = verify_record_json(r.json_name, r.json);
  ASSERT_TRUE(v.ok());
  auto next = m;
  next.vm.generation = 5;
  EXPECT_FALSE(verify_record_xml(*v, render(next).xml).ok());
  std::string altered = r.xml;
  altered.replace(altered.find("512"), 3, "999");
  auto st = verify_record_xml(*v, altered);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("torn pair or altered"), std::string::npos);
}

TEST(RecordTest, WriteReplacesThePreviousGenerationAndDeleteRemovesBoth) {
  TempDir dir;
  auto fs = make_posix_metadata_fs(dir.path());
  auto m = sample_vm("web1", 1);
  ASSERT_TRUE(write_record(*fs, render(m)).ok());
  m.vm.generation = 2;
  ASSERT_TRUE(write_record(*fs, render(m)).ok());  // finds generation 1 from the old JSON
  auto names = fs->list();
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{m.vm.id + ".g2.xml", m.vm.id + ".json"}));
  auto rec = read_record(*fs, m.vm.id + ".json");
  ASSERT_TRUE(rec.ok()) << rec.error().message;
  EXPECT_EQ(rec->vm.generation, 2);
  ASSERT_TRUE(delete_record(*fs, m.vm.id).ok());
  EXPECT_TRUE(fs->list()->empty());
  EXPECT_TRUE(delete_record(*fs, m.vm.id).ok());  // absent is fine
}

// A few hundred random mutations of a valid record: none may crash, and any that
// passes must describe exactly the original VM (only insignificant whitespace moved).
TEST(RecordTest, FuzzedRecordsNeverCrashAndNeverLie) {
  auto m = sample_vm("fuzz1", 9);
  auto r = render(m);
  auto original = verify_record_json(r.json_name, r.json);
  ASSERT_TRUE(original.ok());
  std::mt19937 rng(12345);
  int accepted = 0;
  for (int i = 0; i < 600; ++i) {
    std::string j = r.json;
    std::string x = r.xml;
    std::string& target = (i % 3 == 2) ? x : j;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !target.empty(); ++e) {
      const std::size_t pos = rng() % target.size();
      switch (rng() % 5) {
        case 0:
          target[pos] = static_cast<char>(target[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          target.erase(pos, 1 + rng() % 8);
          break;
        case 2:
          target.insert(pos, 1, static_cast<char>(rng() % 256));
          break;
        case 3:
          target.resize(pos);
          break;
        case 4:
          target.insert(pos, target.substr(rng() % target.size(), rng() % 16));
          break;
      }
    }
    auto v = verify_record_json(r.json_name, j);
    if (!v) continue;
    auto xs = verify_record_xml(*v, x);
    if (!xs) continue;
    ++accepted;
    EXPECT_EQ(v->vm.spec, original->vm.spec);
    EXPECT_EQ(v->vm.generation, 9);
    EXPECT_EQ(x, r.xml);
  }
  EXPECT_LT(accepted, 600);
}

}  // namespace
