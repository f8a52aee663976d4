#pragma once

// A domain's serial console through libvirt: virDomainOpenConsole into a non-blocking
// virStream served by libvirt's event loop (EventLoop), and the console log's tail.

#include <libvirt/libvirt.h>

#include <cstddef>
#include <memory>
#include <string>

#include "kvmfleet/agent/hypervisor.hpp"
#include "kvmfleet/common/result.hpp"

namespace kvmfleet::agent::libvirt {

// Opens the console of a running domain, forcibly (an older session is ended). Output
// goes to `sink` from the event loop's thread. An error of libvirt's is `internal`
// with its message.
Result<std::shared_ptr<ConsoleStream>> open_console(virConnectPtr conn, virDomainPtr dom,
                                                    ConsoleSink sink);

// At most the last `max_bytes` of the file at `path`; "" when it does not exist.
Result<std::string> read_file_tail(const std::string& path, std::size_t max_bytes);

}  // namespace kvmfleet::agent::libvirt
