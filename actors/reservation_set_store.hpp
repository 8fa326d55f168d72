#pragma once

#include "actors/idempotency.hpp"
#include "actors/reservation_store.hpp"
#include "core/error.hpp"
#include "core/pg/pool.hpp"
#include "core/time.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain {

// One placement of a set: what a member reservation is made of.
struct placement {
  std::string provider;
  std::string instance_type = "standard";
  int count = 0;
  std::vector<std::string> zones;  // empty: the provider's, in its order
};

// A validated POST /reservation-sets.
struct reservation_set_request {
  std::vector<placement> placements;
  system_clock::time_point ends_at{};
  boost::json::object tags;
  std::string on_partial = "cancel_all";  // or keep
};

struct reservation_set_filter {
  std::optional<std::string> state;
  boost::json::object tags;
  std::size_t limit = 100;
  std::optional<std::string> after;  // opaque cursor
  // Only sets this token created (the caller's scope, not a query parameter); nothing: all.
  std::optional<std::int64_t> created_by;
};

struct reservation_set_page {
  std::string sets_json;  // a JSON array, built by PostgreSQL
  std::optional<std::string> next;
};

// A set that the reconciliation moved, for the log.
struct reservation_set_move {
  std::string id;
  std::string from;
  std::string to;
  std::string reason;  // error_reason or cancel_reason, when there is one
};

// The SQL of reservation sets. A set owns one ordinary reservation per placement (reservations
// with set_id); those are made and released by the reservation jobs like any other. The set's
// own state follows its members through reconcile(), which any process may run at any time:
// every move is conditional on the state it read, so a crash or a twin changes nothing.
//
// Lock order, against deadlocks: a statement that locks a set and its members locks the set
// first; statements on members alone never lock a set, and reconcile() locks only the sets it
// moves, skipping those locked by someone else.
class reservation_set_store {
 public:
  reservation_set_store(pg::pool& pool, unsigned max_attempts)
      : pool_(pool), max_attempts_(max_attempts) {}

  // Inserts the set, its member reservations and their reserve jobs in one transaction, unless
  // a provider's reserved instances (pending, active, cancelling) plus what the set asks of it
  // would exceed its cap in `caps`: that is invalid_argument naming each such provider. With an
  // Idempotency-Key, the first response under it is replayed (replayed = true); the key with
  // another request is precondition_failed.
  struct created {
    std::string id;
    std::string body;
    bool replayed = false;
  };
  boost::asio::awaitable<result<created>> create(reservation_set_request req, std::int64_t token_id,
                                                 std::map<std::string, std::size_t> caps,
                                                 std::optional<idempotent_request> idem);
  // `owner`: the caller's scope (verified_token::owner()): a set another token created is
  // not_found to it, and left alone by a cancel.
  boost::asio::awaitable<result<std::string>> get_json(std::string id,
                                                       std::optional<std::int64_t> owner);
  boost::asio::awaitable<result<reservation_set_page>> list(reservation_set_filter f);
  // Pending, active or partial: cancelling (reason requested), with every pending or active
  // member moved to cancelling and given a release job, in one transaction. Other states are
  // left as they are. Returns the set as it is then.
  boost::asio::awaitable<result<std::string>> cancel(std::string id,
                                                     std::optional<std::int64_t> owner);

  // One pass of the set reconciliation, over at most `max` unsettled sets: each set's state is
  // derived from its members':
  //   pending    -> active (every member active), partial (some active, the rest failed or
  //                 ended, on_partial keep), cancelling (cancel_all and a member failed or
  //                 ended, or nothing held at all);
  //   active     -> partial (a member was cancelled before its end), expired | cancelled
  //                 (every member ended);
  //   partial    -> expired | cancelled (every member ended);
  //   cancelling -> failed (a placement failed) | cancelled (requested), once every member
  //                 has ended;
  // then the members of cancelling sets that are still pending or active are cancelled, with a
  // release job each.
  // The sets are taken in id order after `after` (none: from the first); `last` is where the
  // next pass goes on from, and `full` says that there may be more after it.
  struct pass {
    std::vector<reservation_set_move> moves;
    std::vector<std::string> members_cancelled;  // reservation ids
    std::optional<std::string> last;
    bool full = false;
  };
  boost::asio::awaitable<result<pass>> reconcile(std::optional<std::string> after, std::size_t max);

 private:
  pg::pool& pool_;
  unsigned max_attempts_;
};

}  // namespace cloudbrain
