#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "kvmfleet/storage/storage_names.hpp"
#include "kvmfleet/storage/volume_manager.hpp"
#include "text_util.hpp"

namespace kvmfleet::storage {

std::string_view to_string(LvActivation a) {
  switch (a) {
    case LvActivation::exclusive:
      return "exclusive";
    case LvActivation::shared:
      return "shared";
    case LvActivation::inactive:
      break;
  }
  return "inactive";
}

namespace {

using json = nlohmann::json;

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// A name read back from LVM: the characters LVM allows in names, nothing else.
bool safe_name(std::string_view s) {
  return !s.empty() && s.size() <= 127 && s.front() != '-' &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '_' ||
                  c == '.' || c == '-';
         });
}

// Characters of a device path that are special in a regular expression, put in a
// bracket so the filter matches them literally (no backslashes in LVM's syntax).
std::string regex_literal(std::string_view path) {
  std::string out;
  for (char c : path) {
    if (c == '.' || c == '+') {
      out += '[';
      out += c;
      out += ']';
    } else {
      out += c;
    }
  }
  return out;
}

std::string lv_spec(std::string_view vg, std::string_view lv) {
  return std::string(vg) + "/" + std::string(lv);
}

// Reads one report: {"report": [{KEY: [{...}, ...]}, ...]}. Every row must be an
// object of strings.
Result<std::vector<json>> report_rows(std::string_view text, const char* key, const char* command) {
  auto bad = [&](std::string why) {
    return internal_error(std::string(command) + " printed a report kvmfleet cannot read: " + why,
                          {{"command", command}});
  };
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return bad("not JSON");
  if (!doc.is_object() || !doc.contains("report") || !doc["report"].is_array()) {
    return bad("no \"report\" array");
  }
  std::vector<json> rows;
  for (const auto& part : doc["report"]) {
    if (!part.is_object()) return bad("a report part is not an object");
    auto it = part.find(key);
    if (it == part.end()) continue;
    if (!it->is_array()) return bad(std::string("\"") + key + "\" is not an array");
    for (const auto& row : *it) {
      if (!row.is_object()) return bad("a row is not an object");
      for (const auto& [k, v] : row.items()) {
        if (!v.is_string()) return bad("field " + k + " is not a string");
      }
      rows.push_back(row);
    }
  }
  return rows;
}

class RowReader {
 public:
  RowReader(const json& row, const char* command) : row_(row), command_(command) {}

  Result<std::string> str(const char* field) const {
    auto it = row_.find(field);
    if (it == row_.end()) return missing(field);
    return it->get<std::string>();
  }
  Result<std::string> name(const char* field, bool allow_empty = false) const {
    auto s = str(field);
    if (!s.ok()) return s;
    if ((allow_empty && s->empty()) || safe_name(*s)) return s;
    return internal_error(std::string(command_) + " reported a malformed " + field,
                          {{"command", command_}, {"field", field}});
  }
  Result<std::uint64_t> u64(const char* field) const {
    auto s = str(field);
    if (!s.ok()) return s.take_error();
    std::uint64_t v = 0;
    const char* b = s->data();
    const char* e = b + s->size();
    auto [p, ec] = std::from_chars(b, e, v);
    if (s->empty() || ec != std::errc{} || p != e) {
      return internal_error(std::string(command_) + " reported a non-numeric " + field,
                            {{"command", command_}, {"field", field}});
    }
    return v;
  }
  Result<int> count(const char* field) const {
    auto v = u64(field);
    if (!v.ok()) return v.take_error();
    if (*v > 1000000) {
      return internal_error(std::string(command_) + " reported an absurd " + field,
                            {{"command", command_}, {"field", field}});
    }
    return static_cast<int>(*v);
  }
  Result<std::optional<double>> percent(const char* field) const {
    auto s = str(field);
    if (!s.ok()) return s.take_error();
    if (s->empty()) return std::optional<double>{};
    double v = 0;
    const char* b = s->data();
    const char* e = b + s->size();
    auto [p, ec] = std::from_chars(b, e, v);
    if (ec != std::errc{} || p != e || !(v >= 0.0 && v <= 100.0)) {
      return internal_error(std::string(command_) + " reported a bad percentage in " + field,
                            {{"command", command_}, {"field", field}});
    }
    return std::optional<double>{v};
  }

