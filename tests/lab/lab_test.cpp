// The lab against the real thing: libvirtd in namespaces, KVM (or TCG) guests, a
// live migration. Needs root; uses /dev/kvm when the machine has it.
#include "lab.hpp"

#include <gtest/gtest.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <signal.h>
#include <unistd.h>
#include <thread>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

namespace kvmfleet::lab {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

bool have_kvm() {
  return ::access("/dev/kvm", R_OK | W_OK) == 0;
}

// kvm when the machine has it; otherwise TCG, and the test output says so.
// KVMFLEET_LAB_DOMAIN_TYPE=qemu forces TCG on a machine with KVM.
std::string domain_type() {
  static const std::string type = [] {
    const char* forced = std::getenv("KVMFLEET_LAB_DOMAIN_TYPE");
    std::string t = forced != nullptr && std::string(forced) == "qemu" ? "qemu"
                    : have_kvm()                                       ? "kvm"
                                                                       : "qemu";
    std::cout << "[ lab      ] guests run with domain type '" << t << "'"
              << (t == "kvm"   ? " (KVM)"
                  : have_kvm() ? " (TCG, forced)"
                               : " (TCG: no usable /dev/kvm)")
              << std::endl;
    return t;
  }();
  return type;
}

// The checked-in guest with its name and domain type replaced through libxml2.
std::string guest_xml(const std::string& name) {
  const std::string path = std::string(KVMFLEET_LAB_DATA_DIR) + "/guest.xml";
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(
      xmlReadFile(path.c_str(), nullptr, XML_PARSE_NONET), &xmlFreeDoc);
  if (!doc) return {};
  xmlNode* root = xmlDocGetRootElement(doc.get());
  xmlSetProp(root, BAD_CAST "type", BAD_CAST domain_type().c_str());
  for (xmlNode* n = root->children; n != nullptr; n = n->next) {
    if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST "name")) {
      xmlNodeSetContent(n, nullptr);
      xmlNodeAddContent(n, BAD_CAST name.c_str());
    }
  }
  xmlChar* mem = nullptr;
  int size = 0;
  xmlDocDumpMemory(doc.get(), &mem, &size);
  std::string out(reinterpret_cast<char*>(mem), static_cast<std::size_t>(size));
  xmlFree(mem);
  return out;
}

std::string write_guest(const Lab& lab, const std::string& name) {
  auto path = lab.work_dir() / (name + ".xml");
  std::ofstream(path) << guest_xml(name);
  return path.string();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The stdout of a virsh call that must succeed.
std::string virsh_ok(Lab& lab, const Host& host, const std::vector<std::string>& args) {
  RunOptions o;
  o.timeout = 60s;
  auto r = lab.virsh(host, args, o);
  if (!r.ok()) {
    ADD_FAILURE() << "virsh " << args.front() << " on " << host.name << ": " << r.error().message;
    return {};
  }
  EXPECT_EQ(r->exit_code, 0) << "virsh " << args.front() << " on " << host.name << ": " << r->err;
  return trim(r->out);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!trim(l).empty()) out.push_back(trim(l));
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// QEMU processes among a host's processes that run the guest `name`.
int qemu_processes_of(Lab& lab, const Host& host, const std::string& name) {
  int n = 0;
  for (pid_t pid : lab.processes(host)) {
    auto c = cmdline(pid);
    if (c.find("qemu-system") != std::string::npos && c.find("guest=" + name) != std::string::npos)
      ++n;
  }
  return n;
}

bool pid_gone(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return true;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

// What a lab made, to check it is all gone afterwards.
struct Trail {
  std::vector<std::string> netns;
  std::vector<std::string> links;
  std::vector<pid_t> pids;
  fs::path work_dir;
};

Trail trail_of(Lab& lab) {
  Trail t;
  t.work_dir = lab.work_dir();
  if (!lab.bridge().empty()) t.links.push_back(lab.bridge());
  for (const auto& h : lab.hosts()) {
    if (!h.netns.empty()) t.netns.push_back(h.netns);
    if (!h.veth.empty()) t.links.push_back(h.veth);
    for (pid_t p : lab.processes(h)) t.pids.push_back(p);
  }
  return t;
}

void expect_nothing_left(const Trail& t) {
  for (const auto& ns : t.netns)
    EXPECT_FALSE(fs::exists("/run/netns/" + ns)) << "netns " << ns << " left";
  for (const auto& l : t.links)
    EXPECT_FALSE(fs::exists("/sys/class/net/" + l)) << "link " << l << " left";
  for (pid_t p : t.pids)
    EXPECT_TRUE(pid_gone(p)) << "process " << p << " (" << cmdline(p) << ") left";
  EXPECT_FALSE(fs::exists(t.work_dir)) << "work dir " << t.work_dir << " left";
}

class LabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the lab needs root (namespaces, libvirtd); not run";
    domain_type();
  }

  std::unique_ptr<Lab> make_lab(bool network = true) {
    LabOptions o;
    o.network = network;
    o.capabilities_cache = KVMFLEET_LAB_CACHE_DIR;
    auto lab = Lab::create(runner_, o);
    if (!lab.ok()) {
      ADD_FAILURE() << "Lab::create: " << lab.error().message;
      return nullptr;
    }
    return std::move(lab).value();
  }

  static Host must(Result<Host> h) {
    if (!h.ok()) {
      ADD_FAILURE() << h.error().message << "\n" << h.error().details.dump(2);
      return {};
    }
    return *h;
  }

  SystemProcessRunner runner_;
};

