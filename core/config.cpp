#include "core/config.hpp"

#include "core/file.hpp"
#include "core/time.hpp"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace cloudbrain {
namespace po = boost::program_options;

namespace {

// Every global key: its name, its help and the name of its value in the manual. All are read as
// strings and parsed below, so that an error can name the key and the offending value.
struct key_info {
  const char* name;
  const char* help;
  const char* value = "VALUE";
};
constexpr key_info global_keys[] = {
    {"listen", "HOST:PORT of the HTTP API (default 127.0.0.1:8080)", "HOST:PORT"},
    {"admin-listen", "HOST:PORT for /livez, /readyz and /metrics only (default: on listen)",
     "HOST:PORT"},
    {"tls-cert",
     "PEM certificate chain: HTTPS (TLS 1.2 and 1.3) on listen; read again on SIGHUP (with "
     "tls-key)",
     "PATH"},
    {"tls-key", "PEM private key of tls-cert, unencrypted", "PATH"},
    {"database-url", "PostgreSQL connection URL (also DATABASE_URL)", "URL"},
    {"database-direct-url",
     "PostgreSQL URL for LISTEN, advisory locks and the heartbeat, not through a transaction "
     "pooler (default: database-url)",
     "URL"},
    {"node-name", "this process's name among the deployment's nodes (default: HOST:PORT of listen)",
     "NAME"},
    {"deployment", "name that marks this deployment's resources at the clouds (default cloudbrain)",
     "NAME"},
    {"base-url", "external base URL for Location headers (default: from the Host header)", "URL"},
    {"reconcile-interval", "how often each provider's VMs are compared with the database (30s)",
     "DURATION"},
    {"orphan-grace", "age after which a VM of ours with no live instance is deleted (10m)",
     "DURATION"},
    {"janitor-interval", "how often the reservation janitor looks for reservations to cancel (1m)",
     "DURATION"},
    {"reservation-unused-grace",
     "an active reservation with no instance in it for this long is cancelled (30m)", "DURATION"},
    {"job-lease", "how long a claimed job stays ours without renewal (30s)", "DURATION"},
    {"job-max-attempts", "attempts before an instance is marked errored (10)", "N"},
    {"shutdown-timeout", "how long SIGTERM waits for requests and cloud calls in flight (20s)",
     "DURATION"},
    {"token-cache-ttl", "how long a verified token is remembered without scrypt (5m)", "DURATION"},
    {"token-rate-limit",
     "requests per second each API token may make to this process, on average; more get 429 "
     "(default: no limit)",
     "RATE"},
    {"token-rate-burst",
     "requests an API token may make at once under token-rate-limit (default: the rate, "
     "rounded up)",
     "N"},
    {"driver-heartbeat",
     "how often out-of-tree driver connections are pinged; one silent for three is dropped (10s)",
     "DURATION"},
    {"threads", "threads running the event loop (2)", "N"},
    {"blocking-threads", "threads for scrypt, signing and file reads (2)", "N"},
    {"db-pool-size", "PostgreSQL connections (16)", "N"},
    {"db-prepared-statements",
     "true: named prepared statements, one parse per connection; false behind PgBouncer in "
     "transaction mode (true)",
     "BOOL"},
    {"max-connections", "concurrent HTTP connections (10000)", "N"},
    {"max-connections-per-address",
     "concurrent HTTP connections from one client address, 0 for no cap (512)", "N"},
    {"request-head-timeout",
     "how long a request's line and headers may take to arrive, from its first byte or from the "
     "connection's opening (10s)",
     "DURATION"},
    {"log-level", "trace, debug, info, warn, error (info)", "LEVEL"},
    {"currency", "ISO 4217 code of the providers' prices, e.g. USD (needed once a price is set)",
     "CODE"},
    {"spend-ceiling-per-hour",
     "estimated spend per hour, all providers together, above which the spend alert fires",
     "AMOUNT"},
};

std::string env_name(std::string_view key) {
  std::string out = "CLOUDBRAIN_";
  for (char c : key)
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

po::options_description make_description() {
  po::options_description desc("cloudbrain serve options");
  desc.add_options()("config", po::value<std::string>(), "INI configuration file");
  for (const auto& k : global_keys) desc.add_options()(k.name, po::value<std::string>(), k.help);
  return desc;
}

template <class N>
result<N> parse_number(std::string_view key, const std::string& v, N min, N max) {
  N n{};
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n < min || n > max) {
    std::ostringstream msg;
    msg << "'" << key << "' must be a number between " << min << " and " << max << ", not '" << v
        << "'";
    return fail(errc::bad_config, msg.str());
  }
  return n;
}

result<std::chrono::milliseconds> parse_key_duration(std::string_view key, const std::string& v) {
  auto d = parse_duration(v);
  if (!d) return fail(errc::bad_config, "'" + std::string(key) + "': " + d.error().detail);
  return *d;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

result<void> apply_global(service_config& c, const std::string& key, const std::string& v) {
  auto dur = [&](std::chrono::milliseconds& out) -> result<void> {
    auto d = parse_key_duration(key, v);
    if (!d) return d.error();
    out = *d;
    return {};
  };
  if (key == "config")
    c.config_file = v;
  else if (key == "listen" || key == "admin-listen") {
    auto hp = split_host_port(v);
    if (!hp) return fail(errc::bad_config, "'" + key + "': " + hp.error().detail);
    (key == "listen" ? c.listen : c.admin_listen) = v;
  } else if (key == "tls-cert" || key == "tls-key") {
    if (v.empty() || v.front() != '/') {
      return fail(errc::bad_config, "'" + key + "' needs an absolute path, not '" + v + "'");
    }
    (key == "tls-cert" ? c.tls_cert : c.tls_key) = v;
  } else if (key == "database-url")
    c.database_url = v;
  else if (key == "database-direct-url")
    c.database_direct_url = v;
  else if (key == "node-name") {
    if (v.empty() || v.size() > 200 || std::any_of(v.begin(), v.end(), [](char ch) {
          return static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e;
        })) {
      return fail(errc::bad_config,
                  "'node-name' must be 1-200 printable characters without spaces, not '" + v + "'");
    }
    c.node_name = v;
  } else if (key == "deployment") {
    if (v.empty() || v.size() > 40 ||
        v.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
      return fail(errc::bad_config,
                  "'deployment' must be 1-40 characters of a-z, 0-9 and '-', not '" + v + "'");
    }
    c.deployment = v;
  } else if (key == "base-url")
    c.base_url = v;
  else if (key == "reconcile-interval")
    return dur(c.reconcile_interval);
  else if (key == "orphan-grace")
    return dur(c.orphan_grace);
  else if (key == "janitor-interval")
    return dur(c.janitor_interval);
  else if (key == "reservation-unused-grace")
    return dur(c.reservation_unused_grace);
  else if (key == "job-lease")
    return dur(c.job_lease);
  else if (key == "shutdown-timeout")
    return dur(c.shutdown_timeout);
  else if (key == "token-cache-ttl")
    return dur(c.token_cache_ttl);
  else if (key == "token-rate-limit") {
    double rate = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), rate);
    if (ec != std::errc{} || end != v.data() + v.size() || !(rate > 0) || rate > 1e6) {
      return fail(errc::bad_config,
                  "'token-rate-limit' must be a number of requests per second above 0 and at "
                  "most 1000000, such as 50 or 0.5, not '" +
                      v + "'");
    }
    c.token_rate_limit = rate;
  } else if (key == "token-rate-burst") {
    auto n = parse_number<unsigned>(key, v, 1, 1'000'000);
    if (!n) return n.error();
    c.token_rate_burst = *n;
  } else if (key == "driver-heartbeat") {
    auto d = parse_key_duration(key, v);
    if (!d) return d.error();
    if (*d < std::chrono::milliseconds(100) || *d > std::chrono::minutes(10)) {
      return fail(errc::bad_config,
                  "'driver-heartbeat' must be from 100ms to 10m, not '" + v + "'");
    }
    c.driver_heartbeat = *d;
  } else if (key == "job-max-attempts") {
    auto n = parse_number<unsigned>(key, v, 1, 1000);
    if (!n) return n.error();
    c.job_max_attempts = *n;
  } else if (key == "threads" || key == "blocking-threads") {
    auto n = parse_number<unsigned>(key, v, 1, 256);
    if (!n) return n.error();
    (key == "threads" ? c.threads : c.blocking_threads) = *n;
  } else if (key == "db-pool-size") {
    auto n = parse_number<std::size_t>(key, v, 1, 1000);
    if (!n) return n.error();
    c.db_pool_size = *n;
  } else if (key == "db-prepared-statements") {
    if (v != "true" && v != "false") {
      return fail(errc::bad_config,
                  "'db-prepared-statements' must be true or false, not '" + v + "'");
    }
    c.db_prepared_statements = v == "true";
  } else if (key == "max-connections") {
    auto n = parse_number<std::size_t>(key, v, 1, 1'000'000);
    if (!n) return n.error();
    c.max_connections = *n;
  } else if (key == "max-connections-per-address") {
    auto n = parse_number<std::size_t>(key, v, 0, 1'000'000);
    if (!n) return n.error();
    c.max_connections_per_address = *n;
  } else if (key == "request-head-timeout") {
    return dur(c.request_head_timeout);
  } else if (key == "currency") {
    if (v.size() != 3 || v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) {
      return fail(errc::bad_config,
                  "'currency' must be an ISO 4217 code of three capital letters, not '" + v + "'");
    }
    c.currency = v;
  } else if (key == "spend-ceiling-per-hour") {
    if (!valid_decimal(v)) {
      return fail(
          errc::bad_config,
          "'spend-ceiling-per-hour' must be an amount such as 250 or 12.50, not '" + v + "'");
    }
    c.spend_ceiling_per_hour = v;
  } else if (key == "log-level") {
    bool ok = false;
    c.log_level = log::parse_level(v, &ok);
    if (!ok)
      return fail(errc::bad_config,
                  "'log-level' must be trace, debug, info, warn or error, not '" + v + "'");
  } else {
    return fail(errc::bad_config, "unknown key '" + key + "'");
  }
  return {};
}

}  // namespace

