#pragma once

// The double of http::Client (include/kvmfleet/http/client.hpp): records every request
// and answers from a script. Requests to a held path wait until released, as with a
// server that answers slowly. It takes concurrent calls.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "kvmfleet/http/client.hpp"

namespace kvmfleet::doubles {

class FakeHttpClient final : public http::Client {
 public:
  struct Call {
    std::string method, url, bearer, body;
  };

  Result<http::ClientResponse> request(std::string_view method, const std::string& url,
                                       const std::string& bearer, const std::string& body,
                                       std::chrono::milliseconds) override {
    std::unique_lock lk(mu_);
    calls_.push_back({std::string(method), url, bearer, body});
    cv_.notify_all();
    cv_.wait(lk, [&] { return !held_ || !url.ends_with(held_suffix_); });
    if (!script_.empty()) {
      auto r = std::move(script_.front());
      script_.pop_front();
      return r;
    }
    return http::ClientResponse{200, "{}"};
  }

  // Answers for the next requests, in order; afterwards 200 {}.
  void push(Result<http::ClientResponse> r) {
    std::lock_guard lk(mu_);
    script_.push_back(std::move(r));
  }
  // Requests to URLs that end in `suffix` wait, once recorded, until release().
  void hold(std::string suffix) {
    std::lock_guard lk(mu_);
    held_ = true;
    held_suffix_ = std::move(suffix);
  }
  void release() {
    std::lock_guard lk(mu_);
    held_ = false;
    cv_.notify_all();
  }
  std::vector<Call> calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }
  // Waits until some recorded call satisfies `pred`. The deadline only keeps a broken
  // build from hanging; passing never depends on it.
  template <typename Pred>
  bool wait_for_call(Pred pred, std::chrono::seconds deadline = std::chrono::seconds(60)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, deadline, [&] {
      for (const auto& c : calls_)
        if (pred(c)) return true;
      return false;
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::deque<Result<http::ClientResponse>> script_;
  bool held_ = false;
  std::string held_suffix_;
};

}  // namespace kvmfleet::doubles
