// The controller's route table (src/api/routes.cpp) and api/openapi.yaml declare the
// same routes: every row an operation of the spec, every operation a row, with the same
// query parameters and the same need for a token. A route added on one side only fails
// here.
#include "checker.hpp"

#include "kvmfleet/api/routes.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

namespace kvmfleet::contract {
namespace {

using nlohmann::json;

json row_of(const api::Route& r) {
  const auto method = http::bhttp::to_string(r.method);
  json query = json::array();
  for (auto key : r.query) query.push_back(std::string(key));
  return {{"method", std::string(method.data(), method.size())},
          {"pattern", std::string(r.pattern)},
          {"query", std::move(query)},
          {"open", r.need == api::Need::anyone}};
}

ProcessOutput check_table(const std::vector<json>& rows, const std::string& name) {
  const std::string path = kRecordDir + "/" + name + ".jsonl";
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& row : rows) out << row.dump() << "\n";
  }
  return run_checker({"--routes", path});
}

TEST(RouteTable, AgreesWithTheOpenApiDocument) {
  std::vector<json> rows;
  for (const auto& r : api::routes()) rows.push_back(row_of(r));
  const ProcessOutput check = check_table(rows, "route-table");
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

// The check is only as good as its ability to say no.
TEST(RouteTable, TheCheckFindsEveryKindOfDrift) {
  std::vector<json> rows;
  for (const auto& r : api::routes()) {
    json row = row_of(r);
    if (row["pattern"] == "/v1/placements") continue;  // an operation without a route
    if (row["pattern"] == "/v1/volumes" && row["method"] == "GET") row["query"] = json::array();
    if (row["pattern"] == "/metrics") row["open"] = true;
    rows.push_back(std::move(row));
  }
  rows.push_back({{"method", "POST"},
                  {"pattern", "/v1/vms/{vm}/explode"},
                  {"query", json::array()},
                  {"open", false}});
  const ProcessOutput check = check_table(rows, "route-table-drift");
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  for (const char* finding : {"POST /v1/placements: declared by the spec, but no route serves it",
                              "GET /v1/volumes: accepts query []", "GET /metrics: needs no token",
                              "POST /v1/vms/{vm}/explode: a route the spec does not declare"})
    EXPECT_NE(check.out.find(finding), std::string::npos) << finding << "\n" << check.out;
}

}  // namespace
}  // namespace kvmfleet::contract
