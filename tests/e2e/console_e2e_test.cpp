// The serial console end to end on real parts: controller + agent + a private libvirtd
// (e2e::Cluster), a real QEMU guest whose firmware (SeaBIOS, through the serial
// graphics adapter that <bios useserial='yes'/> adds) prints on the serial port. The
// test reads that text through the controller's console WebSocket (relayed by the
// agent from libvirt's console stream) and through the console log endpoint (virtlogd's
// file on the host), and checks the refusals.
#include "e2e_cluster.hpp"

#include "kvmfleet/http/websocket_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

using namespace kvmfleet;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// What SeaBIOS prints on every boot.
constexpr const char* kBootText = "SeaBIOS";

class ConsoleE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Under TCG (the agent's guest_accelerator): the test needs the firmware to run and
    // print, and the development machine's KVM (docs/lab.md) was seen leaving a BIOS
    // guest at its reset vector now and then; TCG runs it every time.
    cluster_ = new e2e::Cluster("tcg");
    if (auto st = cluster_->start(); !st) start_error_ = st.error().message;
    std::printf("kvmfleet console e2e: guests run with %s\n",
                cluster_->kvm() ? "KVM (/dev/kvm present)" : "TCG (no /dev/kvm)");
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << start_error_; }
  e2e::Cluster& c() { return *cluster_; }

  void make_vm(const std::string& name, bool start) {
    json body = {{"name", name}, {"vcpus", 1}, {"memory_mib", 64}};
    if (start) body["start"] = true;
    auto r = c().api_json("POST", "/v1/vms?wait=120", body.dump(), 150);
    ASSERT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    ASSERT_EQ((*r)["state"], "succeeded") << r->dump();
  }
  void delete_vm(const std::string& name) {
    (void)c().api("DELETE", "/v1/vms/" + name + "?wait=120&force=true", {}, 150);
  }

  static e2e::Cluster* cluster_;
  static std::string start_error_;
};

e2e::Cluster* ConsoleE2E::cluster_ = nullptr;
std::string ConsoleE2E::start_error_;

// A console WebSocket client on a thread of its own, collecting what arrives.
struct Session {
  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::string received;
  bool opened = false;
  bool closed = false;
  Status why;
  std::shared_ptr<http::WebSocketConnection> ws;

  Session(const std::string& url, const std::string& token) {
    http::WebSocketCallbacks cb;
    cb.on_open = [this] {
      std::lock_guard lk(mu);
      opened = true;
      cv.notify_all();
    };
    cb.on_message = [this](std::string bytes) {
      std::lock_guard lk(mu);
      received += bytes;
      cv.notify_all();
    };
    cb.on_closed = [this](Status s) {
      std::lock_guard lk(mu);
      closed = true;
      why = std::move(s);
      cv.notify_all();
    };
    http::WebSocketClientOptions options;
    options.message_limit = 1 << 20;
    ws = http::connect_websocket(ioc, url, token, options, std::move(cb));
    thread = std::thread([this] { ioc.run(); });
  }
  ~Session() {
    ws->close();
    work.reset();
    {
      std::unique_lock lk(mu);
      cv.wait_for(lk, 10s, [&] { return closed; });
    }
    ioc.stop();
    thread.join();
  }
  // Waits for `pred` under the lock, up to `limit` (a bound on a hang, not a timing check).
  template <class Pred>
  bool wait(Pred pred, std::chrono::seconds limit = 60s) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, limit, pred);
  }
};

