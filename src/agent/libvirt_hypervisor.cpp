#include "kvmfleet/agent/libvirt_hypervisor.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "kvmfleet/agent/domain_xml.hpp"
#include "kvmfleet/agent/migration_validation.hpp"
#include "kvmfleet/agent/spec_validation.hpp"
#include "kvmfleet/common/validate.hpp"
#include "kvmfleet/model/network.hpp"
#include "libvirt/block_resize.hpp"
#include "libvirt/connection.hpp"
#include "libvirt/console.hpp"
#include "libvirt/domain_locks.hpp"
#include "libvirt/domain_lookup.hpp"
#include "libvirt/errors.hpp"
#include "libvirt/event_loop.hpp"
#include "libvirt/guest_agent.hpp"
#include "libvirt/handles.hpp"
#include "libvirt/host_inventory.hpp"
#include "libvirt/image_pool.hpp"
#include "libvirt/lifecycle_events.hpp"
#include "libvirt/migrations.hpp"
#include "libvirt/nic_hotplug.hpp"

namespace kvmfleet::agent {

using libvirt::DomainHandle;
using libvirt::PoolHandle;

// The parts, in the order they are built; they go in reverse. Migrations end first
// (their threads need the event loop), then the monitor stops and the connection
// closes, then subscribers are dropped, and the event loop goes last: it must be
// registered before the first connection opens and outlive the last.
struct LibvirtHypervisor::Impl {
  Impl(LibvirtOptions o, Clock& clock)
      : options(std::move(o)),
        loop(libvirt::EventLoop::acquire()),
        events(clock),
        connection(options, clock, events),
        domains(connection),
        pool(options.pool_name, options.pool_path, connection, options.boot_media),
        guest_agent(connection, options.guest_agent_timeout_s),
        migrations(connection, domains, clock),
        clock(clock) {}

  LibvirtOptions options;
  std::shared_ptr<libvirt::EventLoop> loop;
  libvirt::LifecycleEvents events;
  libvirt::Connection connection;
  libvirt::DomainLookup domains;
  libvirt::DomainLocks domain_locks;
  libvirt::ImagePool pool;
  libvirt::GuestAgent guest_agent;
  libvirt::Migrations migrations;
  Clock& clock;

