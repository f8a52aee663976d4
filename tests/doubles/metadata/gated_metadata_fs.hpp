#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "kvmfleet/metadata/metadata_fs.hpp"
#include "tests/doubles/common/gate.hpp"

namespace kvmfleet::doubles {

// The double of MetadataFs (include/kvmfleet/metadata/metadata_fs.hpp), over the real
// POSIX implementation: writes and removes can be held (as a hung NFS share holds
// them) until released, or made to fail.
class GatedMetadataFs final : public metadata::MetadataFs {
 public:
  explicit GatedMetadataFs(std::shared_ptr<metadata::MetadataFs> real) : real_(std::move(real)) {}

  void hold() { gate_.hold(); }
  void release() { gate_.release(); }
  void fail_next(int n) {
    std::lock_guard lk(mu_);
    fail_ = n;
  }
  // Calls currently blocked in the gate.
  int waiting() const { return gate_.waiting(); }
  std::vector<std::string> written() const {
    std::lock_guard lk(mu_);
    return written_;
  }

  Status write_atomic(const std::string& name, std::string_view data) override {
    if (auto st = gate(); !st) return st;
    auto st = real_->write_atomic(name, data);
    std::lock_guard lk(mu_);
    if (st) written_.push_back(name);
    return st;
  }
  Status remove(const std::string& name) override {
    if (auto st = gate(); !st) return st;
    return real_->remove(name);
  }
  Result<std::string> read(const std::string& name, std::size_t max_bytes) override {
    return real_->read(name, max_bytes);
  }
  Result<std::vector<std::string>> list() override { return real_->list(); }

 private:
  Status gate() {
    gate_.pass();
    std::lock_guard lk(mu_);
    if (fail_ > 0) {
      --fail_;
      return unavailable("share failed (test)");
    }
    return {};
  }

  std::shared_ptr<metadata::MetadataFs> real_;
  Gate gate_;
  mutable std::mutex mu_;
  int fail_ = 0;
  std::vector<std::string> written_;
};

}  // namespace kvmfleet::doubles
