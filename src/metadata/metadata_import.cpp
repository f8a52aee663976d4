#include "kvmfleet/metadata/metadata_import.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "kvmfleet/metadata/record.hpp"

namespace kvmfleet::metadata {
namespace {

struct Scanned {
  ImportReport report;
  std::map<std::string, VerifiedRecord> valid;  // by file name
};

Result<Scanned> scan(MetadataFs& fs, const Clock& clock, const ImportOptions& opts) {
  auto names = fs.list();
  if (!names) return names.take_error();
  std::sort(names->begin(), names->end());
  Scanned s;
  std::set<std::string> referenced_xml;
  const auto latest = clock.now() + opts.max_clock_skew;
  for (const auto& n : *names) {
    if (n.starts_with(".") || !n.ends_with(".json")) continue;
    ImportEntry e;
    e.file = n;
    auto text = fs.read(n, kMaxRecordBytes);
    if (!text) {
      e.reason = "cannot read: " + text.error().message;
      s.report.entries.push_back(std::move(e));
      continue;
    }
    auto rec = verify_record_json(n, *text);
    if (!rec) {
      e.reason = rec.error().message;
      s.report.entries.push_back(std::move(e));
      continue;
    }
    e.vm_id = rec->vm.id;
    e.name = rec->vm.spec.name;
    e.generation = rec->vm.generation;
    referenced_xml.insert(rec->xml_name);
    if (rec->written_at > latest) {
      e.reason = "written_at " + format_time(rec->written_at) +
                 " is in the future (beyond the allowed clock skew)";
      s.report.entries.push_back(std::move(e));
      continue;
    }
    auto xml = fs.read(rec->xml_name, kMaxRecordBytes);
    if (!xml) {
      e.reason = xml.error().code == ErrorCode::not_found
                     ? "XML file " + rec->xml_name + " is missing (torn pair)"
                     : "cannot read " + rec->xml_name + ": " + xml.error().message;
      s.report.entries.push_back(std::move(e));
      continue;
    }
    if (auto st = verify_record_xml(*rec, *xml); !st) {
      e.reason = st.error().message;
      s.report.entries.push_back(std::move(e));
      continue;
    }
    e.outcome = ImportOutcome::imported;
    s.valid.emplace(n, std::move(*rec));
    s.report.entries.push_back(std::move(e));
  }
  for (const auto& n : *names) {
    if (n.starts_with(".") || (n.ends_with(".xml") && !referenced_xml.contains(n)))
      s.report.ignored.push_back(n);
  }
  // Two records may not claim one name: neither is trusted over the other.
  std::map<std::string, int> names_seen;
  for (const auto& [_, r] : s.valid) ++names_seen[r.vm.spec.name];
  for (auto& e : s.report.entries) {
    if (e.outcome != ImportOutcome::imported || names_seen[e.name] < 2) continue;
    e.outcome = ImportOutcome::refused;
    e.reason = "another record also names a VM " + e.name;
    s.valid.erase(e.file);
  }
  return s;
}

void count(ImportReport& r) {
  r.imported = r.unchanged = r.refused = 0;
  for (const auto& e : r.entries) {
    switch (e.outcome) {
      case ImportOutcome::imported:
        ++r.imported;
        break;
      case ImportOutcome::unchanged:
        ++r.unchanged;
        break;
      case ImportOutcome::refused:
        ++r.refused;
        break;
    }
  }
}

}  // namespace

std::string_view to_string(ImportOutcome o) {
  switch (o) {
    case ImportOutcome::imported:
      return "imported";
    case ImportOutcome::unchanged:
      return "unchanged";
    case ImportOutcome::refused:
      return "refused";
  }
  return "refused";
}

Result<ImportReport> scan_metadata(MetadataFs& fs, const Clock& clock, const ImportOptions& opts) {
  auto s = scan(fs, clock, opts);
  if (!s) return s.take_error();
  count(s->report);
  return std::move(s->report);
}

Result<ImportReport> import_metadata(MetadataFs& fs, Store& store, const Clock& clock,
                                     const ImportOptions& opts) {
  auto s = scan(fs, clock, opts);
  if (!s) return s.take_error();
  auto snap = store.load();
  if (!snap) return snap.take_error();
  std::map<std::string, const Vm*> by_id;
  std::map<std::string, const Vm*> by_name;
  for (const auto& vm : snap->vms) {
    by_id[vm.id] = &vm;
    by_name[vm.spec.name] = &vm;
  }
  WriteBatch batch;
  for (auto& e : s->report.entries) {
    if (e.outcome != ImportOutcome::imported) continue;
    const VerifiedRecord& rec = s->valid.at(e.file);
    if (auto it = by_id.find(rec.vm.id); it != by_id.end()) {
      const Vm& cur = *it->second;
      if (rec.vm.generation < cur.generation) {
        e.outcome = ImportOutcome::refused;
        e.reason = "stale: generation " + std::to_string(rec.vm.generation) +
                   " is older than the store's " + std::to_string(cur.generation);
        continue;
      }
      if (rec.vm.generation == cur.generation) {
        e.outcome = ImportOutcome::unchanged;
        e.reason = "the store already has this generation";
        continue;
      }
      e.reason = "replaces generation " + std::to_string(cur.generation);
    }
    if (auto it = by_name.find(rec.vm.spec.name);
        it != by_name.end() && it->second->id != rec.vm.id) {
      e.outcome = ImportOutcome::refused;
      e.reason = "name " + rec.vm.spec.name + " belongs to VM " + it->second->id + " in the store";
      continue;
    }
    Vm vm = rec.vm;
    if (auto it = by_id.find(vm.id); it != by_id.end()) vm.created_at = it->second->created_at;
    batch.put_vms.push_back(std::move(vm));
  }
  count(s->report);
  if (!opts.dry_run && !batch.put_vms.empty()) {
    if (auto st = store.commit(batch); !st) return st.take_error();
  }
  return std::move(s->report);
}

std::string format_report(const ImportReport& r) {
  std::ostringstream out;
  for (const auto& e : r.entries) {
    out << to_string(e.outcome) << "\t" << e.file;
    if (!e.name.empty()) out << "\t" << e.name << " (generation " << e.generation << ")";
    if (!e.reason.empty()) out << "\t" << e.reason;
    out << "\n";
  }
  if (!r.ignored.empty()) out << "ignored " << r.ignored.size() << " leftover file(s)\n";
  out << r.entries.size() << " record(s): " << r.imported << " imported, " << r.unchanged
      << " unchanged, " << r.refused << " refused\n";
  return out.str();
}

}  // namespace kvmfleet::metadata