  // The frame of the calls that act on one managed domain: a connection, the domain's
  // lock, no migration of it under way, the domain looked up; `fn` does the rest with it.
  template <typename R, typename F>
  R on_managed(const std::string& uuid, F&& fn) {
    auto c = connection.acquire();
    if (!c) return c.take_error();
    auto lock = domain_locks.get(uuid);
    std::lock_guard guard(*lock);
    if (auto st = migrations.refuse_if_migrating(uuid); !st) return st.take_error();
    auto m = domains.lookup_managed(c->get(), uuid);
    if (!m) return m.take_error();
    return fn(*m);
  }
};

LibvirtHypervisor::LibvirtHypervisor(LibvirtOptions options, Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

LibvirtHypervisor::~LibvirtHypervisor() = default;

bool LibvirtHypervisor::connected() const {
  return impl_->connection.alive();
}

Result<HostInventory> LibvirtHypervisor::inventory() {
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto inv = libvirt::read_host_inventory(impl_->connection, c->get());
  if (!inv) return inv.take_error();
  inv->migration_address = impl_->options.migration_address;
  if (impl_->options.tcg_only) inv->domain_type = "qemu";
  auto domains = list_domains();
  if (!domains) return domains.take_error();
  inv->domains = std::move(*domains);
  return inv;
}

Result<std::vector<DomainStatus>> LibvirtHypervisor::list_domains() {
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  virDomainPtr* doms = nullptr;
  const int n = virConnectListAllDomains(c->get(), &doms, 0);
  if (n < 0) return impl_->connection.failed("listing domains");
  std::vector<DomainHandle> handles;
  for (int i = 0; i < n; ++i) handles.emplace_back(doms[i]);
  std::free(doms);
  std::vector<DomainStatus> out;
  for (auto& d : handles) {
    auto st = impl_->domains.status(d.get());
    if (!st) {
      // Undefined while we were listing it.
      if (st.error().code == ErrorCode::not_found) continue;
      return st.take_error();
    }
    out.push_back(std::move(*st));
  }
  std::sort(out.begin(), out.end(),
            [](const DomainStatus& a, const DomainStatus& b) { return a.uuid < b.uuid; });
  return out;
}

Result<DomainStatus> LibvirtHypervisor::get_domain(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto dom = impl_->domains.lookup(c->get(), uuid);
  if (!dom) return dom.take_error();
  return impl_->domains.status(dom->get());
}

Result<DomainStatus> LibvirtHypervisor::define(const DomainSpec& spec) {
  if (auto st = validate_domain_spec(spec); !st) return st.take_error();
  if (impl_->options.tcg_only && spec.domain_type != "qemu")
    return invalid("this host runs its guests under TCG: spec.domain_type must be qemu",
                   {{"field", "spec.domain_type"}});
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  virConnectPtr conn = c->get();
  auto lock = impl_->domain_locks.get(spec.uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->migrations.refuse_if_migrating(spec.uuid); !st) return st.take_error();

  // What this call makes for a domain that is new here is removed again when the call
  // fails: a failed create leaves no disk behind.
  const bool is_new = [&] {
    DomainHandle d{virDomainLookupByUUIDString(conn, spec.uuid.c_str())};
    return !d && libvirt::last_libvirt_error_code() == VIR_ERR_NO_DOMAIN;
  }();
  auto undo = [&](Error e) -> Result<DomainStatus> {
    if (is_new) {
      if (auto st = impl_->pool.remove_volumes(conn, spec.uuid, {}); !st)
        spdlog::warn("domain {}: cannot remove what a failed define made: {}", spec.uuid,
                     st.error().message);
    }
    return e;
  };

  // Image-pool volumes are made here; a block device is shared storage that the
  // controller activates before the domain starts, so it need not exist yet.
  auto sources = impl_->pool.disk_sources(conn, spec);
  if (!sources) return undo(sources.take_error());
  // CD-ROMs: the seed is rebuilt from the spec on every define, so a host the domain
  // moves to has it too.
  auto media = impl_->pool.boot_media(conn, spec);
  if (!media) return undo(media.take_error());

  if (DomainHandle existing{virDomainLookupByUUIDString(conn, spec.uuid.c_str())}) {
    auto desc = impl_->domains.describe(existing.get());
    if (!desc) return desc.take_error();
    if (!desc->status.managed)
      return conflict("domain " + spec.uuid + " exists and is not managed by kvmfleet",
                      {{"uuid", spec.uuid}});
    if (desc->status.name != spec.name)
      return conflict(
          "domain " + spec.uuid + " is named " + desc->status.name + "; renaming is not supported",
          {{"uuid", spec.uuid}});
    if (desc->status.generation == spec.generation) return std::move(desc->status);
  } else if (libvirt::last_libvirt_error_code() != VIR_ERR_NO_DOMAIN) {
    return impl_->connection.failed("looking up domain " + spec.uuid);
  } else if (DomainHandle same_name{virDomainLookupByName(conn, spec.name.c_str())}) {
    return undo(conflict("a domain named " + spec.name + " already exists with another uuid",
                         {{"name", spec.name}}));
  }

  auto xml = write_domain_xml(spec, *sources, *media, console_log_path(spec.uuid));
  if (!xml) return undo(xml.take_error());
  DomainHandle dom(virDomainDefineXML(conn, xml->c_str()));
  if (!dom) return undo(impl_->connection.failed("defining domain " + spec.name));
  // kvmfleet alone starts its domains: a host back from a failure must not start a copy
  // that now runs elsewhere (an autostart flag set by hand outlives a redefinition).
  if (virDomainSetAutostart(dom.get(), 0) < 0)
    return impl_->connection.failed("clearing the autostart flag of domain " + spec.name);
  spdlog::info("defined domain {} ({}) generation {}", spec.name, spec.uuid, spec.generation);
  return impl_->domains.status(dom.get());
}

Result<DomainStatus> LibvirtHypervisor::change_power(const std::string& uuid, PowerChange change) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  return impl_->on_managed<Result<DomainStatus>>(
      uuid, [&](libvirt::Managed& m) -> Result<DomainStatus> {
        auto active = impl_->domains.is_active(m.dom.get(), uuid);
        if (!active) return active.take_error();
        const bool want_active = change == PowerChange::start;
        if (*active == want_active) return std::move(m.desc.status);
        int rc = 0;
        const char* verb = "";
        switch (change) {
          case PowerChange::start:
            rc = virDomainCreate(m.dom.get());
            verb = "starting";
            break;
          case PowerChange::shutdown:
            rc = virDomainShutdown(m.dom.get());
            verb = "shutting down";
            break;
          case PowerChange::destroy:
            rc = virDomainDestroy(m.dom.get());
            verb = "destroying";
            break;
        }
        if (rc < 0) {
          auto err = impl_->connection.failed(std::string(verb) + " domain " + uuid);
          // Changed by someone else in between: the outcome asked for holds.
          if (auto now = impl_->domains.is_active(m.dom.get(), uuid); !(now && *now == want_active))
            return err;
        }
        return impl_->domains.status(m.dom.get());
      });
}

Result<DomainStatus> LibvirtHypervisor::start(const std::string& uuid) {
  return change_power(uuid, PowerChange::start);
}

Result<DomainStatus> LibvirtHypervisor::shutdown(const std::string& uuid) {
  // ACPI request only: the guest may take its time or ignore it; the controller
  // decides how long to wait and whether to force.
  return change_power(uuid, PowerChange::shutdown);
}

Result<DomainStatus> LibvirtHypervisor::reboot(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  return impl_->on_managed<Result<DomainStatus>>(
      uuid, [&](libvirt::Managed& m) -> Result<DomainStatus> {
        if (auto st = impl_->domains.require_running(m.dom.get(), uuid); !st)
          return st.take_error();
        if (virDomainReboot(m.dom.get(), 0) < 0)
          return impl_->connection.failed("rebooting domain " + uuid);
        return impl_->domains.status(m.dom.get());
      });
}

Result<DomainStatus> LibvirtHypervisor::destroy(const std::string& uuid) {
  return change_power(uuid, PowerChange::destroy);
}

Status LibvirtHypervisor::undefine(const std::string& uuid, bool remove_volumes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->migrations.refuse_if_migrating(uuid); !st) return st.take_error();
  std::vector<std::string> sources;
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (m) {
    auto active = impl_->domains.is_active(m->dom.get(), uuid);
    if (!active) return active.take_error();
    if (*active)
      return conflict("domain " + uuid + " is running; destroy it first", {{"uuid", uuid}});
    sources = m->desc.info.disk_sources;
    // Leftover managed-save images, snapshot and checkpoint metadata would otherwise
    // make libvirt refuse. Drivers without checkpoints (test://) reject that flag.
    constexpr unsigned kBase =
        VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
    int rc = virDomainUndefineFlags(m->dom.get(), kBase | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA);
    if (rc < 0 && libvirt::last_libvirt_error_code() == VIR_ERR_INVALID_ARG)
      rc = virDomainUndefineFlags(m->dom.get(), kBase);
    if (rc < 0 && libvirt::last_libvirt_error_code() != VIR_ERR_NO_DOMAIN)
      return impl_->connection.failed("undefining domain " + uuid);
    spdlog::info("undefined domain {}", uuid);
  } else if (m.error().code != ErrorCode::not_found) {
    return m.take_error();
  }
  if (remove_volumes) return impl_->pool.remove_volumes(c->get(), uuid, sources);
  return {};
}

