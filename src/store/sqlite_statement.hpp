#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace kvmfleet {

// A prepared statement, finalized on destruction. Values only ever reach SQL through
// bind_*, never by pasting them into the text.
class SqliteStatement {
 public:
  SqliteStatement() = default;
  SqliteStatement(sqlite3* db, std::string_view sql) {
    rc_ = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                             SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  SqliteStatement(SqliteStatement&& o) noexcept
      : stmt_(std::exchange(o.stmt_, nullptr)), rc_(o.rc_) {}
  SqliteStatement& operator=(SqliteStatement&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(stmt_);
      stmt_ = std::exchange(o.stmt_, nullptr);
      rc_ = o.rc_;
    }
    return *this;
  }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement() { sqlite3_finalize(stmt_); }

  // The result of preparing it; SQLITE_OK when usable.
  int prepare_rc() const { return rc_; }

  // Positions are 1-based, as in SQLite.
  void bind(int pos, std::string_view text) {
    sqlite3_bind_text(stmt_, pos, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind(int pos, std::int64_t value) { sqlite3_bind_int64(stmt_, pos, value); }

  int step() { return sqlite3_step(stmt_); }

  // Ready for the next use, with its bindings dropped so none leaks into it.
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  std::string column_text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    if (p == nullptr) return {};
    return {reinterpret_cast<const char*>(p),
            static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))};
  }
  bool column_is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::int64_t column_int64(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_MISUSE;
};

// Resets a statement when leaving a scope, whatever the path out.
class StatementReset {
 public:
  explicit StatementReset(SqliteStatement& s) : s_(s) {}
  StatementReset(const StatementReset&) = delete;
  StatementReset& operator=(const StatementReset&) = delete;
  ~StatementReset() { s_.reset(); }

 private:
  SqliteStatement& s_;
};

}  // namespace kvmfleet