std::vector<std::string> changed_settings(const service_config& a, const service_config& b) {
  std::vector<std::string> out;
  const auto note = [&out](const char* key, bool same) {
    if (!same) out.emplace_back(key);
  };
  note("listen", a.listen == b.listen);
  note("admin-listen", a.admin_listen == b.admin_listen);
  note("tls-cert", a.tls_cert == b.tls_cert);
  note("tls-key", a.tls_key == b.tls_key);
  note("database-url", a.database_url == b.database_url);
  note("database-direct-url", a.database_direct_url == b.database_direct_url);
  note("node-name", a.node_name == b.node_name);
  note("deployment", a.deployment == b.deployment);
  note("base-url", a.base_url == b.base_url);
  note("reconcile-interval", a.reconcile_interval == b.reconcile_interval);
  note("orphan-grace", a.orphan_grace == b.orphan_grace);
  note("janitor-interval", a.janitor_interval == b.janitor_interval);
  note("reservation-unused-grace", a.reservation_unused_grace == b.reservation_unused_grace);
  note("job-lease", a.job_lease == b.job_lease);
  note("job-max-attempts", a.job_max_attempts == b.job_max_attempts);
  note("shutdown-timeout", a.shutdown_timeout == b.shutdown_timeout);
  note("token-cache-ttl", a.token_cache_ttl == b.token_cache_ttl);
  note("token-rate-limit", a.token_rate_limit == b.token_rate_limit);
  note("token-rate-burst", a.token_rate_burst == b.token_rate_burst);
  note("driver-heartbeat", a.driver_heartbeat == b.driver_heartbeat);
  note("threads", a.threads == b.threads);
  note("blocking-threads", a.blocking_threads == b.blocking_threads);
  note("db-pool-size", a.db_pool_size == b.db_pool_size);
  note("db-prepared-statements", a.db_prepared_statements == b.db_prepared_statements);
  note("max-connections", a.max_connections == b.max_connections);
  note("max-connections-per-address",
       a.max_connections_per_address == b.max_connections_per_address);
  note("request-head-timeout", a.request_head_timeout == b.request_head_timeout);
  note("log-level", a.log_level == b.log_level);
  note("currency", a.currency == b.currency);
  note("spend-ceiling-per-hour", a.spend_ceiling_per_hour == b.spend_ceiling_per_hour);
  return out;
}

