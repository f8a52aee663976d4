#include "storage_steps.hpp"

#include <spdlog/spdlog.h>

namespace kvmfleet {

Result<StoragePool> load_pool(OpContext& ctx, const std::string& name) {
  auto p = ctx.state().pool(name);
  if (!p) return not_found("storage pool no longer exists", {{"pool", name}});
  return *p;
}

Result<Volume> load_volume(OpContext& ctx, const std::string& id) {
  auto v = ctx.state().volume(id);
  if (!v) return not_found("volume no longer exists", {{"volume", id}});
  return *v;
}

Status save_pool(OpContext& ctx, const std::string& name,
                 const std::function<void(StoragePool&)>& mutate) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const StoragePool* cur = d.find_pool(name);
    if (!cur) return not_found("storage pool no longer exists", {{"pool", name}});
    StoragePool next = *cur;
    mutate(next);
    next.updated_at = ctx.clock().now();
    b.put_pools.push_back(std::move(next));
    return {};
  });
}

Status save_volume(OpContext& ctx, const std::string& id,
                   const std::function<void(Volume&)>& mutate) {
  return ctx.state().update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    const Volume* cur = d.find_volume(id);
    if (!cur) return not_found("volume no longer exists", {{"volume", id}});
    Volume next = *cur;
    mutate(next);
    next.updated_at = ctx.clock().now();
    b.put_volumes.push_back(std::move(next));
    return {};
  });
}

// Hosts that are up and may use the pool now, in name order.
std::vector<Host> usable_hosts(OpContext& ctx, const StoragePool& pool) {
  return ctx.state().read([&](const ClusterState::Data& d) {
    std::vector<Host> out;
    for (const auto& [name, h] : d.hosts)
      if (h.state == HostState::up && pool.usable_on(name)) out.push_back(h);
    return out;
  });
}

Result<Host> any_usable_host(OpContext& ctx, const StoragePool& pool) {
  auto hosts = usable_hosts(ctx, pool);
  if (hosts.empty())
    return unavailable("no host that is up reaches storage pool " + pool.name,
                       {{"pool", pool.name}});
  return hosts.front();
}

// The VM a volume is attached to, if any.
std::optional<Vm> attached_vm(OpContext& ctx, const Volume& vol) {
  if (vol.attached_to.empty()) return std::nullopt;
  return ctx.state().vm(vol.attached_to);
}

bool runs(const Vm& vm) {
  return vm.state == VmState::running || vm.state == VmState::paused ||
         vm.state == VmState::shutting_down || vm.state == VmState::unknown;
}

// Where LVM commands on a volume run: the host of its VM while the VM may hold the
// LV open (the LV's exclusive lock lives there), else any host that reaches the pool.
Result<Host> volume_host(OpContext& ctx, const Volume& vol, const StoragePool& pool) {
  if (auto vm = attached_vm(ctx, vol); vm && runs(*vm) && !vm->host.empty()) {
    auto h = ctx.state().host(vm->host);
    if (!h) return conflict("the VM's host " + vm->host + " is not registered");
    if (h->state != HostState::up)
      return unavailable("host " + h->name + ", where the volume's VM runs, is " +
                             std::string(to_string(h->state)),
                         {{"host", h->name}});
    return *h;
  }
  return any_usable_host(ctx, pool);
}

// Pool size and free space as one host's LVM sees them now.
void refresh_pool_space(OpContext& ctx, const StoragePool& pool, const Host& host) {
  auto vg = ctx.agents().vg_get(host, pool.vg());
  if (!vg) {
    spdlog::warn("pool {}: cannot read VG size from {}: {}", pool.name, host.name,
                 vg.error().message);
    return;
  }
  (void)save_pool(ctx, pool.name, [&](StoragePool& p) {
    p.size_bytes = vg->size_bytes;
    p.free_bytes = vg->free_bytes;
  });
}

// The size LVM actually gave an LV (it rounds up to whole extents).
std::optional<std::uint64_t> lv_size(OpContext& ctx, const Host& host, const std::string& vg,
                                     const std::string& lv) {
  auto lvs = ctx.agents().lv_list(host, vg);
  if (!lvs) return std::nullopt;
  for (const auto& l : *lvs)
    if (l.name == lv) return l.size_bytes;
  return std::nullopt;
}

}  // namespace kvmfleet
