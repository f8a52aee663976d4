// The handlers of the domain calls (protocol.hpp): one Hypervisor call each.

#include "call_handlers.hpp"
#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/json.hpp"
#include "kvmfleet/model/network.hpp"
#include "kvmfleet/storage/storage_names.hpp"

#include <algorithm>
#include <limits>

namespace kvmfleet::agent::calls {
namespace {

using nlohmann::json;

// {"frozen": N} and the like.
http::Response reply_count(const Result<int>& r, const char* key) {
  if (!r) return http::error_response(r.error());
  return ok_json({{key, r.value()}});
}

// A call on the path's domain that answers what the hypervisor answers.
template <typename Act>
PreparedCall on_domain(const CallContext& c, Act act) {
  return {c.params.uuid, [&hv = c.hv, uuid = c.params.uuid, act] { return act(hv, uuid); }};
}

// An answer about a domain (DomainStatus, MigrationStatus), stamped once the hypervisor
// has acted and looked: a report the agent observed before is older than it.
template <typename T>
http::Response stamped(ReportClock& reports, Result<T> r) {
  if (r) r->stamp = reports.next();
  return reply(r);
}

// on_domain for the calls that answer the domain's or its migration's status.
template <typename Act>
PreparedCall on_domain_stamped(const CallContext& c, Act act) {
  return {c.params.uuid, [&hv = c.hv, &reports = c.reports, uuid = c.params.uuid, act] {
            return stamped(reports, act(hv, uuid));
          }};
}

}  // namespace

Result<PreparedCall> inventory(const CallContext& c) {
  return PreparedCall{{}, [&hv = c.hv, &reports = c.reports, links = c.links] {
                        // Stamped before it looks, as a heartbeat is.
                        const ReportStamp stamp = reports.next();
                        auto inv = hv.inventory();
                        if (inv) inv->stamp = stamp;
                        if (inv && links) {
                          auto l = links->links();
                          if (!l) return http::error_response(l.error());
                          inv->links = std::move(*l);
                        }
                        return reply(inv);
                      }};
}

Result<PreparedCall> domain_get(const CallContext& c) {
  return on_domain_stamped(
      c, [](Hypervisor& hv, const std::string& uuid) { return hv.get_domain(uuid); });
}

Result<PreparedCall> define(const CallContext& c) {
  auto it = c.body.find("spec");
  if (it == c.body.end()) return invalid("spec is required", {{"field", "spec"}});
  auto spec = parse_domain_spec(*it);
  if (!spec) return spec.take_error();
  std::string subject = spec->uuid;
  const bool shared = std::any_of(spec->disks.begin(), spec->disks.end(),
                                  [](const DomainDisk& d) { return !d.block_device.empty(); });
  if (shared && !c.storage)
    return invalid("spec.disks: block devices need shared storage configured on this host",
                   {{"field", "spec.disks"}});
  return PreparedCall{std::move(subject), [&hv = c.hv, &reports = c.reports, storage = c.storage,
                                           shared, spec = std::move(*spec)] {
                        // Only the VGs this host's LVM sees on the cluster's LUNs.
                        if (shared) {
                          auto vgs = storage->lvm.list_vgs();
                          if (!vgs) return http::error_response(vgs.error());
                          std::vector<std::string> names;
                          for (const auto& vg : *vgs) names.push_back(vg.name);
                          if (auto st = check_block_device_vgs(spec, names); !st)
                            return http::error_response(st.error());
                        }
                        return stamped(reports, hv.define(spec));
                      }};
}

Result<PreparedCall> start(const CallContext& c) {
  return on_domain_stamped(c,
                           [](Hypervisor& hv, const std::string& uuid) { return hv.start(uuid); });
}

Result<PreparedCall> shutdown(const CallContext& c) {
  return on_domain_stamped(
      c, [](Hypervisor& hv, const std::string& uuid) { return hv.shutdown(uuid); });
}

Result<PreparedCall> reboot(const CallContext& c) {
  return on_domain_stamped(c,
                           [](Hypervisor& hv, const std::string& uuid) { return hv.reboot(uuid); });
}

Result<PreparedCall> destroy(const CallContext& c) {
  return on_domain_stamped(
      c, [](Hypervisor& hv, const std::string& uuid) { return hv.destroy(uuid); });
}

Result<PreparedCall> undefine(const CallContext& c) {
  auto remove = get_bool(c.body, "remove_volumes", false);
  if (!remove) return remove.take_error();
  return on_domain(c, [remove = *remove](Hypervisor& hv, const std::string& uuid) {
    return reply(hv.undefine(uuid, remove));
  });
}

Result<PreparedCall> fs_freeze(const CallContext& c) {
  return on_domain(c, [](Hypervisor& hv, const std::string& uuid) {
    return reply_count(hv.fs_freeze(uuid), "frozen");
  });
}

Result<PreparedCall> fs_thaw(const CallContext& c) {
  return on_domain(c, [](Hypervisor& hv, const std::string& uuid) {
    return reply_count(hv.fs_thaw(uuid), "thawed");
  });
}

Result<PreparedCall> block_resize(const CallContext& c) {
  auto device = get_string(c.body, "device", true);
  if (!device) return device.take_error();
  if (auto lv = storage::parse_lv_path(*device); !lv)
    return invalid("device: " + lv.error().message, {{"field", "device"}});
  auto size = get_size(c.body);
  if (!size) return size.take_error();
  return on_domain(c, [device = *device, size = *size](Hypervisor& hv, const std::string& uuid) {
    auto st = hv.block_resize(uuid, device, size);
    if (!st) return http::error_response(st.error());
    return ok_json({{"device", device}, {"size_bytes", size}});
  });
}

Result<PreparedCall> nic_attach(const CallContext& c) {
  auto it = c.body.find("nic");
  if (it == c.body.end()) return invalid("nic is required", {{"field", "nic"}});
  auto nic = parse_domain_nic(*it, "nic");
  if (!nic) return nic.take_error();
  if (auto st = validate_domain_nic(*nic, "nic"); !st) return st.take_error();
  auto generation =
      get_int(c.body, "generation", true, 0, 1, std::numeric_limits<std::int64_t>::max());
  if (!generation) return generation.take_error();
  return on_domain_stamped(
      c, [nic = *nic, generation = *generation](Hypervisor& hv, const std::string& uuid) {
        return hv.attach_nic(uuid, nic, generation);
      });
}

Result<PreparedCall> nic_detach(const CallContext& c) {
  auto mac = get_string(c.body, "mac", true);
  if (!mac) return mac.take_error();
  if (auto st = check_mac("mac", *mac); !st) return st.take_error();
  auto generation =
      get_int(c.body, "generation", true, 0, 1, std::numeric_limits<std::int64_t>::max());
  if (!generation) return generation.take_error();
  return on_domain_stamped(c, [mac = *normalize_mac(*mac), generation = *generation](
                                  Hypervisor& hv, const std::string& uuid) {
    return hv.detach_nic(uuid, mac, generation);
  });
}

Result<PreparedCall> media_prepare(const CallContext& c) {
  auto it = c.body.find("spec");
  if (it == c.body.end()) return invalid("spec is required", {{"field", "spec"}});
  auto spec = parse_domain_spec(*it);
  if (!spec) return spec.take_error();
  if (spec->uuid != c.params.uuid)
    return invalid("spec.uuid must be the path's uuid", {{"field", "spec.uuid"}});
  return PreparedCall{c.params.uuid, [&hv = c.hv, spec = std::move(*spec)] {
                        auto media = hv.prepare_media(spec);
                        if (!media) return http::error_response(media.error());
                        json out = json::object();
                        if (!media->cdrom.empty()) out["cdrom"] = media->cdrom;
                        if (!media->seed.empty()) out["seed"] = media->seed;
                        return ok_json(out);
                      }};
}

Result<PreparedCall> media_remove(const CallContext& c) {
  auto sha = get_string(c.body, "cdrom_sha256", false);
  if (!sha) return sha.take_error();
  const bool hex = sha->size() == 64 && std::all_of(sha->begin(), sha->end(), [](char ch) {
                     return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
                   });
  if (!sha->empty() && !hex)
    return invalid("cdrom_sha256 must be 64 lowercase hex digits", {{"field", "cdrom_sha256"}});
  return on_domain(c, [sha = *sha](Hypervisor& hv, const std::string& uuid) {
    auto removed = hv.remove_media(uuid, sha);
    if (!removed) return http::error_response(removed.error());
    return ok_json({{"removed", *removed}});
  });
}

// Not through the op cache (Replay::hypervisor): the hypervisor keeps each domain's
// last migration by op_id, so a repeat answers the migration's current status, not a
// stale copy of the first answer, and can never start it twice.
Result<PreparedCall> migrate(const CallContext& c) {
  auto request = parse_migration_request(c.body);
  if (!request) return request.take_error();
  request->op_id = c.op_id;
  std::string subject = c.params.uuid + " to " + request->destination_uri;
  return PreparedCall{std::move(subject), [&hv = c.hv, &reports = c.reports, uuid = c.params.uuid,
                                           request = std::move(*request)] {
                        return stamped(reports, hv.migrate(uuid, request));
                      }};
}

Result<PreparedCall> migration(const CallContext& c) {
  return on_domain_stamped(
      c, [](Hypervisor& hv, const std::string& uuid) { return hv.migration_status(uuid); });
}

Result<PreparedCall> migration_abort(const CallContext& c) {
  return on_domain_stamped(
      c, [](Hypervisor& hv, const std::string& uuid) { return hv.abort_migration(uuid); });
}

}  // namespace kvmfleet::agent::calls
