#pragma once

// One VM's metadata record: `<vm-id>.json` (the commit point) and the libvirt domain
// XML it names, `<vm-id>.g<generation>.xml`. The JSON carries a SHA-256 over its own
// canonical form and the XML file's SHA-256, so a truncated, tampered or torn record
// is detected. docs/metadata.md describes the format.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "kvmfleet/common/clock.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/metadata/metadata_fs.hpp"
#include "kvmfleet/model/vm.hpp"

namespace kvmfleet::metadata {

inline constexpr int kSchemaVersion = 1;
inline constexpr std::string_view kFormatName = "kvmfleet.vm-metadata";
// Records are small; anything larger is not one of ours and is not read whole.
inline constexpr std::size_t kMaxRecordBytes = 1 << 20;

// Where the VM's volumes live, as agents see them (disk paths in the XML).
struct PoolInfo {
  std::string name = "kvmfleet";
  std::string path = "/var/lib/kvmfleet/images";
  bool operator==(const PoolInfo&) const = default;
};

// What the controller knows of a VM, as the writer records it.
struct VmMetadata {
  Vm vm;
  std::string domain_type = "kvm";  // from the owner host's inventory; "kvm" or "qemu"
};

// A rendered record, ready to be written.
struct RenderedRecord {
  std::string vm_id;
  std::int64_t generation = 0;
  std::string json_name;  // <vm-id>.json
  std::string json;
  std::string xml_name;  // <vm-id>.g<generation>.xml
  std::string xml;
};

// A record read back and verified.
struct VerifiedRecord {
  Vm vm;  // state is `unknown`: the record says nothing of what runs
  std::string domain_type;
  PoolInfo pool;
  Clock::time_point written_at{};
  std::string writer;
  std::string xml_name;
  std::string xml_sha256;
};

std::string json_name_for(std::string_view vm_id);
std::string xml_name_for(std::string_view vm_id, std::int64_t generation);

// Renders both files. Fails (invalid_argument) when the VM cannot be expressed as a
// valid domain (the same validation the agent applies before defining it).
Result<RenderedRecord> render_record(const VmMetadata& meta, const PoolInfo& pool,
                                     const std::string& writer_id, Clock::time_point written_at);

// Verifies `<vm-id>.json` text on its own: parse, digest, schema, every field. The
// file name's stem must be the record's VM id. Errors are invalid_argument whose
// message is the refusal reason.
Result<VerifiedRecord> verify_record_json(std::string_view json_name, std::string_view json_text);

// Verifies the XML file named by a verified record against it: digest, and that the
// domain XML names the same VM, name and generation.
Status verify_record_xml(const VerifiedRecord& rec, std::string_view xml_text);

// Reads and verifies a complete record (JSON and the XML it names) from `fs`.
Result<VerifiedRecord> read_record(MetadataFs& fs, const std::string& json_name);

// Writes a record: the XML, then the JSON (the commit point), then removes the XML of
// the generation the JSON replaced (`previous_xml`, or read from the old JSON when
// empty). A crash at any point leaves the old or the new record complete.
// Returns the XML file name now committed.
Result<std::string> write_record(MetadataFs& fs, const RenderedRecord& rec,
                                 std::string previous_xml = {});

// Removes a VM's record: the JSON first (so no record names a missing XML), then its
// XML file.
Status delete_record(MetadataFs& fs, const std::string& vm_id);

// SHA-256 (hex) of a record JSON document without its "sha256" member, over its
// canonical serialization (sorted keys, no whitespace).
std::string canonical_digest(const nlohmann::json& doc);

}  // namespace kvmfleet::metadata
