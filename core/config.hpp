#pragma once

#include "core/error.hpp"
#include "core/log.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain {

// One `[provider.NAME]` section. The keys every provider has are parsed here; the rest stay in
// `settings` for the provider's own driver to validate (core/ knows no cloud).
struct provider_section {
  std::string name;
  std::string type;
  std::vector<std::string> zones;
  double rate_limit = 20.0;        // cloud calls per second
  std::size_t max_in_flight = 50;  // concurrent cloud calls
  std::string endpoint;            // empty: the cloud's real endpoint
  // Cost guards on capacity reservations: instances reserved at once (pending, active or
  // cancelling), and the longest a reservation may last.
  std::size_t max_reserved_instances = 1000;
  std::chrono::milliseconds max_reservation_duration{std::chrono::hours(24 * 7)};
  // What an instance-hour costs, in the configuration's currency, for usage reports and the
  // spend estimate: on demand by instance type, and held in a reservation. Decimal text, kept
  // as written so that PostgreSQL's numeric arithmetic stays exact; empty: not set.
  std::string standard_price_per_hour;
  std::string premium_price_per_hour;
  std::string reserved_price_per_hour;
  std::map<std::string, std::string> settings;  // every other key of the section, unparsed

  bool operator==(const provider_section&) const = default;
};

struct service_config {
  std::string listen = "127.0.0.1:8080";
  std::string admin_listen;  // empty: /livez, /readyz and /metrics are on `listen`
  // HTTPS on `listen`: a PEM certificate chain and its key, read at start and on every SIGHUP.
  // Both or neither; neither: plain HTTP.
  std::string tls_cert;
  std::string tls_key;
  std::string database_url;
  // For what needs a session of its own (LISTEN, advisory locks, the node's heartbeat): a direct
  // connection, not through a transaction pooler. Empty: database_url.
  std::string database_direct_url;
  // How this process is named among the deployment's nodes; empty: HOST:PORT of `listen`, with
  // the machine's host name for a wildcard address.
  std::string node_name;
  std::string deployment = "cloudbrain";  // marks this deployment's VMs at the clouds
  std::string base_url;                   // for Location headers; empty: from the Host header
  std::chrono::milliseconds reconcile_interval{30'000};
  std::chrono::milliseconds orphan_grace{600'000};
  std::chrono::milliseconds janitor_interval{60'000};
  std::chrono::milliseconds reservation_unused_grace{1'800'000};
  std::chrono::milliseconds job_lease{30'000};
  std::chrono::milliseconds shutdown_timeout{20'000};
  std::chrono::milliseconds token_cache_ttl{300'000};
  // Requests per second each API token may make, on average, to this process; 0: no limit.
  double token_rate_limit = 0;
  // How many at once (token-rate-burst); 0: the rate rounded up.
  unsigned token_rate_burst = 0;
  std::chrono::milliseconds driver_heartbeat{10'000};
  unsigned job_max_attempts = 10;
  unsigned threads = 2;
  unsigned blocking_threads = 2;
  std::size_t db_pool_size = 16;
  // Off behind a pooler that hands each transaction to any server session (PgBouncer in
  // transaction mode): every statement is then sent with its text, unnamed.
  bool db_prepared_statements = true;
  std::size_t max_connections = 10'000;
  // Behind a load balancer every connection comes from its address: set this above its pool
  // size, or 0.
  std::size_t max_connections_per_address = 512;
  std::chrono::milliseconds request_head_timeout{10'000};
  log::level log_level = log::level::info;
  std::string currency;                // ISO 4217 code of every price; empty: no prices set
  std::string spend_ceiling_per_hour;  // decimal text, for the spend alert; empty: none
  std::string config_file;
  std::vector<provider_section> providers;

  [[nodiscard]] const provider_section* provider(std::string_view name) const;
  [[nodiscard]] const std::string& direct_url() const {
    return database_direct_url.empty() ? database_url : database_direct_url;
  }
};

using environment_lookup = std::function<std::optional<std::string>(const std::string& name)>;
[[nodiscard]] environment_lookup process_environment();

// Reads `serve`'s configuration: flags override CLOUDBRAIN_* (and DATABASE_URL) environment
// variables, which override the INI file given by --config / CLOUDBRAIN_CONFIG. Any unknown
// key or bad value is an error whose detail names it. `args` excludes the program and command.
// In the file, ${CREDENTIALS_DIRECTORY} in a value is replaced by that environment variable
// (systemd's LoadCredential=); naming it while it is unset is an error. A value "@/path" (after
// that) is the content of that file without its trailing line ends: a secret kept elsewhere.
[[nodiscard]] result<service_config> load_config(const std::vector<std::string>& args,
                                                 const environment_lookup& env);

// The top-level keys whose values differ between two configurations, the provider sections
// aside (a reload compares those itself), in the order of config_help().
[[nodiscard]] std::vector<std::string> changed_settings(const service_config& a,
                                                        const service_config& b);

// The options of `serve`, as entries of its manual (see actors/manual.hpp).
[[nodiscard]] std::string config_help();

// A price or an amount of money as the configuration writes it: digits, optionally a point and
// more digits ("0.095", "12"); at most 9 digits on either side.
[[nodiscard]] bool valid_decimal(std::string_view s);

// Splits "host:port" or "[v6]:port".
[[nodiscard]] result<std::pair<std::string, unsigned short>> split_host_port(std::string_view s);

}  // namespace cloudbrain
