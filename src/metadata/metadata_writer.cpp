#include "kvmfleet/metadata/metadata_writer.hpp"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "kvmfleet/common/validate.hpp"

namespace kvmfleet::metadata {
namespace {

constexpr std::int64_t kDeleteGeneration = std::numeric_limits<std::int64_t>::max();
// A deleted VM's id is remembered this long, so a put that raced its deletion (VM
// observers run outside the state lock) cannot bring the record back.
constexpr auto kTombstoneTtl = std::chrono::minutes(10);

// One slot handed to the I/O thread. Kept alive by shared_ptr: a thread stuck in a
// hung share outlives the writer and must still find it.
struct Io {
  std::shared_ptr<MetadataFs> fs;
  std::mutex mu;
  std::condition_variable cv;
  std::function<Status(MetadataFs&)> job;
  // Raised once the job posted last has run, and by stop(): ends the waits for it on
  // the clock. Each job gets its own.
  Interrupt finished;
  bool has_job = false;
  bool busy = false;
  bool done = false;
  bool quit = false;
  Status result;

  void run() {
    std::unique_lock l(mu);
    for (;;) {
      cv.wait(l, [&] { return has_job || quit; });
      if (quit) return;
      auto j = std::move(job);
      Interrupt ran = finished;
      has_job = false;
      busy = true;
      l.unlock();
      Status r;
      try {
        r = j(*fs);
      } catch (const std::exception& e) {
        r = internal_error(std::string("metadata write failed: ") + e.what());
      }
      l.lock();
      busy = false;
      result = std::move(r);
      done = true;
      cv.notify_all();
      ran.raise();
    }
  }
};

}  // namespace

struct MetadataWriter::Shared {
  struct Entry {
    std::optional<VmMetadata> meta;  // nullopt: delete the record
    std::int64_t generation = 0;
    Clock::steady_time_point first_change{};
    std::uint64_t seq = 0;
  };
  struct InFlight {
    std::string id;
    std::int64_t generation = 0;
    Clock::steady_time_point first_change{};
  };

  Shared(std::shared_ptr<MetadataFs> f, const Clock& c, MetadataWriterOptions o, Refetch r)
      : clock(c), opts(std::move(o)), refetch(std::move(r)), io(std::make_shared<Io>()) {
    io->fs = std::move(f);
    if (opts.queue_capacity == 0) opts.queue_capacity = 1;
  }

  const Clock& clock;
  MetadataWriterOptions opts;
  Refetch refetch;
  std::shared_ptr<Io> io;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  Interrupt stopped;  // raised with `stopping`: ends the retry backoff
  std::thread coordinator;
  std::thread io_thread;

  std::unordered_map<std::string, Entry> pending;
  std::map<std::uint64_t, std::string> order;  // seq → id, oldest first
  std::uint64_t next_seq = 0;
  // The times below are the clock's monotonic reading: they measure the lag and the
  // tombstones' age, and a step of the wall clock must not skew either.
  std::map<std::string, Clock::steady_time_point> dropped;  // id → its oldest unwritten change
  std::unordered_map<std::string, std::int64_t> done_gen;
  std::unordered_map<std::string, std::string> done_xml;
  std::unordered_map<std::string, Clock::steady_time_point> tombstones;
  std::optional<InFlight> in_flight;
  MetadataHealth h;

  // --- under mu
  void enqueue(const std::string& id, Entry e) {
    e.seq = next_seq++;
    order[e.seq] = id;
    pending[id] = std::move(e);
    if (pending.size() > opts.queue_capacity) {
      auto oldest = order.begin();
      auto it = pending.find(oldest->second);
      auto& first = dropped.try_emplace(oldest->second, it->second.first_change).first->second;
      first = std::min(first, it->second.first_change);
      pending.erase(it);
      order.erase(oldest);
      ++h.dropped_total;
    }
  }

  void record_error(const std::string& message) {
    ++h.errors_total;
    h.healthy = false;
    h.last_error = message;
    h.last_error_at = clock.now();
  }

