#include "kvmfleet/metadata/record.hpp"

#include <limits>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/domain_spec.hpp"

namespace kvmfleet::metadata {
namespace {

using nlohmann::json;

std::vector<std::string> disk_sources(const DomainSpec& spec, const PoolInfo& pool) {
  std::vector<std::string> out;
  // A shared volume is its block device on every host; a local disk lives in the pool.
  for (const auto& d : spec.disks)
    out.push_back(d.block_device.empty() ? pool.path + "/" + d.volume : d.block_device);
  return out;
}

bool is_safe_pool_path(std::string_view p) {
  if (p.size() < 2 || p.front() != '/' || p.back() == '/' || p.size() > 1024) return false;
  for (unsigned char c : p)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

Error refuse(std::string reason) {
  return invalid(std::move(reason));
}

// Reads a typed member; a missing member or a wrong type refuses the record.
template <typename T>
Result<T> member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return refuse(std::string("field ") + key + " is missing");
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return refuse(std::string("field ") + key + " must be a string");
    return it->get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return refuse(std::string("field ") + key + " must be a boolean");
    return it->get<bool>();
  } else {
    if (!it->is_number_integer())
      return refuse(std::string("field ") + key + " must be an integer");
    if (it->is_number_unsigned() &&
        it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      return refuse(std::string("field ") + key + " is out of range");
    const auto v = it->get<std::int64_t>();
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
      return refuse(std::string("field ") + key + " is out of range");
    return static_cast<T>(v);
  }
}

#define KVF_TRY(var, expr)                   \
  auto var##_r = (expr);                     \
  if (!var##_r) return var##_r.take_error(); \
  auto var = std::move(*var##_r);

Result<VerifiedRecord> decode(std::string_view json_name, const json& doc) {
  if (!doc.is_object()) return refuse("not a JSON object");
  if (auto st = check_known_fields(doc, {"format",
                                         "schema_version",
                                         "vm_id",
                                         "name",
                                         "generation",
                                         "owner_host",
                                         "desired_state",
                                         "vcpus",
                                         "memory_mib",
                                         "pinned_host",
                                         "anti_affinity_group",
                                         "ha",
                                         "domain_type",
                                         "pool",
                                         "disks",
                                         "created_at",
                                         "written_at",
                                         "writer",
                                         "xml",
                                         "sha256"},
                                   "record");
      !st)
    return refuse(st.error().message);
  KVF_TRY(format, member<std::string>(doc, "format"));
  if (format != kFormatName) return refuse("not a kvmfleet VM metadata record");
  KVF_TRY(version, member<int>(doc, "schema_version"));
  if (version != kSchemaVersion)
    return refuse("unsupported schema version " + std::to_string(version));

  VerifiedRecord r;
  Vm& vm = r.vm;
  KVF_TRY(id, member<std::string>(doc, "vm_id"));
  if (!is_valid_uuid(id)) return refuse("vm_id is not a canonical UUID");
  if (json_name != json_name_for(id)) return refuse("file name does not match vm_id " + id);
  vm.id = id;
  KVF_TRY(name, member<std::string>(doc, "name"));
  if (!is_valid_name(name)) return refuse("name is not a valid VM name");
  vm.spec.name = name;
  KVF_TRY(gen, member<std::int64_t>(doc, "generation"));
  if (gen < 1) return refuse("generation must be at least 1");
  vm.generation = gen;
  KVF_TRY(owner, member<std::string>(doc, "owner_host"));
  if (!owner.empty() && !is_valid_name(owner)) return refuse("owner_host is not a valid host name");
  vm.host = owner;
  KVF_TRY(desired, member<std::string>(doc, "desired_state"));
  auto ds = desired_state_from_string(desired);
  if (!ds) return refuse("desired_state is not running or stopped");
  vm.desired = *ds;
  KVF_TRY(vcpus, member<int>(doc, "vcpus"));
  vm.spec.vcpus = vcpus;
  KVF_TRY(mem, member<std::int64_t>(doc, "memory_mib"));
  vm.spec.memory_mib = mem;
  KVF_TRY(pinned, member<std::string>(doc, "pinned_host"));
  if (!pinned.empty() && !is_valid_name(pinned)) return refuse("pinned_host is not a valid name");
  vm.spec.pinned_host = pinned;
  KVF_TRY(group, member<std::string>(doc, "anti_affinity_group"));
  if (!group.empty() && !is_valid_name(group))
    return refuse("anti_affinity_group is not a valid name");
  vm.spec.anti_affinity_group = group;
  KVF_TRY(ha, member<bool>(doc, "ha"));
  vm.spec.ha.enabled = ha;
  KVF_TRY(domain_type, member<std::string>(doc, "domain_type"));
  if (domain_type != "kvm" && domain_type != "qemu")
    return refuse("domain_type is not kvm or qemu");
  r.domain_type = domain_type;

  auto pool_it = doc.find("pool");
  if (pool_it == doc.end() || !pool_it->is_object()) return refuse("field pool must be an object");
  if (auto st = check_known_fields(*pool_it, {"name", "path"}, "pool"); !st)
    return refuse(st.error().message);
  KVF_TRY(pool_name, member<std::string>(*pool_it, "name"));
  KVF_TRY(pool_path, member<std::string>(*pool_it, "path"));
  if (!is_valid_name(pool_name)) return refuse("pool.name is not a valid name");
  if (!is_safe_pool_path(pool_path)) return refuse("pool.path is not an absolute path");
  r.pool = {pool_name, pool_path};

  auto disks_it = doc.find("disks");
  if (disks_it == doc.end() || !disks_it->is_array()) return refuse("field disks must be an array");
  if (disks_it->size() > agent::kMaxDisks) return refuse("too many disks");
  for (const auto& d : *disks_it) {
    if (!d.is_object()) return refuse("each disk must be an object");
    if (auto st = check_known_fields(
            d, {"size_gib", "bus", "volume", "target_dev", "source", "shared_volume", "device"},
            "disk");
        !st)
      return refuse(st.error().message);
    KVF_TRY(size, member<std::int64_t>(d, "size_gib"));
    KVF_TRY(bus, member<std::string>(d, "bus"));
    auto b = disk_bus_from_string(bus);
    if (!b) return refuse("disk bus is not virtio, sata or scsi");
    DiskSpec disk{size, *b, {}, {}};
    // A shared volume (by id) and its block device; absent for a local disk.
    if (d.contains("shared_volume")) {
      KVF_TRY(shared, member<std::string>(d, "shared_volume"));
      KVF_TRY(device, member<std::string>(d, "device"));
      if (!shared.empty() && !is_valid_uuid(shared))
        return refuse("disk shared_volume is not a volume id");
      if (shared.empty() != device.empty())
        return refuse("disk shared_volume and device go together");
      disk.volume = shared;
      disk.device = device;
    }
    vm.spec.disks.push_back(std::move(disk));
  }
  // The resolved parts (volume names, devices, paths) must be what this VM resolves
  // to: the record is re-derived, not trusted.
  const DomainSpec spec = domain_spec_for(vm, r.domain_type);
  if (auto st = agent::validate_domain_spec(spec); !st) return refuse(st.error().message);
  const auto sources = disk_sources(spec, r.pool);
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = (*disks_it)[i];
    KVF_TRY(volume, member<std::string>(d, "volume"));
    KVF_TRY(dev, member<std::string>(d, "target_dev"));
    KVF_TRY(source, member<std::string>(d, "source"));
    if (volume != spec.disks[i].volume || dev != spec.disks[i].target_dev || source != sources[i])
      return refuse("disk " + std::to_string(i) + " does not match the VM's volumes");
  }

  KVF_TRY(created, member<std::string>(doc, "created_at"));
  auto created_at = parse_time(created);
  if (!created_at) return refuse("created_at is not an RFC 3339 time");
  vm.created_at = *created_at;
  KVF_TRY(written, member<std::string>(doc, "written_at"));
  auto written_at = parse_time(written);
  if (!written_at) return refuse("written_at is not an RFC 3339 time");
  r.written_at = *written_at;
  vm.updated_at = *written_at;
  KVF_TRY(writer, member<std::string>(doc, "writer"));
  if (writer.size() > 255) return refuse("writer is too long");
  r.writer = writer;

  auto xml_it = doc.find("xml");
  if (xml_it == doc.end() || !xml_it->is_object()) return refuse("field xml must be an object");
  if (auto st = check_known_fields(*xml_it, {"file", "sha256", "bytes"}, "xml"); !st)
    return refuse(st.error().message);
  KVF_TRY(xml_file, member<std::string>(*xml_it, "file"));
  KVF_TRY(xml_sha, member<std::string>(*xml_it, "sha256"));
  KVF_TRY(xml_bytes, member<std::int64_t>(*xml_it, "bytes"));
  if (xml_file != xml_name_for(vm.id, vm.generation))
    return refuse("xml.file is not this record's XML file name");
  if (xml_sha.size() != 64) return refuse("xml.sha256 is not a SHA-256");
  if (xml_bytes < 1 || xml_bytes > static_cast<std::int64_t>(kMaxRecordBytes))
    return refuse("xml.bytes is out of range");
  r.xml_name = xml_file;
  r.xml_sha256 = xml_sha;

  vm.state = VmState::unknown;
  return r;
}

}  // namespace

std::string json_name_for(std::string_view vm_id) {
  return std::string(vm_id) + ".json";
}

std::string xml_name_for(std::string_view vm_id, std::int64_t generation) {
  return std::string(vm_id) + ".g" + std::to_string(generation) + ".xml";
}

std::string canonical_digest(const json& doc) {
  json body = doc;
  body.erase("sha256");
  return sha256_hex(body.dump(-1, ' ', false, json::error_handler_t::replace));
}

Result<RenderedRecord> render_record(const VmMetadata& meta, const PoolInfo& pool,
                                     const std::string& writer_id, Clock::time_point written_at) {
  const Vm& vm = meta.vm;
  const DomainSpec spec = domain_spec_for(vm, meta.domain_type);
  if (!is_safe_pool_path(pool.path) || !is_valid_name(pool.name))
    return invalid("the metadata pool name or path is not valid");
  const auto sources = disk_sources(spec, pool);
  // Where the agent keeps CD-ROM images and seeds (agent/boot_media.hpp): the cache by
  // the image's SHA-256, the seed by the VM's id. The seed's content is not in the record.
  agent::BootMediaPaths media;
  if (spec.cdrom) media.cdrom = pool.path + "/cache/" + spec.cdrom->image_sha256 + ".img";
  if (spec.cloud_init) media.seed = pool.path + "/" + spec.uuid + "-seed.iso";
  auto xml = agent::write_domain_xml(spec, sources, media);
  if (!xml) return xml.take_error();

  RenderedRecord r;
  r.vm_id = vm.id;
  r.generation = vm.generation;
  r.json_name = json_name_for(vm.id);
  r.xml_name = xml_name_for(vm.id, vm.generation);
  r.xml = std::move(*xml);

  json disks = json::array();
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    const auto& d = spec.disks[i];
    disks.push_back({{"size_gib", d.size_gib},
                     {"bus", std::string(to_string(d.bus))},
                     {"volume", d.volume},
                     {"target_dev", d.target_dev},
                     {"source", sources[i]},
                     {"shared_volume", vm.spec.disks[i].volume},
                     {"device", vm.spec.disks[i].device}});
  }
  json doc = {
      {"format", std::string(kFormatName)},
      {"schema_version", kSchemaVersion},
      {"vm_id", vm.id},
      {"name", vm.spec.name},
      {"generation", vm.generation},
      {"owner_host", vm.host},
      {"desired_state", std::string(to_string(vm.desired))},
      {"vcpus", vm.spec.vcpus},
      {"memory_mib", vm.spec.memory_mib},
      {"pinned_host", vm.spec.pinned_host},
      {"anti_affinity_group", vm.spec.anti_affinity_group},
      {"ha", vm.spec.ha.enabled},
      {"domain_type", meta.domain_type},
      {"pool", {{"name", pool.name}, {"path", pool.path}}},
      {"disks", std::move(disks)},
      {"created_at", format_time(vm.created_at)},
      {"written_at", format_time(written_at)},
      {"writer", writer_id},
      {"xml",
       {{"file", r.xml_name},
        {"sha256", sha256_hex(r.xml)},
        {"bytes", static_cast<std::int64_t>(r.xml.size())}}},
  };
  doc["sha256"] = canonical_digest(doc);
  r.json = doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return r;
}

Result<VerifiedRecord> verify_record_json(std::string_view json_name, std::string_view text) {
  if (text.size() > kMaxRecordBytes) return refuse("larger than any record");
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return refuse("not valid JSON (truncated?)");
  if (!doc.is_object()) return refuse("not a JSON object");
  auto sha = doc.find("sha256");
  if (sha == doc.end() || !sha->is_string()) return refuse("no sha256 digest");
  if (!constant_time_equal(sha->get<std::string>(), canonical_digest(doc)))
    return refuse("digest mismatch: the record was truncated or altered");
  return decode(json_name, doc);
}

Status verify_record_xml(const VerifiedRecord& rec, std::string_view xml_text) {
  if (sha256_hex(xml_text) != rec.xml_sha256)
    return refuse("XML file " + rec.xml_name +
                  " does not match the digest in the JSON (torn pair or altered)");
  auto info = agent::read_domain_xml(xml_text);
  if (!info) return refuse("XML file " + rec.xml_name + ": " + info.error().message);
  if (!info->managed || info->vm_id != rec.vm.id || info->uuid != rec.vm.id ||
      info->generation != rec.vm.generation || info->name != rec.vm.spec.name)
    return refuse("XML file " + rec.xml_name + " describes another VM or generation");
  return {};
}

Result<VerifiedRecord> read_record(MetadataFs& fs, const std::string& json_name) {
  auto text = fs.read(json_name, kMaxRecordBytes);
  if (!text) return refuse("cannot read " + json_name + ": " + text.error().message);
  auto rec = verify_record_json(json_name, *text);
  if (!rec) return rec;
  auto xml = fs.read(rec->xml_name, kMaxRecordBytes);
  if (!xml) {
    if (xml.error().code == ErrorCode::not_found)
      return refuse("XML file " + rec->xml_name + " is missing (torn pair)");
    return refuse("cannot read " + rec->xml_name + ": " + xml.error().message);
  }
  if (auto st = verify_record_xml(*rec, *xml); !st) return st.take_error();
  return rec;
}

Result<std::string> write_record(MetadataFs& fs, const RenderedRecord& rec,
                                 std::string previous_xml) {
  if (previous_xml.empty()) {
    // Not verified: only used to find the file this write replaces.
    if (auto old = fs.read(rec.json_name, kMaxRecordBytes); old) {
      auto doc = json::parse(*old, nullptr, false);
      if (doc.is_object() && doc.contains("xml") && doc["xml"].is_object() &&
          doc["xml"].contains("file") && doc["xml"]["file"].is_string())
        previous_xml = doc["xml"]["file"].get<std::string>();
    }
  }
  if (auto st = fs.write_atomic(rec.xml_name, rec.xml); !st) return st.take_error();
  if (auto st = fs.write_atomic(rec.json_name, rec.json); !st) return st.take_error();
  // Only our own files of this VM are ever removed.
  if (!previous_xml.empty() && previous_xml != rec.xml_name &&
      previous_xml.starts_with(rec.vm_id + ".g") && previous_xml.ends_with(".xml")) {
    if (auto st = fs.remove(previous_xml); !st) return st.take_error();
  }
  return rec.xml_name;
}

Status delete_record(MetadataFs& fs, const std::string& vm_id) {
  if (!is_valid_uuid(vm_id)) return invalid("not a VM id");
  const auto json_name = json_name_for(vm_id);
  std::string xml_file;
  if (auto old = fs.read(json_name, kMaxRecordBytes); old) {
    auto doc = json::parse(*old, nullptr, false);
    if (doc.is_object() && doc.contains("xml") && doc["xml"].is_object() &&
        doc["xml"].contains("file") && doc["xml"]["file"].is_string())
      xml_file = doc["xml"]["file"].get<std::string>();
  } else if (old.error().code != ErrorCode::not_found) {
    return old.take_error();
  }
  if (auto st = fs.remove(json_name); !st) return st;
  if (xml_file.starts_with(vm_id + ".g") && xml_file.ends_with(".xml"))
    if (auto st = fs.remove(xml_file); !st) return st;
  return {};
}

}  // namespace kvmfleet::metadata
