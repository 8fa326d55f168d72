#pragma once

#include "core/error.hpp"

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cloudbrain::pg {

// What cloudbrain adds to every connection it opens.
struct connect_options {
  // Shown in pg_stat_activity, unless the connection string names an application itself.
  std::string application_name = "cloudbrain";
  // The server's own limit on one statement: a backstop behind the client's deadlines, for the
  // case where the client is gone. Zero leaves the server's default.
  std::chrono::milliseconds statement_timeout{60000};
  // A deadline closes the connection rather than cancel the query (PQcancel blocks); this is
  // how often the server checks, during a long query, whether its client is still there.
  // Zero leaves the server's default (off).
  std::chrono::milliseconds client_connection_check_interval{2000};
  // Named prepared statements, parsed once per session. Off, a pg::statement is sent with its
  // text every time, unnamed: what a pooler that moves transactions between server sessions
  // (PgBouncer in transaction mode) needs.
  bool prepared_statements = true;
  // For a session that holds advisory locks: the server ends it once it has been idle this long
  // (idle_session_timeout), so a frozen or cut-off client loses its locks within a known time.
  // Zero leaves the server's default (off).
  std::chrono::milliseconds idle_session_timeout{0};
  // How long sent data may stay unacknowledged before the connection is given up, on both ends
  // (TCP_USER_TIMEOUT), with TCP keepalives probing an idle link at the same pace, unless the
  // connection string sets them. Zero leaves the system's defaults.
  std::chrono::milliseconds tcp_user_timeout{0};
};

namespace detail {

// A connection string parsed into libpq's keyword/value pairs, so that cloudbrain's settings and
// resolved addresses are added as parameters, not spliced into a string that may hold a password.
// Sans-io: parsing reads no file and no environment.
class connect_params {
 public:
  // Either form libpq accepts: "host=... dbname=..." or "postgresql://...".
  [[nodiscard]] static result<connect_params> parse(std::string_view conninfo);

  [[nodiscard]] std::optional<std::string_view> get(std::string_view keyword) const;
  void set(std::string_view keyword, std::string value);
  void apply(const connect_options& options);

  // The host name libpq would look up with a blocking getaddrinfo(), if there is exactly one;
  // nullopt for an IP address, a Unix socket directory, several hosts or a given hostaddr.
  // The environment's PGHOST/PGHOSTADDR are passed in, to keep this pure.
  [[nodiscard]] std::optional<std::string> host_to_resolve(
      std::optional<std::string_view> env_host = std::nullopt,
      std::optional<std::string_view> env_hostaddr = std::nullopt) const;
  // Hands the looked-up addresses to libpq (as hostaddr, tried in order), keeping `host` for TLS
  // verification and .pgpass.
  void set_resolved(std::string_view host, std::span<const std::string> addresses);

  // Null-terminated arrays for PQconnectStartParams, valid while *this is not changed.
  [[nodiscard]] std::vector<const char*> keywords() const;
  [[nodiscard]] std::vector<const char*> values() const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

}  // namespace detail
}  // namespace cloudbrain::pg
