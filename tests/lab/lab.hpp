#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::lab {

// Where the lab's hosts live. Every host gets its own mount + UTS namespace with its
// own /run, /etc/libvirt and libvirt state, and a real libvirtd; hosts made with
// add_host also get their own network namespace on the lab's bridge.
struct LabOptions {
  // The work dir is base_dir/kvmfleet-lab-<id> unless work_dir is given.
  std::filesystem::path base_dir = "/tmp";
  std::filesystem::path work_dir;
  // A bridge in the machine's network namespace with a private /24 out of
  // 10.77.0.0/16 (the range the lab owns); without it only add_local_host works.
  bool network = true;
  // Where lab-host-init.sh lives; empty means $KVMFLEET_LAB_SCRIPTS, else the
  // source tree's scripts/ folder.
  std::filesystem::path scripts_dir;
  // A directory that keeps libvirt's QEMU capability cache between labs (probing
  // QEMU takes seconds; libvirt re-probes by itself when the cache is stale). Empty
  // means $KVMFLEET_LAB_CACHE, else no sharing beyond the hosts of one lab.
  std::filesystem::path capabilities_cache;
  std::chrono::milliseconds start_timeout{std::chrono::seconds{60}};
};

struct HostOptions {
  // exec'd inside the host once its libvirtd answers (e.g. kvmfleet-agent), so it
  // shares the host's namespaces and sees its libvirtd; without it the host's init
  // process sleeps.
  std::vector<std::string> command;
  // Let libvirt put guests into cgroups. Off by default: guests of two hosts would
  // share cgroup paths, and a killed host would leave cgroups behind.
  bool cgroups = false;
};

struct Host {
  std::string name;
  bool local = false;         // no network namespace: libvirtd is reachable only inside
  std::string netns;          // kvf-<labid>-<name>; empty for a local host
  std::string veth;           // the machine-side end of the host's link; empty if local
  std::string address;        // the host's IPv4 address; empty if local
  std::string libvirt_uri;    // qemu+tcp://ADDR/system from the machine, qemu:///system inside
  std::string host_uuid;      // libvirtd's host_uuid (distinct per host, needed for migration)
  pid_t init_pid = -1;        // the host's init process (lab-host-init.sh, then its command)
  std::filesystem::path dir;  // lib/ log/ cache/ etc/ pids/ init.log
};

// A set of libvirt hosts on this machine. Everything it makes is written to
// <work_dir>/lab.json before it is made, and teardown (or the destructor) removes
// exactly that: processes, network namespaces, veths, the bridge, the work dir.
// Needs root. Not thread-safe.
class Lab {
 public:
  static Result<std::unique_ptr<Lab>> create(ProcessRunner& runner, LabOptions options);
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  const std::string& id() const { return id_; }
  const std::filesystem::path& work_dir() const { return work_dir_; }
  bool has_network() const { return subnet_index_ >= 0; }
  std::string subnet() const;  // e.g. 10.77.12.0/24; empty without network
  std::string bridge() const { return bridge_; }
  std::string bridge_address() const;  // the machine's address on the lab network

  // A host with its own network namespace on the lab bridge; libvirtd listens on TCP
  // (no auth) at the host's address.
  Result<Host> add_host(const std::string& name, const HostOptions& options = {});
  // A host sharing the machine's network: only mount + UTS namespaces. Its libvirtd
  // does not listen on TCP; reach it with exec_in_host / virsh.
  Result<Host> add_local_host(const std::string& name, const HostOptions& options = {});

  std::vector<Host> hosts() const;
  Result<Host> host(const std::string& name) const;

  // Runs argv inside the host's namespaces (nsenter) and waits for it.
  Result<ProcessOutput> exec_in_host(const Host& host, const std::vector<std::string>& argv,
                                     const RunOptions& options = {});
  // Starts argv inside the host's namespaces and returns its pid; it is killed with
  // the host.
  Result<pid_t> run_in_host(const Host& host, const std::vector<std::string>& argv,
                            const SpawnOptions& options = {});
  // `virsh -c URI args...`, from the machine for a networked host, inside for a local one.
  Result<ProcessOutput> virsh(const Host& host, const std::vector<std::string>& args,
                              const RunOptions& options = {});

  // Every live process of the host (its network namespace and its mount namespace).
  std::vector<pid_t> processes(const Host& host) const;

  // Faults. kill_host SIGKILLs every process of the host (a crash); its network
  // namespace, link and state stay, so restart_host can boot it again.
  Status kill_host(const Host& host);
  Result<Host> restart_host(const Host& host, const HostOptions& options = {});
  // Link down / up on the machine side: the host is cut off but keeps running.
  Status partition_host(const Host& host);
  Status heal_host(const Host& host);
  // Throttles what flows to the host (a slow link: migrations into it take time);
  // 0 removes the limit. The limit goes with the link at teardown.
  Status limit_bandwidth(const Host& host, int kbit_s);
  // Stops libvirtd (SIGTERM, SIGKILL after a grace) and starts it again; guests keep
  // running, as with a libvirtd restart on a real host.
  Status restart_libvirtd(const Host& host);

  // Removes everything the lab made. Safe to call more than once.
  Status teardown();
  // Leaves everything running and recorded (for kvmfleet-lab up); a later
  // cleanup_stale(work_dir, true) removes it.
  void detach();

  // Removes what a previous lab recorded and did not remove (its process crashed, or
  // it was detached). `dir` is one lab's work dir, or a base dir whose
  // kvmfleet-lab-* folders are examined; a lab whose owner process still runs is left
  // alone unless `force`.
  static Status cleanup_stale(ProcessRunner& runner, const std::filesystem::path& dir,
                              bool force = false);

 private:
  struct HostRecord;
  Lab(ProcessRunner& runner, LabOptions options);

  Result<Host> add(const std::string& name, bool local, const HostOptions& options);
  Status start_host(HostRecord& rec, const HostOptions& options);
  HostRecord* find(const std::string& name);
  const HostRecord* find(const std::string& name) const;
  Result<pid_t> anchor_pid(const HostRecord& rec) const;
  std::vector<std::string> nsenter_prefix(const HostRecord& rec, pid_t anchor) const;
  Status kill_all(HostRecord& rec);
  Status save_state();
  Host to_host(const HostRecord& rec) const;

  ProcessRunner& runner_;
  LabOptions options_;
  std::string id_;
  std::filesystem::path work_dir_;
  std::filesystem::path script_;
  int subnet_index_ = -1;
  int subnet_lock_fd_ = -1;
  std::string bridge_;
  bool bridge_created_ = false;
  int next_host_index_ = 0;
  bool detached_ = false;
  bool torn_down_ = false;
  std::vector<std::unique_ptr<HostRecord>> hosts_;
};

}  // namespace kvmfleet::lab
