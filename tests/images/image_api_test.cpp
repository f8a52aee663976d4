// /v1/images over a real HTTP server on loopback: streamed uploads past the body limit
// that every other route keeps, refusals before the body is read, uploads cut short.
#include "kvmfleet/api/api.hpp"
#include "kvmfleet/cli/cli.hpp"
#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/http/server.hpp"

#include "image_test_support.hpp"
#include "tests/doubles/common/manual_clock.hpp"
#include "tests/doubles/core/fake_agent_api.hpp"
#include "tests/doubles/images/fake_image_tool.hpp"
#include "tests/doubles/store/memory_store.hpp"

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fstream>
#include <sstream>
#include <thread>

namespace kvmfleet::images {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing_support::files_in;
using testing_support::TempDir;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr std::size_t kBodyLimit = 4096;

class ImageApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(state_.load().ok());
    ctl_ = std::make_unique<Controller>(state_, agents_, config(), clock_, ioc_, tool_);
    api_ = std::make_unique<api::Api>(*ctl_, metrics_);
    operator_ = ctl_->tokens().create_token("ops", Role::operator_)->second;
    viewer_ = ctl_->tokens().create_token("watcher", Role::viewer)->second;
    http::ServerOptions opts;
    opts.body_limit = kBodyLimit;
    opts.read_timeout = 60s;
    opts.open_body = [this](const http::RequestHeader& h) { return api_->open_body(h); };
    server_ = std::make_unique<http::Server>(ioc_, opts,
                                             [this](http::Request&& req, http::Responder respond) {
                                               api_->handle(std::move(req), std::move(respond));
                                             });
    ASSERT_TRUE(server_->start().ok());
    io_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    server_->stop();
    work_.reset();
    ioc_.stop();
    io_.join();
  }
  const ControllerConfig& config() {
    config_.image_dir = tmp_.file("store");
    return config_;
  }
  std::string store() const { return tmp_.file("store"); }

  struct Reply {
    unsigned status = 0;
    json body;
  };

  tcp::socket connect() {
    tcp::socket s(client_ioc_);
    s.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
    return s;
  }
  static std::string header(const std::string& method, const std::string& target,
                            const std::string& token, const std::string& extra) {
    std::string h = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!token.empty()) h += "Authorization: Bearer " + token + "\r\n";
    return h + extra + "\r\n";
  }
  // Reads one response; status 0 when the server closed without one.
  static Reply read_reply(tcp::socket& s) {
    boost::beast::flat_buffer buf;
    boost::beast::http::response<boost::beast::http::string_body> res;
    boost::beast::error_code ec;
    boost::beast::http::read(s, buf, res, ec);
    if (ec) return {};
    return {res.result_int(), json::parse(res.body(), nullptr, false)};
  }
  Reply call(const std::string& method, const std::string& target, const std::string& token,
             const std::string& body = {}) {
    auto s = connect();
    const std::string msg =
        header(method, target, token,
               "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\n") +
        body;
    asio::write(s, asio::buffer(msg));
    return read_reply(s);
  }
  // A body sent in pieces with a Content-Length.
  Reply put_data(const std::string& name, const std::string& data, const std::string& token) {
    auto s = connect();
    const std::string h = header("PUT", "/v1/images/" + name + "/data", token,
                                 "Content-Type: application/octet-stream\r\nContent-Length: " +
                                     std::to_string(data.size()) + "\r\n");
    asio::write(s, asio::buffer(h));
    for (std::size_t at = 0; at < data.size(); at += 100'000)
      asio::write(s,
                  asio::buffer(data.data() + at, std::min<std::size_t>(100'000, data.size() - at)));
    return read_reply(s);
  }
  bool gone(const std::string& name) {
    // The server ends an upload on its own thread: wait for it, within a bound that only
    // guards against hanging.
    for (int i = 0; i < 2000; ++i) {
      if (!ctl_->images().get(name).ok() && files_in(store()).empty()) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

  TempDir tmp_;
  ControllerConfig config_;
  ManualClock clock_;
  doubles::MemoryStore store_;
  doubles::FakeAgentApi agents_;
  ClusterState state_{store_};
  std::shared_ptr<FakeImageTool> tool_ = std::make_shared<FakeImageTool>();
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ioc_);
  asio::io_context client_ioc_;
  std::unique_ptr<Controller> ctl_;
  api::Metrics metrics_;
  std::unique_ptr<api::Api> api_;
  std::unique_ptr<http::Server> server_;
  std::thread io_;
  std::string operator_, viewer_;
};

std::string some_data(std::size_t n) {
  std::string d(n, '\0');
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<char>((i * 7919) >> 3);
  return d;
}

TEST_F(ImageApiTest, AnUploadFarPastTheBodyLimitIsStreamedAndHashed) {
  const std::string data = some_data(3 * 1024 * 1024 + 17);
  auto created = call("POST", "/v1/images", operator_,
                      json{{"name", "big"}, {"sha256", sha256_hex(data)}}.dump());
  ASSERT_EQ(created.status, 201u) << created.body;
  EXPECT_EQ(created.body["state"], "uploading");
  auto put = put_data("big", data, operator_);
  ASSERT_EQ(put.status, 200u) << put.body;
  EXPECT_EQ(put.body["state"], "ready");
  EXPECT_EQ(put.body["sha256"], sha256_hex(data));
  EXPECT_EQ(put.body["size"], data.size());
  auto got = call("GET", "/v1/images/big", viewer_);
  EXPECT_EQ(got.status, 200u);
  EXPECT_EQ(got.body["format"], "raw");
  EXPECT_EQ(got.body["virtual_size"], data.size());
  auto list = call("GET", "/v1/images", viewer_);
  ASSERT_EQ(list.body["items"].size(), 1u);
}

TEST_F(ImageApiTest, EveryOtherRouteKeepsItsBodyLimit) {
  const std::string big = json{{"name", "x"}, {"pad", std::string(2 * kBodyLimit, 'a')}}.dump();
  auto r = call("POST", "/v1/images", operator_, big);
  EXPECT_EQ(r.status, 413u) << r.body;
  EXPECT_EQ(r.body["error"]["code"], "payload_too_large");
}

TEST_F(ImageApiTest, AChunkedUploadWorksToo) {
  ASSERT_EQ(call("POST", "/v1/images", operator_, R"({"name":"c1"})").status, 201u);
  auto s = connect();
  asio::write(s, asio::buffer(header("PUT", "/v1/images/c1/data", operator_,
                                     "Transfer-Encoding: chunked\r\n")));
  const std::string piece = some_data(10'000);
  std::string all;
  for (int i = 0; i < 3; ++i) {
    std::ostringstream size;
    size << std::hex << piece.size();
    asio::write(s, asio::buffer(size.str() + "\r\n" + piece + "\r\n"));
    all += piece;
  }
  asio::write(s, asio::buffer(std::string("0\r\n\r\n")));
  auto r = read_reply(s);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.body["sha256"], sha256_hex(all));
}

TEST_F(ImageApiTest, ExpectContinueGetsItsInterimAnswer) {
  ASSERT_EQ(call("POST", "/v1/images", operator_, R"({"name":"e1"})").status, 201u);
  auto s = connect();
  asio::write(s, asio::buffer(header("PUT", "/v1/images/e1/data", operator_,
                                     "Expect: 100-continue\r\nContent-Length: 5\r\n")));
  std::string interim;
  asio::read_until(s, asio::dynamic_buffer(interim), "\r\n\r\n");
  EXPECT_TRUE(interim.starts_with("HTTP/1.1 100 Continue")) << interim;
  asio::write(s, asio::buffer(std::string("hello")));
  boost::beast::flat_buffer buf;
  // What read_until read past the interim answer belongs to the final one.
  const auto end = interim.find("\r\n\r\n") + 4;
  auto rest = interim.substr(end);
  boost::asio::buffer_copy(buf.prepare(rest.size()), asio::buffer(rest));
  buf.commit(rest.size());
  boost::beast::http::response<boost::beast::http::string_body> res;
  boost::beast::http::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 200u) << res.body();
}

TEST_F(ImageApiTest, ATruncatedUploadLeavesNoImage) {
  ASSERT_EQ(call("POST", "/v1/images", operator_, R"({"name":"cut"})").status, 201u);
  {
    auto s = connect();
    asio::write(s, asio::buffer(header("PUT", "/v1/images/cut/data", operator_,
                                       "Content-Length: 1000000\r\n")));
    const std::string half = some_data(500'000);
    asio::write(s, asio::buffer(half));
    s.shutdown(tcp::socket::shutdown_send);
    EXPECT_EQ(read_reply(s).status, 0u);  // no answer: the request never ended
  }
  EXPECT_TRUE(gone("cut"));
  EXPECT_EQ(call("GET", "/v1/images/cut", viewer_).status, 404u);
}

TEST_F(ImageApiTest, AnUploadInAContentCodingIsRefusedAndLeavesNoImage) {
  ASSERT_EQ(call("POST", "/v1/images", operator_, R"({"name":"gz"})").status, 201u);
  auto s = connect();
  asio::write(s, asio::buffer(header("PUT", "/v1/images/gz/data", operator_,
                                     "Content-Encoding: gzip\r\nContent-Length: 1000\r\n")));
  asio::write(s, asio::buffer(some_data(1000)));
  const auto r = read_reply(s);
  EXPECT_EQ(r.status, 415u);
  EXPECT_EQ(r.body["error"]["code"], "unsupported_media_type");
  // Nothing of the body was stored: the record still waits for its data.
  EXPECT_EQ(ctl_->images().get("gz")->state, ImageState::uploading);
  EXPECT_EQ(files_in(store()), (std::vector<std::string>{"gz.json"}));
}

TEST_F(ImageApiTest, AWrongSha256LeavesNoImage) {
  ASSERT_EQ(call("POST", "/v1/images", operator_,
                 json{{"name", "w1"}, {"sha256", sha256_hex("something else")}}.dump())
                .status,
            201u);
  auto r = put_data("w1", some_data(200'000), operator_);
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(r.body["error"]["code"], "invalid_argument");
  EXPECT_EQ(r.body["error"]["details"]["reason"], "sha256_mismatch");
  EXPECT_EQ(call("GET", "/v1/images/w1", viewer_).status, 404u);
  EXPECT_TRUE(files_in(store()).empty());
}

TEST_F(ImageApiTest, RefusalsComeBeforeTheBodyIsRead) {
  ASSERT_EQ(call("POST", "/v1/images", operator_, R"({"name":"r1"})").status, 201u);
  // Only the header is sent: each answer comes without the gigabyte it announces.
  auto refused = [&](const std::string& target, const std::string& token) {
    auto s = connect();
    asio::write(s, asio::buffer(header("PUT", target, token, "Content-Length: 1073741824\r\n")));
    return read_reply(s);
  };
  EXPECT_EQ(refused("/v1/images/r1/data", "").status, 401u);
  EXPECT_EQ(refused("/v1/images/r1/data", "kvf_wrong").status, 401u);
  EXPECT_EQ(refused("/v1/images/r1/data", viewer_).status, 403u);
  EXPECT_EQ(refused("/v1/images/nope/data", operator_).status, 404u);
  EXPECT_EQ(refused("/v1/images/Bad..Name/data", operator_).status, 400u);
  EXPECT_EQ(refused("/v1/images/r1/data?x=1", operator_).status, 400u);
  // Still waiting for its data: nothing was written.
  EXPECT_EQ(ctl_->images().get("r1")->state, ImageState::uploading);
  EXPECT_EQ(files_in(store()), (std::vector<std::string>{"r1.json"}));
}

TEST_F(ImageApiTest, CreateValidatesAndDeleteRemoves) {
  EXPECT_EQ(call("POST", "/v1/images", viewer_, R"({"name":"v1"})").status, 403u);
  auto bad = call("POST", "/v1/images", operator_, R"({"name":"x","sha256":"123"})");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(call("POST", "/v1/images", operator_, R"({"name":"x","format":"vmdk"})").status, 400u);
  ASSERT_EQ(call("POST", "/v1/images", operator_, R"({"name":"d1"})").status, 201u);
  EXPECT_EQ(call("POST", "/v1/images", operator_, R"({"name":"d1"})").status, 409u);
  ASSERT_EQ(put_data("d1", "payload", operator_).status, 200u);
  EXPECT_EQ(put_data("d1", "payload", operator_).status, 409u);
  ASSERT_TRUE(ctl_->images().acquire("d1").ok());
  EXPECT_EQ(call("DELETE", "/v1/images/d1", operator_).status, 409u);
  ctl_->images().release("d1");
  EXPECT_EQ(call("DELETE", "/v1/images/d1", viewer_).status, 403u);
  EXPECT_EQ(call("DELETE", "/v1/images/d1", operator_).status, 200u);
  EXPECT_EQ(call("GET", "/v1/images/d1", viewer_).status, 404u);
  EXPECT_TRUE(files_in(store()).empty());
}

TEST_F(ImageApiTest, TheCliUploadsListsShowsAndDeletes) {
  const std::string data = some_data(5 * 1024 * 1024 + 3);
  std::ofstream(tmp_.file("disk.raw"), std::ios::binary) << data;
  http::BeastClient client;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
  auto kvmfleet = [&](std::vector<std::string> args, std::string* out_text = nullptr) {
    cli::Environment env{"http://127.0.0.1:" + std::to_string(server_->port()), operator_, true};
    std::ostringstream out, err;
    const int rc = cli::run(args, env, client, out, err);
    if (out_text) *out_text = out.str();
    EXPECT_EQ(rc, 0) << err.str();
    return err.str();
  };
  const std::string progress = kvmfleet({"image", "upload", "disk1", tmp_.file("disk.raw"),
                                         "--sha256", sha256_hex(data), "--format", "raw"});
  // Told piece by piece on the terminal, up to the whole file.
  EXPECT_NE(progress.find("uploading: 100% (5 of 5 MiB)"), std::string::npos) << progress;
  EXPECT_NE(progress.find("uploading: 19%"), std::string::npos) << progress;
  auto image = ctl_->images().get("disk1");
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image->state, ImageState::ready);
  EXPECT_EQ(image->sha256, sha256_hex(data));
  std::string out;
  kvmfleet({"images"}, &out);
  EXPECT_NE(out.find("disk1"), std::string::npos) << out;
  kvmfleet({"-o", "json", "image", "show", "disk1"}, &out);
  EXPECT_EQ(json::parse(out)["size"], data.size());
  kvmfleet({"image", "delete", "disk1"}, &out);
  EXPECT_FALSE(ctl_->images().get("disk1").ok());
}

TEST_F(ImageApiTest, TheCliTellsARefusedUpload) {
  std::ofstream(tmp_.file("disk.raw"), std::ios::binary) << some_data(300'000);
  http::BeastClient client;
  cli::Environment env{"http://127.0.0.1:" + std::to_string(server_->port()), operator_, false};
  std::ostringstream out, err;
  EXPECT_EQ(
      cli::run({"image", "upload", "bad", tmp_.file("disk.raw"), "--sha256", std::string(64, 'a')},
               env, client, out, err),
      1);
  EXPECT_NE(err.str().find("sha256_mismatch"), std::string::npos) << err.str();
  EXPECT_FALSE(ctl_->images().get("bad").ok());
}

}  // namespace
}  // namespace kvmfleet::images

namespace kvmfleet::images {
namespace {

// VMs from images through the API: refusals with their stable reasons, the VM's view
// that never shows cloud-init's content, the CLI's flags, and the pieces agents fetch.
class VmFromImageApiTest : public ImageApiTest {
 protected:
  // A host that is up, and its agent's token.
  std::string host_up(const std::string& name) {
    auto r = ctl_->hosts().register_host(name, "http://127.0.0.1:1");
    EXPECT_TRUE(r.ok());
    HostInventory inv;
    inv.cpus = 4;
    inv.memory_total_mib = 8192;
    inv.domain_type = "kvm";
    EXPECT_TRUE(
        ctl_->hosts().heartbeat({"a", "host:" + name, Role::agent, name}, name, "", inv).ok());
    return r.ok() ? r->second : "";
  }
  static json vm(json extra) {
    json b = {{"name", "web1"}, {"memory_mib", 64}};
    for (auto& [k, v] : extra.items()) b[k] = v;
    return b;
  }
};

TEST_F(VmFromImageApiTest, RefusalsHaveStableCodes) {
  auto unknown = call("POST", "/v1/vms", operator_,
                      vm({{"disks", json::array({json{{"image", "nope"}}})}}).dump());
  EXPECT_EQ(unknown.status, 404u) << unknown.body;
  EXPECT_EQ(unknown.body["error"]["code"], "not_found");
  EXPECT_EQ(unknown.body["error"]["details"]["reason"], "unknown_image");
  ASSERT_EQ(call("POST", "/v1/images", operator_, json{{"name", "half"}}.dump()).status, 201u);
  auto half = call("POST", "/v1/vms", operator_, vm({{"cdrom", {{"image", "half"}}}}).dump());
  EXPECT_EQ(half.status, 409u) << half.body;
  EXPECT_EQ(half.body["error"]["details"]["reason"], "image_not_ready");
  auto boot = call("POST", "/v1/vms", operator_, vm({{"boot", {"cdrom"}}}).dump());
  EXPECT_EQ(boot.status, 400u) << boot.body;
  EXPECT_EQ(boot.body["error"]["details"]["reason"], "bad_boot_order");
  auto yaml = call("POST", "/v1/vms", operator_,
                   vm({{"cloud_init", {{"user_data", "#cloud-config\nkey: [oops\n"}}}}).dump());
  EXPECT_EQ(yaml.status, 400u) << yaml.body;
  EXPECT_EQ(yaml.body["error"]["details"]["reason"], "malformed_yaml");
  // Nothing was made.
  EXPECT_EQ(call("GET", "/v1/vms", viewer_).body["items"].size(), 0u);
}

TEST_F(VmFromImageApiTest, TheCliMakesAVmFromAnImageWithCloudInit) {
  host_up("node1");
  const std::string data = some_data(100'000);
  ASSERT_EQ(call("POST", "/v1/images", operator_, json{{"name", "deb"}}.dump()).status, 201u);
  ASSERT_EQ(put_data("deb", data, operator_).status, 200u);
  std::ofstream(tmp_.file("user-data")) << "#cloud-config\npassword: s3cret-pass\n";
  std::ofstream(tmp_.file("id.pub")) << "# mine\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK me@x\n";
  http::BeastClient client;
  cli::Environment env{"http://127.0.0.1:" + std::to_string(server_->port()), operator_, false};
  std::ostringstream out, err;
  const int rc =
      cli::run({"vm", "create", "web1", "--memory", "64", "--image", "deb", "--disk-size", "3",
                "--cloud-init-user-data", tmp_.file("user-data"), "--ssh-key", tmp_.file("id.pub"),
                "--hostname", "web1", "--boot", "disk,network"},
               env, client, out, err);
  // network is in the boot order but the VM has no NIC: refused, and told.
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.str().find("bad_boot_order"), std::string::npos) << err.str() << out.str();
  std::ostringstream out2, err2;
  ASSERT_EQ(cli::run({"vm", "create", "web1", "--memory", "64", "--image", "deb", "--disk-size",
                      "3", "--cloud-init-user-data", tmp_.file("user-data"), "--ssh-key",
                      tmp_.file("id.pub"), "--hostname", "web1", "--boot", "disk"},
                     env, client, out2, err2),
            0)
      << err2.str();
  auto got = call("GET", "/v1/vms/web1", viewer_);
  ASSERT_EQ(got.status, 200u) << got.body;
  EXPECT_EQ(got.body["disks"][0]["image"], "deb");
  EXPECT_EQ(got.body["disks"][0]["image_sha256"], sha256_hex(data));
  EXPECT_EQ(got.body["disks"][0]["size_gib"], 3);
  EXPECT_EQ(got.body["boot"], json({"disk"}));
  EXPECT_EQ(got.body["cloud_init"]["set"], true);
  EXPECT_EQ(got.body["cloud_init"]["user_data"], true);
  EXPECT_EQ(got.body["cloud_init"]["hostname"], true);
  EXPECT_EQ(got.body["cloud_init"]["ssh_authorized_keys"], 1);
  EXPECT_EQ(got.body.dump().find("s3cret"), std::string::npos) << got.body;
  // Nor in the operation's record.
  auto ops = call("GET", "/v1/operations", viewer_);
  EXPECT_EQ(ops.body.dump().find("s3cret"), std::string::npos);
  // The image stays while a VM is made from it.
  auto del = call("DELETE", "/v1/images/deb", operator_);
  EXPECT_EQ(del.status, 409u) << del.body;
  EXPECT_EQ(del.body["error"]["details"]["reason"], "image_in_use");
  EXPECT_EQ(del.body["error"]["details"]["vms"], json({"web1"}));
  EXPECT_TRUE(ctl_->images().get("deb").ok());
}

TEST_F(VmFromImageApiTest, AgentsFetchAnImageInPieces) {
  const std::string agent = host_up("node1");
  const std::string data = some_data(50'000);
  ASSERT_EQ(call("POST", "/v1/images", operator_, json{{"name", "deb"}}.dump()).status, 201u);
  ASSERT_EQ(put_data("deb", data, operator_).status, 200u);
  auto fetch = [&](const std::string& target, const std::string& token) {
    auto s = connect();
    asio::write(s, asio::buffer(header("GET", target, token, "")));
    boost::beast::flat_buffer buf;
    boost::beast::http::response<boost::beast::http::string_body> res;
    boost::beast::http::read(s, buf, res);
    return std::pair<unsigned, std::string>{res.result_int(), res.body()};
  };
  auto piece = fetch("/v1/agent/images/deb/data?offset=1000&length=4096", agent);
  EXPECT_EQ(piece.first, 200u);
  EXPECT_EQ(piece.second, data.substr(1000, 4096));
  auto tail = fetch("/v1/agent/images/deb/data?offset=49000", agent);
  EXPECT_EQ(tail.second, data.substr(49000));
  EXPECT_EQ(fetch("/v1/agent/images/deb/data?length=0", agent).first, 400u);
  EXPECT_EQ(fetch("/v1/agent/images/deb/data?offset=-1", agent).first, 400u);
  EXPECT_EQ(fetch("/v1/agent/images/nope/data", agent).first, 404u);
  EXPECT_EQ(fetch("/v1/agent/images/deb/data", viewer_).first, 403u);
  EXPECT_EQ(fetch("/v1/agent/images/deb/data", "").first, 401u);
}

}  // namespace
}  // namespace kvmfleet::images
