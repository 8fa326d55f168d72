#pragma once

#include "core/actor.hpp"
#include "core/blocking_pool.hpp"
#include "core/pg/pool.hpp"
#include "core/token.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <variant>
#include <vector>

namespace cloudbrain {

struct auth_verify {
  token_parts token;
  reply_to<verified_token> reply;
};
struct auth_verified {  // a slow verification finished (internal)
  std::int64_t id;
  std::array<std::uint8_t, 32> digest;
  result<bool> outcome;
  token_role role = token_role::client;
  token_scope scope = token_scope::own;
};
struct auth_revoked {  // a node heard that this token was revoked (NOTIFY cloudbrain_tokens)
  std::int64_t id;
};
using auth_message = std::variant<auth_verify, auth_verified, auth_revoked>;

// Checks API tokens. A verified token is remembered, with its role and scope, by the SHA-256 of
// its secret, so scrypt is paid once per token rather than per request; every two seconds the
// remembered ids are checked against PostgreSQL, so a revoked token stops working within five
// seconds, and the same statement records when the tokens used since the last check were used
// (tokens.last_used_at). Unknown ids cost a full scrypt too, so the answer's timing does not tell
// whether an id exists.
//
// The remembered tokens are also published as an immutable map that any thread reads without
// a lock (cached()): the actor replaces it whole when a token is added or dropped, and moves
// an entry's confirmation time forward in place.
class authenticator : public actor<authenticator, auth_message> {
 public:
  authenticator(boost::asio::any_io_executor ex, pg::pool& pool, blocking_pool& blocking,
                std::chrono::milliseconds ttl);

  void start();
  void handle(auth_message&& m);
  void on_restart();

  // Forgets a token at once (its revocation was announced); the periodic check is the backstop
  // when the announcement is lost.
  void forget(std::int64_t id);

  // The token's id, role and scope, or unauthorized / db_unavailable / overloaded.
  boost::asio::awaitable<result<verified_token>> verify(const token_parts& t, deadline dl);
  // The token's id, role and scope if it is remembered and was confirmed lately; nullopt means ask
  // verify(). Any thread, no lock, no wait.
  [[nodiscard]] std::optional<verified_token> cached(const token_parts& t) const;

  [[nodiscard]] std::uint64_t cache_hits() const { return hits_.load(); }
  [[nodiscard]] std::uint64_t cache_misses() const { return misses_.load(); }

 private:
  struct entry {
    entry(const std::array<std::uint8_t, 32>& d, steady_clock::time_point at, token_role r,
          token_scope s)
        : digest(d),
          verified_at(at),
          role(r),
          scope(s),
          confirmed_at(at.time_since_epoch().count()) {}
    const std::array<std::uint8_t, 32> digest;
    const steady_clock::time_point verified_at;
    const token_role role;
    const token_scope scope;
    // Moved forward by the confirm loop while readers look at it.
    std::atomic<steady_clock::rep> confirmed_at;
    // Set by a request, cleared by the confirm loop when it records last_used_at; written only
    // when it changes, so that the hot path mostly reads the cache line.
    mutable std::atomic<bool> used{true};
    void mark_used() const {
      if (!used.load(std::memory_order_relaxed)) used.store(true, std::memory_order_relaxed);
    }
  };
  using entry_map = std::unordered_map<std::int64_t, std::shared_ptr<entry>>;
  struct key {
    std::int64_t id;
    std::array<std::uint8_t, 32> digest;
    bool operator==(const key&) const = default;
  };
  struct key_hash {
    std::size_t operator()(const key& k) const noexcept;
  };

  [[nodiscard]] bool fresh(const entry& e, const std::array<std::uint8_t, 32>& digest,
                           steady_clock::time_point now) const;
  // On the strand, after cache_ changed: readers see the new map from their next request.
  void publish();
  void on_verify(auth_verify&& v);
  void on_verified(auth_verified&& v);
  boost::asio::awaitable<void> verify_slowly(token_parts t, std::array<std::uint8_t, 32> digest);
  boost::asio::awaitable<void> confirm_loop();

  pg::pool& pool_;
  blocking_pool& blocking_;
  std::chrono::milliseconds ttl_;
  entry_map cache_;                     // on the strand
  mutable std::mutex published_mutex_;  // held only to swap or take a reference
  std::shared_ptr<const entry_map> published_;
  std::atomic<std::uint64_t> published_version_{0};
  std::unordered_map<key, std::vector<reply_to<verified_token>>, key_hash> waiting_;
  token_salt dummy_salt_;
  mutable std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  static constexpr std::size_t max_slow_verifications = 64;
  static constexpr std::chrono::seconds confirm_every{2};
  static constexpr std::chrono::seconds confirm_within{5};
};

}  // namespace cloudbrain