 private:
  Error missing(const char* field) const {
    return internal_error(std::string(command_) + " report lacks field " + field,
                          {{"command", command_}, {"field", field}});
  }
  const json& row_;
  const char* command_;
};

#define KVMFLEET_TRY_ASSIGN(lhs, expr)    \
  do {                                    \
    auto r_ = (expr);                     \
    if (!r_.ok()) return r_.take_error(); \
    lhs = std::move(*r_);                 \
  } while (0)

constexpr const char* kPvFields = "pv_name,vg_name,pv_uuid,pv_size,pv_free";
constexpr const char* kVgFields =
    "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_lock_type,vg_shared,pv_count,lv_count,"
    "snap_count";
constexpr const char* kLvFields =
    "lv_name,vg_name,lv_uuid,lv_size,lv_attr,lv_path,lv_active_locally,lv_active_exclusively,"
    "origin,data_percent";

}  // namespace

Error lvm_error(std::string_view command, int exit_code, std::string_view err) {
  const std::string cmd(command);
  // The line that says what went wrong: the first that is not a warning LVM prints
  // on every command of a host where some lockspace is not started.
  std::string_view reason;
  for (auto line : text_util::lines(err)) {
    line = text_util::trim(line);
    if (line.empty() || text_util::starts_with(line, "Skipping global lock") ||
        text_util::starts_with(line, "WARNING:") || text_util::starts_with(line, "Run `")) {
      continue;
    }
    reason = line;
    break;
  }
  if (reason.empty()) reason = text_util::last_line(err);
  json details{
      {"command", cmd}, {"exit_code", exit_code}, {"stderr", std::string(err.substr(0, 2000))}};
  auto make = [&](ErrorCode code, std::string hint = {}) {
    std::string msg = cmd + ": " + std::string(reason);
    if (!hint.empty()) msg += " (" + hint + ")";
    return Error(code, std::move(msg), details);
  };

  if (contains(err, "locked by other host") || contains(err, "lock conflict") ||
      contains(err, "LVs must first be deactivated") || contains(err, "already exists") ||
      contains(err, "used by another")) {
    return make(ErrorCode::conflict);
  }
  for (auto line : text_util::lines(err)) {
    line = text_util::trim(line);
    if ((text_util::starts_with(line, "Volume group \"") && contains(line, "not found")) ||
        text_util::starts_with(line, "Failed to find logical volume") ||
        text_util::starts_with(line, "Failed to find physical volume") ||
        contains(line, "Couldn't find device") ||
        contains(line, "not found (or ignored by filtering)")) {
      return make(ErrorCode::not_found);
    }
  }
  if (contains(err, "insufficient free space") || contains(err, "Insufficient free space") ||
      contains(err, "Insufficient suitable allocatable extents")) {
    return make(ErrorCode::insufficient_capacity);
  }
  if (contains(err, "due to failed lock") || contains(err, "lockspace not found or started") ||
      contains(err, "lock start in progress") || contains(err, "lockspace is not started") ||
      contains(err, "invalid parameters for sanlock") ||
      contains(err, "Cannot connect to lvmlockd") || contains(err, "lvmlockd not available")) {
    return make(ErrorCode::unavailable,
                "is the VG's lockspace started here (vgchange --lockstart) and lvmlockd running?");
  }
  if (exit_code == 3 || contains(err, "not larger than existing size") ||
      contains(err, "are reserved") || contains(err, "cannot be merged") ||
      contains(err, "Invalid argument")) {
    return make(ErrorCode::invalid_argument);
  }
  return make(ErrorCode::internal);
}

