#pragma once

// The host's iSCSI initiator: discovery, login/logout, sessions and the block
// devices their LUNs became.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::storage {

// One target a portal advertised (sendtargets).
struct IscsiTarget {
  std::string iqn;
  std::string portal;  // host:port
  int tpgt = 1;        // target portal group tag
};

// CHAP credentials for a login. The password is never logged and never put in an
// error message.
struct ChapCredentials {
  std::string username;
  std::string password;
};

// One SCSI LUN a session attached.
struct IscsiLun {
  int lun = 0;
  std::string disk;   // "/dev/sda"; empty for a LUN without a disk (e.g. the controller)
  std::string state;  // "running", ...
};

// One session, as `iscsiadm -m session -P 3` lists it.
struct IscsiSession {
  int sid = 0;
  std::string target;  // IQN
  std::string portal;  // host:port (the current portal)
  std::string initiator_name;
  std::string connection_state;  // "LOGGED IN", ...
  std::string session_state;     // "LOGGED_IN", "FAILED", ...
  std::vector<IscsiLun> luns;

  bool logged_in() const { return session_state == "LOGGED_IN"; }
};

class IscsiInitiator {
 public:
  virtual ~IscsiInitiator() = default;

  // SendTargets discovery of `portal`; records a node for each target found.
  virtual Result<std::vector<IscsiTarget>> discover(std::string_view portal) = 0;
  // Logs in to a discovered target. With CHAP, the node's auth settings are
  // updated first. Logging in to a target already logged in is a success (a
  // retried request changes nothing).
  virtual Status login(std::string_view iqn, std::string_view portal,
                       const std::optional<ChapCredentials>& chap) = 0;
  // Logs out; a target with no session is a success too.
  virtual Status logout(std::string_view iqn, std::string_view portal) = 0;
  // Every session of this host; an empty list when there is none.
  virtual Result<std::vector<IscsiSession>> sessions() = 0;
  // Rescans every session for new or resized LUNs.
  virtual Status rescan() = 0;
  // The block device of LUN `lun` of a logged-in target: its /dev/disk/by-path link
  // when udev made one, else the disk the session attached (/dev/sdX). not_found
  // when the target has no session or the LUN no disk (yet: the kernel's scan runs
  // after login, so callers poll).
  virtual Result<std::string> lun_device(std::string_view iqn, std::string_view portal,
                                         int lun) = 0;
};

struct OpenIscsiOptions {
  std::string iscsiadm = "iscsiadm";
  std::chrono::milliseconds timeout{std::chrono::seconds{120}};
};

// open-iscsi through `iscsiadm` (iscsid must run).
class OpenIscsiInitiator final : public IscsiInitiator {
 public:
  explicit OpenIscsiInitiator(ProcessRunner& runner, OpenIscsiOptions options = {})
      : runner_(runner), options_(std::move(options)) {}

  Result<std::vector<IscsiTarget>> discover(std::string_view portal) override;
  Status login(std::string_view iqn, std::string_view portal,
               const std::optional<ChapCredentials>& chap) override;
  Status logout(std::string_view iqn, std::string_view portal) override;
  Result<std::vector<IscsiSession>> sessions() override;
  Status rescan() override;
  Result<std::string> lun_device(std::string_view iqn, std::string_view portal, int lun) override;

 private:
  // Runs iscsiadm; a non-zero exit becomes an error of the taxonomy. `secret`, when
  // not empty, is masked in anything logged or returned.
  Result<ProcessOutput> iscsiadm(std::vector<std::string> args, const std::string& secret = {});

  ProcessRunner& runner_;
  OpenIscsiOptions options_;
};

// iscsiadm's exit codes (open-iscsi's iscsi_err.h) as error categories.
ErrorCode iscsiadm_error_code(int exit_code);

// Parsers of iscsiadm's output (untrusted: malformed input is an internal error).
Result<std::vector<IscsiTarget>> parse_sendtargets(std::string_view text);
Result<std::vector<IscsiSession>> parse_session_listing(std::string_view text);

// The by-path name udev gives LUN `lun` of a target: ip-HOST:PORT-iscsi-IQN-lun-N.
std::string iscsi_by_path(std::string_view iqn, std::string_view portal, int lun);

// A Fibre Channel (or any SCSI) LUN found under /dev/disk/by-id.
struct FcLun {
  std::string wwid;    // e.g. "3600140512345678..." (the scsi- name) or "0x5000..." (wwn-)
  std::string link;    // the by-id path
  std::string device;  // what the link resolves to ("/dev/sdc"); empty if dangling
};

// LUNs by WWID from a by-id directory (normally /dev/disk/by-id): "scsi-3*" and
// "wwn-*" links, partitions left out, sorted by WWID, one entry per WWID (the
// scsi- link preferred). A missing directory is an empty list.
Result<std::vector<FcLun>> list_fc_luns(const std::filesystem::path& by_id_dir);

}  // namespace kvmfleet::storage
