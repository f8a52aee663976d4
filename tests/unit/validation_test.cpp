#include "kvmfleet/api/request_parsing.hpp"
#include "kvmfleet/common/validate.hpp"

#include <gtest/gtest.h>

using namespace kvmfleet;
using nlohmann::json;

TEST(Names, AcceptOnlyTheOnePattern) {
  for (const char* ok : {"a", "web-1", "0abc", "a-b-c",
                         "x123456789012345678901234567890123456789012345678901234567890ab"})
    EXPECT_TRUE(is_valid_name(ok)) << ok;
  EXPECT_EQ(std::string("x123456789012345678901234567890123456789012345678901234567890ab").size(),
            63u);
  for (const char* bad :
       {"", "-a", "A", "web_1", "a b", "a;rm -rf /", "<vm/>", "a'b", "a\"b", "a$(id)", "a`id`",
        "a&b", "a\nb", "ä", "x1234567890123456789012345678901234567890123456789012345678901234"})
    EXPECT_FALSE(is_valid_name(bad)) << bad;
}

TEST(Uuids, CanonicalLowercaseOnly) {
  EXPECT_TRUE(is_valid_uuid("0f0e0d0c-0b0a-4908-8706-050403020100"));
  EXPECT_FALSE(is_valid_uuid("0F0E0D0C-0B0A-4908-8706-050403020100"));
  EXPECT_FALSE(is_valid_uuid("0f0e0d0c0b0a490887060504030201000000"));
  EXPECT_FALSE(is_valid_uuid("../../etc/passwd"));
}

TEST(VmCreate, ParsesAFullSpec) {
  auto r = api::parse_vm_create(json::parse(R"({"name":"web1","vcpus":2,"memory_mib":512,
     "disks":[{"size_gib":4},{"size_gib":1,"bus":"sata"}],"host":"node1",
     "anti_affinity_group":"web","ha":true,"start":true})"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->spec.name, "web1");
  EXPECT_EQ(r->spec.vcpus, 2);
  EXPECT_EQ(r->spec.memory_mib, 512);
  ASSERT_EQ(r->spec.disks.size(), 2u);
  EXPECT_EQ(r->spec.disks[1].bus, DiskBus::sata);
  EXPECT_EQ(r->spec.pinned_host, "node1");
  EXPECT_EQ(r->spec.anti_affinity_group, "web");
  EXPECT_TRUE(r->spec.ha.enabled);
  EXPECT_TRUE(r->start);
}

struct BadCase {
  const char* body;
  const char* field;
};

class VmCreateBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(VmCreateBad, IsRefusedNamingTheField) {
  auto r = api::parse_vm_create(json::parse(GetParam().body));
  ASSERT_FALSE(r.ok()) << GetParam().body;
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(r.error().details.value("field", ""), GetParam().field) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, VmCreateBad,
    ::testing::Values(
        BadCase{R"({"memory_mib":64})", "name"},
        BadCase{R"({"name":"Web","memory_mib":64})", "name"},
        BadCase{R"({"name":"a;reboot","memory_mib":64})", "name"},
        BadCase{R"({"name":"<domain/>","memory_mib":64})", "name"},
        BadCase{R"({"name":7,"memory_mib":64})", "name"},
        BadCase{R"({"name":"a","memory_mib":64,"bogus":1})", "bogus"},
        BadCase{R"({"name":"a"})", "memory_mib"},
        BadCase{R"({"name":"a","memory_mib":0})", "memory_mib"},
        BadCase{R"({"name":"a","memory_mib":-1})", "memory_mib"},
        BadCase{R"({"name":"a","memory_mib":1e9})", "memory_mib"},
        BadCase{R"({"name":"a","memory_mib":99999999999999999999})", "memory_mib"},
        BadCase{R"({"name":"a","memory_mib":"64"})", "memory_mib"},
        BadCase{R"({"name":"a","memory_mib":64,"vcpus":0})", "vcpus"},
        BadCase{R"({"name":"a","memory_mib":64,"vcpus":100000})", "vcpus"},
        BadCase{R"({"name":"a","memory_mib":64,"vcpus":1.5})", "vcpus"},
        BadCase{R"({"name":"a","memory_mib":64,"disks":{}})", "disks"},
        BadCase{R"({"name":"a","memory_mib":64,"disks":[{"size_gib":0}]})", "disks[0].size_gib"},
        BadCase{R"({"name":"a","memory_mib":64,"disks":[{"size_gib":1,"bus":"ide"}]})",
                "disks[0].bus"},
        BadCase{R"({"name":"a","memory_mib":64,"disks":[{"size_gib":1,"path":"/etc/shadow"}]})",
                "path"},
        BadCase{R"({"name":"a","memory_mib":64,"host":"../x"})", "host"},
        BadCase{R"({"name":"a","memory_mib":64,"anti_affinity_group":"G"})", "anti_affinity_group"},
        BadCase{R"({"name":"a","memory_mib":64,"ha":"yes"})", "ha"},
        BadCase{R"({"name":"a","memory_mib":64,"ha":{"priority":1001}})", "ha.priority"},
        BadCase{R"({"name":"a","memory_mib":64,"ha":{"max_restarts":0}})", "ha.max_restarts"},
        BadCase{R"({"name":"a","memory_mib":64,"ha":{"enabled":1}})", "ha.enabled"},
        BadCase{R"({"name":"a","memory_mib":64,"ha":{"restarts":1}})", "ha.restarts"}));

