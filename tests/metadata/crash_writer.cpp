// Helper for the kill -9 tests (unit and kernel lab): rewrites the records of a few
// VMs through MetadataWriter, generation after generation, until it is killed. With
// --health it prints the writer's health as one JSON line every 100 ms.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "kvmfleet/metadata/metadata_writer.hpp"

using namespace kvmfleet;

int main(int argc, char** argv) {
  const bool print_health = argc == 3 && std::string(argv[2]) == "--health";
  if (argc != 2 && !print_health) {
    std::fprintf(stderr, "usage: %s DIR [--health]\n", argv[0]);
    return 2;
  }
  metadata::MetadataWriterOptions opts;
  opts.writer_id = "crash-writer";
  opts.write_timeout = std::chrono::milliseconds(1000);
  metadata::MetadataWriter writer(metadata::make_posix_metadata_fs(argv[1]),
                                  SystemClock::instance(), opts, nullptr);
  writer.start();
  const char* ids[] = {"00000000-0000-4000-8000-000000000001",
                       "00000000-0000-4000-8000-000000000002",
                       "00000000-0000-4000-8000-000000000003"};
  auto last_print = std::chrono::steady_clock::now();
  for (std::int64_t gen = 1;; ++gen) {
    const auto now = std::chrono::steady_clock::now();
    if (print_health && now - last_print > std::chrono::milliseconds(100)) {
      last_print = now;
      std::printf("%s\n", metadata::to_json(writer.health()).dump().c_str());
      std::fflush(stdout);
    }
    for (int i = 0; i < 3; ++i) {
      metadata::VmMetadata m;
      m.vm.id = ids[i];
      m.vm.spec.name = "crash" + std::to_string(i);
      m.vm.spec.vcpus = 1 + static_cast<int>(gen % 4);
      m.vm.spec.memory_mib = 256 + gen;
      m.vm.spec.disks = {{1 + gen % 100, DiskBus::virtio}};
      m.vm.host = "node1";
      m.vm.generation = gen;
      writer.submit(std::move(m));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}
