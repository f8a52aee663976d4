#include "kvmfleet/storage/iscsi_initiator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <system_error>

#include "kvmfleet/storage/storage_names.hpp"
#include "text_util.hpp"

namespace kvmfleet::storage {
namespace fs = std::filesystem;

namespace {

Status check_chap(const ChapCredentials& chap) {
  auto printable = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
      return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
  };
  if (chap.username.empty() || chap.username.size() > 255 || !printable(chap.username)) {
    return invalid("CHAP username must be 1..255 printable characters without spaces");
  }
  // The message never echoes the secret.
  if (chap.password.empty() || chap.password.size() > 255 || !printable(chap.password)) {
    return invalid("CHAP password must be 1..255 printable characters without spaces");
  }
  return ok_status();
}

std::string mask(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos)) {
    text.replace(pos, secret.size(), "***");
    pos += 3;
  }
  return text;
}

}  // namespace

ErrorCode iscsiadm_error_code(int exit_code) {
  switch (exit_code) {
    case 15:  // ISCSI_ERR_SESS_EXISTS
      return ErrorCode::conflict;
    case 2:   // ISCSI_ERR_SESS_NOT_FOUND
    case 21:  // ISCSI_ERR_NO_OBJS_FOUND
    case 23:  // ISCSI_ERR_HOST_NOT_FOUND
      return ErrorCode::not_found;
    case 7:   // ISCSI_ERR_INVAL
    case 13:  // ISCSI_ERR_ACCESS: the target refused this initiator
    case 16:  // ISCSI_ERR_INVALID_MGMT_REQ
    case 19:  // ISCSI_ERR_FATAL_LOGIN: a non-retryable login failure
    case 24:  // ISCSI_ERR_LOGIN_AUTH_FAILED: CHAP credentials wrong or missing
    case 30:  // ISCSI_ERR_UNKNOWN_DISCOVERY_TYPE
      return ErrorCode::invalid_argument;
    case 8:  // ISCSI_ERR_TRANS_TIMEOUT
      return ErrorCode::timeout;
    case 4:   // ISCSI_ERR_TRANS: connection failed
    case 5:   // ISCSI_ERR_LOGIN: retryable login failure
    case 11:  // ISCSI_ERR_PDU_TIMEOUT: e.g. the portal cannot be reached
    case 12:  // ISCSI_ERR_TRANS_NOT_FOUND: iscsi_tcp not loaded
    case 17:  // ISCSI_ERR_ISNS_QUERY
    case 18:  // ISCSI_ERR_ISCSID_COMM
    case 20:  // ISCSI_ERR_ISCSID_NOTCONN: iscsid does not run
    case 28:  // ISCSI_ERR_BUSY
    case 29:  // ISCSI_ERR_AGAIN
    case 32:  // ISCSI_ERR_SESSION_NOT_CONNECTED
      return ErrorCode::unavailable;
    default:
      return ErrorCode::internal;
  }
}

std::string iscsi_by_path(std::string_view iqn, std::string_view portal, int lun) {
  return "/dev/disk/by-path/ip-" + std::string(portal) + "-iscsi-" + std::string(iqn) + "-lun-" +
         std::to_string(lun);
}

Result<std::vector<IscsiTarget>> parse_sendtargets(std::string_view text) {
  std::vector<IscsiTarget> targets;
  for (auto line : text_util::lines(text)) {
    line = text_util::trim(line);
    if (line.empty()) continue;
    // "10.77.0.1:3260,1 iqn.2026-01.io.kvmfleet.klab:shared"
    auto space = line.find(' ');
    auto comma = line.rfind(',', space);
    if (space == std::string_view::npos || comma == std::string_view::npos) {
      return internal_error("iscsiadm discovery printed a line kvmfleet cannot read",
                            {{"line", std::string(line.substr(0, 200))}});
    }
    IscsiTarget t;
    auto portal = normalize_portal(line.substr(0, comma));
    auto tpgt = text_util::to_int(line.substr(comma + 1, space - comma - 1));
    t.iqn = std::string(text_util::trim(line.substr(space + 1)));
    if (!portal.ok() || !tpgt || !check_iscsi_name(t.iqn).ok()) {
      return internal_error("iscsiadm discovery printed a bad portal or target name",
                            {{"line", std::string(line.substr(0, 200))}});
    }
    t.portal = *portal;
    t.tpgt = *tpgt;
    targets.push_back(std::move(t));
  }
  return targets;
}

