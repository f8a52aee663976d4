#include "kvmfleet/storage/multipath.hpp"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "text_util.hpp"

namespace kvmfleet::storage {
namespace {

using json = nlohmann::json;

Error malformed(const std::string& why) {
  return internal_error("multipathd show maps json printed something kvmfleet cannot read: " + why,
                        {{"command", "multipathd"}});
}

// Kernel block device names and dm names: no path separators, nothing odd.
bool plain_name(std::string_view s) {
  return !s.empty() && s.size() <= 128 &&
         std::all_of(s.begin(), s.end(),
                     [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' ||
                              c == '-' || c == '.' || c == ':';
                     }) &&
         s != "." && s != "..";
}

Result<std::string> str(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return malformed(std::string("no string ") + key);
  return it->get<std::string>();
}

}  // namespace

int MultipathMap::healthy_paths() const {
  return static_cast<int>(std::count_if(paths.begin(), paths.end(),
                                        [](const MultipathPath& p) { return p.healthy(); }));
}

bool MultipathMap::has_path(std::string_view dev) const {
  if (text_util::starts_with(dev, "/dev/")) dev.remove_prefix(5);
  return std::any_of(paths.begin(), paths.end(),
                     [&](const MultipathPath& p) { return p.dev == dev; });
}

Result<std::vector<MultipathMap>> parse_multipathd_maps(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return malformed("not a JSON object");
  auto maps = doc.find("maps");
  if (maps == doc.end() || !maps->is_array()) return malformed("no \"maps\" array");
  std::vector<MultipathMap> out;
  for (const auto& m : *maps) {
    if (!m.is_object()) return malformed("a map is not an object");
    MultipathMap map;
    auto name = str(m, "name");
    auto uuid = str(m, "uuid");
    auto sysfs = str(m, "sysfs");
    auto dm_st = str(m, "dm_st");
    for (auto* r : {&name, &uuid, &sysfs, &dm_st}) {
      if (!r->ok()) return r->take_error();
    }
    map.name = *name;
    map.wwid = *uuid;
    map.sysfs = *sysfs;
    map.dm_state = *dm_st;
    if (!plain_name(map.name) || !plain_name(map.sysfs)) return malformed("a bad map name");
    auto faults = m.find("path_faults");
    if (faults != m.end()) {
      if (!faults->is_number_integer() || *faults < 0 || *faults > 1000000000) {
        return malformed("a bad path_faults");
      }
      map.path_faults = faults->get<int>();
    }
    auto groups = m.find("path_groups");
    if (groups == m.end()) {
      out.push_back(std::move(map));
      continue;
    }
    if (!groups->is_array()) return malformed("path_groups is not an array");
    for (const auto& g : *groups) {
      if (!g.is_object() || !g.contains("paths") || !g["paths"].is_array()) {
        return malformed("a path group without paths");
      }
      for (const auto& p : g["paths"]) {
        if (!p.is_object()) return malformed("a path is not an object");
        MultipathPath path;
        auto dev = str(p, "dev");
        auto pdm = str(p, "dm_st");
        auto dev_st = str(p, "dev_st");
        auto chk = str(p, "chk_st");
        for (auto* r : {&dev, &pdm, &dev_st, &chk}) {
          if (!r->ok()) return r->take_error();
        }
        path.dev = *dev;
        if (!plain_name(path.dev)) return malformed("a bad path device");
        path.dm_state = *pdm;
        path.dev_state = *dev_st;
        path.checker_state = *chk;
        if (auto t = str(p, "target_wwnn"); t.ok()) path.target = *t;
        map.paths.push_back(std::move(path));
      }
    }
    out.push_back(std::move(map));
  }
  return out;
}

Result<std::vector<MultipathMap>> Multipath::maps() {
  RunOptions ro;
  ro.timeout = options_.timeout;
  auto r = runner_.run({options_.multipathd, "show", "maps", "json"}, ro);
  if (!r.ok()) return r.take_error();
  if (r->exit_code != 0) {
    return unavailable("multipathd show maps json failed (exit " + std::to_string(r->exit_code) +
                           "): is multipathd running?",
                       {{"command", "multipathd"}, {"stderr", r->err.substr(0, 2000)}});
  }
  return parse_multipathd_maps(r->out);
}

Result<MultipathMap> Multipath::map_with_path(std::string_view disk) {
  auto all = maps();
  if (!all.ok()) return all.take_error();
  for (auto& m : *all) {
    if (m.has_path(disk)) return std::move(m);
  }
  return not_found("no multipath map has path " + std::string(disk));
}

}  // namespace kvmfleet::storage
