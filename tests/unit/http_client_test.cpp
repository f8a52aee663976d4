// The keep-alive HTTP client against the real server on loopback: connections are
// counted on the server's side.

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvmfleet/common/process.hpp"
#include "kvmfleet/http/client.hpp"
#include "kvmfleet/http/server.hpp"

namespace kvmfleet {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// Answers {"path", "body"}; /slow is held until release_slow(); /close answers and
// closes the connection.
class KeepAliveTest : public ::testing::Test {
 protected:
  void start(http::ServerOptions o = {}) {
    o.address = "127.0.0.1";
    o.port = 0;
    server_ = std::make_unique<
        http::Server>(ioc_, o, [this](http::Request&& req, http::Responder r) {
      const std::string path(req.target());
      if (path == "/slow") {
        std::lock_guard lk(mu_);
        held_.push_back(std::move(r));
        return;
      }
      auto res = http::json_response(http::HttpStatus::ok, {{"path", path}, {"body", req.body()}});
      if (path == "/close") res.keep_alive(false);
      r(std::move(res));
    });
    ASSERT_TRUE(server_->start().ok());
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    if (!server_) return;
    release_slow();
    server_->stop();
    ioc_.stop();
    thread_.join();
  }
  void release_slow() {
    std::vector<http::Responder> held;
    {
      std::lock_guard lk(mu_);
      held.swap(held_);
    }
    for (auto& r : held) r(http::json_response(http::HttpStatus::ok, {{"late", true}}));
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }
  // Waits (in real time) until the server has no connection open. The deadline only
  // keeps a broken build from hanging; passing never depends on it.
  bool wait_until_no_connection() const {
    for (int i = 0; i < 60'000; ++i) {
      if (server_->connections_open() == 0) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  boost::asio::io_context ioc_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<http::Responder> held_;
};

TEST_F(KeepAliveTest, SequentialRequestsShareOneConnection) {
  start();
  http::KeepAliveClient client;
  for (int i = 0; i < 5; ++i) {
    const std::string body = json{{"i", i}}.dump();
    auto r = client.request("POST", url("/x"), "tok", body, 5s);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200u);
    const auto answer = json::parse(r->body);
    EXPECT_EQ(answer["path"], "/x");
    EXPECT_EQ(answer["body"], body);
  }
  EXPECT_EQ(server_->connections_accepted(), 1u);
  EXPECT_EQ(server_->connections_open(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);
  // The one-shot client opens a connection per call.
  http::BeastClient one_shot;
  ASSERT_TRUE(one_shot.request("GET", url("/y"), "", "", 5s).ok());
  ASSERT_TRUE(one_shot.request("GET", url("/y"), "", "", 5s).ok());
  EXPECT_EQ(server_->connections_accepted(), 3u);
}

// The server closes an idle connection after its read timeout; the next request
// fails on it before any answer and goes once more on a fresh connection.
TEST_F(KeepAliveTest, SurvivesTheServerClosingAnIdleConnection) {
  http::ServerOptions o;
  o.read_timeout = 300ms;
  start(o);
  http::KeepAliveClient client;
  ASSERT_TRUE(client.request("GET", url("/a"), "", "", 5s).ok());
  EXPECT_EQ(client.idle_connections(), 1u);
  ASSERT_TRUE(wait_until_no_connection());
  auto r = client.request("POST", url("/b"), "", R"({"n":1})", 5s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(json::parse(r->body)["path"], "/b");
  EXPECT_EQ(server_->connections_accepted(), 2u);
  // The fresh connection is kept in turn.
  ASSERT_TRUE(client.request("GET", url("/c"), "", "", 5s).ok());
  EXPECT_EQ(server_->connections_accepted(), 2u);
}

// A server that says "Connection: close" gets a new connection for each call.
TEST_F(KeepAliveTest, HonoursConnectionClose) {
  start();
  http::KeepAliveClient client;
  ASSERT_TRUE(client.request("GET", url("/close"), "", "", 5s).ok());
  EXPECT_EQ(client.idle_connections(), 0u);
  ASSERT_TRUE(client.request("GET", url("/close"), "", "", 5s).ok());
  EXPECT_EQ(server_->connections_accepted(), 2u);
}

// No answer within the timeout is `unavailable`, and that connection is never used
// again: a late answer cannot be taken for the next call's.
TEST_F(KeepAliveTest, ATimeoutIsUnavailableAndDropsTheConnection) {
  start();
  http::KeepAliveClient client;
  ASSERT_TRUE(client.request("GET", url("/a"), "", "", 5s).ok());
  auto r = client.request("GET", url("/slow"), "", "", 200ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_EQ(client.idle_connections(), 0u);
  release_slow();
  auto next = client.request("GET", url("/b"), "", "", 5s);
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(json::parse(next->body)["path"], "/b");
  EXPECT_EQ(server_->connections_accepted(), 2u);
}

// Nothing listening: `unavailable` (a fresh connection's failure is not retried).
TEST(KeepAlive, ARefusedConnectionIsUnavailable) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor probe(io);
  probe.open(boost::asio::ip::tcp::v4());
  probe.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = probe.local_endpoint().port();
  probe.close();  // bound, never listened: the port refuses
  http::KeepAliveClient client;
  auto r = client.request("GET", "http://127.0.0.1:" + std::to_string(port) + "/a", "", "", 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
  EXPECT_EQ(client.idle_connections(), 0u);
}

// Two threads calling at once never share a connection: at most two are opened.
TEST_F(KeepAliveTest, ConcurrentCallersEachHaveAConnection) {
  start();
  http::KeepAliveClient client;
  auto calls = [&](const std::string& path) {
    for (int i = 0; i < 20; ++i) {
      auto r = client.request("GET", url(path), "", "", 5s);
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(json::parse(r->body)["path"], path);
    }
  };
  std::thread a(calls, "/a");
  std::thread b(calls, "/b");
  a.join();
  b.join();
  EXPECT_LE(server_->connections_accepted(), 2u);
  EXPECT_LE(client.idle_connections(), 2u);
}

// https keeps its connection (and its TLS session) the same way.
TEST(KeepAliveTls, ReusesOneHttpsConnection) {
  const std::string dir =
      ::testing::TempDir() + "/kvmfleet-keepalive-tls-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  SystemProcessRunner runner;
  auto made =
      runner.run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                  "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                  "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"});
  ASSERT_TRUE(made.ok() && made->success()) << (made.ok() ? made->err : made.error().message);
  boost::asio::io_context ioc;
  http::ServerOptions o;
  o.tls_cert_file = dir + "/cert.pem";
  o.tls_key_file = dir + "/key.pem";
  http::Server server(ioc, o, [](http::Request&&, http::Responder r) {
    r(http::json_response(http::HttpStatus::ok, {{"tls", true}}));
  });
  ASSERT_TRUE(server.start().ok());
  std::thread t([&] { ioc.run(); });
  const std::string url = "https://localhost:" + std::to_string(server.port()) + "/v1/healthz";
  http::KeepAliveOptions ko;
  ko.ca_file = dir + "/cert.pem";
  http::KeepAliveClient client(ko);
  for (int i = 0; i < 3; ++i) {
    auto r = client.request("GET", url, "", "", 5s);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200u);
  }
  EXPECT_EQ(server.connections_accepted(), 1u);
  // A client that does not trust the certificate refuses the connection.
  http::KeepAliveClient strict;
  EXPECT_FALSE(strict.request("GET", url, "", "", 5s).ok());
  server.stop();
  ioc.stop();
  t.join();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvmfleet
