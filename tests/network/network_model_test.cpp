// Network validation, usability from a host's links, `ip -json` parsing and the
// idempotent making of a network's links (over the LinkControl double and over `ip`
// through the process runner double).
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/network/link_control.hpp"
#include "kvmfleet/network/network_service.hpp"
#include "tests/doubles/common/fake_process_runner.hpp"
#include "tests/doubles/network/fake_link_control.hpp"

#include <gtest/gtest.h>

using namespace kvmfleet;
using network::ensure_network;
using network::parse_ip_links;
using nlohmann::json;

namespace {

Network vlan_net() {
  Network n;
  n.name = "lab";
  n.bridge = "br-lab";
  n.vlan = 42;
  n.uplink = "eth1";
  n.mtu = 1500;
  return n;
}

std::string reason_of(const Status& st) {
  return st ? std::string() : st.error().details.value("reason", "");
}
template <typename T>
std::string reason_of(const Result<T>& r) {
  return r ? std::string() : r.error().details.value("reason", "");
}

TEST(InterfaceNames, AcceptsWhatTheKernelTakes) {
  for (const char* ok : {"eth0", "br-lab", "enp3s0f1", "bond0.100", "a", "x_y", "123456789012345"})
    EXPECT_TRUE(is_valid_interface_name(ok)) << ok;
}

TEST(InterfaceNames, RefusesOddNames) {
  for (const char* bad : {"", ".", "..", "-bridge", "--help", "br/0", "br 0", "br\t0", "br:0",
                          "1234567890123456", "br\n", "br\"x", "br'x", "br\\x"})
    EXPECT_FALSE(is_valid_interface_name(bad)) << bad;
  EXPECT_FALSE(is_valid_interface_name(std::string("br\0x", 4)));
  EXPECT_FALSE(is_valid_interface_name("br\xc3\xa9"));
  auto st = check_interface_name("bridge", "-x");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(st.error().details["field"], "bridge");
  EXPECT_EQ(st.error().details["reason"], "invalid_interface_name");
}

TEST(ValidateNetwork, GivesEachMistakeItsStableReason) {
  EXPECT_TRUE(validate_network(vlan_net()));
  Network plain;
  plain.name = "mgmt";
  plain.bridge = "br0";
  EXPECT_TRUE(validate_network(plain));

  auto with = [](auto change) {
    Network n = vlan_net();
    change(n);
    return reason_of(validate_network(n));
  };
  EXPECT_EQ(with([](Network& n) { n.name = "Lab"; }), "invalid_name");
  EXPECT_EQ(with([](Network& n) { n.bridge = "br lab"; }), "invalid_interface_name");
  EXPECT_EQ(with([](Network& n) { n.uplink = "../eth1"; }), "invalid_interface_name");
  EXPECT_EQ(with([](Network& n) { n.vlan = 0; }), "vlan_out_of_range");
  EXPECT_EQ(with([](Network& n) { n.vlan = 4095; }), "vlan_out_of_range");
  EXPECT_EQ(with([](Network& n) { n.vlan = 1; }), "");
  EXPECT_EQ(with([](Network& n) { n.vlan = 4094; }), "");
  EXPECT_EQ(with([](Network& n) { n.uplink.clear(); }), "vlan_without_uplink");
  EXPECT_EQ(with([](Network& n) { n.vlan.reset(); }), "uplink_without_vlan");
  EXPECT_EQ(with([](Network& n) { n.mtu = 575; }), "mtu_out_of_range");
  EXPECT_EQ(with([](Network& n) { n.mtu = 9217; }), "mtu_out_of_range");
  EXPECT_EQ(with([](Network& n) { n.mtu = 9216; }), "");
  EXPECT_EQ(with([](Network& n) { n.uplink = "enp129s0f1np1"; }), "vlan_interface_name_too_long");
  EXPECT_EQ(with([](Network& n) { n.bridge = "eth1"; }), "bridge_is_uplink");
  EXPECT_EQ(with([](Network& n) { n.bridge = "eth1.42"; }), "bridge_is_uplink");
}

TEST(ParseNetworkCreate, ReadsTheBodyStrictly) {
  auto n = parse_network_create(
      json{{"name", "lab"}, {"bridge", "br-lab"}, {"vlan", 42}, {"uplink", "eth1"}, {"mtu", 9000}});
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->vlan, 42);
  EXPECT_EQ(n->mtu, 9000);
  auto plain = parse_network_create(json{{"name", "mgmt"}, {"bridge", "br0"}});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->mtu, 1500);
  EXPECT_FALSE(plain->vlan);

  EXPECT_EQ(parse_network_create(json{{"name", "x"}, {"bridge", "br0"}, {"colour", 1}})
                .error()
                .details["field"],
            "colour");
  EXPECT_EQ(parse_network_create(json{{"name", "x"}}).error().details["field"], "bridge");
  EXPECT_EQ(reason_of(parse_network_create(
                json{{"name", "x"}, {"bridge", "br0"}, {"vlan", 70000000000}, {"uplink", "eth0"}})),
            "vlan_out_of_range");
  EXPECT_EQ(reason_of(parse_network_create(
                json{{"name", "x"}, {"bridge", "br0"}, {"vlan", -1}, {"uplink", "eth0"}})),
            "vlan_out_of_range");
  EXPECT_EQ(reason_of(parse_network_create(json{{"name", "x"}, {"bridge", "br0"}, {"mtu", 100}})),
            "mtu_out_of_range");
  EXPECT_EQ(reason_of(parse_network_create(json{{"name", "x"}, {"bridge", "-br0"}})),
            "invalid_interface_name");
  EXPECT_EQ(reason_of(parse_network_create(json{{"name", "x"}, {"bridge", "br0"}, {"uplink", ""}})),
            "invalid_interface_name");
  const auto wrong_type =
      parse_network_create(json{{"name", "x"}, {"bridge", "br0"}, {"vlan", "42"}});
  ASSERT_FALSE(wrong_type);
  EXPECT_EQ(wrong_type.error().details["field"], "vlan");
}