Result<std::vector<PhysicalVolume>> parse_pvs_report(std::string_view text) {
  auto rows = report_rows(text, "pv", "pvs");
  if (!rows.ok()) return rows.take_error();
  std::vector<PhysicalVolume> out;
  for (const auto& row : *rows) {
    RowReader r(row, "pvs");
    PhysicalVolume pv;
    KVMFLEET_TRY_ASSIGN(pv.name, r.str("pv_name"));
    if (!check_device_path(pv.name).ok()) {
      return internal_error("pvs reported a malformed pv_name", {{"command", "pvs"}});
    }
    KVMFLEET_TRY_ASSIGN(pv.vg_name, r.name("vg_name", /*allow_empty=*/true));
    KVMFLEET_TRY_ASSIGN(pv.uuid, r.str("pv_uuid"));
    KVMFLEET_TRY_ASSIGN(pv.size_bytes, r.u64("pv_size"));
    KVMFLEET_TRY_ASSIGN(pv.free_bytes, r.u64("pv_free"));
    out.push_back(std::move(pv));
  }
  return out;
}

Result<std::vector<VolumeGroup>> parse_vgs_report(std::string_view text) {
  auto rows = report_rows(text, "vg", "vgs");
  if (!rows.ok()) return rows.take_error();
  std::vector<VolumeGroup> out;
  for (const auto& row : *rows) {
    RowReader r(row, "vgs");
    VolumeGroup vg;
    std::string shared;
    KVMFLEET_TRY_ASSIGN(vg.name, r.name("vg_name"));
    KVMFLEET_TRY_ASSIGN(vg.uuid, r.str("vg_uuid"));
    KVMFLEET_TRY_ASSIGN(vg.size_bytes, r.u64("vg_size"));
    KVMFLEET_TRY_ASSIGN(vg.free_bytes, r.u64("vg_free"));
    KVMFLEET_TRY_ASSIGN(vg.extent_bytes, r.u64("vg_extent_size"));
    KVMFLEET_TRY_ASSIGN(vg.lock_type, r.str("vg_lock_type"));
    KVMFLEET_TRY_ASSIGN(shared, r.str("vg_shared"));
    KVMFLEET_TRY_ASSIGN(vg.pv_count, r.count("pv_count"));
    KVMFLEET_TRY_ASSIGN(vg.lv_count, r.count("lv_count"));
    KVMFLEET_TRY_ASSIGN(vg.snap_count, r.count("snap_count"));
    vg.shared = shared == "shared";
    if (vg.free_bytes > vg.size_bytes) {
      return internal_error("vgs reported more free than total space", {{"command", "vgs"}});
    }
    out.push_back(std::move(vg));
  }
  return out;
}

Result<std::vector<LogicalVolume>> parse_lvs_report(std::string_view text) {
  auto rows = report_rows(text, "lv", "lvs");
  if (!rows.ok()) return rows.take_error();
  std::vector<LogicalVolume> out;
  for (const auto& row : *rows) {
    RowReader r(row, "lvs");
    LogicalVolume lv;
    std::string locally, exclusively;
    KVMFLEET_TRY_ASSIGN(lv.name, r.name("lv_name"));
    KVMFLEET_TRY_ASSIGN(lv.vg_name, r.name("vg_name"));
    KVMFLEET_TRY_ASSIGN(lv.uuid, r.str("lv_uuid"));
    KVMFLEET_TRY_ASSIGN(lv.size_bytes, r.u64("lv_size"));
    KVMFLEET_TRY_ASSIGN(lv.attr, r.str("lv_attr"));
    KVMFLEET_TRY_ASSIGN(lv.path, r.str("lv_path"));
    KVMFLEET_TRY_ASSIGN(locally, r.str("lv_active_locally"));
    KVMFLEET_TRY_ASSIGN(exclusively, r.str("lv_active_exclusively"));
    KVMFLEET_TRY_ASSIGN(lv.origin, r.name("origin", /*allow_empty=*/true));
    KVMFLEET_TRY_ASSIGN(lv.data_percent, r.percent("data_percent"));
    if (lv.attr.size() < 10) {
      return internal_error("lvs reported a malformed lv_attr", {{"command", "lvs"}});
    }
    if (!lv.path.empty() && lv.path != "/dev/" + lv.vg_name + "/" + lv.name) {
      return internal_error("lvs reported an lv_path that does not match its names",
                            {{"command", "lvs"}});
    }
    const char type = lv.attr[0];
    lv.is_snapshot = type == 's' || type == 'S';
    lv.is_origin = type == 'o' || type == 'O';
    // lv_attr's type: S/O for a merging snapshot and its origin.
    lv.merging = type == 'S' || type == 'O';
    lv.snapshot_invalid = lv.is_snapshot && lv.attr[4] == 'I';
    lv.active = !locally.empty();
    // Refined from lvmlockd's locks by list_lvs; lvs alone says "exclusively"
    // also for shared activation under lvmlockd.
    lv.activation = !lv.active             ? LvActivation::inactive
                    : !exclusively.empty() ? LvActivation::exclusive
                                           : LvActivation::shared;
    if (lv.is_snapshot && lv.origin.empty()) {
      return internal_error("lvs reported a snapshot without origin", {{"command", "lvs"}});
    }
    out.push_back(std::move(lv));
  }
  return out;
}