namespace {

result<void> apply_provider_key(provider_section& p, const std::string& key, const std::string& v) {
  const std::string where = "[provider." + p.name + "] ";
  if (key == "type")
    p.type = v;
  else if (key == "zones")
    p.zones = split_words(v);
  else if (key == "rate-limit") {
    char* end = nullptr;
    const double r = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || !(r > 0) || r > 100000) {
      return fail(
          errc::bad_config,
          where + "'rate-limit' must be a positive number of calls per second, not '" + v + "'");
    }
    p.rate_limit = r;
  } else if (key == "max-in-flight") {
    auto n = parse_number<std::size_t>(where + "max-in-flight", v, 1, 100000);
    if (!n) return n.error();
    p.max_in_flight = *n;
  } else if (key == "endpoint")
    p.endpoint = v;
  else if (key == "max-reserved-instances") {
    auto n = parse_number<std::size_t>(where + "max-reserved-instances", v, 0, 1'000'000);
    if (!n) return n.error();
    p.max_reserved_instances = *n;
  } else if (key == "standard-price-per-hour" || key == "premium-price-per-hour" ||
             key == "reserved-price-per-hour") {
    if (!valid_decimal(v)) {
      return fail(errc::bad_config, where + "'" + key +
                                        "' must be a price such as 0.095 (in the currency "
                                        "of 'currency'), not '" +
                                        v + "'");
    }
    (key == "standard-price-per-hour"  ? p.standard_price_per_hour
     : key == "premium-price-per-hour" ? p.premium_price_per_hour
                                       : p.reserved_price_per_hour) = v;
  } else if (key == "max-reservation-duration") {
    auto d = parse_key_duration(where + "max-reservation-duration", v);
    if (!d) return d.error();
    if (d->count() <= 0)
      return fail(errc::bad_config, where + "'max-reservation-duration' must be positive");
    p.max_reservation_duration = *d;
  } else
    p.settings[key] = v;
  return {};
}

