#include "kvmfleet/storage/lock_daemons.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "kvmfleet/storage/volume_manager.hpp"
#include "text_util.hpp"

namespace kvmfleet::storage {

bool LockDaemonStatus::vg_started(std::string_view vg) const {
  return std::find(started_vgs.begin(), started_vgs.end(), vg) != started_vgs.end();
}

nlohmann::json LockDaemonStatus::to_json() const {
  nlohmann::json spaces = nlohmann::json::array();
  for (const auto& l : lockspaces) {
    spaces.push_back({{"name", l.name}, {"host_id", l.host_id}, {"state", l.state}});
  }
  return {{"wdmd", wdmd},         {"sanlock", sanlock},         {"lvmlockd", lvmlockd},
          {"lockspaces", spaces}, {"started_vgs", started_vgs}, {"problems", problems}};
}

Result<std::vector<SanlockLockspace>> parse_sanlock_status(std::string_view text) {
  std::vector<SanlockLockspace> out;
  for (auto raw : text_util::lines(text)) {
    auto line = text_util::trim(raw);
    if (!text_util::starts_with(line, "s ")) continue;
    // "s lvm_kvmvg:1:/dev/mapper/kvmvg-lvmlock:0" with " ADD" or " REM" while changing.
    auto rest = line.substr(2);
    auto space = rest.find(' ');
    auto spec = rest.substr(0, space);
    auto flag =
        space == std::string_view::npos ? std::string_view{} : text_util::trim(rest.substr(space));
    auto c1 = spec.find(':');
    auto c2 = c1 == std::string_view::npos ? c1 : spec.find(':', c1 + 1);
    auto c3 = spec.rfind(':');
    if (c1 == std::string_view::npos || c2 == std::string_view::npos || c3 <= c2) {
      return internal_error("sanlock client status printed a malformed lockspace",
                            {{"line", std::string(line.substr(0, 200))}});
    }
    SanlockLockspace ls;
    ls.name = std::string(spec.substr(0, c1));
    auto id = text_util::to_int(spec.substr(c1 + 1, c2 - c1 - 1));
    if (ls.name.empty() || !id || *id < 0 || *id > 2000) {
      return internal_error("sanlock client status printed a malformed lockspace",
                            {{"line", std::string(line.substr(0, 200))}});
    }
    ls.host_id = *id;
    ls.path = std::string(spec.substr(c2 + 1, c3 - c2 - 1));
    ls.state = flag == "ADD" ? "adding" : flag == "REM" ? "removing" : "started";
    out.push_back(std::move(ls));
  }
  return out;
}

Result<LockDaemonStatus> LockDaemons::check() {
  LockDaemonStatus st;
  RunOptions ro;
  ro.timeout = options_.timeout;
  auto probe = [&](const std::vector<std::string>& argv, bool& running) -> Result<ProcessOutput> {
    auto r = runner_.run(argv, ro);
    if (!r.ok()) {
      // A timeout means a daemon that hangs: not running as far as leases go.
      if (r.error().code != ErrorCode::timeout && r.error().code != ErrorCode::unavailable) {
        return r.take_error();
      }
      st.problems.push_back(argv[0] + ": " + r.error().message);
      running = false;
      return ProcessOutput{};
    }
    running = r->exit_code == 0;
    if (!running) {
      std::string why;
      for (std::string_view text : {std::string_view(r->out), std::string_view(r->err)}) {
        text = text_util::trim(text);
        if (text.empty()) continue;
        if (!why.empty()) why += "; ";
        why += std::string(text.substr(0, std::min<std::size_t>(text.find('\n'), 200)));
      }
      st.problems.push_back(argv[0] + " " + argv[1] + " exited " + std::to_string(r->exit_code) +
                            (why.empty() ? "" : ": " + why));
    }
    return r;
  };

  auto wdmd = probe({options_.wdmd, "--dump"}, st.wdmd);
  if (!wdmd.ok()) return wdmd.take_error();
  auto sanlock = probe({options_.sanlock, "client", "status"}, st.sanlock);
  if (!sanlock.ok()) return sanlock.take_error();
  auto lvmlockd = probe({options_.lvmlockctl, "--info"}, st.lvmlockd);
  if (!lvmlockd.ok()) return lvmlockd.take_error();

  if (st.sanlock) {
    auto spaces = parse_sanlock_status(sanlock->out);
    if (!spaces.ok()) return spaces.take_error();
    st.lockspaces = std::move(*spaces);
  }
  if (st.lvmlockd) {
    auto vgs = parse_lvmlockctl_info(lvmlockd->out);
    if (!vgs.ok()) return vgs.take_error();
    for (const auto& vg : *vgs) {
      if (!vg.lockspace) continue;
      // lvmlockd lists a lockspace while it is still being added; sanlock says
      // when the host_id lease is held.
      bool joined = vg.lock_type != "sanlock" ||
                    std::any_of(st.lockspaces.begin(), st.lockspaces.end(), [&](const auto& l) {
                      return l.name == "lvm_" + vg.name && l.state == "started";
                    });
      if (joined) st.started_vgs.push_back(vg.name);
    }
  }
  if (!st.all_running()) {
    spdlog::debug("storage: lock daemons wdmd={} sanlock={} lvmlockd={}", st.wdmd, st.sanlock,
                  st.lvmlockd);
  }
  return st;
}

}  // namespace kvmfleet::storage