Result<std::vector<LvmlockdVg>> parse_lvmlockctl_info(std::string_view text) {
  std::vector<LvmlockdVg> out;
  for (auto raw : text_util::lines(text)) {
    auto line = text_util::trim(raw);
    if (line.empty()) continue;
    auto bad = [&](const char* why) {
      return internal_error(std::string("lvmlockctl --info printed ") + why,
                            {{"line", std::string(line.substr(0, 200))}});
    };
    if (text_util::starts_with(line, "VG ")) {
      // "VG kvmvg lock_type=sanlock UUID"
      LvmlockdVg vg;
      auto rest = line.substr(3);
      vg.name = std::string(rest.substr(0, rest.find(' ')));
      if (!safe_name(vg.name)) return bad("a malformed VG name");
      auto lt = rest.find("lock_type=");
      if (lt != std::string_view::npos) {
        auto v = rest.substr(lt + 10);
        vg.lock_type = std::string(v.substr(0, v.find(' ')));
      }
      out.push_back(std::move(vg));
    } else if (text_util::starts_with(line, "LS ")) {
      if (out.empty()) return bad("a lockspace before any VG");
      out.back().lockspace = true;
    } else if (text_util::starts_with(line, "LK LV ")) {
      // "LK LV ex UUID" / "LK LV sh UUID"
      if (out.empty()) return bad("a lock before any VG");
      auto rest = line.substr(6);
      auto mode = rest.substr(0, rest.find(' '));
      auto uuid = text_util::trim(rest.substr(std::min(rest.size(), mode.size() + 1)));
      if (uuid.empty() || uuid.find(' ') != std::string_view::npos) return bad("a malformed lock");
      if (mode == "ex") {
        out.back().lv_locks.emplace_back(std::string(uuid), LvActivation::exclusive);
      } else if (mode == "sh") {
        out.back().lv_locks.emplace_back(std::string(uuid), LvActivation::shared);
      }
    }
  }
  return out;
}

Status Lvm2Cli::add_device(std::string_view path) {
  if (auto s = check_device_path(path); !s) return s;
  std::lock_guard lk(devices_mu_);
  if (std::find(options_.devices.begin(), options_.devices.end(), path) == options_.devices.end()) {
    options_.devices.emplace_back(path);
    spdlog::info("storage: LVM now also sees {}", path);
  }
  return ok_status();
}

Status Lvm2Cli::check_options() const {
  std::lock_guard lk(devices_mu_);
  if (options_.devices.empty()) {
    return invalid("no cluster devices configured: LVM would see no PV (or every disk)");
  }
  for (const auto& d : options_.devices) {
    if (auto s = check_device_path(d); !s) return s;
  }
  if (options_.use_lvmlockd && (options_.host_id < 1 || options_.host_id > 2000)) {
    return invalid("host_id must be 1..2000 (sanlock's range)");
  }
  return ok_status();
}

