#include "kvmfleet/auth/token_service.hpp"

#include "kvmfleet/common/ids.hpp"
#include "kvmfleet/common/validate.hpp"

#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <cstdio>
#include <fstream>

namespace kvmfleet {

std::optional<Principal> TokenService::authenticate(std::string_view bearer) const {
  if (bearer.empty() || bearer.size() > 256) return std::nullopt;
  const std::string hash = sha256_hex(bearer);
  return state_.read([&](const ClusterState::Data& d) -> std::optional<Principal> {
    const TokenRecord* t = d.find_token_by_hash(hash);
    if (!t || !constant_time_equal(t->hash, hash)) return std::nullopt;
    return Principal{t->id, t->name, t->role, t->host};
  });
}

Result<std::pair<TokenRecord, std::string>> TokenService::create_token(const std::string& name,
                                                                       Role role) {
  if (auto st = check_name("name", name); !st) return st.take_error();
  if (role == Role::agent) return invalid("agent tokens are made by registering a host");
  TokenRecord rec;
  rec.id = new_uuid();
  rec.name = name;
  rec.role = role;
  const std::string secret = new_token();
  rec.hash = sha256_hex(secret);
  rec.created_at = clock_.now();
  auto st = state_.update([&](const ClusterState::Data&, WriteBatch& b) -> Status {
    b.put_tokens.push_back(rec);
    return {};
  });
  if (!st) return st.take_error();
  return std::pair{rec, secret};
}

Status TokenService::delete_token(const std::string& id) {
  return state_.update([&](const ClusterState::Data& d, WriteBatch& b) -> Status {
    auto it = d.tokens.find(id);
    if (it == d.tokens.end()) return not_found("no such token", {{"id", id}});
    if (it->second.role == Role::agent)
      return conflict("agent tokens go away with their host (DELETE /v1/hosts/{name})");
    b.delete_tokens.push_back(id);
    return {};
  });
}

Status TokenService::bootstrap_admin(const std::string& path) {
  const bool has_admin = state_.read([](const ClusterState::Data& d) {
    for (const auto& [_, t] : d.tokens)
      if (t.role == Role::admin) return true;
    return false;
  });
  if (has_admin) return {};
  auto created = create_token("admin", Role::admin);
  if (!created) return created.take_error();
  const std::string tmp = path + ".tmp";
  {
    const mode_t old = umask(077);
    std::ofstream out(tmp, std::ios::trunc);
    umask(old);
    out << created->second << "\n";
    if (!out.good()) return internal_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return internal_error("cannot write " + path);
  spdlog::info("wrote the first admin token to {}", path);
  return {};
}

}  // namespace kvmfleet
