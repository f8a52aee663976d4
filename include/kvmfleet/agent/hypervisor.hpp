#pragma once

// The agent's one narrow interface to the hypervisor. LibvirtHypervisor is the real
// one; tests/doubles/agent holds a double. Every mutating call is idempotent so a
// retried controller request is harmless, and kvmfleet acts only on domains it
// defined (those carrying its metadata): anything else is a conflict.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvmfleet/agent/lifecycle_event.hpp"
#include "kvmfleet/common/result.hpp"
#include "kvmfleet/model/domain_spec.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/migration.hpp"

namespace kvmfleet::agent {

using EventCallback = std::function<void(const LifecycleEvent&)>;

// Where a domain's serial console output goes. Called from the hypervisor's event
// thread, one call at a time; on_end last and exactly once (the guest stopped, the
// stream broke, or another session took the console over).
struct ConsoleSink {
  std::function<void(std::string bytes)> on_data;
  std::function<void(std::string reason)> on_end;
};

// An open console session: input to the guest's serial port. Thread-safe. close()
// ends the session (on_end is then not called); the object may outlive it.
class ConsoleStream {
 public:
  virtual ~ConsoleStream() = default;
  virtual void write(std::string bytes) = 0;
  virtual void close() = 0;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  virtual Result<HostInventory> inventory() = 0;
  virtual Result<std::vector<DomainStatus>> list_domains() = 0;
  // not_found when no domain has this uuid.
  virtual Result<DomainStatus> get_domain(const std::string& uuid) = 0;

  // Same uuid and generation as what is defined: no-op. Another generation: redefine.
  // Missing image-pool volumes are created first; block devices are only referenced
  // (they need not exist until the domain starts). A running domain keeps running and picks
  // a new definition up at its next start.
  virtual Result<DomainStatus> define(const DomainSpec& spec) = 0;
  virtual Result<DomainStatus> start(const std::string& uuid) = 0;     // running: no-op
  virtual Result<DomainStatus> shutdown(const std::string& uuid) = 0;  // ACPI; stopped: no-op
  virtual Result<DomainStatus> reboot(const std::string& uuid) = 0;    // stopped: conflict
  virtual Result<DomainStatus> destroy(const std::string& uuid) = 0;   // stopped: no-op
  // Running: conflict. Absent: ok. remove_volumes deletes the domain's volumes in the
  // image pool, never a block-device disk.
  virtual Status undefine(const std::string& uuid, bool remove_volumes) = 0;

  // Freezes every mounted filesystem of a running domain through its QEMU guest agent
  // and returns how many were frozen. Not running: conflict. No guest agent answering:
  // conflict with details {"reason": "guest_agent_unavailable"}. Migrating: conflict.
  virtual Result<int> fs_freeze(const std::string& uuid) = 0;
  // Thaws them and returns how many were thawed (0 when none was frozen). Same errors
  // as fs_freeze, except that a migration does not stop it.
  virtual Result<int> fs_thaw(const std::string& uuid) = 0;

  // Tells a running domain that its block-device disk `device` (a shared volume whose
  // LV was just extended) is now `size_bytes` long (virDomainBlockResize), so the guest
  // sees the new size at once. Repeating it is harmless. Not running or migrating:
  // conflict. No disk of the domain backed by `device`: not_found.
  virtual Status block_resize(const std::string& uuid, const std::string& device,
                              std::uint64_t size_bytes) = 0;

  // Starts a peer-to-peer live migration of a running managed domain and returns at
  // once with its status. A domain with disks in the image pool is a conflict (no other
  // host reaches them); block-device disks are shared storage and migrate. The
  // request's op_id names the migration: a request with the op_id of the domain's last
  // migration returns that migration's status (conflict if the rest of the request
  // differs) and starts nothing. While a migration of the
  // domain runs, another op_id is a conflict, and so are define/start/shutdown/reboot/
  // destroy/undefine of that domain.
  virtual Result<MigrationStatus> migrate(const std::string& uuid,
                                          const MigrationRequest& request) = 0;
  // The last migration of the domain started here; state none when there was none.
  // not_found when the domain is unknown and no migration of it is remembered.
  virtual Result<MigrationStatus> migration_status(const std::string& uuid) = 0;
  // Asks the running migration to stop (the guest keeps running here). Already failed
  // or cancelled: its status, no-op. Completed, or none: conflict.
  virtual Result<MigrationStatus> abort_migration(const std::string& uuid) = 0;

  // NIC hot plug: `nic` joins the managed domain's definition, and the running guest
  // when it runs (LIVE|CONFIG, or CONFIG only when stopped); its metadata takes
  // `generation`. A NIC with that MAC already there: no-op (the generation still set).
  // Migrating: conflict.
  virtual Result<DomainStatus> attach_nic(const std::string& uuid, const DomainNic& nic,
                                          std::int64_t generation) = 0;
  // The NIC with `mac` leaves the definition and the running guest; none: no-op. A
  // guest that has not let it go within 10 s: conflict, details.reason
  // "detach_pending" (the definition is changed already; a repeat waits again).
  virtual Result<DomainStatus> detach_nic(const std::string& uuid, const std::string& mac,
                                          std::int64_t generation) = 0;

  // Boot media on a migration's destination (docs/images.md): the files of the spec's
  // CD-ROMs made here as define would make them, before the migration starts; their
  // paths (cdrom / seed, empty when the spec has none). Invalid spec: invalid_argument.
  virtual Result<MigrationMedia> prepare_media(const DomainSpec& spec) = 0;
  // Removes the domain's seed and, given its SHA-256, the cached CD-ROM ISO unless a
  // domain defined here uses it; returns the paths removed (none: nothing was there).
  // Conflict while a domain with this uuid is defined here or migrating.
  virtual Result<std::vector<std::string>> remove_media(const std::string& uuid,
                                                        const std::string& cdrom_sha256) = 0;

  // Lifecycle events, pushed as they happen. Callbacks run on the hypervisor's event
  // thread, must be quick and must not call unsubscribe(). After unsubscribe()
  // returns, that callback is not running and will not run again.
  virtual std::uint64_t subscribe(EventCallback callback) = 0;
  virtual void unsubscribe(std::uint64_t id) = 0;

  // The running domain's serial console (forced: a session already open is ended).
  // Unknown: not_found; not running: conflict.
  virtual Result<std::shared_ptr<ConsoleStream>> open_console(const std::string& uuid,
                                                              ConsoleSink sink) = 0;
  // At most the last `max_bytes` of the domain's console log; "" when it has none yet.
  // Unknown domain: not_found.
  virtual Result<std::string> console_log(const std::string& uuid, std::size_t max_bytes) = 0;
};

}  // namespace kvmfleet::agent
