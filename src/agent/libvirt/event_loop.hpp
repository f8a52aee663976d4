#pragma once

// libvirt's default event loop, shared by every connection in the process. It must be
// registered before the first connection is opened and must be run by exactly one
// thread; this object owns that thread while anyone holds a reference to it.

#include <atomic>
#include <memory>
#include <thread>

namespace kvmfleet::agent::libvirt {

class EventLoop {
 public:
  static std::shared_ptr<EventLoop> acquire();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

 private:
  EventLoop();
  void run();

  std::atomic<bool> quit_{false};
  std::thread thread_;
};

}  // namespace kvmfleet::agent::libvirt
