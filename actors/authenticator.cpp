#include "actors/authenticator.hpp"

#include "core/uuid.hpp"

#include <boost/asio/steady_timer.hpp>

#include <cstring>

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

// Every map published by any authenticator has its own number, so a thread's copy is never
// mistaken for a newer one.
std::atomic<std::uint64_t> next_published_version{1};

// A thread's reference to the map it read last, kept until a newer one is published.
struct published_view {
  const void* owner = nullptr;
  std::uint64_t version = 0;
  std::shared_ptr<const void> map;
};
thread_local published_view last_read;

// PostgreSQL's text form of bytea: "\x" followed by hex.
std::optional<std::string> bytea(std::string_view text) {
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x') return std::nullopt;
  return from_hex(text.substr(2));
}

}  // namespace

std::size_t authenticator::key_hash::operator()(const key& k) const noexcept {
  std::size_t h;
  std::memcpy(&h, k.digest.data(), sizeof h);
  return h ^ static_cast<std::size_t>(k.id);
}

authenticator::authenticator(asio::any_io_executor ex, pg::pool& pool, blocking_pool& blocking,
                             std::chrono::milliseconds ttl)
    : actor(std::move(ex), "authenticator", 4096),
      pool_(pool),
      blocking_(blocking),
      ttl_(ttl),
      dummy_salt_(generate_token_salt()) {}

void authenticator::start() {
  publish();
  spawn(confirm_loop(), "confirm_loop");
}

void authenticator::publish() {
  auto map = std::make_shared<const entry_map>(cache_);
  const std::lock_guard lock(published_mutex_);
  published_ = std::move(map);
  published_version_.store(next_published_version.fetch_add(1), std::memory_order_release);
}

bool authenticator::fresh(const entry& e, const std::array<std::uint8_t, 32>& digest,
                          steady_clock::time_point now) const {
  const steady_clock::time_point confirmed{
      steady_clock::duration(e.confirmed_at.load(std::memory_order_relaxed))};
  return now - e.verified_at < ttl_ && now - confirmed < confirm_within &&
         constant_time_equal(e.digest.data(), digest.data(), digest.size());
}

std::optional<verified_token> authenticator::cached(const token_parts& t) const {
  const std::uint64_t version = published_version_.load(std::memory_order_acquire);
  if (version == 0) return std::nullopt;  // not started
  if (last_read.owner != this || last_read.version != version) {
    const std::lock_guard lock(published_mutex_);
    last_read.owner = this;
    last_read.version = published_version_.load(std::memory_order_relaxed);
    last_read.map = published_;
  }
  const auto& map = *static_cast<const entry_map*>(last_read.map.get());
  const auto it = map.find(t.id);
  if (it == map.end()) return std::nullopt;
  const auto digest = sha256(t.secret.data(), t.secret.size());
  if (!fresh(*it->second, digest, steady_clock::now())) return std::nullopt;
  hits_.fetch_add(1, std::memory_order_relaxed);
  it->second->mark_used();
  return verified_token{t.id, it->second->role, it->second->scope};
}

void authenticator::on_restart() {
  cache_.clear();
  publish();
  for (auto& [k, replies] : waiting_) {
    for (auto& r : replies) r(fail(errc::internal, "token check failed"));
  }
  waiting_.clear();
}

asio::awaitable<result<verified_token>> authenticator::verify(const token_parts& t, deadline dl) {
  return ask<verified_token>(
      *this,
      [&t](reply_to<verified_token> r) {
        return auth_message{auth_verify{t, std::move(r)}};
      },
      dl);
}

void authenticator::forget(std::int64_t id) {
  if (!tell(auth_revoked{id})) {
    // A full mailbox: the entry goes at the next confirmation, within five seconds.
    log::warn("a token's revocation could not be applied at once", {{"token_id", id}});
  }
}

void authenticator::handle(auth_message&& m) {
  std::visit(
      [this](auto&& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, auth_verify>) {
          on_verify(std::move(msg));
        } else if constexpr (std::is_same_v<T, auth_revoked>) {
          if (cache_.erase(msg.id) > 0) publish();
        } else {
          on_verified(std::move(msg));
        }
      },
      std::move(m));
}