// systemd hands a unit's LoadCredential= files over in $CREDENTIALS_DIRECTORY, a directory known
// only at run time, so a value in the file may name it: credentials = ${CREDENTIALS_DIRECTORY}/key.
constexpr std::string_view credentials_directory_ref = "${CREDENTIALS_DIRECTORY}";

result<std::string> expand_credentials_directory(const std::string& key, std::string value,
                                                 const environment_lookup& env) {
  auto pos = value.find(credentials_directory_ref);
  if (pos == std::string::npos) return value;
  const auto dir = env("CREDENTIALS_DIRECTORY");
  if (!dir || dir->empty()) {
    return fail(errc::bad_config, "'" + key +
                                      "' names ${CREDENTIALS_DIRECTORY}, which is not set (systemd "
                                      "sets it for a unit with LoadCredential=)");
  }
  while (pos != std::string::npos) {
    value.replace(pos, credentials_directory_ref.size(), *dir);
    pos = value.find(credentials_directory_ref, pos + dir->size());
  }
  return value;
}

// A value "@/path" stands for the file's content (a secret kept out of the configuration file),
// read now, at start and on every reload; trailing line ends are not part of it. The content is
// never put into a message.
constexpr std::size_t max_value_file = 64 * 1024;

result<std::string> read_value_file(const std::string& key, std::string value) {
  if (!value.starts_with("@/")) return value;
  const std::string path = value.substr(1);
  auto text = read_whole_file(path, max_value_file);
  if (!text) {
    return fail(errc::bad_config, "'" + key + "' names the file '" + path +
                                      "', which cannot be read: " + text.error().detail);
  }
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  return text;
}

