#pragma once

// The audit trail (schema change audit_trail): every mutation, who made it and how it ended.
// The API records each POST and DELETE it answers before the answer goes out, so that no
// answered mutation is missing from the trail; concurrent records share one INSERT (group
// commit). An instance create that is stored, an instance delete answered with the instance,
// and the command line's token create and revoke write theirs in the same statement as the
// change. Reading is for admins: GET /audit and `cloudbrain
// audit`.

#include "core/batch_queue.hpp"
#include "core/error.hpp"
#include "core/pg/pool.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain {

struct audit_event {
  std::optional<std::int64_t> token_id;  // none: the command line
  std::string request_id;
  std::string address;  // the client's, or "cli"
  std::string action;   // the route's name, or token.create / token.revoke
  std::string method;   // POST, DELETE, or CLI
  std::string target;   // what was acted on: an id, or the path
  unsigned status = 0;  // the HTTP status answered; 0 for the command line
  std::string outcome;  // "ok", or the problem's code
};

// What GET /audit and `cloudbrain audit` ask for: the newest events first, before `before`
// (an event id: the cursor), at most `limit`.
struct audit_query {
  std::optional<std::int64_t> token_id;
  std::optional<std::string> action;
  std::optional<std::int64_t> before;
  std::size_t limit = 100;
};

struct audit_page {
  std::string events_json;  // a JSON array, newest first
  std::optional<std::int64_t> next_before;
};

class audit_log {
 public:
  audit_log(boost::asio::any_io_executor ex, pg::pool& pool);

  // Once the event is committed. A failure is the caller's to report: the mutation it records
  // has happened whatever becomes of its record.
  [[nodiscard]] boost::asio::awaitable<result<void>> record(audit_event e);

  [[nodiscard]] boost::asio::awaitable<result<audit_page>> read(const audit_query& q);

  [[nodiscard]] const batch_counters& counters() const { return records_.counters(); }

 private:
  using results = std::vector<result<bool>>;
  boost::asio::awaitable<results> insert_batch(std::vector<audit_event>& events, deadline dl);

  pg::pool& pool_;
  batch_queue<audit_event, bool> records_;
};

}  // namespace cloudbrain
