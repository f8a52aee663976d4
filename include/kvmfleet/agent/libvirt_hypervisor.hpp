#pragma once

// The real Hypervisor over libvirt's C API. One connection, shared by all callers (a
// libvirt connection is thread-safe); a monitor thread replaces it with backoff when
// it dies, and lifecycle events come from libvirt's event loop, not from polling.
// A live migration runs on a thread of its own with a connection of its own, since
// virDomainMigrateToURI3 blocks until the migration ends. Every wait of this logic
// (reconnect backoff, the convergence ladder, a status or abort call awaiting a
// migration's outcome) and a migration's elapsed time run on the injected Clock.
//
// This class checks each call's arguments, takes the domain's lock and checks its
// preconditions; the work is done by its parts in src/agent/libvirt/: connection,
// lifecycle_events, domain_lookup, image_pool, guest_agent, block_resize,
// host_inventory, migrations (one migration: migration_job).

#include <chrono>
#include <memory>
#include <string>

#include "kvmfleet/agent/boot_media.hpp"
#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/common/clock.hpp"

namespace kvmfleet::agent {

struct LibvirtOptions {
  std::string uri = "qemu:///system";  // test:///default in unit tests
  std::string pool_name = "kvmfleet";
  std::string pool_path = "/var/lib/kvmfleet/images";
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30'000};
  // How long libvirt waits for the QEMU guest agent (fsfreeze/fsthaw), in seconds.
  int guest_agent_timeout_s = 10;
  int keepalive_interval_s = 5;
  unsigned keepalive_count = 3;
  std::string migration_address;  // reported in the inventory as is
  // Guests under TCG even where KVM works: the inventory says domain_type "qemu" (so the
  // controller defines them so), and a domain of type kvm is refused.
  bool tcg_only = false;
  // Disks from images, CD-ROMs and cloud-init seeds (not owned; outlives the
  // hypervisor). Null: domains that need them are refused.
  BootMedia* boot_media = nullptr;
  // Each domain's serial console log: <console_log_dir>/<uuid>.log (virtlogd writes it).
  std::string console_log_dir = "/var/lib/kvmfleet/console";
};

class LibvirtHypervisor final : public Hypervisor {
 public:
  // Never fails: when libvirt cannot be reached yet, calls return `unavailable` until
  // the monitor thread has connected.
  explicit LibvirtHypervisor(LibvirtOptions options, Clock& clock = SystemClock::instance());
  // Closes the connection. Guests are never touched; running migrations are waited for.
  ~LibvirtHypervisor() override;
  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;

  bool connected() const;

  Result<HostInventory> inventory() override;
  Result<std::vector<DomainStatus>> list_domains() override;
  Result<DomainStatus> get_domain(const std::string& uuid) override;
  Result<DomainStatus> define(const DomainSpec& spec) override;
  Result<DomainStatus> start(const std::string& uuid) override;
  Result<DomainStatus> shutdown(const std::string& uuid) override;
  Result<DomainStatus> reboot(const std::string& uuid) override;
  Result<DomainStatus> destroy(const std::string& uuid) override;
  Status undefine(const std::string& uuid, bool remove_volumes) override;
  Result<int> fs_freeze(const std::string& uuid) override;
  Result<int> fs_thaw(const std::string& uuid) override;
  Status block_resize(const std::string& uuid, const std::string& device,
                      std::uint64_t size_bytes) override;
  Result<MigrationStatus> migrate(const std::string& uuid,
                                  const MigrationRequest& request) override;
  Result<MigrationStatus> migration_status(const std::string& uuid) override;
  Result<MigrationStatus> abort_migration(const std::string& uuid) override;
  Result<DomainStatus> attach_nic(const std::string& uuid, const DomainNic& nic,
                                  std::int64_t generation) override;
  Result<DomainStatus> detach_nic(const std::string& uuid, const std::string& mac,
                                  std::int64_t generation) override;
  Result<MigrationMedia> prepare_media(const DomainSpec& spec) override;
  Result<std::vector<std::string>> remove_media(const std::string& uuid,
                                                const std::string& cdrom_sha256) override;
  std::uint64_t subscribe(EventCallback callback) override;
  void unsubscribe(std::uint64_t id) override;
  Result<std::shared_ptr<ConsoleStream>> open_console(const std::string& uuid,
                                                      ConsoleSink sink) override;
  Result<std::string> console_log(const std::string& uuid, std::size_t max_bytes) override;

 private:
  enum class PowerChange { start, shutdown, destroy };
  // start/shutdown/destroy share one shape: already in the asked-for state → no-op;
  // a failure that nevertheless left the domain in that state → success.
  Result<DomainStatus> change_power(const std::string& uuid, PowerChange change);
  // fs_freeze and fs_thaw: one shape, through the guest agent.
  Result<int> guest_filesystems(const std::string& uuid, bool freeze);

  // Where virtlogd keeps the domain's console log; empty without a console_log_dir.
  std::string console_log_path(const std::string& uuid) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvmfleet::agent
