#include "kvmfleet/metadata/controller_hook.hpp"

namespace kvmfleet::metadata {
namespace {

VmMetadata make(const ClusterState::Data& d, const Vm& vm) {
  VmMetadata m;
  m.vm = vm;
  if (const Host* h = d.find_host(vm.host); h && !h->inventory.domain_type.empty())
    m.domain_type = h->inventory.domain_type;
  return m;
}

}  // namespace

std::optional<VmMetadata> metadata_for(const ClusterState::Data& d, const std::string& vm_id) {
  auto it = d.vms.find(vm_id);
  if (it == d.vms.end()) return std::nullopt;
  return make(d, it->second);
}

MetadataWriter::Refetch refetch_from(const ClusterState& state) {
  return [&state](const std::string& id) {
    return state.read([&](const ClusterState::Data& d) { return metadata_for(d, id); });
  };
}

void attach_metadata_writer(ClusterState& state, MetadataWriter& writer) {
  state.on_vm_change(
      [&state, &writer](const std::vector<Vm>& put, const std::vector<std::string>& deleted) {
        // Runs on the thread that committed the change (often an API thread): only
        // in-memory work here, the writer does the I/O on its own threads.
        std::vector<VmMetadata> metas = state.read([&](const ClusterState::Data& d) {
          std::vector<VmMetadata> out;
          out.reserve(put.size());
          for (const auto& vm : put) out.push_back(make(d, vm));
          return out;
        });
        for (auto& m : metas) writer.submit(std::move(m));
        for (const auto& id : deleted) writer.submit_delete(id);
      });
  auto all = state.read([&](const ClusterState::Data& d) {
    std::vector<VmMetadata> out;
    for (const auto& [_, vm] : d.vms) out.push_back(make(d, vm));
    return out;
  });
  for (auto& m : all) writer.submit(std::move(m));
}

}  // namespace kvmfleet::metadata
