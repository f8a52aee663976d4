#pragma once

// JSON forms of the model, used on the wire between controller and agents, in the
// store, and (through api/) in the public API.
#include "kvmfleet/model/domain_spec.hpp"
#include "kvmfleet/model/host.hpp"
#include "kvmfleet/model/network.hpp"
#include "kvmfleet/model/operation.hpp"
#include "kvmfleet/model/storage.hpp"
#include "kvmfleet/model/vm.hpp"

#include <nlohmann/json.hpp>

namespace kvmfleet {

void to_json(nlohmann::json& j, const NicSpec& n);
void from_json(const nlohmann::json& j, NicSpec& n);
void to_json(nlohmann::json& j, const DomainNic& n);
void from_json(const nlohmann::json& j, DomainNic& n);
void to_json(nlohmann::json& j, const CdromSpec& c);
void from_json(const nlohmann::json& j, CdromSpec& c);
void to_json(nlohmann::json& j, const CloudInit& c);
void from_json(const nlohmann::json& j, CloudInit& c);
void to_json(nlohmann::json& j, const DiskSpec& d);
void from_json(const nlohmann::json& j, DiskSpec& d);
void to_json(nlohmann::json& j, const VmSpec& s);
void from_json(const nlohmann::json& j, VmSpec& s);
void to_json(nlohmann::json& j, const Vm& vm);
void from_json(const nlohmann::json& j, Vm& vm);

void to_json(nlohmann::json& j, const ReportStamp& s);
// Strict: {"agent": 1-64 characters of [A-Za-z0-9-], "seq": a non-negative integer}.
void from_json(const nlohmann::json& j, ReportStamp& s);
void to_json(nlohmann::json& j, const DomainStatus& d);
void from_json(const nlohmann::json& j, DomainStatus& d);
void to_json(nlohmann::json& j, const HostInventory& inv);
void from_json(const nlohmann::json& j, HostInventory& inv);
void to_json(nlohmann::json& j, const Host& h);
void from_json(const nlohmann::json& j, Host& h);

void to_json(nlohmann::json& j, const Operation& op);
void from_json(const nlohmann::json& j, Operation& op);

void to_json(nlohmann::json& j, const DomainDisk& d);
void from_json(const nlohmann::json& j, DomainDisk& d);
void to_json(nlohmann::json& j, const DomainSpec& s);
void from_json(const nlohmann::json& j, DomainSpec& s);

void to_json(nlohmann::json& j, const IscsiPoolTarget& t);
void from_json(const nlohmann::json& j, IscsiPoolTarget& t);
void to_json(nlohmann::json& j, const PoolHostStatus& s);
void from_json(const nlohmann::json& j, PoolHostStatus& s);
void to_json(nlohmann::json& j, const StoragePool& p);
void from_json(const nlohmann::json& j, StoragePool& p);
void to_json(nlohmann::json& j, const Snapshot& s);
void from_json(const nlohmann::json& j, Snapshot& s);
void to_json(nlohmann::json& j, const Volume& v);
void from_json(const nlohmann::json& j, Volume& v);

void to_json(nlohmann::json& j, const NetworkHostStatus& s);
void from_json(const nlohmann::json& j, NetworkHostStatus& s);
void to_json(nlohmann::json& j, const Network& n);
void from_json(const nlohmann::json& j, Network& n);
void to_json(nlohmann::json& j, const HostLink& l);
void from_json(const nlohmann::json& j, HostLink& l);

}  // namespace kvmfleet
