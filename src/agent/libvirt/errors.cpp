#include "errors.hpp"

#include <libvirt/virterror.h>

#include <string>

namespace kvmfleet::agent::libvirt {

ErrorCode map_libvirt_error(int code, int domain) {
  // Client-side RPC failures are a broken or unreachable daemon, whatever the code.
  if (domain == VIR_FROM_RPC) return ErrorCode::unavailable;
  switch (code) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL:
      return ErrorCode::not_found;
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_DOM_EXIST:
      return ErrorCode::conflict;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_CANCELLED:
    case VIR_ERR_AUTH_UNAVAILABLE:
    case VIR_ERR_OPERATION_TIMEOUT:
    case VIR_ERR_AGENT_UNRESPONSIVE:
      return ErrorCode::unavailable;
    default:
      return ErrorCode::internal;
  }
}

Error last_libvirt_error(std::string_view what) {
  const virError* err = virGetLastError();
  if (err == nullptr)
    return internal_error(std::string(what) + ": libvirt reported no error details");
  std::string message(what);
  message += ": ";
  message += err->message ? err->message : "unknown libvirt error";
  return {map_libvirt_error(err->code, err->domain),
          std::move(message),
          {{"libvirt_code", err->code}, {"libvirt_domain", err->domain}}};
}

int last_libvirt_error_code() {
  const virError* err = virGetLastError();
  return err ? err->code : VIR_ERR_OK;
}

bool is_guest_agent_unavailable(int code, std::string_view message) {
  switch (code) {
    case VIR_ERR_AGENT_UNRESPONSIVE:     // not connected, not responding, timed out
    case VIR_ERR_AGENT_UNSYNCED:         // answers with the wrong id
    case VIR_ERR_ARGUMENT_UNSUPPORTED:   // "QEMU guest agent is not configured"
    case VIR_ERR_OPERATION_UNSUPPORTED:  // the agent lacks (or disabled) the command
    case VIR_ERR_NO_SUPPORT:             // the driver has no guest agent at all
      return true;
    default:
      break;
  }
  for (std::string_view needle : {"guest agent is not connected", "guest agent is not configured",
                                  "agent is not responding", "agent not available"}) {
    if (message.find(needle) != std::string_view::npos) return true;
  }
  return false;
}

Error guest_agent_unavailable(std::string_view uuid, Error libvirt_error) {
  auto details = libvirt_error.details;
  details["reason"] = "guest_agent_unavailable";
  details["uuid"] = std::string(uuid);
  return {ErrorCode::conflict,
          "domain " + std::string(uuid) +
              " has no QEMU guest agent answering (is qemu-guest-agent installed and running "
              "in the guest?): " +
              libvirt_error.message,
          std::move(details)};
}

}  // namespace kvmfleet::agent::libvirt