TEST_F(LabTest, OneHostRunsAGuestAndTeardownLeavesNothing) {
  auto lab = make_lab();
  ASSERT_NE(lab, nullptr);
  Host a = must(lab->add_host("alpha"));
  ASSERT_FALSE(a.name.empty());
  EXPECT_EQ(a.libvirt_uri, "qemu+tcp://" + a.address + "/system");

  // The host is its own machine: its hostname and its libvirtd's host UUID.
  auto hn = lab->exec_in_host(a, {"hostname"});
  ASSERT_TRUE(hn.ok());
  EXPECT_EQ(trim(hn->out), "alpha");
  EXPECT_NE(virsh_ok(*lab, a, {"capabilities"}).find("<uuid>" + a.host_uuid + "</uuid>"),
            std::string::npos);

  const std::string vm = "lab-one";
  virsh_ok(*lab, a, {"define", write_guest(*lab, vm)});
  virsh_ok(*lab, a, {"start", vm});
  EXPECT_EQ(virsh_ok(*lab, a, {"domstate", vm}), "running");
  EXPECT_EQ(qemu_processes_of(*lab, a, vm), 1);

  Trail trail = trail_of(*lab);
  EXPECT_GE(trail.pids.size(), 4u);  // init, virtlogd, libvirtd, qemu
  virsh_ok(*lab, a, {"destroy", vm});
  EXPECT_EQ(virsh_ok(*lab, a, {"domstate", vm}), "shut off");
  EXPECT_EQ(qemu_processes_of(*lab, a, vm), 0);

  auto s = lab->teardown();
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_nothing_left(trail);
}

TEST_F(LabTest, LiveMigrationMovesARunningGuestToExactlyOneHost) {
  auto lab = make_lab();
  ASSERT_NE(lab, nullptr);
  Host a = must(lab->add_host("src"));
  Host b = must(lab->add_host("dst"));
  ASSERT_FALSE(a.name.empty());
  ASSERT_FALSE(b.name.empty());
  EXPECT_NE(a.host_uuid, b.host_uuid);

  const std::string vm = "lab-mig";
  virsh_ok(*lab, a, {"define", write_guest(*lab, vm)});
  virsh_ok(*lab, a, {"start", vm});
  ASSERT_EQ(virsh_ok(*lab, a, {"domstate", vm}), "running");

  RunOptions o;
  o.timeout = 60s;
  auto mig = lab->virsh(a,
                        {"migrate", "--live", "--persistent", "--undefinesource", vm, b.libvirt_uri,
                         "--migrateuri", "tcp://" + b.address},
                        o);
  ASSERT_TRUE(mig.ok()) << mig.error().message;
  ASSERT_EQ(mig->exit_code, 0) << mig->err;

  auto running_b = lines(virsh_ok(*lab, b, {"list", "--name", "--state-running"}));
  auto all_a = lines(virsh_ok(*lab, a, {"list", "--name", "--all"}));
  EXPECT_TRUE(contains(running_b, vm));
  EXPECT_FALSE(contains(all_a, vm));
  EXPECT_EQ(virsh_ok(*lab, b, {"domstate", vm}), "running");
  EXPECT_EQ(qemu_processes_of(*lab, b, vm), 1);
  EXPECT_EQ(qemu_processes_of(*lab, a, vm), 0);

  Trail trail = trail_of(*lab);
  auto s = lab->teardown();
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_nothing_left(trail);
}

