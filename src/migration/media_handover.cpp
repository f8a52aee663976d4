// A migration's CD-ROMs (a VM's ISO and its cloud-init seed are files of its host): the
// target makes them before a live move, and whichever host the VM does not run on
// afterwards gives them up.
#include "migration_steps.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {
namespace {

bool has_media(const Vm& vm) {
  return vm.spec.cdrom.has_value() || vm.spec.cloud_init.has_value();
}

}  // namespace

Status prepare_media_for_move(OpContext& ctx, VmMigrateResult& r, const Vm& vm, const Host& target,
                              MigrationRequest& req) {
  if (!has_media(vm)) return {};
  // Recorded before the target makes anything, so that a failed or resumed run cleans up.
  r.media_prepared = true;
  ctx.progress(2, "preparing the VM's CD-ROMs on " + target.name);
  const std::string domain_type =
      target.inventory.domain_type.empty() ? "kvm" : target.inventory.domain_type;
  const DomainSpec spec = domain_spec_for(vm, domain_type);
  auto media =
      ctx.with_retry([&] { return ctx.agents().prepare_media(target, ctx.op().id, spec); });
  if (!media) {
    Error e = media.take_error();
    e.message = "the VM's CD-ROMs could not be prepared on " + target.name + ": " + e.message;
    return e;
  }
  req.media = std::move(*media);
  return {};
}

void settle_media(OpContext& ctx, const VmMigrateParams& p, VmMigrateResult& r, const Vm& before) {
  const std::string& source_name = p.source_host;
  const std::string& target_name = p.target_host;
  if (!has_media(before) || source_name.empty() || target_name.empty() ||
      source_name == target_name)
    return;
  const auto now = ctx.state().vm(before.id);
  if (!now) return;
  // Moved: the source gives them up. Still on the source: the target gives up what it
  // made (its agent refuses while it has the domain defined: then nothing is removed).
  std::string other;
  if (now->host == target_name)
    other = source_name;
  else if (now->host == source_name && r.media_prepared)
    other = target_name;
  if (other.empty()) return;
  auto host = load_host(ctx, other);
  if (!host) return;
  const std::string sha = before.spec.cdrom ? before.spec.cdrom->image_sha256 : "";
  auto st =
      ctx.with_retry([&] { return ctx.agents().remove_media(*host, ctx.op().id, before.id, sha); });
  if (!st) {
    r.media_warning = "the VM's CD-ROM files stay on " + other + ": " + st.error().message;
    spdlog::warn("migration {}: CD-ROM files stay on {}: {}", ctx.op().id, other,
                 st.error().message);
  }
}

}  // namespace kvmfleet
