#pragma once

// Connects the metadata writer to the controller's state: every persisted VM change
// or deletion is submitted, and every VM known at start is submitted once (the writer
// skips those whose record is already current).

#include <optional>
#include <string>

#include "kvmfleet/core/cluster_state.hpp"
#include "kvmfleet/metadata/metadata_writer.hpp"

namespace kvmfleet::metadata {

// The VM as the writer records it, with its owner host's domain type.
std::optional<VmMetadata> metadata_for(const ClusterState::Data& d, const std::string& vm_id);

// For MetadataWriter's constructor: re-reads a VM from `state`.
MetadataWriter::Refetch refetch_from(const ClusterState& state);

void attach_metadata_writer(ClusterState& state, MetadataWriter& writer);

}  // namespace kvmfleet::metadata
