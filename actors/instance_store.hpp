#pragma once

#include "actors/audit_log.hpp"
#include "actors/list_query.hpp"

#include "actors/idempotency.hpp"
#include "core/batch_queue.hpp"
#include "core/error.hpp"
#include "core/pg/pool.hpp"
#include "core/time.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace cloudbrain {

// A validated POST /instances.
struct instance_request {
  std::string provider;
  std::string image;
  std::string instance_type = "standard";
  std::optional<std::string> public_ssh_key;
  std::optional<std::string> zone;
  std::optional<std::string> reservation_id;
  boost::json::object tags;
};

struct list_page {
  std::string instances_json;  // a JSON array, built by PostgreSQL
  std::optional<std::string> next;
};

// The outcome of a create with an Idempotency-Key.
struct created_instance {
  int status = 201;
  std::string body;  // the instance as JSON
  std::string id;
  bool replayed = false;
};

// What a job needs of the reservation it makes, releases, or launches an instance into.
struct reservation_facts {
  int count = 0;
  std::vector<std::string> zones;  // the zones to try; empty: the provider's
  system_clock::time_point ends_at{};
  std::string cancel_reason;  // requested | expired | unused, once cancelling
};

// A claimed job, with what the provider actor needs of its instance or reservation.
struct job {
  std::int64_t id = 0;
  std::string kind;         // create_instance | delete_instance | reserve | release_reservation
  std::string instance_id;  // empty for reservation jobs
  std::string provider;
  int attempts = 0;
  int max_attempts = 0;
  std::string cloud_key;
  boost::json::object intent;
  // the instance (or, for reservation jobs, the reservation: state, type, zone, upstream, tags)
  std::string state;
  std::string image;
  std::string instance_type;
  std::optional<std::string> public_ssh_key;
  std::optional<std::string> zone;
  std::optional<std::string> upstream_id;
  boost::json::object tags;
  bool delete_requested = false;
  // the reservation the job makes or releases, or the instance launches into
  std::optional<std::string> reservation_id;
  std::optional<reservation_facts> reservation;
};

// How a job ended, as the scheduler records it.
struct job_outcome {
  enum class kind { succeeded, retry, failed, wait } what = kind::succeeded;
  std::chrono::milliseconds retry_after{0};  // retry / wait
  std::string error;                         // retry / failed: the reason
  bool counts_as_attempt = true;             // retry: rate limits and waits do not count

  // A counted retry of a job that has had all its attempts.
  [[nodiscard]] bool exhausts(const job& j) const {
    return what == kind::retry && counts_as_attempt && j.attempts >= j.max_attempts;
  }
  // The job ends failed (and a create's instance errored): failed, or out of attempts.
  [[nodiscard]] bool gives_up(const job& j) const { return what == kind::failed || exhausts(j); }
};

// How the API's creates and reads are grouped (see batch_queue).
struct instance_batching {
  // Creates that arrive together share one statement and one commit (group commit). Two
  // batches at once: one commits (waits for the WAL flush) while the next is written.
  batch_limits creates{.max_batch = 256, .max_queued = 8192, .max_in_flight = 2};
  // Concurrent GET /instances/:id share one `id = ANY($1)` query.
  batch_limits reads{.max_batch = 256, .max_queued = 8192, .max_in_flight = 2};
  // Concurrent DELETE /instances/:id share one statement and one commit, as creates do.
  batch_limits deletes{.max_batch = 256, .max_queued = 8192, .max_in_flight = 2};
};

// The SQL of instances and jobs. Every state change is conditional on the state it expects;
// hot paths are one round trip, and the API's creates and reads are batched.
class instance_store {
 public:
  instance_store(boost::asio::any_io_executor ex, pg::pool& pool, std::string owner,
                 unsigned max_attempts, instance_batching batching = {});

  [[nodiscard]] const std::string& owner() const { return owner_; }
  [[nodiscard]] pg::pool& pool() { return pool_; }

  // Instances, for the API.
  // With an Idempotency-Key, the first response under it is replayed (replayed = true). The
  // answer comes once the instance and its job are committed, with the creates that arrived
  // alongside (one transaction); one that the database refuses fails alone.
  // `owner`: the caller's scope; a launch into a reservation it may not see is refused as into
  // one that does not exist. `record`: the request's audit record (token, request id, address,
  // action, method); a create that is stored writes it in the same transaction, with the new
  // id as its target, 201 and ok. A replay or a refusal writes none: the caller's to record.
  boost::asio::awaitable<result<created_instance>> create(
      const instance_request& req, std::int64_t token_id, std::optional<std::int64_t> owner,
      const std::optional<idempotent_request>& idem, const audit_event& record);
  // `owner`: the caller's scope (verified_token::owner()): an instance another token created is
  // not_found to it, as one that does not exist.
  boost::asio::awaitable<result<std::string>> get_json(const std::string& id,
                                                       std::optional<std::int64_t> owner);
  boost::asio::awaitable<result<list_page>> list(const list_filter& f);
  // The instance as it is once the delete is committed (terminating, or as it was if it was
  // terminating or terminated already); not_found when there is no such instance, or when
  // `owner` (the caller's scope) did not create it. Deletes that arrive together share one
  // statement and one commit. `record`: the request's audit record (its target included); a
  // delete answered with the instance writes it in the same transaction, with 202 and ok.
  boost::asio::awaitable<result<std::string>> request_delete(const std::string& id,
                                                             std::optional<std::int64_t> owner,
                                                             const audit_event& record);