TEST(VmCreate, ParsesAnHaPolicy) {
  auto r = api::parse_vm_create(
      json::parse(R"({"name":"db","memory_mib":64,"ha":{"priority":700,"max_restarts":5}})"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->spec.ha, (HaPolicy{true, 700, 5}));
  auto off = api::parse_vm_create(json::parse(R"({"name":"db","memory_mib":64,"ha":false})"));
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->spec.ha, HaPolicy{});
}

TEST(VmCreate, TooManyDisks) {
  json b = {{"name", "a"}, {"memory_mib", 64}, {"disks", json::array()}};
  for (int i = 0; i < 17; ++i) b["disks"].push_back({{"size_gib", 1}});
  auto r = api::parse_vm_create(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().details["field"], "disks");
}

TEST(Body, MalformedAndNonObjectBodiesAreInvalid) {
  for (const char* b : {"", "{", "[1,2]", "\"x\"", "null", "{\"a\":}"}) {
    auto r = api::parse_body(b);
    ASSERT_FALSE(r.ok()) << b;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  }
  EXPECT_TRUE(api::parse_body("{}").ok());
}

TEST(Query, DecodesAndRefusesDuplicatesAndBadEscapes) {
  auto q = api::parse_query("host=node%2D1&state=running&x");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->at("host"), "node-1");
  EXPECT_EQ(q->at("x"), "");
  EXPECT_FALSE(api::parse_query("a=1&a=2").ok());
  EXPECT_FALSE(api::parse_query("a=%zz").ok());
  EXPECT_FALSE(api::parse_query("a=%2").ok());
  EXPECT_FALSE(api::check_query_keys(*q, {"host"}).ok());
  EXPECT_TRUE(api::check_query_keys(*q, {"host", "state", "x"}).ok());
  std::map<std::string, std::string> m{{"wait", "301"}};
  EXPECT_FALSE(api::query_int(m, "wait", 0, 0, 300).ok());
  m["wait"] = "5s";
  EXPECT_FALSE(api::query_int(m, "wait", 0, 0, 300).ok());
  m["wait"] = "5";
  EXPECT_EQ(*api::query_int(m, "wait", 0, 0, 300), 5);
}

TEST(AgentUrl, OnlySchemeHostPort) {
  EXPECT_TRUE(api::check_agent_url("http://127.0.0.1:7100").ok());
  EXPECT_TRUE(api::check_agent_url("https://node1.example:7100/").ok());
  for (const char* bad : {"ftp://x:1", "http://x", "http://x:0", "http://x:70000", "http://a b:1",
                          "http://x:1/path?q", "http://$(id):1", "127.0.0.1:7100"})
    EXPECT_FALSE(api::check_agent_url(bad).ok()) << bad;
}

TEST(Stop, TimeoutAndForce) {
  auto r = api::parse_stop(json::parse(R"({"timeout_s":5,"force":true})"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->timeout_s, 5);
  EXPECT_TRUE(r->force);
  EXPECT_FALSE(api::parse_stop(json::parse(R"({"timeout_s":0})")).ok());
  EXPECT_FALSE(api::parse_stop(json::parse(R"({"graceful":true})")).ok());
}
