#pragma once

// Owners of the objects libvirt hands out, so that every early return releases what
// it holds. Shared by the parts of LibvirtHypervisor (src/agent/libvirt/).

#include <libvirt/libvirt.h>

#include <cstdlib>
#include <memory>

namespace kvmfleet::agent::libvirt {

struct ConnClose {
  void operator()(virConnect* c) const { virConnectClose(c); }
};
struct DomainFree {
  void operator()(virDomain* d) const { virDomainFree(d); }
};
struct PoolFree {
  void operator()(virStoragePool* p) const { virStoragePoolFree(p); }
};
struct VolFree {
  void operator()(virStorageVol* v) const { virStorageVolFree(v); }
};
struct CFree {
  void operator()(char* p) const { std::free(p); }
};
using ConnHandle = std::unique_ptr<virConnect, ConnClose>;
using DomainHandle = std::unique_ptr<virDomain, DomainFree>;
using PoolHandle = std::unique_ptr<virStoragePool, PoolFree>;
using VolHandle = std::unique_ptr<virStorageVol, VolFree>;
// Strings libvirt allocates for the caller (XML, paths, host names).
using CString = std::unique_ptr<char, CFree>;

}  // namespace kvmfleet::agent::libvirt