bool valid_provider_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

bool valid_decimal(std::string_view s) {
  const auto point = s.find('.');
  const auto whole = s.substr(0, point);
  const auto part = point == std::string_view::npos ? std::string_view() : s.substr(point + 1);
  const auto digits = [](std::string_view d) {
    return !d.empty() && d.size() <= 9 && d.find_first_not_of("0123456789") == std::string::npos;
  };
  return digits(whole) && (point == std::string_view::npos || digits(part));
}

const provider_section* service_config::provider(std::string_view name) const {
  for (const auto& p : providers)
    if (p.name == name) return &p;
  return nullptr;
}

environment_lookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name.c_str())) return std::string(v);
    return std::nullopt;
  };
}

result<std::pair<std::string, unsigned short>> split_host_port(std::string_view s) {
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return fail(errc::invalid_argument, "expected [ADDRESS]:PORT, got '" + std::string(s) + "'");
    }
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return fail(errc::invalid_argument, "expected HOST:PORT, got '" + std::string(s) + "'");
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    // "::1" or "::1:8080" would otherwise split inside the address.
    if (host.find(':') != std::string_view::npos) {
      return fail(errc::invalid_argument,
                  "an IPv6 address needs brackets, as in [::1]:8080; got '" + std::string(s) + "'");
    }
  }
  if (host.empty()) return fail(errc::invalid_argument, "no host in '" + std::string(s) + "'");
  unsigned p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc{} || end != port.data() + port.size() || p > 65535 || port.empty()) {
    return fail(errc::invalid_argument, "bad port in '" + std::string(s) + "'");
  }
  return std::make_pair(std::string(host), static_cast<unsigned short>(p));
}

std::string config_help() {
  // The OPTIONS entries of the manual (actors/manual.cpp): a term at four spaces, its meaning at
  // eight, as deploy/man-from-help.py turns into a man page.
  std::ostringstream out;
  out << "    --config FILE\n        INI configuration file (also CLOUDBRAIN_CONFIG)\n";
  for (const auto& k : global_keys) {
    out << "    --" << k.name << ' ' << k.value << "\n        " << k.help << "\n";
  }
  out << "\n    Every option may also come from the environment as CLOUDBRAIN_<NAME> (e.g.\n"
         "    CLOUDBRAIN_LISTEN, CLOUDBRAIN_ORPHAN_GRACE; DATABASE_URL is read too) or from the\n"
         "    configuration file. Flags override the environment, which overrides the file.\n";
  return out.str();
}