std::vector<HostLink> ready_links() {
  return {{"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""},
          {"eth1.42", LinkKind::vlan, 1500, true, 42, "eth1", "br-lab"},
          {"br-lab", LinkKind::bridge, 1500, true, std::nullopt, "", ""}};
}

TEST(NetworkUsability, FollowsTheHostsLinks) {
  const Network n = vlan_net();
  EXPECT_EQ(network_unusable_reason(n, ready_links()), "");
  EXPECT_EQ(network_unusable_reason(n, {}), "no link br-lab");
  auto links = ready_links();
  links[2].up = false;
  EXPECT_EQ(network_unusable_reason(n, links), "bridge br-lab is down");
  links = ready_links();
  links[2].kind = LinkKind::other;
  EXPECT_EQ(network_unusable_reason(n, links), "br-lab is not a bridge");
  links = ready_links();
  links[1].vlan_id = 43;
  EXPECT_EQ(network_unusable_reason(n, links), "eth1.42 is not VLAN 42 on eth1");
  links = ready_links();
  links[1].master.clear();
  EXPECT_EQ(network_unusable_reason(n, links), "eth1.42 is not a port of bridge br-lab");
  links = ready_links();
  links[2].mtu = 1400;
  EXPECT_EQ(network_unusable_reason(n, links), "bridge br-lab has MTU 1400, below 1500");
  links = ready_links();
  links.erase(links.begin() + 1);
  EXPECT_EQ(network_unusable_reason(n, links), "no VLAN interface eth1.42");
}

TEST(NetworkJson, HostLinksFromAgentsAreCheckedAndRoundTrip) {
  for (const auto& l : ready_links()) EXPECT_EQ(json(l).get<HostLink>(), l);
  EXPECT_THROW((void)json({{"name", "-x"}, {"kind", "bridge"}}).get<HostLink>(), std::exception);
  EXPECT_THROW((void)json({{"name", "br0"}, {"kind", "tap"}}).get<HostLink>(), std::exception);
  HostInventory inv;
  inv.links = ready_links();
  EXPECT_EQ(json(inv).get<HostInventory>().links, inv.links);
  // An agent that reports no links (an older one) is a host with none.
  EXPECT_TRUE(json({{"hostname", "h"}}).get<HostInventory>().links.empty());
}

// What `ip -details -json link show` printed in a network namespace with a VLAN
// sub-interface in a bridge (trimmed to the fields read, plus some it ignores).
constexpr const char* kIpJson = R"json([
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"operstate":"UNKNOWN"},
 {"ifindex":2,"link":"veth-peer","ifname":"eth1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
  "mtu":1500,"linkinfo":{"info_kind":"veth"}},
 {"ifindex":3,"link":"eth1","ifname":"eth1.42","flags":["BROADCAST","MULTICAST","UP"],"mtu":1500,
  "master":"br-lab","linkinfo":{"info_kind":"vlan","info_data":{"protocol":"802.1Q","id":42,"flags":["REORDER_HDR"]},
  "info_slave_kind":"bridge"}},
 {"ifindex":4,"ifname":"br-lab","flags":["BROADCAST","MULTICAST"],"mtu":1500,
  "linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}}},
 {"ifindex":5,"ifname":"odd name","flags":["UP"],"mtu":1500}
])json";