Result<int> LibvirtHypervisor::fs_freeze(const std::string& uuid) {
  return guest_filesystems(uuid, true);
}

Result<int> LibvirtHypervisor::fs_thaw(const std::string& uuid) {
  return guest_filesystems(uuid, false);
}

Result<int> LibvirtHypervisor::guest_filesystems(const std::string& uuid, bool freeze) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  // A thaw must always be possible: it is how a frozen guest gets its disks back.
  if (freeze) {
    if (auto st = impl_->migrations.refuse_if_migrating(uuid); !st) return st.take_error();
  }
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  if (auto st = impl_->domains.require_running(m->dom.get(), uuid); !st) return st.take_error();
  return freeze ? impl_->guest_agent.freeze(m->dom.get(), uuid)
                : impl_->guest_agent.thaw(m->dom.get(), uuid);
}

Status LibvirtHypervisor::block_resize(const std::string& uuid, const std::string& device,
                                       std::uint64_t size_bytes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (auto st = libvirt::check_block_resize(device, size_bytes); !st) return st;
  return impl_->on_managed<Status>(uuid, [&](libvirt::Managed& m) {
    return libvirt::resize_block_disk(impl_->connection, impl_->domains, m, uuid, device,
                                      size_bytes);
  });
}

Result<MigrationStatus> LibvirtHypervisor::migrate(const std::string& uuid,
                                                   const MigrationRequest& request) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (request.op_id.empty()) return invalid("op_id is required", {{"field", "op_id"}});
  if (auto st = validate_migration_request(request); !st) return st.take_error();
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  return impl_->migrations.start(c->get(), uuid, request);
}

Result<MigrationStatus> LibvirtHypervisor::migration_status(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  return impl_->migrations.status(uuid);
}

Result<MigrationStatus> LibvirtHypervisor::abort_migration(const std::string& uuid) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  return impl_->migrations.abort(uuid);
}

Result<DomainStatus> LibvirtHypervisor::attach_nic(const std::string& uuid, const DomainNic& nic,
                                                   std::int64_t generation) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (auto st = validate_domain_nic(nic, "nic"); !st) return st.take_error();
  if (generation < 1) return invalid("generation must be at least 1", {{"field", "generation"}});
  return impl_->on_managed<Result<DomainStatus>>(uuid, [&](libvirt::Managed& m) {
    return libvirt::attach_nic(impl_->connection, impl_->domains, m, uuid, nic, generation);
  });
}

