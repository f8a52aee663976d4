#include "event_loop.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>

namespace kvmfleet::agent::libvirt {
namespace {

std::mutex g_mu;
std::weak_ptr<EventLoop> g_loop;

// libvirt prints every error to stderr by default; kvmfleet reports them as values.
void silent_error_handler(void*, virErrorPtr) {}

void init_libvirt_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (virInitialize() < 0) spdlog::error("virInitialize failed");
    virSetErrorFunc(nullptr, silent_error_handler);
    if (virEventRegisterDefaultImpl() < 0) spdlog::error("virEventRegisterDefaultImpl failed");
  });
}

void wake_timer(int, void*) {}

}  // namespace

std::shared_ptr<EventLoop> EventLoop::acquire() {
  std::lock_guard lk(g_mu);
  if (auto loop = g_loop.lock()) return loop;
  init_libvirt_once();
  std::shared_ptr<EventLoop> loop(new EventLoop());
  g_loop = loop;
  return loop;
}

EventLoop::EventLoop() {
  thread_ = std::thread([this] { run(); });
}

EventLoop::~EventLoop() {
  // Held so that a new acquire() cannot start a second runner before this one ended.
  std::lock_guard lk(g_mu);
  quit_ = true;
  // Adding a timer interrupts the poll the loop is blocked in.
  const int timer = virEventAddTimeout(0, wake_timer, nullptr, nullptr);
  if (thread_.joinable()) thread_.join();
  if (timer >= 0) virEventRemoveTimeout(timer);
}

void EventLoop::run() {
  while (!quit_) {
    if (virEventRunDefaultImpl() < 0) {
      const virError* err = virGetLastError();
      spdlog::error("libvirt event loop: {}", err && err->message ? err->message : "failed");
      // A real sleep, not a Clock: the loop serves every connection in the process,
      // whatever clock each hypervisor was given, and this only keeps the I/O thread
      // from spinning on a failing poll; nothing is decided by it.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace kvmfleet::agent::libvirt
