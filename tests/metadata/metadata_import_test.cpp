#include "kvmfleet/metadata/metadata_import.hpp"
#include "tests/doubles/common/manual_clock.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "kvmfleet/metadata/record.hpp"
#include "tests/doubles/store/memory_store.hpp"
#include "tests/metadata/test_support.hpp"

using namespace kvmfleet;
using namespace kvmfleet::metadata;
using namespace std::chrono_literals;
using kvmfleet::testing_support::sample_vm;
using kvmfleet::testing_support::TempDir;

namespace {

class ImportTest : public ::testing::Test {
 protected:
  void SetUp() override { fs_ = make_posix_metadata_fs(dir_.path()); }

  RenderedRecord put(const VmMetadata& m, Clock::time_point written_at) {
    auto r = render_record(m, PoolInfo{}, "ctl1", written_at);
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(write_record(*fs_, *r).ok());
    return *r;
  }
  RenderedRecord put(const VmMetadata& m) { return put(m, clock_.now() - 1min); }

  std::string slurp(const std::string& name) { return *fs_->read(name, 1 << 20); }
  void overwrite(const std::string& name, const std::string& text) {
    std::ofstream(dir_.file(name), std::ios::trunc | std::ios::binary) << text;
  }

  const ImportEntry& entry(const ImportReport& r, const std::string& vm_id) {
    for (const auto& e : r.entries)
      if (e.file == vm_id + ".json") return e;
    static ImportEntry none;
    ADD_FAILURE() << "no entry for " << vm_id;
    return none;
  }

