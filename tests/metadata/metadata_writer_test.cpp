#include "kvmfleet/metadata/metadata_writer.hpp"
#include "tests/doubles/common/manual_clock.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <future>
#include <map>
#include <random>

#include "kvmfleet/metadata/metadata_import.hpp"
#include "tests/doubles/metadata/gated_metadata_fs.hpp"
#include "tests/metadata/test_support.hpp"

using namespace kvmfleet;
using namespace kvmfleet::metadata;
using namespace std::chrono_literals;
using kvmfleet::testing_support::eventually;
using kvmfleet::testing_support::sample_vm;
using kvmfleet::testing_support::TempDir;

extern char** environ;

namespace {

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    real_ = make_posix_metadata_fs(dir_.path());
    gated_ = std::make_shared<doubles::GatedMetadataFs>(real_);
    opts_.writer_id = "ctl1";
    opts_.retry_backoff = 5ms;
  }
  void make_writer() {
    writer_ =
        std::make_unique<MetadataWriter>(gated_, clock_, opts_, [this](const std::string& id) {
          std::lock_guard lk(mu_);
          auto it = current_.find(id);
          return it == current_.end() ? std::nullopt : std::optional(it->second);
        });
    writer_->start();
  }
  void TearDown() override {
    gated_->release();
    if (writer_) writer_->stop();
  }
  // The controller's view, for the writer's re-reads.
  void change(const VmMetadata& m) {
    {
      std::lock_guard lk(mu_);
      current_[m.vm.id] = m;
    }
    writer_->submit(m);
  }
  std::optional<std::int64_t> generation_on_disk(const std::string& id) {
    auto rec = read_record(*real_, id + ".json");
    if (!rec) return std::nullopt;
    return rec->vm.generation;
  }

  TempDir dir_;
  ManualClock clock_;
  std::shared_ptr<MetadataFs> real_;
  std::shared_ptr<doubles::GatedMetadataFs> gated_;
  MetadataWriterOptions opts_;
  std::unique_ptr<MetadataWriter> writer_;
  std::mutex mu_;
  std::map<std::string, VmMetadata> current_;
};

TEST_F(WriterTest, ARecordAppearsAfterASubmit) {
  make_writer();
  auto m = sample_vm("web1", 1);
  change(m);
  ASSERT_TRUE(eventually([&] { return generation_on_disk(m.vm.id) == 1; }));
  auto h = writer_->health();
  EXPECT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  h = writer_->health();
  EXPECT_TRUE(h.healthy);
  EXPECT_EQ(h.writes_total, 1u);
  EXPECT_EQ(h.errors_total, 0u);
  EXPECT_EQ(h.last_success, clock_.now());
  EXPECT_EQ(h.lag, 0ms);
}

TEST_F(WriterTest, OnlyTheNewestGenerationIsWritten) {
  make_writer();
  gated_->hold();
  auto m = sample_vm("web1", 1);
  change(m);
  ASSERT_TRUE(eventually([&] { return gated_->waiting() == 1; }));  // generation 1 in flight
  for (int g = 2; g <= 50; ++g) {
    m.vm.generation = g;
    change(m);
  }
  // An older generation arriving late (observers may run out of order) is ignored.
  m.vm.generation = 10;
  writer_->submit(m);
  EXPECT_EQ(writer_->health().queue_depth, 2u);  // one in flight, one waiting
  gated_->release();
  ASSERT_TRUE(eventually([&] { return generation_on_disk(m.vm.id) == 50; }));
  ASSERT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  // Generation 1 (XML + JSON), then generation 50 (XML + JSON, old XML removed).
  EXPECT_EQ(gated_->written().size(), 4u);
  EXPECT_EQ(writer_->health().writes_total, 2u);
}

TEST_F(WriterTest, AFullQueueDropsTheOldestAndRewritesItLater) {
  opts_.queue_capacity = 3;
  make_writer();
  gated_->hold();
  auto first = sample_vm("vm0", 1);
  change(first);
  ASSERT_TRUE(eventually([&] { return gated_->waiting() == 1; }));
  std::vector<VmMetadata> vms;
  for (int i = 1; i <= 10; ++i) {
    vms.push_back(sample_vm("vm" + std::to_string(i), 1));
    change(vms.back());
  }
  auto h = writer_->health();
  EXPECT_EQ(h.dropped_total, 7u);
  EXPECT_EQ(h.queue_depth, 11u);  // 1 in flight, 3 queued, 7 to re-read
  // A dropped VM that changed meanwhile is written at its newest generation.
  vms[0].vm.generation = 2;
  {
    std::lock_guard lk(mu_);
    current_[vms[0].vm.id] = vms[0];
  }
  gated_->release();
  for (const auto& m : vms)
    ASSERT_TRUE(eventually([&] { return generation_on_disk(m.vm.id) == m.vm.generation; }))
        << m.vm.spec.name;
  EXPECT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
}