Result<std::string> Lvm2Cli::config_string() const {
  if (auto s = check_options(); !s) return s.take_error();
  std::string filter = "[ ";
  {
    std::lock_guard lk(devices_mu_);
    for (const auto& d : options_.devices) filter += "\"a|^" + regex_literal(d) + "$|\", ";
  }
  filter += "\"r|.*|\" ]";
  std::string c =
      "devices { global_filter = " + filter + " filter = " + filter + " use_devicesfile = 0";
  if (!options_.udev) c += " obtain_device_list_from_udev = 0";
  c += " } global { use_lvmlockd = ";
  c += options_.use_lvmlockd ? "1" : "0";
  // Merges are polled by the command itself, so lvconvert --merge returns when done.
  c += " use_lvmpolld = 0 }";
  if (options_.use_lvmlockd) c += " local { host_id = " + std::to_string(options_.host_id) + " }";
  if (!options_.udev)
    c += " activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 }";
  return c;
}

Result<ProcessOutput> Lvm2Cli::lvm(const std::string& command, std::vector<std::string> args,
                                   std::chrono::milliseconds timeout) {
  auto config = config_string();
  if (!config.ok()) return config.take_error();
  std::vector<std::string> argv{options_.lvm, command, "--config", *config};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions ro;
  ro.timeout = timeout;
  // LVM warns about every inherited descriptor; the runner's are harmless.
  ro.env.emplace_back("LVM_SUPPRESS_FD_WARNINGS", "1");
  spdlog::debug("storage: lvm {} {}", command, text_util::join(args));
  auto r = runner_.run(argv, ro);
  if (!r.ok()) return r.take_error();
  if (r->exit_code != 0) return lvm_error(command, r->exit_code, r->err);
  return r;
}

Result<std::vector<PhysicalVolume>> Lvm2Cli::list_pvs() {
  auto r = lvm("pvs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o", kPvFields});
  if (!r.ok()) return r.take_error();
  return parse_pvs_report(r->out);
}

Result<std::vector<VolumeGroup>> Lvm2Cli::list_vgs() {
  auto r = lvm("vgs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o", kVgFields});
  if (!r.ok()) return r.take_error();
  return parse_vgs_report(r->out);
}

Result<VolumeGroup> Lvm2Cli::get_vg(std::string_view vg) {
  if (auto s = check_vg_name(vg); !s) return s.take_error();
  auto r = lvm("vgs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o", kVgFields,
                       std::string(vg)});
  if (!r.ok()) return r.take_error();
  auto vgs = parse_vgs_report(r->out);
  if (!vgs.ok()) return vgs.take_error();
  for (auto& v : *vgs) {
    if (v.name == vg) return std::move(v);
  }
  return not_found("VG " + std::string(vg) + " not found");
}

Result<std::vector<LogicalVolume>> Lvm2Cli::list_lvs(std::string_view vg) {
  if (auto s = check_vg_name(vg); !s) return s.take_error();
  auto r = lvm("lvs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o", kLvFields,
                       std::string(vg)});
  if (!r.ok()) return r.take_error();
  auto lvs = parse_lvs_report(r->out);
  if (!lvs.ok()) return lvs.take_error();
  for (const auto& lv : *lvs) {
    if (lv.vg_name != vg) {
      return internal_error("lvs reported an LV of another VG", {{"command", "lvs"}});
    }
  }
  if (!options_.use_lvmlockd) return lvs;

  // Which lock lvmlockd holds tells shared from exclusive activation.
  RunOptions ro;
  ro.timeout = options_.timeout;
  auto info = runner_.run({options_.lvmlockctl, "--info"}, ro);
  if (!info.ok() || info->exit_code != 0) {
    spdlog::warn("storage: lvmlockctl --info failed; LV activation read from lvs alone");
    return lvs;
  }
  auto vgs = parse_lvmlockctl_info(info->out);
  if (!vgs.ok()) return vgs.take_error();
  const LvmlockdVg* mine = nullptr;
  for (const auto& v : *vgs) {
    if (v.name == vg) mine = &v;
  }
  auto lock_of = [&](const std::string& uuid) -> std::optional<LvActivation> {
    if (mine == nullptr) return std::nullopt;
    for (const auto& [u, mode] : mine->lv_locks) {
      if (u == uuid) return mode;
    }
    return std::nullopt;
  };
  for (auto& lv : *lvs) {
    if (!lv.active) continue;
    // A COW snapshot is active under its origin's lock.
    std::string uuid = lv.uuid;
    if (lv.is_snapshot) {
      for (const auto& o : *lvs) {
        if (o.name == lv.origin) uuid = o.uuid;
      }
    }
    if (auto mode = lock_of(uuid)) lv.activation = *mode;
  }
  return lvs;
}