TEST_F(ConsoleE2E, TheGuestsBootTextArrivesThroughTheWebSocketAndTheLog) {
  make_vm("con1", /*start=*/true);
  ASSERT_EQ(c().domstate("con1"), "running");

  // The domain libvirt runs has the serial pty and its log under the agent's state dir.
  auto xml = c().in_host({"virsh", "-c", "qemu:///system", "dumpxml", "con1"});
  ASSERT_TRUE(xml.ok());
  EXPECT_NE(xml->out.find("<serial type='pty'>"), std::string::npos) << xml->out;
  EXPECT_NE(xml->out.find("append='on'"), std::string::npos) << xml->out;
  const pid_t qemu = c().qemu_pid("con1");
  std::ifstream cmd("/proc/" + std::to_string(qemu) + "/cmdline");
  std::string qemu_cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  for (auto& ch : qemu_cmdline)
    if (ch == '\0') ch = ' ';
  std::printf("QEMU: %s\nXML: %s\n", qemu_cmdline.c_str(), xml->out.c_str());

  {
    Session s(c().url() + "/v1/vms/con1/console", c().admin_token());
    ASSERT_TRUE(s.wait([&] { return s.opened || s.closed; }));
    ASSERT_TRUE(s.opened) << (s.why ? "closed" : s.why.error().message);
    // The firmware printed before the socket opened: a reset makes it print again, now.
    auto reset = c().in_host({"virsh", "-c", "qemu:///system", "reset", "con1"});
    ASSERT_TRUE(reset.ok() && reset->exit_code == 0);
    EXPECT_TRUE(s.wait([&] { return s.received.find(kBootText) != std::string::npos; }))
        << "received: " << s.received;
    // Input reaches the guest's serial port without breaking the session.
    s.ws->send("\r");
    EXPECT_FALSE(s.closed);
  }

  // The console log (virtlogd's file) has the boot text too, read through the controller.
  std::string text;
  for (int i = 0; i < 60 && text.find(kBootText) == std::string::npos; ++i) {
    auto r = c().api_json("GET", "/v1/vms/con1/console/log?tail=200");
    ASSERT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    text = (*r)["text"].get<std::string>();
    if (text.find(kBootText) == std::string::npos) std::this_thread::sleep_for(500ms);
  }
  EXPECT_NE(text.find(kBootText), std::string::npos) << text;
  if (text.find(kBootText) == std::string::npos) {
    // Seen on this machine's PVM-flavoured KVM: libvirt reports the guest running while
    // its vCPU never leaves the reset state (info registers: EAX=0, EDX=00060fb1), so
    // SeaBIOS prints nothing at all; the log file stays empty. Shown here so a failure
    // tells that apart from a console fault.
    auto ls =
        c().in_host({"sh", "-c",
                     "ls -la /tmp/kvmfleet-e2e-*/console/; cat /tmp/kvmfleet-e2e-*/console/*.log | "
                     "head -c 300; virsh -c qemu:///system domstate --reason con1"});
    if (ls.ok()) std::printf("host view: %s %s\n", ls->out.c_str(), ls->err.c_str());
  }
  auto one = c().api_json("GET", "/v1/vms/con1/console/log?tail=1");
  ASSERT_TRUE(one.ok());
  EXPECT_LE((*one)["lines"].get<int>(), 1);
  delete_vm("con1");
}

TEST_F(ConsoleE2E, RefusalsAreClearJsonBeforeAnyUpgrade) {
  make_vm("con2", /*start=*/false);
  {
    Session s(c().url() + "/v1/vms/con2/console", c().admin_token());
    ASSERT_TRUE(s.wait([&] { return s.closed; }));
    EXPECT_FALSE(s.opened);
    ASSERT_FALSE(s.why.ok());
    EXPECT_EQ(s.why.error().code, ErrorCode::conflict);
    EXPECT_EQ(s.why.error().details.value("reason", ""), "vm_not_running");
  }
  {
    Session s(c().url() + "/v1/vms/con2/console", "not-a-token");
    ASSERT_TRUE(s.wait([&] { return s.closed; }));
    ASSERT_FALSE(s.why.ok());
    EXPECT_EQ(s.why.error().code, ErrorCode::unauthenticated);
  }
  auto plain = c().api("GET", "/v1/vms/con2/console");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->status, 400u);
  auto bad = c().api("GET", "/v1/vms/con2/console/log?tail=0");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400u);
  auto big = c().api("GET", "/v1/vms/con2/console/log?tail=10001");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->status, 400u);
  delete_vm("con2");
}

}  // namespace
