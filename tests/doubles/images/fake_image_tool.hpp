#pragma once

#include "kvmfleet/images/image_tool.hpp"

#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace kvmfleet::images {

// The test double of ImageTool (include/kvmfleet/images/image_tool.hpp): answers
// info_json from a script, or, with nothing scripted, as qemu-img does for a raw file
// (its size as the virtual size). Records every path it was asked about.
class FakeImageTool final : public ImageTool {
 public:
  void answer(Result<std::string> json_text) {
    std::lock_guard lk(mu_);
    answers_.push_back(std::move(json_text));
  }
  std::vector<std::string> paths() const {
    std::lock_guard lk(mu_);
    return paths_;
  }

  Result<std::string> info_json(const std::string& path) override {
    std::lock_guard lk(mu_);
    paths_.push_back(path);
    if (!answers_.empty()) {
      auto a = std::move(answers_.front());
      answers_.pop_front();
      return a;
    }
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) return invalid("cannot read the image", {{"reason", "unreadable_image"}});
    return "{\"virtual-size\": " + std::to_string(size) + ", \"filename\": \"" + path +
           "\", \"format\": \"raw\", \"actual-size\": " + std::to_string(size) +
           ", \"dirty-flag\": false}";
  }

 private:
  mutable std::mutex mu_;
  std::deque<Result<std::string>> answers_;
  std::vector<std::string> paths_;
};

}  // namespace kvmfleet::images