Result<std::vector<IscsiSession>> parse_session_listing(std::string_view text) {
  std::vector<IscsiSession> sessions;
  auto bad = [](std::string_view why, std::string_view line) {
    return internal_error("iscsiadm -m session -P 3 printed " + std::string(why),
                          {{"line", std::string(line.substr(0, 200))}});
  };
  for (auto raw : text_util::lines(text)) {
    auto line = text_util::trim(raw);
    if (text_util::starts_with(line, "Target: ")) {
      IscsiSession s;
      auto rest = line.substr(8);
      s.target = std::string(rest.substr(0, rest.find(' ')));
      if (!check_iscsi_name(s.target).ok()) return bad("a bad target name", line);
      sessions.push_back(std::move(s));
      continue;
    }
    if (sessions.empty()) continue;  // the header (transport class, version)
    auto& s = sessions.back();
    if (text_util::starts_with(line, "Current Portal: ")) {
      auto v = line.substr(16);
      auto p = normalize_portal(v.substr(0, v.rfind(',')));
      if (!p.ok()) return bad("a bad portal", line);
      s.portal = *p;
    } else if (text_util::starts_with(line, "Iface Initiatorname: ")) {
      s.initiator_name = std::string(line.substr(21));
    } else if (text_util::starts_with(line, "SID: ")) {
      auto sid = text_util::to_int(line.substr(5));
      if (!sid || *sid < 0) return bad("a bad SID", line);
      s.sid = *sid;
    } else if (text_util::starts_with(line, "iSCSI Connection State: ")) {
      s.connection_state = std::string(line.substr(24));
    } else if (text_util::starts_with(line, "iSCSI Session State: ")) {
      s.session_state = std::string(line.substr(21));
    } else if (text_util::starts_with(line, "scsi") &&
               line.find(" Lun: ") != std::string_view::npos) {
      auto lun = text_util::to_int(line.substr(line.find(" Lun: ") + 6));
      if (!lun || *lun < 0) return bad("a bad LUN number", line);
      s.luns.push_back(IscsiLun{*lun, {}, {}});
    } else if (text_util::starts_with(line, "Attached scsi disk ")) {
      if (s.luns.empty()) return bad("a disk before any LUN", line);
      auto rest = line.substr(19);
      auto end = rest.find_first_of(" \t");
      auto disk = rest.substr(0, end);
      // Kernel disk names: sd, then letters.
      if (disk.size() < 3 || disk.size() > 8 || disk.substr(0, 2) != "sd" ||
          !std::all_of(disk.begin() + 2, disk.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
        return bad("a bad disk name", line);
      }
      s.luns.back().disk = "/dev/" + std::string(disk);
      auto state = rest.find("State: ");
      if (state != std::string_view::npos) {
        s.luns.back().state = std::string(text_util::trim(rest.substr(state + 7)));
      }
    }
  }
  for (const auto& s : sessions) {
    if (s.sid == 0 || s.portal.empty()) {
      return internal_error("iscsiadm -m session -P 3 printed a session without SID or portal",
                            {{"target", s.target}});
    }
  }
  return sessions;
}

Result<ProcessOutput> OpenIscsiInitiator::iscsiadm(std::vector<std::string> args,
                                                   const std::string& secret) {
  std::vector<std::string> argv{options_.iscsiadm};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions ro;
  ro.timeout = options_.timeout;
  if (secret.empty()) spdlog::debug("storage: {}", text_util::join(argv));
  auto r = runner_.run(argv, ro);
  if (!r.ok()) {
    Error e = r.take_error();
    e.message = mask(e.message, secret);
    e.details = nlohmann::json::object();
    return e;
  }
  if (r->exit_code == 0) return r;
  const std::string what = args.size() >= 2 ? "iscsiadm " + args[0] + " " + args[1] : "iscsiadm";
  std::string err = mask(std::string(text_util::trim(r->err)), secret);
  Error e(iscsiadm_error_code(r->exit_code),
          what + " failed (exit " + std::to_string(r->exit_code) +
              "): " + std::string(text_util::last_line(err)),
          {{"exit_code", r->exit_code}, {"stderr", err.substr(0, 2000)}});
  if (r->exit_code == 24) e.message += " (CHAP credentials missing or wrong)";
  return e;
}

Result<std::vector<IscsiTarget>> OpenIscsiInitiator::discover(std::string_view portal) {
  auto p = normalize_portal(portal);
  if (!p.ok()) return p.take_error();
  auto r = iscsiadm({"-m", "discovery", "-t", "sendtargets", "-p", *p});
  if (!r.ok()) return r.take_error();
  return parse_sendtargets(r->out);
}

Status OpenIscsiInitiator::login(std::string_view iqn, std::string_view portal,
                                 const std::optional<ChapCredentials>& chap) {
  if (auto s = check_iscsi_name(iqn); !s) return s;
  auto p = normalize_portal(portal);
  if (!p.ok()) return p.take_error();
  if (chap) {
    if (auto s = check_chap(*chap); !s) return s;
  }
  const std::vector<std::string> node{"-m", "node", "-T", std::string(iqn), "-p", *p};
  if (chap) {
    const std::pair<const char*, const std::string*> settings[] = {
        {"node.session.auth.authmethod", nullptr},
        {"node.session.auth.username", &chap->username},
        {"node.session.auth.password", &chap->password}};
    for (const auto& [key, value] : settings) {
      auto args = node;
      args.insert(args.end(), {"-o", "update", "-n", key, "-v", value ? *value : "CHAP"});
      auto r = iscsiadm(std::move(args), chap->password);
      if (!r.ok()) return r.take_error();
    }
  }
  auto args = node;
  args.push_back("--login");
  auto r = iscsiadm(std::move(args), chap ? chap->password : std::string{});
  if (!r.ok()) {
    if (r.error().code == ErrorCode::conflict) {
      spdlog::info("storage: {} at {}: already logged in", iqn, *p);
      return ok_status();
    }
    return r.take_error();
  }
  spdlog::info("storage: logged in to {} at {}{}", iqn, *p, chap ? " (CHAP)" : "");
  return ok_status();
}

Status OpenIscsiInitiator::logout(std::string_view iqn, std::string_view portal) {
  if (auto s = check_iscsi_name(iqn); !s) return s;
  auto p = normalize_portal(portal);
  if (!p.ok()) return p.take_error();
  auto r = iscsiadm({"-m", "node", "-T", std::string(iqn), "-p", *p, "--logout"});
  if (!r.ok()) {
    if (r.error().code == ErrorCode::not_found) return ok_status();  // no session: done
    return r.take_error();
  }
  spdlog::info("storage: logged out of {} at {}", iqn, *p);
  return ok_status();
}

Result<std::vector<IscsiSession>> OpenIscsiInitiator::sessions() {
  auto r = iscsiadm({"-m", "session", "-P", "3"});
  if (!r.ok()) {
    if (r.error().code == ErrorCode::not_found) return std::vector<IscsiSession>{};
    return r.take_error();
  }
  return parse_session_listing(r->out);
}

Status OpenIscsiInitiator::rescan() {
  auto r = iscsiadm({"-m", "session", "-R"});
  if (!r.ok() && r.error().code != ErrorCode::not_found) return r.take_error();
  return ok_status();
}

Result<std::string> OpenIscsiInitiator::lun_device(std::string_view iqn, std::string_view portal,
                                                   int lun) {
  if (auto s = check_iscsi_name(iqn); !s) return s.take_error();
  auto p = normalize_portal(portal);
  if (!p.ok()) return p.take_error();
  if (lun < 0 || lun > 16383) return invalid("LUN must be 0..16383");
  auto all = sessions();
  if (!all.ok()) return all.take_error();
  for (const auto& s : *all) {
    if (s.target != iqn || s.portal != *p) continue;
    for (const auto& l : s.luns) {
      if (l.lun != lun || l.disk.empty()) continue;
      // udev's stable name, when it made one, survives a re-login that renames sdX.
      const std::string by_path = iscsi_by_path(iqn, *p, lun);
      RunOptions ro;
      ro.timeout = options_.timeout;
      auto link = runner_.run({"readlink", "-e", by_path}, ro);
      if (link.ok() && link->exit_code == 0 && text_util::trim(link->out) == l.disk) return by_path;
      return l.disk;
    }
    return not_found("LUN " + std::to_string(lun) + " of " + std::string(iqn) +
                     " has no disk (yet)");
  }
  return not_found("no session with " + std::string(iqn) + " at " + *p);
}

Result<std::vector<FcLun>> list_fc_luns(const fs::path& by_id_dir) {
  std::error_code ec;
  if (!fs::exists(by_id_dir, ec)) return std::vector<FcLun>{};
  std::vector<FcLun> found;
  fs::directory_iterator it(by_id_dir, ec);
  if (ec) return unavailable("cannot list " + by_id_dir.string() + ": " + ec.message());
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.find("-part") != std::string::npos) continue;
    std::string wwid;
    if (text_util::starts_with(name, "scsi-3")) {
      wwid = name.substr(5);
    } else if (text_util::starts_with(name, "wwn-0x")) {
      wwid = name.substr(4);
    } else {
      continue;
    }
    bool hex = std::all_of(wwid.begin() + (wwid[0] == '0' ? 2 : 0), wwid.end(), [](char c) {
      return std::isxdigit(static_cast<unsigned char>(c)) != 0;
    });
    if (wwid.size() < 3 || !hex) continue;
    FcLun lun;
    lun.wwid = wwid;
    lun.link = entry.path().string();
    auto target = fs::canonical(entry.path(), ec);
    if (!ec) lun.device = target.string();
    found.push_back(std::move(lun));
  }
  // One entry per disk: a scsi-3 and a wwn- link to the same device name one LUN;
  // the scsi- name (the WWID multipath uses) is kept.
  std::sort(found.begin(), found.end(), [](const FcLun& a, const FcLun& b) {
    bool as = a.link.find("/scsi-") != std::string::npos;
    bool bs = b.link.find("/scsi-") != std::string::npos;
    return as != bs ? as : a.wwid < b.wwid;
  });
  std::vector<FcLun> luns;
  for (auto& l : found) {
    bool dup = !l.device.empty() && std::any_of(luns.begin(), luns.end(), [&](const FcLun& o) {
      return o.device == l.device;
    });
    if (!dup) luns.push_back(std::move(l));
  }
  std::sort(luns.begin(), luns.end(),
            [](const FcLun& a, const FcLun& b) { return a.wwid < b.wwid; });
  return luns;
}

}  // namespace kvmfleet::storage
