#include "actors/idempotency.hpp"

#include <vector>

namespace cloudbrain {

boost::asio::awaitable<result<std::optional<replayed_response>>> find_replay(
    pg::pool& pool, std::int64_t token_id, const idempotent_request& request) {
  const std::vector<pg::param> args{std::to_string(token_id), request.key};
  auto prior = co_await pool.query(
      "SELECT encode(request_hash, 'hex'), response_status, response_body::text, "
      "coalesce(instance_id, reservation_id, reservation_set_id)::text, created_at > now() - "
      "interval '24 hours' "
      "FROM idempotency_keys WHERE token_id = $1::bigint AND key = $2",
      args);
  if (!prior) co_return prior.error();
  if (prior->size() == 0) co_return std::nullopt;
  if (prior->text(0, 4) != "t") {
    auto purge = co_await pool.query(
        "DELETE FROM idempotency_keys WHERE token_id = $1::bigint AND key = $2 "
        "AND created_at <= now() - interval '24 hours'",
        args);
    if (!purge) co_return purge.error();
    co_return std::nullopt;
  }
  if (prior->text(0, 0) != request.request_hash) {
    co_return fail(errc::precondition_failed,
                   "this Idempotency-Key was already used with a different request");
  }
  replayed_response replay;
  replay.status = std::stoi(std::string(prior->text(0, 1)));
  replay.body = std::string(prior->text(0, 2));
  replay.id = std::string(prior->text(0, 3));
  co_return replay;
}

}  // namespace cloudbrain