TEST_F(LabTest, LocalHostIsReachableOnlyInsideAndSurvivesALibvirtdRestart) {
  auto lab = make_lab(/*network=*/false);
  ASSERT_NE(lab, nullptr);
  EXPECT_TRUE(lab->bridge().empty());
  Host h = must(lab->add_local_host("solo"));
  ASSERT_FALSE(h.name.empty());
  EXPECT_TRUE(h.netns.empty());
  EXPECT_EQ(h.libvirt_uri, "qemu:///system");

  // The machine's own /run is not the host's: its socket is visible only inside.
  std::string sock = "/run/libvirt/libvirt-sock";
  EXPECT_TRUE(lab->exec_in_host(h, {"test", "-S", sock})->success());
  auto outside_uuid = runner_.run({"virsh", "-q", "-c", "qemu:///system", "capabilities"});
  if (outside_uuid.ok() && outside_uuid->success()) {
    EXPECT_EQ(outside_uuid->out.find(h.host_uuid), std::string::npos)
        << "the machine's libvirtd is the lab's";
  }

  const std::string vm = "lab-local";
  virsh_ok(*lab, h, {"define", write_guest(*lab, vm)});
  virsh_ok(*lab, h, {"start", vm});
  ASSERT_EQ(virsh_ok(*lab, h, {"domstate", vm}), "running");

  auto s = lab->restart_libvirtd(h);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(virsh_ok(*lab, h, {"domstate", vm}), "running");
  EXPECT_EQ(qemu_processes_of(*lab, h, vm), 1);

  Trail trail = trail_of(*lab);
  ASSERT_TRUE(lab->teardown().ok());
  expect_nothing_left(trail);
}

TEST_F(LabTest, KillPartitionAndRestartAHost) {
  auto lab = make_lab();
  ASSERT_NE(lab, nullptr);
  Host h = must(lab->add_host("victim"));
  ASSERT_FALSE(h.name.empty());
  EXPECT_FALSE(virsh_ok(*lab, h, {"version"}).empty());

  // A partition cuts the link but leaves every process running.
  auto before = lab->processes(h);
  ASSERT_TRUE(lab->partition_host(h).ok());
  // The kernel updates the peer's operstate asynchronously (linkwatch), so poll.
  std::string operstate = "up";
  for (int i = 0; i < 50 && operstate == "up"; ++i) {
    auto state = lab->exec_in_host(h, {"cat", "/sys/class/net/eth0/operstate"});
    ASSERT_TRUE(state.ok());
    operstate = trim(state->out);
    if (operstate == "up") std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(operstate, "up");  // "down" or "lowerlayerdown" depending on the kernel
  RunOptions quick;
  quick.timeout = 3s;
  auto cut = lab->virsh(h, {"version"}, quick);
  EXPECT_TRUE(!cut.ok() || !cut->success()) << "virsh reached a partitioned host";
  EXPECT_EQ(lab->processes(h), before);
  ASSERT_TRUE(lab->heal_host(h).ok());
  EXPECT_FALSE(virsh_ok(*lab, h, {"version"}).empty());

  // A crash: every process of the host dies, its network stays.
  ASSERT_TRUE(lab->kill_host(h).ok());
  EXPECT_TRUE(lab->processes(h).empty());
  for (pid_t p : before) EXPECT_TRUE(pid_gone(p)) << p;
  auto dead = lab->virsh(h, {"version"}, quick);
  EXPECT_TRUE(!dead.ok() || !dead->success());
  EXPECT_FALSE(lab->exec_in_host(h, {"true"}).ok());

  Host again = must(lab->restart_host(h));
  EXPECT_EQ(again.address, h.address);
  EXPECT_EQ(again.host_uuid, h.host_uuid);
  EXPECT_FALSE(virsh_ok(*lab, again, {"version"}).empty());

  Trail trail = trail_of(*lab);
  ASSERT_TRUE(lab->teardown().ok());
  expect_nothing_left(trail);
}

TEST_F(LabTest, RunInHostStartsACommandThatDiesWithTheHost) {
  auto lab = make_lab();
  ASSERT_NE(lab, nullptr);
  HostOptions ho;
  ho.command = {"sleep", "1000"};  // stands in for an agent exec'd by the host's init
  Host h = must(lab->add_host("runner", ho));
  ASSERT_FALSE(h.name.empty());
  EXPECT_EQ(cmdline(h.init_pid)
                .rfind(std::string("sleep\0"
                                   "1000",
                                   10),
                       0),
            0u);

  auto pid = lab->run_in_host(h, {"sleep", "999"});
  ASSERT_TRUE(pid.ok()) << pid.error().message;
  // It runs in the host's namespaces: it sees the host's libvirtd socket.
  auto procs = lab->processes(h);
  EXPECT_TRUE(std::find(procs.begin(), procs.end(), *pid) != procs.end());

  Trail trail = trail_of(*lab);
  ASSERT_TRUE(lab->teardown().ok());
  expect_nothing_left(trail);
}

// The host script mounts over /run and renames the host; it must refuse to do so in
// its caller's namespaces. Probed inside a throwaway namespace, so that a broken
// check could not harm the machine.
TEST_F(LabTest, HostScriptRefusesToRunInItsCallersNamespaces) {
  const std::string script = std::string(KVMFLEET_LAB_SCRIPTS_DIR) + "/lab-host-init.sh";
  auto dir = fs::temp_directory_path() / ("kvmfleet-lab-probe-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<std::string> throwaway = {"unshare", "--mount", "--uts", "--propagation",
                                              "private"};

  // The caller names the very namespace the script runs in.
  auto same = throwaway;
  same.insert(same.end(),
              {"sh", "-c",
               "exec \"$1\" --outer-mnt \"$(readlink /proc/self/ns/mnt)\" "
               "--outer-uts \"$(readlink /proc/self/ns/uts)\" --name probe --dir \"$2\" --uuid 0",
               "sh", script, dir.string()});
  auto r1 = runner_.run(same);
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->exit_code, 1);
  EXPECT_NE(r1->err.find("not in a private mount namespace"), std::string::npos) << r1->err;

  // Nothing was written: the check comes before any change.
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

std::vector<std::string> mount_points() {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mp;
    f >> id >> parent >> dev >> root >> mp;
    out.push_back(mp);
  }
  return out;
}