  // Runs one file operation on the I/O thread. Past the timeout (on the clock) the
  // writer is marked unhealthy and keeps waiting: a blocked system call cannot be
  // cancelled, and the share may answer later. Only stop() gives up on it.
  Status run_io(std::function<Status(MetadataFs&)> job, const std::string& what) {
    std::unique_lock l(io->mu);
    if (io->quit) return unavailable("stopped before " + what);
    const Interrupt finished;
    io->job = std::move(job);
    io->finished = finished;
    io->has_job = true;
    io->done = false;
    l.unlock();
    io->cv.notify_all();
    const bool timed_out = clock.sleep_for(opts.write_timeout, finished);
    l.lock();
    if (timed_out && !io->done && !io->quit) {
      l.unlock();
      {
        std::lock_guard lk(mu);
        record_error(what + " has not finished after " +
                     std::to_string(opts.write_timeout.count()) + " ms (is the share hung?)");
      }
      spdlog::warn("metadata: {} has not finished after {} ms", what, opts.write_timeout.count());
      l.lock();
    }
    io->cv.wait(l, [&] { return io->done || io->quit; });
    if (!io->done) return unavailable("stopped while " + what + " was in progress");
    io->done = false;
    return std::move(io->result);
  }

  void seed() {
    // What the directory already holds, so a restart does not rewrite every record.
    auto found = std::make_shared<std::map<std::string, std::pair<std::int64_t, std::string>>>();
    auto st = run_io(
        [found](MetadataFs& fs) -> Status {
          auto names = fs.list();
          if (!names) return names.take_error();
          for (const auto& n : *names) {
            if (n.starts_with(".") || !n.ends_with(".json")) continue;
            auto rec = read_record(fs, n);
            if (rec) (*found)[rec->vm.id] = {rec->vm.generation, rec->xml_name};
          }
          return {};
        },
        "reading the metadata directory");
    std::lock_guard lk(mu);
    if (!st) {
      record_error("reading the metadata directory: " + st.error().message);
      return;
    }
    for (auto& [id, v] : *found) {
      if (tombstones.contains(id)) continue;
      auto& g = done_gen[id];
      if (v.first > g) {
        g = v.first;
        done_xml[id] = v.second;
      }
    }
  }