TEST_F(WriterTest, ADroppedVmThatNoLongerExistsLosesItsRecord) {
  opts_.queue_capacity = 1;
  make_writer();
  auto gone = sample_vm("gone", 1);
  change(gone);
  ASSERT_TRUE(eventually([&] { return generation_on_disk(gone.vm.id) == 1; }));
  gated_->hold();
  auto busy = sample_vm("busy", 1);
  change(busy);
  ASSERT_TRUE(eventually([&] { return gated_->waiting() == 1; }));
  gone.vm.generation = 2;
  change(gone);
  change(sample_vm("other", 1));  // pushes "gone" out of the queue
  EXPECT_EQ(writer_->health().dropped_total, 1u);
  {
    std::lock_guard lk(mu_);
    current_.erase(gone.vm.id);  // deleted while its change was out of the queue
  }
  gated_->release();
  ASSERT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  EXPECT_FALSE(real_->read(gone.vm.id + ".json", 1 << 20).ok());
}

TEST_F(WriterTest, AHungShareNeverBlocksSubmitAndShowsInHealthUntilItAnswers) {
  opts_.write_timeout = 20ms;
  make_writer();
  gated_->hold();
  auto m = sample_vm("web1", 1);
  change(m);
  ASSERT_TRUE(eventually([&] { return gated_->waiting() == 1; }));
  // Submissions keep being accepted (and coalesced) while the share hangs.
  auto submitted = std::async(std::launch::async, [&] {
    for (int i = 0; i < 100; ++i) {
      auto other = sample_vm("other" + std::to_string(i), 1);
      change(other);
      m.vm.generation = 2 + i;
      change(m);
    }
  });
  ASSERT_EQ(submitted.wait_for(20s), std::future_status::ready);
  // The write of web1 outlives its timeout, which the writer waits for on the clock.
  ASSERT_TRUE(eventually([&] { return clock_.sleepers() == 1; }));
  clock_.advance(opts_.write_timeout);
  ASSERT_TRUE(eventually([&] { return !writer_->health().healthy; }));
  clock_.advance(5000ms - opts_.write_timeout);
  auto h = writer_->health();
  EXPECT_FALSE(h.healthy);
  EXPECT_GE(h.errors_total, 1u);
  EXPECT_NE(h.last_error.find("has not finished"), std::string::npos);
  EXPECT_EQ(h.lag, 5000ms);
  EXPECT_EQ(h.queue_depth, 102u);  // web1 in flight and queued again, 100 others
  EXPECT_FALSE(h.last_success.has_value());
  const auto metrics = render_metrics(h);
  EXPECT_NE(metrics.find("kvmfleet_metadata_lag_seconds 5.000\n"), std::string::npos);
  EXPECT_NE(metrics.find("kvmfleet_metadata_queue_depth 102\n"), std::string::npos);
  EXPECT_NE(metrics.find("kvmfleet_metadata_write_errors_total "), std::string::npos);
  EXPECT_EQ(to_json(h)["healthy"], false);

  gated_->release();
  ASSERT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  h = writer_->health();
  EXPECT_TRUE(h.healthy);
  EXPECT_EQ(h.lag, 0ms);
  EXPECT_EQ(generation_on_disk(m.vm.id), 101);
  EXPECT_EQ(h.writes_total, 102u);
}

// stop() gives the write in progress up to write_timeout; a share that still holds it
// then keeps the I/O thread, and the writer stops without it.
TEST_F(WriterTest, StopLeavesAWriteHungInTheShareBehindAfterTheWriteTimeout) {
  opts_.write_timeout = 10s;
  make_writer();
  gated_->hold();
  auto m = sample_vm("web1", 1);
  change(m);
  ASSERT_TRUE(eventually([&] { return gated_->waiting() == 1 && clock_.sleepers() == 1; }));
  auto stopped = std::async(std::launch::async, [&] { writer_->stop(); });
  ASSERT_TRUE(eventually([&] { return clock_.sleepers() == 2; }));  // stop() waits too
  clock_.advance(opts_.write_timeout - 1ms);
  EXPECT_EQ(stopped.wait_for(20ms), std::future_status::timeout);
  clock_.advance(1ms);
  ASSERT_EQ(stopped.wait_for(20s), std::future_status::ready);
  EXPECT_EQ(gated_->waiting(), 1);  // still in the share
  EXPECT_EQ(writer_->health().writes_total, 0u);
  // The share answers at last: the thread left behind ends the write it was in.
  gated_->release();
  ASSERT_TRUE(eventually([&] { return generation_on_disk(m.vm.id) == 1; }));
  EXPECT_EQ(writer_->health().writes_total, 0u);
}

