#include "libvirt_error.hpp"

#include <libvirt/virterror.h>

#include <string>

namespace kvmfleet::agent {

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

}  // namespace kvmfleet::agent
