#pragma once

#include "actors/list_query.hpp"

#include "actors/idempotency.hpp"
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

// A validated POST /reservations.
struct reservation_request {
  std::string provider;
  std::string instance_type = "standard";
  int count = 0;
  std::vector<std::string> zones;  // empty: the provider's, in its order
  system_clock::time_point ends_at{};
  boost::json::object tags;
};

using reservation_filter = list_filter;

struct reservation_page {
  std::string reservations_json;  // a JSON array, built by PostgreSQL
  std::optional<std::string> next;
};

// Why POST /instances with a reservation_id was refused.
enum class reservation_refusal { none, not_found, not_active, other_provider, other_type, full };

// What the janitor and the reservation jobs need to know of a row.
struct reservation_row {
  std::string id;
  std::string state;
  std::string zone;      // empty: not held anywhere yet
  bool busy = false;     // a reserve or release job is queued or running
  bool settled = false;  // unchanged since before the listing it is compared with
};

// The SQL of reservations. Every state change is conditional on the state it expects; the
// reserve and release jobs themselves go through instance_store's job queue.
class reservation_store {
 public:
  reservation_store(pg::pool& pool, unsigned max_attempts)
      : pool_(pool), max_attempts_(max_attempts) {}

  // Inserts the reservation and its reserve job, unless the provider's reserved instances
  // (pending, active, cancelling) would then exceed `cap`: that is invalid_argument, with the
  // count already held in the detail. With an Idempotency-Key, the first response under it is
  // replayed (replayed = true); the key with another request is precondition_failed.
  struct created {
    std::string id;
    std::string body;
    bool replayed = false;
  };
  boost::asio::awaitable<result<created>> create(reservation_request req, std::int64_t token_id,
                                                 std::size_t cap,
                                                 std::optional<idempotent_request> idem);
  // `owner` below is the caller's scope (verified_token::owner()): a reservation another token
  // created is not_found to it, and left alone by a cancel.
  boost::asio::awaitable<result<std::string>> get_json(std::string id,
                                                       std::optional<std::int64_t> owner);
  boost::asio::awaitable<result<reservation_page>> list(reservation_filter f);
  // Asks for a cancel: pending or active become cancelling (reason `requested`) with a release
  // job; other states are left as they are. Returns the reservation.
  boost::asio::awaitable<result<std::string>> cancel(std::string id,
                                                     std::optional<std::int64_t> owner);
  // The same for every pending or active reservation whose tags contain `tags` (and of
  // `provider`, if given). Returns the reservations it moved, as a JSON array.
  boost::asio::awaitable<result<std::string>> cancel_matching(boost::json::object tags,
                                                              std::optional<std::string> provider,
                                                              std::optional<std::int64_t> owner);
  // For POST /instances: why a reservation cannot take an instance of this provider and type.
  boost::asio::awaitable<result<reservation_refusal>> refusal_for(
      std::string id, std::string provider, std::string instance_type,
      std::optional<std::int64_t> owner);

  // Steps of the reserve and release jobs.
  // Records where the capacity is held; pending becomes active. A reservation cancelled
  // meanwhile keeps its state (its release job will find the zone). False: neither state.
  boost::asio::awaitable<result<bool>> activate(std::string id, std::string zone,
                                                std::string upstream_id, std::string machine_type);
  // cancelling becomes cancelled, or expired when the janitor cancelled it at its end.
  boost::asio::awaitable<result<bool>> mark_released(std::string id);
  // For a release: cancels the reserve job if it has not started, and says whether one still
  // runs, with the zones it has tried.
  struct reserve_job_view {
    bool active = false;
    boost::json::object intent;
  };
  boost::asio::awaitable<result<reserve_job_view>> settle_reserve_job(std::string id);

  // For the janitor.
  struct reaped {
    std::string id;
    std::string provider;
    std::string reason;  // expired | unused
  };
  // Moves the provider's live reservations past their end (expired) or idle longer than
  // `unused_grace` (unused) to cancelling, with a release job each; at most `max` per call.
  boost::asio::awaitable<result<std::vector<reaped>>> reap(std::string provider,
                                                           std::chrono::milliseconds unused_grace,
                                                           std::size_t max);
  // The rows of `ids` (of any state) for a comparison with a cloud listing taken at
  // `listed_at`.
  boost::asio::awaitable<result<std::map<std::string, reservation_row>>> rows_for(
      std::vector<std::string> ids, system_clock::time_point listed_at);
  boost::asio::awaitable<result<void>> record_orphan_cancelled(
      std::string provider, std::string zone, std::string name,
      std::optional<std::string> reservation_id, std::string reason);
  // Live reservations by provider and state, and those past their end, for metrics.
  struct census_row {
    std::string provider;
    std::string state;
    std::int64_t count = 0;
  };
  struct census {
    std::vector<census_row> by_state;
    std::map<std::string, std::int64_t> overdue;  // by provider
  };
  boost::asio::awaitable<result<census>> take_census();

 private:
  pg::pool& pool_;
  unsigned max_attempts_;
};

// The SQL expression that renders a reservation row `r` as API JSON.
extern const char* const reservation_json_sql;
// A CTE `j` that gives every row of the CTE `upd` (id, provider: reservations just moved to
// cancelling) a release job, one unfinished release per reservation at most.
extern const char* const release_job_cte;

}  // namespace cloudbrain