TEST_F(WriterTest, FailedWritesAreRetried) {
  make_writer();
  gated_->fail_next(3);
  auto m = sample_vm("web1", 1);
  change(m);
  // After each failure the writer waits retry_backoff on the clock before trying again.
  for (std::uint64_t failed = 1; failed <= 3; ++failed) {
    ASSERT_TRUE(eventually([&] {
      return writer_->health().errors_total == failed && clock_.sleepers() == 1;
    })) << "failure "
        << failed;
    clock_.advance(opts_.retry_backoff);
  }
  ASSERT_TRUE(eventually([&] { return generation_on_disk(m.vm.id) == 1; }));
  ASSERT_TRUE(eventually([&] { return writer_->health().healthy; }));
  auto h = writer_->health();
  EXPECT_EQ(h.errors_total, 3u);
  EXPECT_EQ(h.last_error, "share failed (test)");
}

TEST_F(WriterTest, DeletionRemovesTheRecordAndALateOlderChangeCannotRevive_it) {
  make_writer();
  auto m = sample_vm("web1", 3);
  change(m);
  ASSERT_TRUE(eventually([&] { return generation_on_disk(m.vm.id) == 3; }));
  writer_->submit_delete(m.vm.id);
  ASSERT_TRUE(eventually([&] { return real_->list()->empty(); }));
  m.vm.generation = 4;
  writer_->submit(m);
  ASSERT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  EXPECT_TRUE(real_->list()->empty());
}

TEST_F(WriterTest, ARestartDoesNotRewriteCurrentRecords) {
  make_writer();
  auto a = sample_vm("a", 2);
  auto b = sample_vm("b", 5);
  change(a);
  change(b);
  ASSERT_TRUE(eventually([&] { return generation_on_disk(b.vm.id) == 5; }));
  writer_->stop();
  writer_.reset();
  const auto before = gated_->written().size();
  make_writer();
  b.vm.generation = 6;
  writer_->submit(a);  // current on disk: skipped
  writer_->submit(b);
  ASSERT_TRUE(eventually([&] { return generation_on_disk(b.vm.id) == 6; }));
  ASSERT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  EXPECT_EQ(gated_->written().size(), before + 2);
  EXPECT_EQ(writer_->health().writes_total, 1u);
}

// The writer is killed with SIGKILL at random points while it rewrites records: the
// directory must only ever hold complete records, old or new.
TEST(WriterCrashTest, KillNineMidWriteLeavesNoTornRecord) {
  TempDir dir;
  auto fs = make_posix_metadata_fs(dir.path());
  std::mt19937 rng(4242);
  ManualClock clock(std::chrono::system_clock::now());
  std::int64_t last_generation = 0;
  for (int round = 0; round < 15; ++round) {
    // Each round starts from an empty directory, so the records it waits for are this
    // round's and the kill lands while they are being rewritten.
    for (const auto& f : std::filesystem::directory_iterator(dir.path()))
      std::filesystem::remove(f.path());
    char* argv[] = {const_cast<char*>(KVMFLEET_CRASH_WRITER), const_cast<char*>(dir.path().c_str()),
                    nullptr};
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, KVMFLEET_CRASH_WRITER, nullptr, nullptr, argv, environ), 0);
    // Let it write for a while: until all three records exist, then a random moment.
    ASSERT_TRUE(eventually([&] {
      auto n = fs->list();
      return n && std::count_if(n->begin(), n->end(),
                                [](const std::string& s) { return s.ends_with(".json"); }) == 3;
    }));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30'000));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));

    auto report = scan_metadata(*fs, clock);
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->refused, 0u) << format_report(*report);
    EXPECT_EQ(report->imported, 3u) << format_report(*report);
    for (const auto& e : report->entries) last_generation = std::max(last_generation, e.generation);
  }
  EXPECT_GT(last_generation, 1);
  std::printf("kill -9 rounds: 15, highest generation seen %lld\n",
              static_cast<long long>(last_generation));
}

}  // namespace
