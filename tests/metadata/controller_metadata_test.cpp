// The controller with a metadata directory: VMs created and deleted through
// Controller show up in (and leave) the directory, with their placement.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <future>
#include <thread>

#include "kvmfleet/controller/controller.hpp"
#include "kvmfleet/metadata/controller_hook.hpp"
#include "kvmfleet/metadata/metadata_import.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/store/memory_store.hpp"
#include "tests/metadata/test_support.hpp"

using namespace kvmfleet;
using namespace std::chrono_literals;
using kvmfleet::testing_support::eventually;
using kvmfleet::testing_support::TempDir;

namespace {

class ControllerMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.agent_retry_attempts = 3;
    config_.agent_retry_backoff = 1ms;
    config_.metadata_dir = dir_.path();
    io_thread_ = std::thread([this] { ioc_.run(); });
    state_ = std::make_unique<ClusterState>(store_);
    ASSERT_TRUE(state_->load().ok());
    ctl_ = std::make_unique<Controller>(*state_, agents_, config_, clock_, ioc_);
    runner_ = &ctl_->runner();
    // What kvmfleet-controller does with --metadata-dir.
    metadata::MetadataWriterOptions mopts;
    mopts.writer_id = "ctl-test";
    writer_ = std::make_unique<metadata::MetadataWriter>(
        metadata::make_posix_metadata_fs(config_.metadata_dir), clock_, mopts,
        metadata::refetch_from(*state_));
    metadata::attach_metadata_writer(*state_, *writer_);
    writer_->start();
    runner_->start();
  }
  void TearDown() override {
    runner_->stop();
    writer_->stop();
    work_.reset();
    ioc_.stop();
    io_thread_.join();
  }

  void host_up(const std::string& name) {
    ASSERT_TRUE(ctl_->hosts().register_host(name, "http://127.0.0.1:1").ok());
    HostInventory inv;
    inv.cpus = 8;
    inv.memory_total_mib = 16384;
    inv.domain_type = "qemu";
    Principal agent{"a", "host:" + name, Role::agent, name};
    ASSERT_TRUE(ctl_->hosts().heartbeat(agent, name, "", inv).ok());
  }
  // Runs simulated time until the operation ends (the operations wait on clock_).
  Operation wait_done(const std::string& id) {
    std::optional<Operation> op;
    clock_.advance_until(
        [&] {
          op = state_->operation(id);
          return op && is_terminal(op->state);
        },
        50ms, 1h);
    return op.value_or(Operation{});
  }
  Vm vm(const std::string& name) {
    return state_->read([&](const ClusterState::Data& d) {
      const Vm* v = d.find_vm(name);
      return v ? *v : Vm{};
    });
  }
  // The record on disk, when complete and valid.
  std::optional<metadata::VerifiedRecord> record(const std::string& id) {
    auto r = metadata::read_record(*fs_, metadata::json_name_for(id));
    if (!r) return std::nullopt;
    return *r;
  }

  TempDir dir_;
  std::shared_ptr<metadata::MetadataFs> fs_ = metadata::make_posix_metadata_fs(dir_.path());
  ControllerConfig config_;
  ManualClock clock_;
  doubles::MemoryStore store_;
  doubles::FakeAgentApi agents_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread io_thread_;
  std::unique_ptr<ClusterState> state_;
  OperationRunner* runner_ = nullptr;  // the controller's
  std::unique_ptr<Controller> ctl_;
  std::unique_ptr<metadata::MetadataWriter> writer_;
};

TEST_F(ControllerMetadataTest, CreatedVmsAreRecordedWithTheirHostAndDeletedOnesRemoved) {
  host_up("node1");
  const Principal admin{"t", "admin", Role::admin, ""};
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    VmSpec spec;
    spec.name = "web" + std::to_string(i);
    spec.memory_mib = 256;
    spec.disks = {{8, DiskBus::virtio}};
    auto s = ctl_->vms().create_vm(admin, spec, true, {});
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ(wait_done(s->operation.id).state, OpState::succeeded);
    ids.push_back(vm(spec.name).id);
  }
  for (int i = 0; i < 3; ++i) {
    const Vm v = vm("web" + std::to_string(i));
    ASSERT_TRUE(eventually([&] {
      auto r = record(v.id);
      return r && r->vm.generation == v.generation;
    })) << v.spec.name;
    auto r = record(v.id);
    EXPECT_EQ(r->vm.host, "node1");
    EXPECT_EQ(r->vm.desired, DesiredState::running);
    EXPECT_EQ(r->vm.spec, v.spec);
    EXPECT_EQ(r->domain_type, "qemu");
    EXPECT_EQ(r->writer, "ctl-test");
  }

  auto del = ctl_->vms().vm_action(admin, "web1", "vm.delete", VmDeleteParams{true}, {});
  ASSERT_TRUE(del.ok()) << del.error().message;
  EXPECT_EQ(wait_done(del->operation.id).state, OpState::succeeded);
  ASSERT_TRUE(eventually([&] { return !record(ids[1]); }));
  ASSERT_TRUE(eventually([&] { return writer_->health().queue_depth == 0; }));
  auto names = fs_->list();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 4u);  // two VMs, a JSON and an XML each
  EXPECT_TRUE(writer_->health().healthy);

  // And the directory rebuilds the inventory in an empty store.
  doubles::MemoryStore fresh;
  auto report = metadata::import_metadata(*fs_, fresh, clock_);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->imported, 2u);
  EXPECT_EQ(report->refused, 0u);
}

}  // namespace
