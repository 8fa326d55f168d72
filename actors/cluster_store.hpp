#pragma once

#include "core/error.hpp"
#include "core/pg/pool.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace cloudbrain {

// Who holds a cluster-wide role now, as PostgreSQL's lock table says.
struct role_holder {
  bool held = false;                 // some session holds the lock
  std::optional<std::string> node;   // the node whose coordination session that is
  std::optional<std::string> since;  // RFC 3339: when that node took it
};

// What the cluster looks like, read through the pool (the request path: these are plain
// reads, fine behind a transaction pooler).
class cluster_store {
 public:
  cluster_store(pg::pool& pool, std::chrono::milliseconds lost_after)
      : pool_(pool), lost_after_(lost_after) {}

  // GET /nodes: every node's row, live or lost, and the roles it holds: a JSON array.
  boost::asio::awaitable<result<std::string>> nodes_json();
  // (provider, role) -> its holder, for every role any node has offered to hold.
  using holders = std::map<std::pair<std::string, std::string>, role_holder>;
  boost::asio::awaitable<result<holders>> role_holders();

  // The SQL of role_holders(), for a pipelined read (service_metrics): provider, role, node
  // (empty: none), held, since.
  static const char* const role_holders_sql;
  // Nodes by state (live, lost); $1: lost_after in seconds.
  static const char* const node_states_sql;
  [[nodiscard]] std::string lost_after_seconds() const;

 private:
  pg::pool& pool_;
  std::chrono::milliseconds lost_after_;
};

}  // namespace cloudbrain
