#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/metadata/record.hpp"

namespace kvmfleet::testing_support {

// A fresh directory under the temp dir, removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvmfleet-meta-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `cond` until it holds; fails the test after a generous bound (never a timing
// threshold the code under test must meet, only a guard against hanging forever).
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::seconds bound = std::chrono::seconds(20)) {
  const auto end = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

inline metadata::VmMetadata sample_vm(const std::string& name, std::int64_t generation = 1,
                                      std::string id = new_uuid()) {
  metadata::VmMetadata m;
  m.vm.id = std::move(id);
  m.vm.spec.name = name;
  m.vm.spec.vcpus = 2;
  m.vm.spec.memory_mib = 512;
  m.vm.spec.disks = {{10, DiskBus::virtio}, {20, DiskBus::scsi}};
  m.vm.host = "node1";
  m.vm.desired = DesiredState::running;
  m.vm.state = VmState::running;
  m.vm.generation = generation;
  m.vm.created_at = std::chrono::system_clock::time_point{std::chrono::seconds{1'700'000'000}};
  m.domain_type = "kvm";
  return m;
}

}  // namespace kvmfleet::testing_support
