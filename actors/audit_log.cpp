#include "actors/audit_log.hpp"

#include "core/pg/text.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <charconv>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// Records that arrive together share one statement and one commit.
constexpr batch_limits audit_batching{.max_batch = 256, .max_queued = 8192, .max_in_flight = 2};

const char* const insert_sql = R"(
INSERT INTO audit_events (token_id, request_id, address, action, method, target, status, outcome)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::int[], $8::text[]))";
const pg::statement stmt_audit_insert{"audit_insert", insert_sql};

// Newest first; the filters that are NULL take no part.
const char* const read_sql = R"(
SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), token_id,
       request_id, address, action, method, target, status, outcome
FROM audit_events
WHERE ($1::bigint IS NULL OR token_id = $1::bigint)
  AND ($2::text IS NULL OR action = $2::text)
  AND ($3::bigint IS NULL OR id < $3::bigint)
ORDER BY id DESC
LIMIT $4::int)";
const pg::statement stmt_audit_read{"audit_read", read_sql};

std::int64_t to_int(std::string_view s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

audit_log::audit_log(asio::any_io_executor ex, pg::pool& pool)
    : pool_(pool),
      records_(ex, "audit records", audit_batching,
               [this](std::vector<audit_event>& events, deadline dl) {
                 return insert_batch(events, dl);
               }) {}

asio::awaitable<result<void>> audit_log::record(audit_event e) {
  auto recording = records_.submit(std::move(e), after(pool_.config().query_timeout));
  auto r = co_await std::move(recording);
  if (!r) co_return r.error();
  co_return result<void>{};
}

asio::awaitable<audit_log::results> audit_log::insert_batch(std::vector<audit_event>& events,
                                                            deadline dl) {
  std::vector<std::optional<std::string>> token_ids;
  std::vector<std::string> request_ids, addresses, actions, methods, targets, statuses, outcomes;
  for (const auto& e : events) {
    token_ids.push_back(e.token_id ? std::optional(std::to_string(*e.token_id)) : std::nullopt);
    request_ids.push_back(e.request_id);
    addresses.push_back(e.address);
    actions.push_back(e.action);
    methods.push_back(e.method);
    targets.push_back(e.target);
    statuses.push_back(std::to_string(e.status));
    outcomes.push_back(e.outcome);
  }
  const std::vector<pg::param> params{pg::text_array(token_ids), pg::text_array(request_ids),
                                      pg::text_array(addresses), pg::text_array(actions),
                                      pg::text_array(methods),   pg::text_array(targets),
                                      pg::text_array(statuses),  pg::text_array(outcomes)};
  auto r = co_await pool_.execute(stmt_audit_insert, params, dl);
  results out;
  out.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (r) {
      out.emplace_back(true);
    } else {
      out.emplace_back(r.error());
    }
  }
  co_return out;
}

asio::awaitable<result<audit_page>> audit_log::read(const audit_query& q) {
  const std::optional<std::string> token =
      q.token_id ? std::optional(std::to_string(*q.token_id)) : std::nullopt;
  const std::optional<std::string> before =
      q.before ? std::optional(std::to_string(*q.before)) : std::nullopt;
  const std::vector<pg::param> params{pg::to_param(token), pg::to_param(q.action),
                                      pg::to_param(before), std::to_string(q.limit + 1)};
  auto r = co_await pool_.execute(stmt_audit_read, params);
  if (!r) co_return r.error();
  json::array events;
  const int shown = static_cast<int>(std::min<std::size_t>(r->size(), q.limit));
  for (int i = 0; i < shown; ++i) {
    json::object e{{"id", to_int(r->text(i, 0))},
                   {"at", r->text(i, 1)},
                   {"token_id", nullptr},
                   {"request_id", nullptr},
                   {"address", r->text(i, 4)},
                   {"action", r->text(i, 5)},
                   {"method", r->text(i, 6)},
                   {"target", r->text(i, 7)},
                   {"status", to_int(r->text(i, 8))},
                   {"outcome", r->text(i, 9)}};
    if (!r->is_null(i, 2)) e["token_id"] = to_int(r->text(i, 2));
    if (!r->is_null(i, 3)) e["request_id"] = r->text(i, 3);
    events.push_back(std::move(e));
  }
  audit_page page;
  page.events_json = json::serialize(events);
  if (r->size() > q.limit && shown > 0) page.next_before = to_int(r->text(shown - 1, 0));
  co_return page;
}

}  // namespace cloudbrain