  // The batch queues' figures, for /metrics.
  [[nodiscard]] const batch_counters& create_counters() const { return creates_.counters(); }
  [[nodiscard]] const batch_counters& read_counters() const { return reads_.counters(); }
  [[nodiscard]] const batch_counters& delete_counters() const { return deletes_.counters(); }

  // Jobs, for the scheduler.
  // At most `max` of the provider's due jobs, and no more than leave `cluster_max` running
  // under live leases across every node.
  boost::asio::awaitable<result<std::vector<job>>> claim(const std::string& provider,
                                                         std::size_t max,
                                                         std::chrono::milliseconds lease,
                                                         std::size_t cluster_max);
  boost::asio::awaitable<result<void>> renew(const std::vector<std::int64_t>& ids,
                                             std::chrono::milliseconds lease);
  boost::asio::awaitable<result<void>> finish(const job& j, const job_outcome& o);
  boost::asio::awaitable<result<void>> release_all();
  // Deletes a batch of Idempotency-Key records older than 24 hours; returns how many.
  boost::asio::awaitable<result<std::int64_t>> purge_idempotency_keys();

  // Steps of a job, for the provider actors. Each returns false when the row was not in the
  // expected state (someone else moved it), which the caller treats as "stop".
  boost::asio::awaitable<result<void>> record_intent(const job& j,
                                                     const boost::json::object& intent);
  boost::asio::awaitable<result<bool>> mark_starting(const std::string& id,
                                                     const std::string& upstream_id,
                                                     const std::string& zone);
  boost::asio::awaitable<result<bool>> mark_running(const std::string& id,
                                                    const std::string& ip_address,
                                                    const std::string& upstream_id,
                                                    const std::string& zone);
  boost::asio::awaitable<result<bool>> mark_terminated(const std::string& id);
  boost::asio::awaitable<result<std::string>> instance_state(const std::string& id);

  // For a delete: the intent of the instance's latest create job, and whether it still runs.
  struct create_job_view {
    bool exists = false;
    bool active = false;  // queued or leased by someone
    boost::json::object intent;
  };
  boost::asio::awaitable<result<create_job_view>> settle_create_job(const std::string& id);

  // For the reconciler: the provider's instances that may have a VM (live states, plus the
  // ids that the cloud's labels name), and how many deletes keep failing.
  struct reconcile_row {
    std::string id;
    std::string state;
    std::string ip_address;  // empty: none
    std::string zone;
    bool busy = false;     // a create or delete job is queued or running
    bool settled = false;  // unchanged since before `listed_at`
  };
  struct reconcile_view {
    std::vector<reconcile_row> rows;
    std::int64_t stuck_deletes = 0;
  };
  boost::asio::awaitable<result<reconcile_view>> reconcile_view_of(
      const std::string& provider, const std::vector<std::string>& ids,
      system_clock::time_point listed_at);
  // A VM gone behind our back: a terminating instance becomes terminated, any other errored
  // ("vanished at the provider"); only if still in `state` and no job is at work on it.
  boost::asio::awaitable<result<bool>> mark_vanished(const std::string& id,
                                                     const std::string& state);
  boost::asio::awaitable<result<bool>> update_address(const std::string& id,
                                                      const std::string& ip_address);
  // Records the deletion of an orphan VM (instance_id: the id its label names, if any).
  // (By value: callers pass temporaries, which a lazily started coroutine must own.)
  boost::asio::awaitable<result<void>> record_orphan_deleted(std::string provider,
                                                             std::string vm_name,
                                                             std::optional<std::string> instance_id,
                                                             std::string reason);

 private:
  // One create of a batch; the id is chosen before it is queued.
  struct create_item {
    std::string id;
    instance_request req;
    std::int64_t token_id = 0;
    std::optional<idempotent_request> idem;
    audit_event record;  // written with the instance
  };
  // The instance's JSON once committed; nullopt when its Idempotency-Key was taken already.
  using create_result = std::optional<std::string>;
  using create_results = std::vector<result<create_result>>;
  // One GET of a batch: the instance, and the creator the caller is confined to.
  struct read_item {
    std::string id;
    std::optional<std::int64_t> owner;
  };
  // The instance's JSON; nullopt when there is no such instance (for that caller).
  using read_result = std::optional<std::string>;
  // One DELETE of a batch: a read's, and the audit record written with it.
  struct delete_item {
    std::string id;
    std::optional<std::int64_t> owner;
    audit_event record;
  };

  boost::asio::awaitable<result<created_instance>> create_one(
      const instance_request& req, std::int64_t token_id, std::optional<std::int64_t> owner,
      const std::optional<idempotent_request>& idem, const audit_event& record);
  boost::asio::awaitable<create_results> insert_batch(std::vector<create_item>& items, deadline dl);
  boost::asio::awaitable<result<std::vector<create_result>>> insert_rows(
      std::span<const create_item> items, deadline dl);
  boost::asio::awaitable<std::vector<result<read_result>>> read_batch(std::vector<read_item>& items,
                                                                      deadline dl);
  boost::asio::awaitable<std::vector<result<read_result>>> delete_batch(
      std::vector<delete_item>& items, deadline dl);
  boost::asio::awaitable<result<std::vector<read_result>>> delete_rows(
      std::span<const delete_item> items, deadline dl);

  pg::pool& pool_;
  std::string owner_;
  unsigned max_attempts_;
  batch_queue<create_item, create_result> creates_;
  batch_queue<read_item, read_result> reads_;
  batch_queue<delete_item, read_result> deletes_;
};

// The SQL expression that renders an instance row `i` as API JSON.
extern const char* const instance_json_sql;

}  // namespace cloudbrain