TEST(ParseIpLinks, ReadsKindVlanParentMasterAndUp) {
  auto links = parse_ip_links(kIpJson);
  ASSERT_TRUE(links) << links.error().message;
  ASSERT_EQ(links->size(), 4u);  // "odd name" is no interface kvmfleet could use
  EXPECT_EQ((*links)[0], (HostLink{"lo", LinkKind::other, 65536, true, std::nullopt, "", ""}));
  EXPECT_EQ((*links)[1], (HostLink{"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""}));
  EXPECT_EQ((*links)[2], (HostLink{"eth1.42", LinkKind::vlan, 1500, true, 42, "eth1", "br-lab"}));
  EXPECT_EQ((*links)[3], (HostLink{"br-lab", LinkKind::bridge, 1500, false, std::nullopt, "", ""}));
  EXPECT_FALSE(parse_ip_links("not json"));
  EXPECT_FALSE(parse_ip_links("{}"));
  EXPECT_TRUE(parse_ip_links("[]")->empty());
}

TEST(EnsureNetwork, MakesAVlanAndItsBridgeOnceAndThenNothing) {
  doubles::FakeLinkControl links;
  links.add({"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""});
  auto made = ensure_network(links, vlan_net());
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(*made, (std::vector<std::string>{"eth1.42", "br-lab"}));
  EXPECT_EQ(network_unusable_reason(vlan_net(), *links.links()), "");
  links.clear_changes();
  auto again = ensure_network(links, vlan_net());
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->empty());
  EXPECT_TRUE(links.changes().empty()) << links.changes().front();
}

TEST(EnsureNetwork, SetsTheMtuOnUplinkSubInterfaceAndBridge) {
  doubles::FakeLinkControl links;
  links.add({"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""});
  Network n = vlan_net();
  n.mtu = 9000;
  ASSERT_TRUE(ensure_network(links, n));
  const auto made = links.links();
  ASSERT_TRUE(made);
  for (const auto& l : *made) EXPECT_EQ(l.mtu, 9000) << l.name;
  EXPECT_EQ(network_unusable_reason(n, *links.links()), "");
}

TEST(EnsureNetwork, RefusesLinksThatAreSomethingElse) {
  doubles::FakeLinkControl links;
  links.add({"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""});
  links.add({"eth1.42", LinkKind::vlan, 1500, true, 7, "eth1", ""});
  auto r = ensure_network(links, vlan_net());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::conflict);
  EXPECT_EQ(reason_of(r), "link_mismatch");

  doubles::FakeLinkControl other;
  other.add({"eth1", LinkKind::other, 1500, true, std::nullopt, "", ""});
  other.add({"br-lab", LinkKind::other, 1500, true, std::nullopt, "", ""});
  EXPECT_EQ(reason_of(ensure_network(other, vlan_net())), "link_mismatch");
  EXPECT_TRUE(other.changes().empty());
}

TEST(EnsureNetwork, NeedsTheUplinkAndNeverMakesAPlainBridge) {
  doubles::FakeLinkControl links;
  auto r = ensure_network(links, vlan_net());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::not_found);
  EXPECT_EQ(reason_of(r), "uplink_missing");

  Network plain;
  plain.name = "mgmt";
  plain.bridge = "br0";
  auto missing = ensure_network(links, plain);
  ASSERT_FALSE(missing);
  EXPECT_EQ(reason_of(missing), "bridge_missing");
  EXPECT_TRUE(links.changes().empty());

  links.add({"br0", LinkKind::bridge, 1500, false, std::nullopt, "", ""});
  auto up = ensure_network(links, plain);
  ASSERT_TRUE(up);
  EXPECT_TRUE(up->empty());
  EXPECT_EQ(links.changes(), std::vector<std::string>{"set_up br0"});
}

TEST(IpLinkControl, RunsIpByArgumentVector) {
  FakeProcessRunner runner;
  network::IpLinkControl ip(runner);
  runner.expect({"ip", "-details", "-json", "link", "show"}, FakeProcessRunner::exited(0, kIpJson));
  ASSERT_TRUE(ip.links());
  ASSERT_TRUE(ip.add_vlan("eth1", "eth1.42", 42));
  ASSERT_TRUE(ip.add_bridge("br-lab"));
  ASSERT_TRUE(ip.set_master("eth1.42", "br-lab"));
  ASSERT_TRUE(ip.set_mtu("br-lab", 9000));
  ASSERT_TRUE(ip.set_up("br-lab"));
  using V = std::vector<std::string>;
  EXPECT_EQ(runner.calls(),
            (std::vector<V>{V{"ip", "-details", "-json", "link", "show"},
                            V{"ip", "link", "add", "link", "eth1", "name", "eth1.42", "type",
                              "vlan", "id", "42"},
                            V{"ip", "link", "add", "name", "br-lab", "type", "bridge"},
                            V{"ip", "link", "set", "dev", "eth1.42", "master", "br-lab"},
                            V{"ip", "link", "set", "dev", "br-lab", "mtu", "9000"},
                            V{"ip", "link", "set", "dev", "br-lab", "up"}}));
}

TEST(IpLinkControl, MapsIpFailures) {
  FakeProcessRunner runner;
  network::IpLinkControl ip(runner);
  runner.expect({"ip", "link", "set"},
                FakeProcessRunner::exited(1, "", "Cannot find device \"br9\"\n"));
  auto st = ip.set_up("br9");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::not_found);
  runner.expect({"ip", "link", "add"},
                FakeProcessRunner::exited(2, "", "RTNETLINK answers: File exists\n"));
  EXPECT_EQ(ip.add_bridge("br0").error().code, ErrorCode::conflict);
  runner.expect({"ip", "-details"}, FakeProcessRunner::exited(0, "garbage"));
  EXPECT_EQ(ip.links().error().code, ErrorCode::internal);
}

}  // namespace