Result<LogicalVolume> Lvm2Cli::get_lv(std::string_view vg, std::string_view lv) {
  if (auto s = check_lv_name(lv); !s) return s.take_error();
  auto all = list_lvs(vg);
  if (!all.ok()) return all.take_error();
  for (auto& l : *all) {
    if (l.name == lv) return std::move(l);
  }
  return not_found("LV " + lv_spec(vg, lv) + " not found");
}

Status Lvm2Cli::create_shared_vg(std::string_view vg, const std::vector<std::string>& devices) {
  if (auto s = check_vg_name(vg); !s) return s;
  if (devices.empty()) return invalid("a VG needs at least one device");
  for (const auto& d : devices) {
    if (auto s = check_device_path(d); !s) return s;
    std::lock_guard lk(devices_mu_);
    if (std::find(options_.devices.begin(), options_.devices.end(), d) == options_.devices.end()) {
      return invalid("device " + d + " is not one of the cluster's devices");
    }
  }
  std::vector<std::string> args{"--shared", std::string(vg)};
  args.insert(args.end(), devices.begin(), devices.end());
  auto r = lvm("vgcreate", std::move(args), options_.lockstart_timeout);
  if (!r.ok()) return r.take_error();
  spdlog::info("storage: created shared VG {} on {} device(s)", vg, devices.size());
  return ok_status();
}

Status Lvm2Cli::lock_start(std::string_view vg) {
  if (auto s = check_vg_name(vg); !s) return s;
  const int attempts = std::max(1, options_.lockstart_attempts);
  for (int attempt = 1;; ++attempt) {
    auto r = lvm("vgchange", {"--lockstart", std::string(vg)}, options_.lockstart_timeout);
    if (r.ok()) return ok_status();
    const auto& err = r.error();
    std::string stderr_text = err.details.value("stderr", std::string{});
    // Without udev the lvmlock LV's /dev node appears only at the end of the first
    // command that activates it; the next start finds it.
    if (attempt < attempts && contains(stderr_text, "invalid parameters for sanlock")) {
      spdlog::info("storage: lockstart of {} found no lvmlock device yet; starting again", vg);
      continue;
    }
    return r.take_error();
  }
}

Status Lvm2Cli::lock_stop(std::string_view vg) {
  if (auto s = check_vg_name(vg); !s) return s;
  auto r = lvm("vgchange", {"--lockstop", std::string(vg)});
  if (!r.ok()) return r.take_error();
  return ok_status();
}

Status Lvm2Cli::create_lv(std::string_view vg, std::string_view lv, std::uint64_t size_bytes,
                          const LvCreateOptions& options) {
  if (auto s = check_vg_name(vg); !s) return s;
  if (auto s = check_lv_name(lv); !s) return s;
  if (auto s = check_size_bytes("size", size_bytes); !s) return s;
  std::vector<std::string> args{options.activate_exclusive ? "-aey" : "-an"};
  if (options.activate_exclusive) {
    args.insert(args.end(), {"--zero", "y", "--wipesignatures", "y"});
  } else {
    args.insert(args.end(), {"--zero", "n"});
  }
  args.insert(args.end(), {"--yes", "-L", std::to_string(size_bytes) + "b", "-n", std::string(lv),
                           std::string(vg)});
  auto r = lvm("lvcreate", std::move(args));
  if (!r.ok()) return r.take_error();
  spdlog::info("storage: created LV {} ({} bytes)", lv_spec(vg, lv), size_bytes);
  return ok_status();
}

