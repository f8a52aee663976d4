#pragma once

// The test doubles of boot_media.hpp's interfaces: ImageSource (images served from
// memory, every read recorded) and DiskTool (records its calls and writes small files in
// place of qemu-img's and genisoimage's).

#include "kvmfleet/agent/boot_media.hpp"

#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kvmfleet::agent {

class FakeImageSource final : public ImageSource {
 public:
  void put(const std::string& image, std::string data) {
    std::lock_guard lk(mu_);
    images_[image] = std::move(data);
  }
  int reads() const {
    std::lock_guard lk(mu_);
    return reads_;
  }
  std::size_t largest_read() const {
    std::lock_guard lk(mu_);
    return largest_;
  }
  Result<std::string> read(const std::string& image, std::uint64_t offset,
                           std::size_t length) override {
    std::lock_guard lk(mu_);
    ++reads_;
    largest_ = std::max(largest_, length);
    auto it = images_.find(image);
    if (it == images_.end()) return not_found("no such image", {{"image", image}});
    if (offset >= it->second.size()) return std::string();
    return it->second.substr(static_cast<std::size_t>(offset), length);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> images_;
  int reads_ = 0;
  std::size_t largest_ = 0;
};

class FakeDiskTool final : public DiskTool {
 public:
  struct DiskCall {
    std::string source, format, target;
    std::uint64_t size_bytes = 0;
  };
  struct IsoCall {
    std::string label;
    std::map<std::string, std::string> files;  // base name -> content, read at the call
    std::string target;
  };
  std::vector<DiskCall> disks;
  std::vector<IsoCall> isos;
  bool fail_disks = false;

  Status make_disk(const std::string& source, const std::string& format, const std::string& target,
                   std::uint64_t size_bytes) override {
    disks.push_back({source, format, target, size_bytes});
    if (fail_disks) {
      std::ofstream(target) << "half";
      return internal_error("qemu-img convert failed");
    }
    std::ofstream(target) << "disk from " << source;
    return {};
  }
  Status make_iso(const std::string& label, const std::vector<std::string>& files,
                  const std::string& target) override {
    IsoCall call{label, {}, target};
    for (const auto& f : files) {
      std::ifstream in(f);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      call.files[f.substr(f.rfind('/') + 1)] = text;
    }
    isos.push_back(std::move(call));
    std::ofstream(target) << "iso";
    return {};
  }
};

}  // namespace kvmfleet::agent
