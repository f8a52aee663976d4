// The controller's metadata settings and the /metrics lines the writer adds.
#include <gtest/gtest.h>

#include "kvmfleet/api/metrics.hpp"
#include "kvmfleet/core/config.hpp"
#include "kvmfleet/metadata/metadata_writer.hpp"
#include "tests/doubles/store/memory_store.hpp"

using namespace kvmfleet;

namespace {

TEST(MetadataConfigTest, KeysAreReadAndCheckedAndOffByDefault) {
  auto def = ControllerConfig::from_json(nlohmann::json::object());
  ASSERT_TRUE(def.ok());
  EXPECT_TRUE(def->metadata_dir.empty());
  auto c = ControllerConfig::from_json({{"metadata_dir", "/mnt/meta"},
                                        {"metadata_write_timeout_ms", 2500},
                                        {"metadata_queue_capacity", 64},
                                        {"metadata_pool_path", "/srv/images"}});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->metadata_dir, "/mnt/meta");
  EXPECT_EQ(c->metadata_write_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(c->metadata_queue_capacity, 64u);
  EXPECT_EQ(c->metadata_pool_path, "/srv/images");
  EXPECT_FALSE(ControllerConfig::from_json({{"metadata_queue_capacity", 0}}).ok());
  EXPECT_FALSE(ControllerConfig::from_json({{"metadata_dir", 7}}).ok());
}

TEST(MetadataConfigTest, MetricsCarryTheWritersLines) {
  doubles::MemoryStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.load().ok());
  api::Metrics metrics;
  metadata::MetadataHealth h;
  h.lag = std::chrono::milliseconds(1500);
  h.errors_total = 3;
  h.queue_depth = 7;
  metrics.add_source([&] { return metadata::render_metrics(h); });
  const auto text = metrics.render(state);
  EXPECT_NE(text.find("kvmfleet_vms{state=\"running\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE kvmfleet_metadata_lag_seconds gauge\n"
                      "kvmfleet_metadata_lag_seconds 1.500\n"),
            std::string::npos);
  EXPECT_NE(text.find("kvmfleet_metadata_write_errors_total 3\n"), std::string::npos);
  EXPECT_NE(text.find("kvmfleet_metadata_queue_depth 7\n"), std::string::npos);
  EXPECT_TRUE(metrics.health_details().empty());
  metrics.add_health_source("metadata", [&] { return metadata::to_json(h); });
  const auto details = metrics.health_details();
  EXPECT_EQ(details["metadata"]["queue_depth"], 7);
  EXPECT_EQ(details["metadata"]["lag_seconds"], 1.5);
  EXPECT_EQ(details["metadata"]["healthy"], true);
}

}  // namespace