void authenticator::on_verify(auth_verify&& v) {
  const auto digest = sha256(v.token.secret.data(), v.token.secret.size());
  const auto now = steady_clock::now();
  if (auto it = cache_.find(v.token.id); it != cache_.end()) {
    if (fresh(*it->second, digest, now)) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      it->second->mark_used();
      v.reply(verified_token{v.token.id, it->second->role, it->second->scope});
      return;
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  const key k{v.token.id, digest};
  auto [it, fresh] = waiting_.try_emplace(k);
  it->second.push_back(std::move(v.reply));
  if (!fresh) return;  // the same token is being checked already: wait for that answer
  if (waiting_.size() > max_slow_verifications) {
    for (auto& r : it->second) r(fail(errc::overloaded, "too many token checks in progress"));
    waiting_.erase(it);
    return;
  }
  spawn(verify_slowly(v.token, digest), "verify");
}

asio::awaitable<void> authenticator::verify_slowly(token_parts t,
                                                   std::array<std::uint8_t, 32> digest) {
  const std::vector<pg::param> query_args_1{std::to_string(t.id)};
  auto row = co_await pool_.query(
      "SELECT salt, hash, revoked_at IS NULL, role, scope FROM tokens WHERE id = $1::bigint",
      query_args_1);
  if (!row) {
    (void)tell(auth_verified{t.id, digest, row.error()});
    co_return;
  }
  std::optional<std::string> salt;
  std::optional<std::string> stored;
  bool live = false;
  // A role this binary does not know grants nothing.
  std::optional<token_role> role;
  std::optional<token_scope> scope;
  if (row->size() == 1) {
    salt = bytea(row->text(0, 0));
    stored = bytea(row->text(0, 1));
    live = row->text(0, 2) == "t";
    role = parse_token_role(row->text(0, 3));
    scope = parse_token_scope(row->text(0, 4));
  }
  const bool known = salt && stored && stored->size() == 32;
  const std::string salt_bytes =
      known ? *salt : std::string(reinterpret_cast<const char*>(dummy_salt_.data()), 32);
  auto hashing = blocking_.run([secret = t.secret, salt_bytes] {
    return hash_token_secret(secret, reinterpret_cast<const std::uint8_t*>(salt_bytes.data()),
                             salt_bytes.size());
  });
  const auto computed = co_await std::move(hashing);
  const bool match =
      known && constant_time_equal(computed.data(),
                                   reinterpret_cast<const std::uint8_t*>(stored->data()), 32);
  const bool good = match && live && role.has_value() && scope.has_value();
  const token_role granted = role.value_or(token_role::client);
  const token_scope sees = scope.value_or(token_scope::own);
  // Deliver through the mailbox: that queue is bounded, and the answer reaches every waiter.
  if (!tell(auth_verified{t.id, digest, good, granted, sees})) {
    on_verified(auth_verified{t.id, digest, good, granted, sees});
  }
}

void authenticator::on_verified(auth_verified&& v) {
  const key k{v.id, v.digest};
  auto it = waiting_.find(k);
  if (v.outcome && *v.outcome) {
    cache_[v.id] = std::make_shared<entry>(v.digest, steady_clock::now(), v.role, v.scope);
    publish();
  }
  if (it == waiting_.end()) return;
  for (auto& r : it->second) {
    if (!v.outcome) {
      r(fail(errc::db_unavailable, "cannot check tokens right now"));
    } else if (*v.outcome) {
      r(verified_token{v.id, v.role, v.scope});
    } else {
      r(fail(errc::unauthorized, "missing or invalid token"));
    }
  }
  waiting_.erase(it);
}

asio::awaitable<void> authenticator::confirm_loop() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(confirm_every);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || closed()) co_return;
    if (cache_.empty()) continue;
    std::vector<std::int64_t> asked;
    std::string ids = "{";
    std::string used = "{";
    for (const auto& [id, e] : cache_) {
      if (ids.size() > 1) ids += ',';
      ids += std::to_string(id);
      asked.push_back(id);
      if (e->used.exchange(false, std::memory_order_relaxed)) {
        if (used.size() > 1) used += ',';
        used += std::to_string(id);
      }
    }
    ids += '}';
    used += '}';
    const auto asked_at = steady_clock::now();
    const std::vector<pg::param> query_args_2{ids, used};
    // One round trip: which tokens still stand, and when the ones used lately were used (to
    // within confirm_every; lost if this statement fails, which only makes it older).
    auto live = co_await pool_.query(
        "WITH u AS (UPDATE tokens SET last_used_at = now() "
        "WHERE id = ANY($2::bigint[]) AND revoked_at IS NULL) "
        "SELECT id FROM tokens WHERE id = ANY($1::bigint[]) AND revoked_at IS NULL",
        query_args_2);
    if (!live) continue;  // entries age out by themselves after confirm_within
    std::unordered_map<std::int64_t, bool> still;
    for (int r = 0; r < static_cast<int>(live->size()); ++r) {
      still[std::stoll(std::string(live->text(r, 0)))] = true;
    }
    // Only the ids that were asked about: others were added while the query ran.
    bool dropped = false;
    for (const auto id : asked) {
      auto it = cache_.find(id);
      if (it == cache_.end()) continue;
      if (still.contains(id)) {
        auto& confirmed = it->second->confirmed_at;
        confirmed.store(std::max(confirmed.load(), asked_at.time_since_epoch().count()));
      } else {
        cache_.erase(it);
        dropped = true;
      }
    }
    if (dropped) publish();
  }
}

}  // namespace cloudbrain