// Called directly, without unshare and without naming the caller's namespaces (as a
// by-hand run does), the script makes its own namespaces: the machine keeps its
// hostname and mounts, and the command after -- runs in the new host.
TEST_F(LabTest, HostScriptCalledDirectlyMakesItsOwnNamespaces) {
  const std::string script = std::string(KVMFLEET_LAB_SCRIPTS_DIR) + "/lab-host-init.sh";
  auto dir = fs::temp_directory_path() / ("kvmfleet-lab-direct-" + std::to_string(::getpid()));
  fs::create_directories(dir / "cache" / "qemu");
  std::error_code ec;
  if (fs::exists(KVMFLEET_LAB_CACHE_DIR))  // only saves libvirtd a QEMU probe
    fs::copy(KVMFLEET_LAB_CACHE_DIR, dir / "cache" / "qemu" / "capabilities",
             fs::copy_options::recursive, ec);
  char before_name[256] = {};
  ::gethostname(before_name, sizeof before_name);
  const auto before_mounts = mount_points();

  RunOptions o;
  o.timeout = 90s;
  auto r = runner_.run({script, "--name", "direct-probe", "--dir", dir.string(), "--uuid",
                        "6d7a1a51-8f64-4d36-9a57-2a4ba7d0c9e1", "--", "hostname"},
                       o);
  // The daemons outlive the command; stop them by their recorded pids, after making
  // sure those pids are in a mount namespace other than ours.
  const auto our_mnt = fs::read_symlink("/proc/self/ns/mnt", ec);
  for (const char* f : {"libvirtd.pid", "virtlogd.pid"}) {
    std::ifstream in(dir / "pids" / f);
    pid_t pid = 0;
    if (!(in >> pid) || pid <= 1) continue;
    auto mnt = fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/mnt", ec);
    if (!ec && mnt != our_mnt) ::kill(pid, SIGKILL);
  }
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->exit_code, 0) << r->err;
  auto out = lines(r->out);  // the script's own "ready" line, then the command's output
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), "direct-probe");
  char after_name[256] = {};
  ::gethostname(after_name, sizeof after_name);
  EXPECT_STREQ(after_name, before_name);
  EXPECT_EQ(mount_points(), before_mounts);
  fs::remove_all(dir, ec);
}

TEST_F(LabTest, CleanupStaleRemovesWhatACrashedLabLeft) {
  Trail trail;
  fs::path dir;
  {
    auto lab = make_lab();
    ASSERT_NE(lab, nullptr);
    Host h = must(lab->add_host("orphan"));
    Host l = must(lab->add_local_host("orphan-local"));
    ASSERT_FALSE(h.name.empty());
    ASSERT_FALSE(l.name.empty());
    trail = trail_of(*lab);
    dir = lab->work_dir();
    // As if the owning process had died: nothing is torn down.
    lab->detach();
  }
  ASSERT_TRUE(fs::exists(dir / "lab.json"));
  for (pid_t p : trail.pids) EXPECT_FALSE(pid_gone(p)) << p;

  auto s = Lab::cleanup_stale(runner_, dir);
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_nothing_left(trail);
}

}  // namespace
}  // namespace kvmfleet::lab
