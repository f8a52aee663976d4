#pragma once

// The metadata directory (an NFS mount in production) behind one narrow interface,
// so the writer can be tested against a share that hangs or fails.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/result.hpp"

namespace kvmfleet::metadata {

// Names are plain file names inside the directory, never paths.
class MetadataFs {
 public:
  virtual ~MetadataFs() = default;
  // Replaces `name` with `data` so that a reader sees either the old file or the
  // complete new one, and the new one survives a crash once this returns ok:
  // temp file in the same directory, write, fsync, rename, fsync the directory.
  virtual Status write_atomic(const std::string& name, std::string_view data) = 0;
  // Removes `name` (absent is ok) and fsyncs the directory.
  virtual Status remove(const std::string& name) = 0;
  // The whole file; not_found when absent, invalid_argument when larger than max_bytes.
  virtual Result<std::string> read(const std::string& name, std::size_t max_bytes) = 0;
  // Every entry of the directory except "." and "..".
  virtual Result<std::vector<std::string>> list() = 0;
};

// Prefix of the temp files write_atomic leaves behind if the process dies mid-write;
// readers skip every name that starts with a dot.
inline constexpr std::string_view kTempPrefix = ".kvmfleet-tmp-";

// The POSIX implementation over directory `dir` (which must exist).
std::shared_ptr<MetadataFs> make_posix_metadata_fs(std::string dir);

}  // namespace kvmfleet::metadata