  TempDir dir_;
  std::shared_ptr<MetadataFs> fs_;
  ManualClock clock_;
  doubles::MemoryStore store_;
};

TEST_F(ImportTest, ValidRecordsBecomeVmsInTheStore) {
  auto a = sample_vm("web1", 4);
  auto b = sample_vm("db1", 2);
  b.vm.host = "";
  b.vm.desired = DesiredState::stopped;
  put(a);
  put(b);
  overwrite(".kvmfleet-tmp-leftover.json.abc123", "{");  // a crashed writer's temp file
  auto r = import_metadata(*fs_, store_, clock_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->imported, 2u);
  EXPECT_EQ(r->refused, 0u);
  EXPECT_EQ(r->ignored.size(), 1u);
  auto snap = store_.load();
  ASSERT_EQ(snap->vms.size(), 2u);
  for (const auto& vm : snap->vms) {
    const auto& want = vm.id == a.vm.id ? a.vm : b.vm;
    EXPECT_EQ(vm.spec, want.spec);
    EXPECT_EQ(vm.host, want.host);
    EXPECT_EQ(vm.desired, want.desired);
    EXPECT_EQ(vm.generation, want.generation);
    EXPECT_EQ(vm.state, VmState::unknown);  // until its host reports it
  }
  // Again: nothing new, nothing refused.
  r = import_metadata(*fs_, store_, clock_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->unchanged, 2u);
  EXPECT_EQ(r->imported, 0u);
  EXPECT_EQ(store_.commits, 1);
}

TEST_F(ImportTest, EachBadRecordIsRefusedWithItsReasonAndTheRestIsImported) {
  auto good = sample_vm("good", 1);
  auto truncated = sample_vm("truncated", 1);
  auto tampered = sample_vm("tampered", 1);
  auto future = sample_vm("future", 1);
  auto torn = sample_vm("torn", 1);
  auto missing = sample_vm("missing", 1);
  auto xml_tampered = sample_vm("xmltampered", 1);
  put(good);
  auto t = put(truncated);
  overwrite(t.json_name, t.json.substr(0, t.json.size() / 2));
  auto p = put(tampered);
  std::string j = p.json;
  j.replace(j.find("\"vcpus\": 2"), 10, "\"vcpus\": 8");
  overwrite(p.json_name, j);
  put(future, clock_.now() + 1h);
  // Torn pair: the JSON of generation 1 next to the XML of generation 2 only.
  auto tr = put(torn);
  auto torn2 = torn;
  torn2.vm.generation = 2;
  auto tr2 = *render_record(torn2, PoolInfo{}, "ctl1", clock_.now());
  ASSERT_TRUE(fs_->write_atomic(tr2.xml_name, tr2.xml).ok());
  ASSERT_TRUE(fs_->remove(tr.xml_name).ok());
  auto mi = put(missing);
  ASSERT_TRUE(fs_->remove(mi.xml_name).ok());
  auto xt = put(xml_tampered);
  std::string x = xt.xml;
  x.replace(x.find("<vcpu>2</vcpu>"), 14, "<vcpu>9</vcpu>");
  overwrite(xt.xml_name, x);
  overwrite("not-a-record.json", "[1,2,3]");

  auto r = import_metadata(*fs_, store_, clock_);
  ASSERT_TRUE(r.ok());
  std::printf("%s", format_report(*r).c_str());
  EXPECT_EQ(r->imported, 1u);
  EXPECT_EQ(r->refused, 7u);
  EXPECT_EQ(entry(*r, good.vm.id).outcome, ImportOutcome::imported);
  auto reason = [&](const VmMetadata& m) { return entry(*r, m.vm.id).reason; };
  EXPECT_NE(reason(truncated).find("not valid JSON"), std::string::npos);
  EXPECT_NE(reason(tampered).find("digest mismatch"), std::string::npos);
  EXPECT_NE(reason(future).find("in the future"), std::string::npos);
  EXPECT_NE(reason(torn).find("missing (torn pair)"), std::string::npos);
  EXPECT_NE(reason(missing).find("missing (torn pair)"), std::string::npos);
  EXPECT_NE(reason(xml_tampered).find("does not match the digest"), std::string::npos);
  auto snap = store_.load();
  ASSERT_EQ(snap->vms.size(), 1u);
  EXPECT_EQ(snap->vms[0].id, good.vm.id);
}

TEST_F(ImportTest, StaleRecordsAndNameClashesAreRefusedNewerOnesReplace) {
  auto stale = sample_vm("stale", 3);
  auto newer = sample_vm("newer", 5);
  auto clash = sample_vm("taken", 1);
  put(stale);
  put(newer);
  put(clash);
  WriteBatch b;
  Vm s = stale.vm;
  s.generation = 4;
  Vm n = newer.vm;
  n.generation = 2;
  n.spec.memory_mib = 128;
  Vm other = sample_vm("taken", 1).vm;  // same name, another id
  b.put_vms = {s, n, other};
  ASSERT_TRUE(store_.commit(b).ok());

  auto r = import_metadata(*fs_, store_, clock_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(entry(*r, stale.vm.id).outcome, ImportOutcome::refused);
  EXPECT_NE(entry(*r, stale.vm.id).reason.find("stale: generation 3"), std::string::npos);
  EXPECT_EQ(entry(*r, clash.vm.id).outcome, ImportOutcome::refused);
  EXPECT_NE(entry(*r, clash.vm.id).reason.find("belongs to VM " + other.id), std::string::npos);
  EXPECT_EQ(entry(*r, newer.vm.id).outcome, ImportOutcome::imported);
  auto snap = store_.load();
  for (const auto& vm : snap->vms) {
    if (vm.id == newer.vm.id) {
      EXPECT_EQ(vm.generation, 5);
      EXPECT_EQ(vm.spec.memory_mib, 512);
    }
    if (vm.id == stale.vm.id) {
      EXPECT_EQ(vm.generation, 4);
    }
  }
}

TEST_F(ImportTest, TwoRecordsClaimingOneNameAreBothRefused) {
  auto a = sample_vm("twin", 1);
  auto b = sample_vm("twin", 1);
  put(a);
  put(b);
  auto r = import_metadata(*fs_, store_, clock_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->refused, 2u);
  EXPECT_TRUE(store_.load()->vms.empty());
}

TEST_F(ImportTest, AFailingStoreImportsNothing) {
  put(sample_vm("a", 1));
  put(sample_vm("b", 1));
  store_.fail_commits = 1;
  EXPECT_FALSE(import_metadata(*fs_, store_, clock_).ok());
  EXPECT_TRUE(store_.load()->vms.empty());
}

// Hundreds of damaged files in one directory: the import finishes, refuses what is
// damaged, and imports only records identical to what was written.
TEST_F(ImportTest, FuzzedDirectoryNeverCrashesTheImport) {
  std::mt19937 rng(777);
  std::map<std::string, VmMetadata> written;
  for (int i = 0; i < 300; ++i) {
    auto m = sample_vm("fz" + std::to_string(i), 1 + static_cast<int>(rng() % 5));
    auto rec = put(m);
    written[m.vm.id] = m;
    std::string& target = (i % 4 == 0) ? rec.xml : rec.json;
    const std::string name = (i % 4 == 0) ? rec.xml_name : rec.json_name;
    if (i % 10 == 9) continue;  // leave some intact
    for (int e = 0; e < 1 + static_cast<int>(rng() % 3); ++e) {
      const std::size_t pos = rng() % target.size();
      if (rng() % 2) {
        target[pos] = static_cast<char>(rng() % 256);
      } else {
        target.resize(pos);
      }
      if (target.empty()) break;
    }
    overwrite(name, target);
  }
  auto r = import_metadata(*fs_, store_, clock_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->entries.size(), 300u);
  EXPECT_GE(r->imported, 30u);
  EXPECT_GE(r->refused, 200u);
  auto snap = store_.load();
  ASSERT_TRUE(snap.ok());
  for (const auto& vm : snap->vms) {
    const auto& want = written.at(vm.id).vm;
    EXPECT_EQ(vm.spec, want.spec);
    EXPECT_EQ(vm.generation, want.generation);
  }
}

// The command itself: refusals make it exit non-zero, and its summary says why.
TEST_F(ImportTest, TheControllerCommandImportsAndExitsNonZeroOnRefusals) {
  TempDir db;
  put(sample_vm("cli1", 1));
  auto bad = put(sample_vm("cli2", 1));
  overwrite(bad.json_name, bad.json.substr(0, 40));
  const std::string out = db.file("out.txt");
  // A dry run reports the same and writes nothing.
  const std::string dry = std::string(KVMFLEET_CONTROLLER_BIN) + " --import " + dir_.path() +
                          " --dry-run --database " + db.file("c.db") + " > " + out + " 2>&1";
  const int dry_rc = std::system(dry.c_str());
  ASSERT_TRUE(WIFEXITED(dry_rc));
  EXPECT_EQ(WEXITSTATUS(dry_rc), 1);
  {
    auto store = open_sqlite_store(db.file("c.db"));
    ASSERT_TRUE(store.ok());
    EXPECT_TRUE((*store)->load()->vms.empty());
  }
  const std::string cmd = std::string(KVMFLEET_CONTROLLER_BIN) + " --import " + dir_.path() +
                          " --database " + db.file("c.db") + " > " + out + " 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 1);
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(text.find("1 imported, 0 unchanged, 1 refused"), std::string::npos) << text;
  EXPECT_NE(text.find("refused\t" + bad.json_name + "\tnot valid JSON"), std::string::npos) << text;
  auto store = open_sqlite_store(db.file("c.db"));
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->load()->vms.size(), 1u);
}

}  // namespace
