#include "kvmfleet/agent/spec_validation.hpp"

#include <gtest/gtest.h>

namespace kvmfleet::agent {
namespace {

using nlohmann::json;

json good_spec() {
  return {{"uuid", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"},
          {"name", "web1"},
          {"vcpus", 2},
          {"memory_mib", 64},
          {"domain_type", "qemu"},
          {"generation", 4},
          {"disks",
           {{{"volume", "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b-disk0.qcow2"},
             {"size_gib", 10},
             {"bus", "virtio"},
             {"target_dev", "vda"}}}}};
}

TEST(SpecValidation, ParsesAGoodSpec) {
  auto s = parse_domain_spec(good_spec());
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->name, "web1");
  EXPECT_EQ(s->vcpus, 2);
  EXPECT_EQ(s->memory_mib, 64);
  EXPECT_EQ(s->domain_type, "qemu");
  EXPECT_EQ(s->generation, 4);
  ASSERT_EQ(s->disks.size(), 1u);
  EXPECT_EQ(s->disks[0].target_dev, "vda");
  EXPECT_EQ(s->disks[0].size_gib, 10);
}

TEST(SpecValidation, RefusesBadInput) {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
  };
  const std::vector<Case> cases = {
      {"unknown field", [](json& j) { j["extra"] = 1; }},
      {"unknown disk field", [](json& j) { j["disks"][0]["cache"] = "none"; }},
      {"missing name", [](json& j) { j.erase("name"); }},
      {"bad name", [](json& j) { j["name"] = "Web_1"; }},
      {"name with markup", [](json& j) { j["name"] = "a<b>"; }},
      {"bad uuid", [](json& j) { j["uuid"] = "6f1c2a8e3b4d4e5f8a9b0c1d2e3f4a5b"; }},
      {"uuid type", [](json& j) { j["uuid"] = 5; }},
      {"vcpus zero", [](json& j) { j["vcpus"] = 0; }},
      {"vcpus huge", [](json& j) { j["vcpus"] = 100000; }},
      {"vcpus float", [](json& j) { j["vcpus"] = 1.5; }},
      {"memory small", [](json& j) { j["memory_mib"] = 8; }},
      {"memory huge", [](json& j) { j["memory_mib"] = 18446744073709551615ull; }},
      {"domain type", [](json& j) { j["domain_type"] = "lxc"; }},
      {"generation zero", [](json& j) { j["generation"] = 0; }},
      {"disks not array", [](json& j) { j["disks"] = json::object(); }},
      {"bus", [](json& j) { j["disks"][0]["bus"] = "ide"; }},
      {"dev mismatch", [](json& j) { j["disks"][0]["target_dev"] = "sda"; }},
      {"dev garbage", [](json& j) { j["disks"][0]["target_dev"] = "vda1"; }},
      {"volume traversal", [](json& j) { j["disks"][0]["volume"] = "../x.qcow2"; }},
      {"volume slash", [](json& j) { j["disks"][0]["volume"] = "a/b.qcow2"; }},
      {"volume suffix", [](json& j) { j["disks"][0]["volume"] = "a.img"; }},
      {"size zero", [](json& j) { j["disks"][0]["size_gib"] = 0; }},
      {"duplicate dev",
       [](json& j) {
         auto d = j["disks"][0];
         d["volume"] = "other.qcow2";
         j["disks"].push_back(d);
       }},
      {"duplicate volume",
       [](json& j) {
         auto d = j["disks"][0];
         d["target_dev"] = "vdb";
         j["disks"].push_back(d);
       }},
      {"too many disks",
       [](json& j) {
         j["disks"] = json::array();
         for (int i = 0; i < 17; ++i)
           j["disks"].push_back({{"volume", "v" + std::to_string(i) + ".qcow2"},
                                 {"size_gib", 1},
                                 {"target_dev", std::string("vd") + char('a' + i)}});
       }},
      {"not an object", [](json& j) { j = json::array(); }},
  };
  for (const auto& c : cases) {
    json j = good_spec();
    c.mutate(j);
    auto s = parse_domain_spec(j);
    ASSERT_FALSE(s.ok()) << c.what;
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument) << c.what;
  }
}

json block_disk(const std::string& device = "/dev/pool1/vol1", const char* dev = "vdb") {
  // As the controller writes a DomainDisk: both keys, one of them empty.
  return {{"volume", ""},
          {"block_device", device},
          {"size_gib", 0},
          {"bus", "virtio"},
          {"target_dev", dev}};
}

