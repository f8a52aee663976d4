// The networks' parts of the contract beyond what the live test reaches: the
// controller's own views render networks (usable and not, set up and failed) and VMs
// with NICs, checked against api/openapi.yaml; and the controller's parsers judge a table
// of network and NIC request bodies, which the contract's request schemas must judge the
// same way.
#include "checker.hpp"

#include "kvmfleet/api/request_parsing.hpp"
#include "kvmfleet/api/views.hpp"
#include "kvmfleet/network/network_service.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>

namespace kvmfleet::contract {
namespace {

using nlohmann::json;

const Clock::time_point kT0{std::chrono::seconds{1'780'000'000}};
const std::string kVmId = "6a1d6f0e-2b3a-4c5d-8e9f-0a1b2c3d4e5f";

ClusterState::Data network_cluster() {
  ClusterState::Data d;
  Host up;
  up.name = "node1";
  up.state = HostState::up;
  up.inventory.links = {{"eth1", LinkKind::other, 9000, true, std::nullopt, "", ""},
                        {"eth1.42", LinkKind::vlan, 9000, true, 42, "eth1", "br-lab"},
                        {"br-lab", LinkKind::bridge, 9000, true, std::nullopt, "", ""}};
  Host down = up;
  down.name = "node2";
  down.state = HostState::down;
  Host bare;
  bare.name = "node3";
  bare.state = HostState::up;
  WriteBatch b;
  b.put_hosts = {up, down, bare};

  Network lab;
  lab.name = "lab";
  lab.bridge = "br-lab";
  lab.vlan = 42;
  lab.uplink = "eth1";
  lab.mtu = 9000;
  lab.hosts["node1"] = {true, "", kT0};
  lab.hosts["node3"] = {false, "not_found: uplink eth1 does not exist on this host", kT0};
  lab.created_at = kT0;
  Network plain;
  plain.name = "mgmt";
  plain.bridge = "br0";
  plain.created_at = kT0;
  b.put_networks = {lab, plain};

  Vm vm;
  vm.id = kVmId;
  vm.spec.name = "web1";
  vm.spec.memory_mib = 512;
  vm.spec.nics = {{"lab", "52:54:00:12:34:56", NicModel::virtio, "br-lab", 9000},
                  {"mgmt", "52:54:00:12:34:57", NicModel::rtl8139, "br0", 1500}};
  vm.host = "node1";
  vm.created_at = vm.updated_at = kT0;
  b.put_vms = {vm};
  d.apply(b);
  return d;
}

std::string exchange(const std::string& templ, const std::string& path, const json& body) {
  return json{{"method", "GET"},
              {"path_template", templ},
              {"path", path},
              {"status", 200},
              {"content_type", "application/json"},
              {"headers", json::object()},
              {"body", body.dump()}}
      .dump();
}

TEST(NetworkContract, ViewsMatchTheContract) {
  const ClusterState::Data d = network_cluster();
  json items = json::array();
  for (const auto& [_, n] : d.networks) items.push_back(network_view(n, d));
  const json lab = network_view(d.networks.at("lab"), d);
  EXPECT_TRUE(lab["hosts"]["node1"].value("usable", false));
  EXPECT_EQ(lab["hosts"]["node2"].value("reason", ""), "host is down");
  EXPECT_EQ(lab["hosts"]["node3"].value("setup", ""), "failed");
  EXPECT_TRUE(network_view(d.networks.at("mgmt"), d)["uplink"].is_null());
  const json vm = api::vm_view(d.vms.at(kVmId));
  EXPECT_EQ(vm["nics"][1].value("model", ""), "rtl8139");
  EXPECT_FALSE(vm["nics"][0].contains("bridge"));

  const std::vector<std::string> lines = {
      exchange("/v1/networks", "/v1/networks", {{"items", items}}),
      exchange("/v1/networks/{name}", "/v1/networks/lab", lab),
      exchange("/v1/vms/{id}", "/v1/vms/web1", vm),
  };
  const std::string path = kRecordDir + "/recorded-network-views.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({path});
  EXPECT_EQ(check.exit_code, 0) << "api/openapi.yaml does not describe the network views (" << path
                                << "):\n"
                                << check.out << check.err;
}

struct Case {
  std::string label;
  json body;
  bool looser = false;  // a rule the contract states in prose only
};

void add_cases(std::vector<std::string>& out, const std::string& schema,
               const std::function<bool(const json&)>& accepts, const std::vector<Case>& cases) {
  for (const auto& c : cases)
    out.push_back(json{
        {"label", schema.substr(schema.rfind('/') + 1) + ": " + c.label},
        {"schema", schema},
        {"instance", c.body},
        {"accepted", accepts(c.body)},
        {"looser",
         c.looser}}.dump());
}

json with(json base, const std::string& key, const json& value) {
  if (value.is_discarded())
    base.erase(key);
  else
    base[key] = value;
  return base;
}

TEST(NetworkContract, RequestSchemasAcceptWhatTheParsersAccept) {
  const json gone(json::value_t::discarded);
  const json plain = {{"name", "mgmt"}, {"bridge", "br0"}};
  const json vlan = {{"name", "lab"}, {"bridge", "br-lab"}, {"vlan", 42}, {"uplink", "eth1"}};
  std::vector<std::string> lines;
  add_cases(lines, "/components/schemas/NetworkCreateRequest",
            [](const json& b) { return parse_network_create(b).ok(); },
            {
                {"plain", plain},
                {"VLAN", vlan},
                {"mtu", with(plain, "mtu", 9000)},
                {"mtu null", with(plain, "mtu", nullptr)},
                {"mtu 576", with(plain, "mtu", 576)},
                {"mtu 9216", with(plain, "mtu", 9216)},
                {"mtu 575", with(plain, "mtu", 575)},
                {"mtu 9217", with(plain, "mtu", 9217)},
                {"mtu as text", with(plain, "mtu", "1500")},
                {"vlan null", with(plain, "vlan", nullptr)},
                {"vlan 1", with(vlan, "vlan", 1)},
                {"vlan 4094", with(vlan, "vlan", 4094)},
                {"vlan 0", with(vlan, "vlan", 0)},
                {"vlan 4095", with(vlan, "vlan", 4095)},
                {"vlan as text", with(vlan, "vlan", "42")},
                {"vlan without uplink", with(vlan, "uplink", gone)},
                {"uplink without vlan", with(vlan, "vlan", gone)},
                {"uplink with vlan null", with(vlan, "vlan", nullptr)},
                {"uplink null", with(vlan, "uplink", nullptr)},
                {"uplink empty", with(vlan, "uplink", "")},
                {"bridge with a dot", with(plain, "bridge", "br.0")},
                {"bridge of 15", with(plain, "bridge", "abcdefghijklmno")},
                {"bridge of 16", with(plain, "bridge", "abcdefghijklmnop")},
                {"bridge empty", with(plain, "bridge", "")},
                {"bridge '.'", with(plain, "bridge", ".")},
                {"bridge '..'", with(plain, "bridge", "..")},
                {"bridge '-h'", with(plain, "bridge", "-h")},
                {"bridge with /", with(plain, "bridge", "br/0")},
                {"bridge with :", with(plain, "bridge", "br:0")},
                {"bridge with space", with(plain, "bridge", "br 0")},
                {"bridge with a quote", with(plain, "bridge", "br'0")},
                {"bridge with a backslash", with(plain, "bridge", "br\\0")},
                {"bridge non-ASCII", with(plain, "bridge", "br\xc3\xa9")},
                {"uplink '-x'", with(vlan, "uplink", "-x")},
                {"no bridge", with(plain, "bridge", gone)},
                {"no name", with(plain, "name", gone)},
                {"bad name", with(plain, "name", "Lab")},
                {"unknown field", with(plain, "stp", true)},
                {"sub-interface name over 15", with(vlan, "uplink", "enp129s0f1np1"), true},
                {"bridge is the uplink", with(vlan, "bridge", "eth1"), true},
            });

  const json base = {{"name", "web1"}, {"memory_mib", 64}};
  // A list of NICs (an initializer list of one json would be that json, not an array).
  auto nics = [&](std::vector<json> list) { return with(base, "nics", json(std::move(list))); };
  const json lab = {{"network", "lab"}};
  std::vector<json> many(17, lab);
  const std::vector<Case> vm_cases = {
      {"one NIC", nics({lab})},
      {"nics null", with(base, "nics", nullptr)},
      {"nics empty", nics({})},
      {"mac", nics({with(lab, "mac", "52:54:00:ab:cd:ef")})},
      {"mac upper case", nics({with(lab, "mac", "52:54:00:AB:CD:EF")})},
      {"model e1000", nics({with(lab, "model", "e1000")})},
      {"model rtl8139", nics({with(lab, "model", "rtl8139")})},
      {"model null", nics({with(lab, "model", nullptr)})},
      {"16 NICs", nics(std::vector<json>(many.begin(), many.begin() + 16))},
      {"17 NICs", nics(many)},
      {"model ne2k_pci", nics({with(lab, "model", "ne2k_pci")})},
      {"multicast mac", nics({with(lab, "mac", "01:00:5e:00:00:01")})},
      {"short mac", nics({with(lab, "mac", "52:54:00:ab:cd")})},
      {"mac with dashes", nics({with(lab, "mac", "52-54-00-ab-cd-ef")})},
      {"mac null", nics({with(lab, "mac", nullptr)})},
      {"mac empty", nics({with(lab, "mac", "")})},
      {"no network", nics({json::object()})},
      {"network null", nics({{{"network", nullptr}}})},
      {"bad network name", nics({{{"network", "Lab"}}})},
      {"NIC not an object", nics({"lab"})},
      {"unknown NIC field", nics({with(lab, "bridge", "br0")})},
      {"nics not an array", with(base, "nics", lab)},
      {"all-zero mac", nics({with(lab, "mac", "00:00:00:00:00:00")}), true},
      {"a mac twice",
       nics({with(lab, "mac", "52:54:00:00:00:01"), with(lab, "mac", "52:54:00:00:00:01")}), true},
  };
  add_cases(
      lines, "/components/schemas/VmCreateRequest",
      [](const json& b) { return api::parse_vm_create(b).ok(); }, vm_cases);
  add_cases(
      lines, "/components/schemas/PlacementRequest",
      [](const json& b) { return api::parse_vm_create(b, false).ok(); }, vm_cases);

  const std::string path = kRecordDir + "/network-request-cases.jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
  }
  const ProcessOutput check = run_checker({"--agreement", path});
  EXPECT_EQ(check.exit_code, 0)
      << "api/openapi.yaml's request schemas and the controller's parsers disagree (" << path
      << "):\n"
      << check.out << check.err;
}

}  // namespace
}  // namespace kvmfleet::contract
