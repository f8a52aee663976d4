// Metadata directory costs: write latency per record (render + temp file + fsync +
// rename + directory fsync), writer throughput, and import time for N records.
// Usage: kvmfleet_metadata_bench [DIR] [N]   (DIR defaults to a fresh dir in /dev/shm)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/metadata/metadata_import.hpp"
#include "kvmfleet/metadata/metadata_writer.hpp"

using namespace kvmfleet;
using namespace kvmfleet::metadata;
using Ms = std::chrono::duration<double, std::milli>;

namespace {

// A store that only counts: the import's own cost, not SQLite's.
class CountingStore final : public Store {
 public:
  Result<StoreSnapshot> load() override { return StoreSnapshot{}; }
  Status commit_all(std::span<const WriteBatch* const> batches) override {
    for (const WriteBatch* b : batches) vms += b->put_vms.size();
    return {};
  }
  std::size_t vms = 0;
};

VmMetadata vm(int i, std::int64_t gen) {
  VmMetadata m;
  m.vm.id = new_uuid();
  m.vm.spec.name = "bench" + std::to_string(i);
  m.vm.spec.vcpus = 2;
  m.vm.spec.memory_mib = 2048;
  m.vm.spec.disks = {{20, DiskBus::virtio}, {100, DiskBus::virtio}};
  m.vm.host = "node" + std::to_string(i % 16);
  m.vm.desired = DesiredState::running;
  m.vm.generation = gen;
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "";
  const int n = argc > 2 ? std::atoi(argv[2]) : 1000;
  bool made = false;
  if (dir.empty()) {
    std::string tmpl = "/dev/shm/kvmfleet-meta-bench-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return 1;
    dir = tmpl;
    made = true;
  }
  auto fs = make_posix_metadata_fs(dir);
  std::vector<VmMetadata> vms;
  for (int i = 0; i < n; ++i) vms.push_back(vm(i, 1));

  // 1. Synchronous write_record per record.
  std::vector<double> lat;
  for (const auto& m : vms) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = render_record(m, PoolInfo{}, "bench", SystemClock::instance().now());
    if (!r || !write_record(*fs, *r)) return 1;
    lat.push_back(Ms(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(lat.begin(), lat.end());
  std::printf("dir %s, %d records\n", dir.c_str(), n);
  std::printf("write_record: median %.3f ms, p99 %.3f ms, max %.3f ms\n", lat[lat.size() / 2],
              lat[lat.size() * 99 / 100], lat.back());

  // 2. The writer: submit a new generation of every VM, time until all are written.
  std::map<std::string, const VmMetadata*> by_id;
  for (const auto& m : vms) by_id[m.vm.id] = &m;
  // Changes pushed out of the full queue are re-read, as the controller does from its state.
  MetadataWriter writer(
      fs, SystemClock::instance(), MetadataWriterOptions{},
      [&by_id](const std::string& id) -> std::optional<VmMetadata> { return *by_id.at(id); });
  writer.start();
  while (writer.health().queue_depth > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  double submit_max = 0;
  for (auto& m : vms) {
    m.vm.generation = 2;
    const auto s0 = std::chrono::steady_clock::now();
    writer.submit(m);
    submit_max = std::max(submit_max, Ms(std::chrono::steady_clock::now() - s0).count());
  }
  while (writer.health().writes_total < static_cast<std::uint64_t>(n))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double drain = Ms(std::chrono::steady_clock::now() - t0).count();
  writer.stop();
  const auto h = writer.health();
  std::printf(
      "writer: %d records in %.1f ms (%.0f records/s), slowest submit() %.3f ms, %llu dropped "
      "from the full queue and re-read\n",
      n, drain, n / (drain / 1000.0), submit_max, static_cast<unsigned long long>(h.dropped_total));

  // 3. Import (verification of every JSON + XML, one batch).
  CountingStore store;
  const auto i0 = std::chrono::steady_clock::now();
  auto report = import_metadata(*fs, store, SystemClock::instance());
  const double imp = Ms(std::chrono::steady_clock::now() - i0).count();
  if (!report) return 1;
  std::printf(
      "import: %zu records verified and imported in %.1f ms (%.3f ms/record), %zu refused\n",
      report->imported, imp, imp / std::max<std::size_t>(1, report->imported), report->refused);
  if (made) std::filesystem::remove_all(dir);
  return report->refused == 0 ? 0 : 1;
}
