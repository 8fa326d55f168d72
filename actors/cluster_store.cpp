#include "actors/cluster_store.hpp"

#include "actors/cluster_node.hpp"

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

static_assert(role_lock_space == 1667329024, "the SQL below spells the lock space out");

// The advisory locks of cluster roles granted in this database (pg_locks spans the server).
const std::string role_locks =
    "SELECT l.pid, l.objid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.objsubid = 2 AND l.classid = 1667329024::oid "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

std::string rfc3339(const char* column) {
  return std::string("to_char(") + column +
         " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

const std::string nodes_sql =
    "WITH locks AS (" + role_locks +
    ") "
    "SELECT coalesce(json_agg(json_build_object("
    "  'name', n.name, 'version', n.version, 'address', n.address,"
    "  'state', CASE WHEN n.heartbeat_at > now() - make_interval(secs => $1::float8)"
    "           THEN 'live' ELSE 'lost' END,"
    "  'started_at', " +
    rfc3339("n.started_at") + ", 'heartbeat_at', " + rfc3339("n.heartbeat_at") +
    ","
    "  'leads', coalesce((SELECT json_agg(json_build_object('provider', r.provider, 'role', r.role)"
    "                             ORDER BY r.provider, r.role)"
    "                    FROM cluster_roles r JOIN locks l ON l.objid = r.id::oid"
    "                    WHERE l.pid = n.backend_pid), '[]'::json))"
    "  ORDER BY n.name), '[]'::json)::text "
    "FROM nodes n";

const std::string holders_sql =
    "WITH locks AS (" + role_locks +
    ") "
    "SELECT r.provider, r.role, coalesce(n.name, ''), l.pid IS NOT NULL, "
    "  CASE WHEN n.name IS NOT NULL AND n.name = r.leader THEN " +
    rfc3339("r.leader_since") +
    " END "
    "FROM cluster_roles r LEFT JOIN locks l ON l.objid = r.id::oid "
    "LEFT JOIN nodes n ON n.backend_pid = l.pid "
    "ORDER BY r.provider, r.role";

}  // namespace

const char* const cluster_store::role_holders_sql = holders_sql.c_str();

const char* const cluster_store::node_states_sql =
    "SELECT CASE WHEN heartbeat_at > now() - make_interval(secs => $1::float8) "
    "THEN 'live' ELSE 'lost' END, count(*) FROM nodes GROUP BY 1";

std::string cluster_store::lost_after_seconds() const {
  return std::to_string(std::chrono::duration<double>(lost_after_).count());
}

asio::awaitable<result<std::string>> cluster_store::nodes_json() {
  const std::vector<pg::param> args{lost_after_seconds()};
  auto r = co_await pool_.query(nodes_sql, args);
  if (!r) co_return r.error();
  co_return std::string(r->text(0, 0));
}

asio::awaitable<result<cluster_store::holders>> cluster_store::role_holders() {
  auto r = co_await pool_.query(role_holders_sql);
  if (!r) co_return r.error();
  holders out;
  for (int i = 0; i < static_cast<int>(r->size()); ++i) {
    role_holder h;
    h.held = r->text(i, 3) == "t";
    if (!r->text(i, 2).empty()) h.node = std::string(r->text(i, 2));
    if (!r->is_null(i, 4)) h.since = std::string(r->text(i, 4));
    out[{std::string(r->text(i, 0)), std::string(r->text(i, 1))}] = std::move(h);
  }
  co_return out;
}

}  // namespace cloudbrain
