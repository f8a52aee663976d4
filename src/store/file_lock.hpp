#pragma once

#include <string>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet {

// An exclusive advisory lock (flock) on a file, held until destruction. It keeps a
// second controller off a database file that one controller already uses: SQLite's
// own locking would let both in and they would overwrite each other's view.
class FileLock {
 public:
  // unavailable when another holder has it or the file cannot be opened.
  static Result<FileLock> acquire(const std::string& path);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

  const std::string& path() const { return path_; }

 private:
  FileLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_ = -1;
};

}  // namespace kvmfleet