Result<DomainStatus> LibvirtHypervisor::detach_nic(const std::string& uuid, const std::string& mac,
                                                   std::int64_t generation) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  if (auto st = check_mac("mac", mac); !st) return st.take_error();
  if (normalize_mac(mac) != mac)
    return invalid("mac must be lowercase", {{"field", "mac"}, {"reason", "invalid_mac"}});
  if (generation < 1) return invalid("generation must be at least 1", {{"field", "generation"}});
  return impl_->on_managed<Result<DomainStatus>>(uuid, [&](libvirt::Managed& m) {
    return libvirt::detach_nic(impl_->connection, impl_->domains, impl_->clock, m, uuid, mac,
                               generation, std::chrono::seconds(10));
  });
}

Result<MigrationMedia> LibvirtHypervisor::prepare_media(const DomainSpec& spec) {
  if (auto st = validate_domain_spec(spec); !st) return st.take_error();
  MigrationMedia out;
  if (!spec.cdrom && !spec.cloud_init) return out;
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto lock = impl_->domain_locks.get(spec.uuid);
  std::lock_guard guard(*lock);
  auto media = impl_->pool.boot_media(c->get(), spec);
  if (!media) return media.take_error();
  out.cdrom = std::move(media->cdrom);
  out.seed = std::move(media->seed);
  spdlog::info("prepared the CD-ROMs of domain {} ({}) for its arrival", spec.name, spec.uuid);
  return out;
}

Result<std::vector<std::string>> LibvirtHypervisor::remove_media(const std::string& uuid,
                                                                 const std::string& cdrom_sha256) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  virConnectPtr conn = c->get();
  auto lock = impl_->domain_locks.get(uuid);
  std::lock_guard guard(*lock);
  if (auto st = impl_->migrations.refuse_if_migrating(uuid); !st) return st.take_error();
  if (DomainHandle d{virDomainLookupByUUIDString(conn, uuid.c_str())})
    return conflict("domain " + uuid + " is defined on this host; its CD-ROMs stay with it",
                    {{"uuid", uuid}, {"reason", "domain_defined"}});
  if (libvirt::last_libvirt_error_code() != VIR_ERR_NO_DOMAIN)
    return impl_->connection.failed("looking up domain " + uuid);
  // The cached ISO is shared by every domain from that image: kept while one uses it.
  std::string cdrom =
      cdrom_sha256.empty() ? std::string() : impl_->pool.cached_image_path(cdrom_sha256);
  if (!cdrom.empty()) {
    virDomainPtr* doms = nullptr;
    const int n = virConnectListAllDomains(conn, &doms, 0);
    if (n < 0) return impl_->connection.failed("listing domains");
    std::vector<DomainHandle> handles;
    for (int i = 0; i < n; ++i) handles.emplace_back(doms[i]);
    std::free(doms);
    for (auto& d : handles) {
      auto desc = impl_->domains.describe(d.get());
      if (!desc) {
        if (desc.error().code == ErrorCode::not_found) continue;
        return desc.take_error();
      }
      const auto& used = desc->info.cdrom_sources;
      if (std::find(used.begin(), used.end(), cdrom) != used.end()) {
        cdrom.clear();
        break;
      }
    }
  }
  return impl_->pool.remove_media(conn, uuid, cdrom);
}

std::uint64_t LibvirtHypervisor::subscribe(EventCallback callback) {
  return impl_->events.subscribe(std::move(callback));
}

void LibvirtHypervisor::unsubscribe(std::uint64_t id) {
  impl_->events.unsubscribe(id);
}

std::string LibvirtHypervisor::console_log_path(const std::string& uuid) const {
  std::string dir = impl_->options.console_log_dir;
  if (dir.empty()) return {};
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/" + uuid + ".log";
}

Result<std::shared_ptr<ConsoleStream>> LibvirtHypervisor::open_console(const std::string& uuid,
                                                                       ConsoleSink sink) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  auto active = impl_->domains.is_active(m->dom.get(), uuid);
  if (!active) return active.take_error();
  if (!*active) return conflict("domain " + uuid + " is not running", {{"uuid", uuid}});
  auto stream = libvirt::open_console(c->get(), m->dom.get(), std::move(sink));
  if (!stream) {
    Error e = stream.take_error();
    if (e.code == ErrorCode::internal) return impl_->connection.failed(e.message);
    return e;
  }
  return stream;
}

Result<std::string> LibvirtHypervisor::console_log(const std::string& uuid, std::size_t max_bytes) {
  if (!is_valid_uuid(uuid)) return invalid("uuid must be a lowercase canonical UUID");
  auto c = impl_->connection.acquire();
  if (!c) return c.take_error();
  auto m = impl_->domains.lookup_managed(c->get(), uuid);
  if (!m) return m.take_error();
  return libvirt::read_file_tail(console_log_path(uuid), max_bytes);
}

}  // namespace kvmfleet::agent
