#pragma once

// Disaster recovery: rebuilds the VM inventory from a metadata directory. Every
// record is verified; torn, truncated, altered, future and stale records are refused
// with a reason, and the valid VMs are inserted into the store in one batch.

#include <chrono>
#include <string>
#include <vector>

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/metadata/metadata_fs.hpp"
#include "kvmfleet/store/store.hpp"

namespace kvmfleet::metadata {

struct ImportOptions {
  // A record written later than now + max_clock_skew is refused as from the future.
  std::chrono::seconds max_clock_skew{300};
  bool dry_run = false;  // verify and report, write nothing
};

enum class ImportOutcome {
  imported,   // inserted, or replaced an older generation in the store
  unchanged,  // the store already has this generation
  refused,
};
std::string_view to_string(ImportOutcome o);

struct ImportEntry {
  std::string file;
  std::string vm_id;  // when known
  std::string name;   // when known
  std::int64_t generation = 0;
  ImportOutcome outcome = ImportOutcome::refused;
  std::string reason;  // why refused (or what was replaced)
};

struct ImportReport {
  std::vector<ImportEntry> entries;  // one per record, sorted by file name
  std::vector<std::string> ignored;  // temp files and XML files no record names
  std::size_t imported = 0;
  std::size_t unchanged = 0;
  std::size_t refused = 0;
};

// Verifies one record of `fs` without touching any store (also used by tests and the
// writer's start-up scan). The entry's outcome is `imported` when the record is valid.
Result<ImportReport> scan_metadata(MetadataFs& fs, const Clock& clock,
                                   const ImportOptions& opts = {});

// Scans, checks each valid record against `store` (stale generation, name taken by
// another VM), and commits the accepted VMs in one batch. Errors only when the
// directory cannot be listed or the store fails; refusals are in the report.
Result<ImportReport> import_metadata(MetadataFs& fs, Store& store, const Clock& clock,
                                     const ImportOptions& opts = {});

// Human-readable lines: one per record and a summary.
std::string format_report(const ImportReport& r);

}  // namespace kvmfleet::metadata