  void run() {
    seed();
    std::unique_lock lk(mu);
    while (!stopping) {
      cv.wait(lk, [&] {
        return stopping || !pending.empty() ||
               (!dropped.empty() && pending.size() < opts.queue_capacity);
      });
      if (stopping) break;
      std::string id;
      Entry e;
      if (!pending.empty()) {
        auto oldest = order.begin();
        id = oldest->second;
        order.erase(oldest);
        auto it = pending.find(id);
        e = std::move(it->second);
        pending.erase(it);
      } else {
        auto it = dropped.begin();
        id = it->first;
        e.first_change = it->second;
        dropped.erase(it);
        if (tombstones.contains(id)) {
          e.generation = kDeleteGeneration;
        } else {
          in_flight = InFlight{id, 0, e.first_change};
          lk.unlock();
          std::optional<VmMetadata> m;
          bool reread = static_cast<bool>(refetch);
          try {
            if (reread) m = refetch(id);
          } catch (const std::exception& ex) {
            reread = false;
            spdlog::error("metadata: re-reading VM {}: {}", id, ex.what());
          }
          lk.lock();
          in_flight.reset();
          if (pending.contains(id) || stopping) continue;  // a newer change arrived meanwhile
          if (!reread) {
            // Without the VM's current state the record is left as it is, never removed.
            record_error("the dropped change of VM " + id + " cannot be re-read");
            continue;
          }
          if (m) {
            e.generation = m->vm.generation;
            e.meta = std::move(m);
          } else {
            e.generation = kDeleteGeneration;
          }
        }
      }
      if (e.meta) {
        if (tombstones.contains(id)) continue;
        if (auto g = done_gen.find(id); g != done_gen.end() && g->second >= e.generation) continue;
      }
      in_flight = InFlight{id, e.generation, e.first_change};
      std::string previous_xml;
      if (auto x = done_xml.find(id); x != done_xml.end()) previous_xml = x->second;
      lk.unlock();

      Status result;
      std::string committed_xml;
      if (e.meta) {
        auto rendered = render_record(*e.meta, opts.pool, opts.writer_id, clock.now());
        if (!rendered) {
          // Not retried: the same VM renders the same way until it changes again.
          spdlog::error("metadata: VM {} cannot be rendered: {}", id, rendered.error().message);
          lk.lock();
          in_flight.reset();
          record_error("VM " + id + " cannot be rendered: " + rendered.error().message);
          continue;
        }
        auto xml_out = std::make_shared<std::string>();
        result = run_io(
            [rec = std::move(*rendered), previous_xml, xml_out](MetadataFs& fs) -> Status {
              auto r = write_record(fs, rec, previous_xml);
              if (!r) return r.take_error();
              *xml_out = std::move(*r);
              return {};
            },
            "writing the record of VM " + id);
        committed_xml = *xml_out;
      } else {
        result = run_io([id](MetadataFs& fs) { return delete_record(fs, id); },
                        "removing the record of VM " + id);
      }

      lk.lock();
      in_flight.reset();
      if (result) {
        ++h.writes_total;
        h.healthy = true;
        h.last_success = clock.now();
        if (e.meta) {
          done_gen[id] = e.generation;
          done_xml[id] = committed_xml;
        } else {
          done_gen.erase(id);
          done_xml.erase(id);
        }
        continue;
      }
      if (stopping) break;
      record_error(result.error().message);
      spdlog::warn("metadata: {}", result.error().message);
      // Try again later, behind the others, unless a newer change replaced it.
      if (!pending.contains(id)) {
        if (!e.meta || !tombstones.contains(id)) enqueue(id, std::move(e));
      }
      lk.unlock();
      clock.sleep_for(opts.retry_backoff, stopped);
      lk.lock();
    }
  }
};

MetadataWriter::MetadataWriter(std::shared_ptr<MetadataFs> fs, const Clock& clock,
                               MetadataWriterOptions opts, Refetch refetch)
    : s_(std::make_shared<Shared>(std::move(fs), clock, std::move(opts), std::move(refetch))) {}

MetadataWriter::~MetadataWriter() {
  stop();
}

void MetadataWriter::start() {
  std::lock_guard lk(s_->mu);
  if (s_->started) return;
  s_->started = true;
  s_->io_thread = std::thread([io = s_->io] { io->run(); });
  s_->coordinator = std::thread([s = s_.get()] { s->run(); });
}

void MetadataWriter::stop() {
  {
    std::lock_guard lk(s_->mu);
    if (!s_->started || s_->stopping) return;
    s_->stopping = true;
  }
  s_->stopped.raise();
  s_->cv.notify_all();
  auto& io = *s_->io;
  // The file operation in progress (or the one the coordinator posts as it stops) gets
  // up to write_timeout on the clock to finish.
  const auto deadline = s_->clock.steady_now() + s_->opts.write_timeout;
  for (;;) {
    Interrupt finished;
    {
      std::lock_guard l(io.mu);
      if (!io.busy && !io.has_job) break;
      finished = io.finished;
    }
    if (s_->clock.sleep_until_steady(deadline, finished)) break;  // it did not
  }
  bool hung = false;
  Interrupt finished;
  {
    std::lock_guard l(io.mu);
    io.quit = true;
    hung = io.busy;
    finished = io.finished;
  }
  io.cv.notify_all();
  finished.raise();  // the coordinator stops waiting for it
  s_->coordinator.join();
  if (hung) {
    // The thread is blocked in the share; it holds its own reference to what it uses.
    spdlog::warn("metadata: a write is still blocked in the share; leaving it behind");
    s_->io_thread.detach();
  } else {
    s_->io_thread.join();
  }
}

void MetadataWriter::submit(VmMetadata meta) {
  auto& s = *s_;
  const std::string id = meta.vm.id;
  const std::int64_t gen = meta.vm.generation;
  {
    std::lock_guard lk(s.mu);
    if (s.tombstones.contains(id)) return;
    if (auto it = s.pending.find(id); it != s.pending.end()) {
      if (it->second.meta && gen > it->second.generation) {
        it->second.generation = gen;
        it->second.meta = std::move(meta);
      }
      return;
    }
    if (s.in_flight && s.in_flight->id == id && s.in_flight->generation >= gen) return;
    if (auto g = s.done_gen.find(id); g != s.done_gen.end() && g->second >= gen) return;
    Shared::Entry e;
    e.generation = gen;
    e.first_change = s.clock.steady_now();
    if (auto d = s.dropped.find(id); d != s.dropped.end()) {
      e.first_change = d->second;
      s.dropped.erase(d);
    }
    e.meta = std::move(meta);
    s.enqueue(id, std::move(e));
  }
  s.cv.notify_all();
}

void MetadataWriter::submit_delete(const std::string& vm_id) {
  auto& s = *s_;
  {
    std::lock_guard lk(s.mu);
    const auto now = s.clock.steady_now();
    if (s.tombstones.size() > 1024) {
      std::erase_if(s.tombstones, [&](const auto& t) { return now - t.second > kTombstoneTtl; });
    }
    s.tombstones[vm_id] = now;
    Shared::Entry e;
    e.generation = kDeleteGeneration;
    e.first_change = now;
    if (auto d = s.dropped.find(vm_id); d != s.dropped.end()) {
      e.first_change = d->second;
      s.dropped.erase(d);
    }
    if (auto it = s.pending.find(vm_id); it != s.pending.end()) {
      it->second.meta.reset();
      it->second.generation = kDeleteGeneration;
    } else {
      s.enqueue(vm_id, std::move(e));
    }
  }
  s.cv.notify_all();
}

MetadataHealth MetadataWriter::health() const {
  auto& s = *s_;
  std::lock_guard lk(s.mu);
  MetadataHealth h = s.h;
  h.queue_depth = s.pending.size() + s.dropped.size() + (s.in_flight ? 1 : 0);
  std::optional<Clock::steady_time_point> oldest;
  auto consider = [&](Clock::steady_time_point t) {
    if (!oldest || t < *oldest) oldest = t;
  };
  for (const auto& [_, e] : s.pending) consider(e.first_change);
  for (const auto& [_, t] : s.dropped) consider(t);
  if (s.in_flight) consider(s.in_flight->first_change);
  if (oldest) {
    const auto now = s.clock.steady_now();
    h.lag = now > *oldest ? std::chrono::duration_cast<std::chrono::milliseconds>(now - *oldest)
                          : std::chrono::milliseconds{0};
  }
  return h;
}

nlohmann::json to_json(const MetadataHealth& h) {
  nlohmann::json j = {{"healthy", h.healthy},
                      {"lag_seconds", static_cast<double>(h.lag.count()) / 1000.0},
                      {"queue_depth", h.queue_depth},
                      {"writes_total", h.writes_total},
                      {"errors_total", h.errors_total},
                      {"dropped_total", h.dropped_total},
                      {"last_success", nullptr},
                      {"last_error", h.last_error},
                      {"last_error_at", nullptr}};
  if (h.last_success) j["last_success"] = format_time(*h.last_success);
  if (h.last_error_at) j["last_error_at"] = format_time(*h.last_error_at);
  return j;
}

std::string render_metrics(const MetadataHealth& h) {
  char lag[32];
  std::snprintf(lag, sizeof lag, "%.3f", static_cast<double>(h.lag.count()) / 1000.0);
  std::ostringstream out;
  out << "# HELP kvmfleet_metadata_lag_seconds Age of the oldest VM change not yet written to "
         "the metadata directory.\n"
         "# TYPE kvmfleet_metadata_lag_seconds gauge\n"
         "kvmfleet_metadata_lag_seconds "
      << lag
      << "\n"
         "# HELP kvmfleet_metadata_write_errors_total Failed or timed-out metadata file "
         "operations.\n"
         "# TYPE kvmfleet_metadata_write_errors_total counter\n"
         "kvmfleet_metadata_write_errors_total "
      << h.errors_total
      << "\n"
         "# HELP kvmfleet_metadata_queue_depth VMs with a change not yet written.\n"
         "# TYPE kvmfleet_metadata_queue_depth gauge\n"
         "kvmfleet_metadata_queue_depth "
      << h.queue_depth
      << "\n"
         "# HELP kvmfleet_metadata_healthy 1 when the last metadata write succeeded.\n"
         "# TYPE kvmfleet_metadata_healthy gauge\n"
         "kvmfleet_metadata_healthy "
      << (h.healthy ? 1 : 0)
      << "\n"
         "# HELP kvmfleet_metadata_writes_total Metadata records written or removed.\n"
         "# TYPE kvmfleet_metadata_writes_total counter\n"
         "kvmfleet_metadata_writes_total "
      << h.writes_total
      << "\n"
         "# HELP kvmfleet_metadata_dropped_total Changes pushed out of the full queue (their "
         "VMs are re-read and written later).\n"
         "# TYPE kvmfleet_metadata_dropped_total counter\n"
         "kvmfleet_metadata_dropped_total "
      << h.dropped_total << "\n";
  return out.str();
}

}  // namespace kvmfleet::metadata