TEST(SpecValidation, ParsesBlockDeviceDisks) {
  json j = good_spec();
  j["disks"].push_back(block_disk());
  j["disks"].push_back(block_disk("/dev/pool2/vol2", "vdc"));
  j["disks"][2].erase("volume");  // absent is the same as empty
  j["disks"][2]["size_gib"] = 20;
  auto s = parse_domain_spec(j);
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(s->disks.size(), 3u);
  EXPECT_EQ(s->disks[0].block_device, "");
  EXPECT_EQ(s->disks[1].volume, "");
  EXPECT_EQ(s->disks[1].block_device, "/dev/pool1/vol1");
  EXPECT_EQ(s->disks[1].size_gib, 0);
  EXPECT_EQ(s->disks[2].block_device, "/dev/pool2/vol2");
  EXPECT_EQ(s->disks[2].size_gib, 20);
  // An image-pool disk written by a controller that knows block devices: "" is unset.
  j = good_spec();
  j["disks"][0]["block_device"] = "";
  EXPECT_TRUE(parse_domain_spec(j).ok());
}

TEST(SpecValidation, RefusesBadBlockDeviceDisks) {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"both set", [](json& j) { j["disks"][0]["block_device"] = "/dev/pool1/vol1"; },
       "spec.disks[0]"},
      {"neither set",
       [](json& j) {
         j["disks"][0]["volume"] = "";
         j["disks"][0]["block_device"] = "";
       },
       "spec.disks[0]"},
      {"neither given", [](json& j) { j["disks"][0].erase("volume"); }, "spec.disks[0]"},
      {"relative", [](json& j) { j["disks"].push_back(block_disk("dev/pool1/vol1")); },
       "spec.disks[1].block_device"},
      {"outside /dev", [](json& j) { j["disks"].push_back(block_disk("/tmp/vol1")); },
       "spec.disks[1].block_device"},
      {"traversal", [](json& j) { j["disks"].push_back(block_disk("/dev/../etc/shadow")); },
       "spec.disks[1].block_device"},
      {"double slash", [](json& j) { j["disks"].push_back(block_disk("/dev//sda")); },
       "spec.disks[1].block_device"},
      {"space", [](json& j) { j["disks"].push_back(block_disk("/dev/pool1/a b")); },
       "spec.disks[1].block_device"},
      {"quote", [](json& j) { j["disks"].push_back(block_disk("/dev/pool1/a'b")); },
       "spec.disks[1].block_device"},
      {"just /dev/", [](json& j) { j["disks"].push_back(block_disk("/dev/")); },
       "spec.disks[1].block_device"},
      {"a whole disk", [](json& j) { j["disks"].push_back(block_disk("/dev/sda")); },
       "spec.disks[1].block_device"},
      {"a device-mapper map", [](json& j) { j["disks"].push_back(block_disk("/dev/mapper/x")); },
       "spec.disks[1].block_device"},
      {"an option", [](json& j) { j["disks"].push_back(block_disk("/dev/pool1/--force")); },
       "spec.disks[1].block_device"},
      {"a path below an LV", [](json& j) { j["disks"].push_back(block_disk("/dev/pool1/a/b")); },
       "spec.disks[1].block_device"},
      {"type",
       [](json& j) {
         j["disks"].push_back(block_disk());
         j["disks"][1]["block_device"] = 5;
       },
       "block_device"},
      {"negative size",
       [](json& j) {
         j["disks"].push_back(block_disk());
         j["disks"][1]["size_gib"] = -1;
       },
       "size_gib"},
      {"used twice",
       [](json& j) {
         j["disks"].push_back(block_disk());
         j["disks"].push_back(block_disk("/dev/pool1/vol1", "vdc"));
       },
       "spec.disks[2].block_device"},
      {"target used twice",
       [](json& j) { j["disks"].push_back(block_disk("/dev/pool1/vol1", "vda")); },
       "spec.disks[1].target_dev"},
      {"pool disk of size 0", [](json& j) { j["disks"][0]["size_gib"] = 0; },
       "spec.disks[0].size_gib"},
  };
  for (const auto& c : cases) {
    json j = good_spec();
    c.mutate(j);
    auto s = parse_domain_spec(j);
    ASSERT_FALSE(s.ok()) << c.what;
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument) << c.what;
    EXPECT_EQ(s.error().details.value("field", ""), c.field) << c.what << ": " << s.error().message;
  }
}

TEST(SpecValidation, VolumeNames) {
  EXPECT_TRUE(is_valid_volume_name("6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b-disk0.qcow2"));
  EXPECT_FALSE(is_valid_volume_name(".qcow2"));
  EXPECT_FALSE(is_valid_volume_name("-a.qcow2"));
  EXPECT_FALSE(is_valid_volume_name("a.b.qcow2"));
  EXPECT_FALSE(is_valid_volume_name("A.qcow2"));
  EXPECT_FALSE(is_valid_volume_name(std::string(129, 'a') + ".qcow2"));
}

}  // namespace
}  // namespace kvmfleet::agent
