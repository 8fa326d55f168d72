#pragma once

#include "actors/health.hpp"
#include "core/actor.hpp"
#include "core/pg/connection.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace cloudbrain {

// The advisory lock space (first key) of the cluster-wide roles; the second key is the role's
// cluster_roles.id (schema/deploy/cluster.sql).
inline constexpr std::int32_t role_lock_space = 1667329024;

// How a node keeps its place in the cluster, and so how fast another takes over its roles.
struct cluster_timing {
  // A heartbeat (and a try at every role not held) on the coordination session this often.
  std::chrono::milliseconds tick{1000};
  // The server ends the coordination session once idle this long, releasing its locks: a
  // frozen or cut-off node loses its roles within this (plus one tick of the others').
  std::chrono::milliseconds session_idle_timeout{5000};
  // A node trusts that it still holds its roles until this long after its last heartbeat was
  // sent, well inside session_idle_timeout (the server cannot have ended the session sooner).
  std::chrono::milliseconds hold_for{4000};
  // A heartbeat that gets no answer this soon ends the session.
  std::chrono::milliseconds statement_timeout{2000};
  // A node without a heartbeat this long is shown as lost.
  std::chrono::milliseconds lost_after{5000};
};

// One cluster-wide role this process may hold: a provider's reconciler or its reservation
// janitor. The node's coordinator grants and renews it; the role's actor asks held() before
// anything it must do alone. Thread-safe.
class leadership {
 public:
  leadership(std::string provider, std::string role)
      : provider_(std::move(provider)), role_(std::move(role)) {}
  leadership(const leadership&) = delete;
  leadership& operator=(const leadership&) = delete;

  [[nodiscard]] const std::string& provider() const { return provider_; }
  [[nodiscard]] const std::string& role() const { return role_; }
  // Whether this process leads now: its lock is held and was confirmed lately.
  [[nodiscard]] bool held() const {
    return steady_clock::now().time_since_epoch().count() <
           valid_until_.load(std::memory_order_acquire);
  }

  // The coordinator's side.
  void hold_until(steady_clock::time_point t) {
    valid_until_.store(t.time_since_epoch().count(), std::memory_order_release);
  }
  void drop() { valid_until_.store(0, std::memory_order_release); }

 private:
  std::string provider_;
  std::string role_;
  std::atomic<steady_clock::rep> valid_until_{0};
};

// This process as the cluster knows it.
struct node_identity {
  std::string name;
  std::string version;
  std::string address;
};

// What the coordinator has seen, for /metrics; read from any thread.
struct cluster_node_stats {
  std::atomic<bool> session_up{false};
  std::atomic<std::uint64_t> sessions{0};            // coordination sessions opened
  std::atomic<std::uint64_t> heartbeats{0};          // answered
  std::atomic<std::uint64_t> heartbeat_failures{0};  // each ends the session
  std::atomic<std::uint64_t> roles_gained{0};
  std::atomic<std::uint64_t> roles_lost{0};
  std::atomic<std::uint64_t> revocations_heard{0};  // NOTIFY cloudbrain_tokens
};

struct cluster_offer_roles {
  std::vector<leadership*> roles;  // they outlive the coordinator
};
using cluster_message = std::variant<cluster_offer_roles>;

// This process's membership in its deployment's cluster, on a session of its own to PostgreSQL
// (database-direct-url: never through a transaction pooler). On that session it
//   - keeps its row of `nodes` (name, version, address, start, heartbeat) fresh every tick;
//   - holds, as session-level advisory locks, the roles it won (one provider's reconciler or
//     janitor each), and tries every tick for those nobody holds;
//   - LISTENs on cloudbrain_tokens and hands every revoked token's id to `on_revoked`.
// The session is opened with idle_session_timeout and TCP timeouts, so that the server drops
// it, and the locks with it, soon after this process dies, freezes or is cut off; the process
// itself stops trusting its roles hold_for after its last answered heartbeat. A session that
// fails is given up (every role dropped at once) and opened again with jittered backoff.
class cluster_node : public actor<cluster_node, cluster_message> {
 public:
  using revoked_callback = std::function<void(std::int64_t token_id)>;

  cluster_node(boost::asio::any_io_executor ex, std::string direct_url, node_identity me,
               health& status, revoked_callback on_revoked, cluster_timing timing = {});

  // Registers this node under its name, before it serves: conflict when a live process already
  // has the name; the database's error when it cannot be reached in time.
  boost::asio::awaitable<result<void>> join(deadline dl);
  // The session loop; after join().
  void start();
  void handle(cluster_message&& m);
  void on_restart() {}
  // Offers roles to compete for (at start, and for providers a reload adds).
  void offer(std::vector<leadership*> roles);
  // Shutdown: drops every role at once, then lets the session go (locks released, the row
  // deleted) by `dl`.
  boost::asio::awaitable<void> leave(deadline dl);

  [[nodiscard]] const node_identity& identity() const { return me_; }
  [[nodiscard]] const cluster_node_stats& stats() const { return stats_; }
  [[nodiscard]] const cluster_timing& timing() const { return timing_; }

 private:
  struct role_slot {
    leadership* lead = nullptr;
    std::int32_t id = 0;  // cluster_roles.id; 0 until registered on the session
    bool held = false;
  };

  [[nodiscard]] pg::connect_options session_options() const;
  boost::asio::awaitable<result<std::unique_ptr<pg::connection>>> open_session(deadline dl);
  boost::asio::awaitable<result<bool>> register_node(pg::connection& c, deadline dl);
  boost::asio::awaitable<result<void>> register_roles(pg::connection& c);
  boost::asio::awaitable<result<void>> tick(pg::connection& c);
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> serve_session(pg::connection& c);
  boost::asio::awaitable<void> leave_here(deadline dl);
  void drop_all(std::string_view why);

  std::string direct_url_;
  node_identity me_;
  std::string incarnation_;
  health& health_;
  revoked_callback on_revoked_;
  cluster_timing timing_;
  std::vector<role_slot> roles_;
  std::unique_ptr<pg::connection> joined_;  // the session join() opened, for the loop
  bool started_ = false;
  bool leaving_ = false;
  bool left_ = false;
  cluster_node_stats stats_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace cloudbrain
