#pragma once

// The one place where libvirt errors become kvmfleet error categories.

#include <string_view>

#include "kvmfleet/common/error.hpp"

namespace kvmfleet::agent::libvirt {

ErrorCode map_libvirt_error(int code, int domain);

// The calling thread's last libvirt error, prefixed with what was being done. libvirt's
// own message is always kept: it is what an operator needs to see.
Error last_libvirt_error(std::string_view what);

// The code of the calling thread's last libvirt error, or 0 (VIR_ERR_OK).
int last_libvirt_error_code();

// Whether a failed guest agent call (fsfreeze, ...) failed because the guest has no
// agent answering: not configured, not connected (not installed or not started in the
// guest), unresponsive, or without the command.
bool is_guest_agent_unavailable(int code, std::string_view message);

// The conflict such a failure is answered with: details {"reason":
// "guest_agent_unavailable"} plus libvirt's code, and libvirt's message kept.
Error guest_agent_unavailable(std::string_view uuid, Error libvirt_error);

}  // namespace kvmfleet::agent::libvirt