result<service_config> load_config(const std::vector<std::string>& args,
                                   const environment_lookup& env) {
  service_config cfg;
  const auto desc = make_description();

  // Flags first: program_options keeps the first value stored for each key.
  po::variables_map flags;
  try {
    po::store(po::command_line_parser(args).options(desc).run(), flags);
  } catch (const po::error& e) {
    return fail(errc::bad_config, e.what());
  }

  std::map<std::string, std::string> values;  // key -> value, highest precedence first
  for (const auto& [k, v] : flags) values.emplace(k, v.as<std::string>());
  for (const auto& k : global_keys) {
    if (values.contains(k.name)) continue;
    if (auto v = env(env_name(k.name))) values.emplace(k.name, *v);
  }
  if (!values.contains("database-url")) {
    if (auto v = env("DATABASE_URL")) values.emplace("database-url", *v);
  }
  if (!values.contains("config")) {
    if (auto v = env("CLOUDBRAIN_CONFIG")) values.emplace("config", *v);
  }

  std::map<std::string, provider_section> sections;
  std::vector<std::string> section_order;
  if (auto it = values.find("config"); it != values.end()) {
    std::ifstream in(it->second);
    if (!in) return fail(errc::bad_config, "cannot read config file '" + it->second + "'");
    po::parsed_options parsed(&desc);
    try {
      parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/true);
    } catch (const po::error& e) {
      return fail(errc::bad_config, it->second + ": " + e.what());
    }
    for (const auto& opt : parsed.options) {
      const std::string& key = opt.string_key;
      auto expanded = expand_credentials_directory(
          key, opt.value.empty() ? std::string() : opt.value.front(), env);
      if (!expanded) return fail(errc::bad_config, it->second + ": " + expanded.error().detail);
      auto read = read_value_file(key, std::move(*expanded));
      if (!read) return fail(errc::bad_config, it->second + ": " + read.error().detail);
      const std::string value = std::move(*read);
      if (key.rfind("provider.", 0) == 0) {
        const auto rest = key.substr(9);
        const auto dot = rest.find('.');
        if (dot == std::string::npos) {
          return fail(errc::bad_config, it->second + ": unknown key '" + key + "'");
        }
        const std::string name = rest.substr(0, dot);
        if (!valid_provider_name(name)) {
          return fail(errc::bad_config, it->second + ": bad provider name '" + name +
                                            "' (use a-z, 0-9, '-' and '_')");
        }
        if (!sections.contains(name)) {
          section_order.push_back(name);
          sections[name].name = name;
        }
        if (auto r = apply_provider_key(sections[name], rest.substr(dot + 1), value); !r) {
          return fail(errc::bad_config, it->second + ": " + r.error().detail);
        }
        continue;
      }
      if (opt.unregistered || key == "config") {
        return fail(errc::bad_config, it->second + ": unknown key '" + key + "'");
      }
      values.emplace(key, value);  // lower precedence: only if flags/env did not set it
    }
  }

  for (const auto& [k, v] : values) {
    if (auto r = apply_global(cfg, k, v); !r) return r.error();
  }
  for (const auto& name : section_order) {
    auto& p = sections[name];
    if (p.type.empty()) {
      return fail(errc::bad_config, "[provider." + name + "] needs a 'type'");
    }
    cfg.providers.push_back(std::move(p));
  }
  if (cfg.database_url.empty()) {
    return fail(errc::bad_config,
                "no database: set 'database-url', CLOUDBRAIN_DATABASE_URL or DATABASE_URL");
  }
  if (cfg.token_rate_burst != 0 && cfg.token_rate_limit == 0) {
    return fail(errc::bad_config, "'token-rate-burst' needs 'token-rate-limit'");
  }
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    return fail(errc::bad_config,
                cfg.tls_cert.empty() ? "'tls-key' needs 'tls-cert'" : "'tls-cert' needs 'tls-key'");
  }
  if (cfg.currency.empty()) {
    // A price without its currency would be read in whatever currency its reader assumes.
    if (!cfg.spend_ceiling_per_hour.empty()) {
      return fail(errc::bad_config, "'spend-ceiling-per-hour' needs 'currency' (e.g. USD)");
    }
    for (const auto& p : cfg.providers) {
      if (!p.standard_price_per_hour.empty() || !p.premium_price_per_hour.empty() ||
          !p.reserved_price_per_hour.empty()) {
        return fail(errc::bad_config, "[provider." + p.name +
                                          "] sets a price: set 'currency' (e.g. USD) at the top "
                                          "of the file to say which");
      }
    }
  }
  return cfg;
}

}  // namespace cloudbrain