Status Lvm2Cli::extend_lv(std::string_view vg, std::string_view lv, std::uint64_t new_size_bytes) {
  if (auto s = check_vg_name(vg); !s) return s;
  if (auto s = check_lv_name(lv); !s) return s;
  if (auto s = check_size_bytes("new size", new_size_bytes); !s) return s;
  auto r = lvm("lvextend", {"-L", std::to_string(new_size_bytes) + "b", lv_spec(vg, lv)});
  if (!r.ok()) {
    // A retried grow finds the size already there.
    if (contains(r.error().details.value("stderr", std::string{}), "matches existing size")) {
      return ok_status();
    }
    if (r.error().code == ErrorCode::invalid_argument) {
      return Error(ErrorCode::invalid_argument,
                   "LV " + lv_spec(vg, lv) + " can only grow: " + r.error().message,
                   r.error().details);
    }
    return r.take_error();
  }
  spdlog::info("storage: extended LV {} to {} bytes", lv_spec(vg, lv), new_size_bytes);
  return ok_status();
}

Status Lvm2Cli::remove_lv(std::string_view vg, std::string_view lv) {
  auto current = get_lv(vg, lv);
  if (!current.ok()) return current.take_error();
  // lvremove --yes would deactivate an LV in use, or take its snapshots along.
  if (current->is_origin) {
    return conflict("LV " + lv_spec(vg, lv) + " has snapshots; remove or merge them first");
  }
  if (current->active) {
    return conflict("LV " + lv_spec(vg, lv) + " is active on this host; deactivate it first");
  }
  auto r = lvm("lvremove", {"--yes", lv_spec(vg, lv)});
  if (!r.ok()) return r.take_error();
  spdlog::info("storage: removed LV {}", lv_spec(vg, lv));
  return ok_status();
}

Status Lvm2Cli::activate(std::string_view vg, std::string_view lv, LvActivation mode) {
  if (auto s = check_vg_name(vg); !s) return s;
  if (auto s = check_lv_name(lv); !s) return s;
  const char* flag = mode == LvActivation::exclusive ? "-aey"
                     : mode == LvActivation::shared  ? "-asy"
                                                     : "-an";
  auto r = lvm("lvchange", {flag, lv_spec(vg, lv)});
  if (!r.ok()) return r.take_error();
  spdlog::info("storage: LV {} now {}", lv_spec(vg, lv), to_string(mode));
  return ok_status();
}

Status Lvm2Cli::create_snapshot(std::string_view vg, std::string_view origin,
                                std::string_view snapshot, std::uint64_t cow_bytes) {
  if (auto s = check_vg_name(vg); !s) return s;
  if (auto s = check_lv_name(origin); !s) return s;
  if (auto s = check_lv_name(snapshot); !s) return s;
  if (auto s = check_size_bytes("snapshot size", cow_bytes); !s) return s;
  auto r = lvm("lvcreate", {"--yes", "-s", "-L", std::to_string(cow_bytes) + "b", "-n",
                            std::string(snapshot), lv_spec(vg, origin)});
  if (!r.ok()) return r.take_error();
  spdlog::info("storage: snapshot {} of {} ({} bytes of COW)", lv_spec(vg, snapshot),
               lv_spec(vg, origin), cow_bytes);
  return ok_status();
}

Status Lvm2Cli::merge_snapshot(std::string_view vg, std::string_view snapshot) {
  auto snap = get_lv(vg, snapshot);
  if (!snap.ok()) return snap.take_error();
  if (!snap->is_snapshot) {
    return invalid("LV " + lv_spec(vg, snapshot) + " is not a snapshot");
  }
  auto r = lvm("lvconvert", {"--merge", lv_spec(vg, snapshot)}, options_.lockstart_timeout);
  if (!r.ok()) return r.take_error();
  spdlog::info("storage: merge of {} into {}: {}", lv_spec(vg, snapshot), snap->origin,
               std::string(text_util::last_line(r->out)));
  return ok_status();
}

}  // namespace kvmfleet::storage
