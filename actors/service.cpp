#include "actors/service.hpp"

#include "actors/api.hpp"
#include "actors/audit_log.hpp"
#include "actors/authenticator.hpp"
#include "actors/cluster_node.hpp"
#include "actors/cluster_store.hpp"
#include "actors/driver_hub.hpp"
#include "actors/health.hpp"
#include "actors/instance_store.hpp"
#include "actors/manual.hpp"
#include "actors/provider_actor.hpp"
#include "actors/provider_registry.hpp"
#include "actors/provider_set.hpp"
#include "actors/reconciler.hpp"
#include "actors/reservation_janitor.hpp"
#include "actors/reservation_set_reconciler.hpp"
#include "actors/scheduler.hpp"
#include "actors/service_metrics.hpp"
#include "core/blocking_pool.hpp"
#include "core/log.hpp"
#include "core/pg/pool.hpp"
#include "core/sd_notify.hpp"
#include "core/token.hpp"
#include "core/uuid.hpp"
#include "net/server.hpp"
#include "net/tls.hpp"
#include "providers/driver.hpp"
#include "providers/metered_driver.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <csignal>
#include <ctime>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

// How often reservation sets are looked at: a set follows its members within about this long.
constexpr std::chrono::milliseconds set_reconcile_interval{500};

std::string process_owner_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  std::uint8_t nonce[4];
  secure_random(nonce, sizeof nonce);
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + to_hex(nonce, sizeof nonce);
}

asio::awaitable<result<void>> check_schema(pg::pool& pool) {
  const std::vector<pg::param> query_args_1{std::string(required_schema_change)};
  auto r = co_await pool.query(
      "SELECT EXISTS (SELECT 1 FROM sqitch.changes WHERE project = 'cloudbrain' AND change = $1)",
      query_args_1, after(std::chrono::seconds(5)));
  if (!r) {
    if (r.error().is(errc::db_syntax_or_access)) {
      co_return fail(errc::db_schema_outdated, "no Sqitch registry in this database");
    }
    co_return r.error();
  }
  if (r->text(0, 0) != "t") {
    co_return fail(errc::db_schema_outdated,
                   std::string("change '") + required_schema_change + "' is not deployed");
  }
  co_return result<void>{};
}

// Waits up to `patience` for PostgreSQL to answer, then checks the schema.
asio::awaitable<result<void>> wait_for_database(pg::pool& pool, std::chrono::seconds patience) {
  const auto give_up = after(patience);
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    auto ping = co_await pool.ping(after(std::chrono::seconds(3)));
    if (ping) co_return co_await check_schema(pool);
    if (steady_clock::now() >= give_up) co_return ping.error();
    log::warn("waiting for the database", {{"error", ping.error().message()}});
    asio::steady_timer t(ex, std::chrono::seconds(1));
    co_await t.async_wait(asio::use_awaitable);
  }
}

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "localhost";
  return host;
}

// How the cluster names this process, and where it serves: `listen`, with the host name for a
// wildcard address.
node_identity identify_node(const service_config& cfg, const asio::ip::tcp::endpoint& listen) {
  std::string address = cfg.listen;
  if (listen.address().is_unspecified()) {
    address = host_name() + ":" + std::to_string(listen.port());
  }
  return node_identity{cfg.node_name.empty() ? address : cfg.node_name, CLOUDBRAIN_VERSION,
                       address};
}

std::int64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1'000;
}

}  // namespace

std::string take_database_url(std::vector<std::string>& args) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == "--database-url" && it + 1 != args.end()) {
      std::string url = *(it + 1);
      args.erase(it, it + 2);
      return url;
    }
    if (it->rfind("--database-url=", 0) == 0) {
      std::string url = it->substr(15);
      args.erase(it);
      return url;
    }
  }
  for (const char* name : {"CLOUDBRAIN_DATABASE_URL", "DATABASE_URL"}) {
    if (const char* v = std::getenv(name)) return v;
  }
  return {};
}

int run_serve(const std::vector<std::string>& raw_args, serve_mode mode) {
  const std::string command = mode == serve_mode::serve ? "serve" : "routes";
  std::vector<std::string> args = raw_args;
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      if (mode == serve_mode::serve)
        std::cout << serve_manual();
      else
        std::cout << "Usage: cloudbrain routes [SERVE OPTIONS]\n\n"
                     "Prints the HTTP routes that serve would answer with these options.\n\n"
                  << config_help();
      return 0;
    }
  }
  const bool check_only = std::erase(args, "--check-config") > 0;
  auto cfg = load_config(args, process_environment());
  if (!cfg) {
    std::cerr << "cloudbrain " << command << ": " << cfg.error().detail << "\n";
    return 2;
  }
  // The route table goes to stdout, where the log would go too.
  log::init(mode == serve_mode::serve ? cfg->log_level : log::level::off);
  const auto endpoint_of = [](std::string_view key,
                              const std::string& value) -> std::optional<asio::ip::tcp::endpoint> {
    auto host_port = split_host_port(value);
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(host_port->first, ec);
    if (ec) {
      std::cerr << "cloudbrain serve: '" << key << "' needs an IP address, not '"
                << host_port->first << "'\n";
      return std::nullopt;
    }
    return asio::ip::tcp::endpoint(address, host_port->second);
  };
  const auto listen = endpoint_of("listen", cfg->listen);
  if (!listen) return 2;
  std::optional<asio::ip::tcp::endpoint> admin_listen;
  if (!cfg->admin_listen.empty()) {
    admin_listen = endpoint_of("admin-listen", cfg->admin_listen);
    if (!admin_listen) return 2;
  }

  const node_identity me = identify_node(*cfg, *listen);
  if (mode == serve_mode::serve) log::set_node(me.name);

  asio::io_context ioc(static_cast<int>(cfg->threads));
  blocking_pool blocking(cfg->blocking_threads);
  health status;
  service_metrics meter(CLOUDBRAIN_VERSION, blocking, status, cfg->currency,
                        cfg->spend_ceiling_per_hour);

  // Lazy: nothing here touches the database before the service starts.
  pg::pool_config pool_cfg;
  pool_cfg.conninfo = cfg->database_url;
  pool_cfg.max_connections = cfg->db_pool_size;
  pool_cfg.prepared_statements = cfg->db_prepared_statements;
  pool_cfg.query_seconds = meter.db_query_seconds();
  pg::pool pool(ioc.get_executor(), pool_cfg);
  meter.watch(pool);
  authenticator auth(ioc.get_executor(), pool, blocking, cfg->token_cache_ttl);
  // Before the drivers: external providers attach to it as they are built.
  driver_hub_config hub_cfg;
  hub_cfg.heartbeat_interval = cfg->driver_heartbeat;
  driver_hub hub(ioc.get_executor(), auth, status, hub_cfg);

  auto drivers = make_metered_drivers(
      cfg->providers,
      providers::driver_context{ioc.get_executor(), cfg->deployment, &blocking, &hub}, meter);
  if (!drivers) {
    std::cerr << "cloudbrain serve: " << drivers.error().detail << "\n";
    return 2;
  }
  // HTTPS on `listen`: the certificate and key are read now, and again on every SIGHUP; each
  // connection takes the context current when it is accepted.
  std::mutex tls_mutex;
  std::shared_ptr<asio::ssl::context> tls_context;
  if (!cfg->tls_cert.empty()) {
    auto loaded = net::load_server_tls_context(cfg->tls_cert, cfg->tls_key);
    if (!loaded) {
      std::cerr << "cloudbrain serve: " << loaded.error().detail << "\n";
      return 2;
    }
    tls_context = std::move(*loaded);
  }
  if (check_only) {
    std::cout << "cloudbrain serve: the configuration is good: listen " << cfg->listen
              << (tls_context ? " (HTTPS)" : "") << ", " << cfg->providers.size() << " provider(s)";
    for (const auto& p : cfg->providers) std::cout << " " << p.name << " (" << p.type << ")";
    std::cout << "\n";
    return 0;
  }

  const std::string owner = process_owner_id();
  instance_store store(ioc.get_executor(), pool, owner, cfg->job_max_attempts);
  meter.watch("instance_creates", store.create_counters());
  meter.watch("instance_reads", store.read_counters());
  meter.watch("instance_deletes", store.delete_counters());
  reservation_store reservations(pool, cfg->job_max_attempts);
  reservation_set_store sets(pool, cfg->job_max_attempts);
  reservation_set_reconciler set_reconciler(ioc.get_executor(), sets, set_reconcile_interval);
  meter.watch(set_reconciler.stats());
  cluster_node cluster(ioc.get_executor(), cfg->direct_url(), me, status,
                       [&auth](std::int64_t token_id) { auth.forget(token_id); });
  cluster_store cluster_view(pool, cluster.timing().lost_after);
  meter.watch(cluster, cluster_view);
  // LISTEN needs a session of its own: the direct connection.
  scheduler sched(ioc.get_executor(), store, cfg->direct_url(), cfg->job_lease);
  sched.set_metrics(meter.for_scheduler());
  provider_registry registry;
  provider_set served(ioc.get_executor(), *cfg, store, reservations, sched, status, meter, registry,
                      blocking, cluster, &hub);
  served.add(cfg->providers, std::move(*drivers));
  meter.watch_roles([&served] { return served.roles(); });

  auto routes = std::make_shared<net::router>();
  audit_log audit(ioc.get_executor(), pool);
  meter.watch("audit_records", audit.counters());
  // token-rate-limit: per process (each node of a cluster counts its own requests). There is a
  // limiter without a limit too, so that a reload can set one.
  auto& rate_refused = meter.registry()
                           .add_counter("cloudbrain_rate_limited_requests_total",
                                        "API requests refused with 429 because their token was "
                                        "over token-rate-limit.")
                           .get();
  token_rate_limiter limiter(
      cfg->token_rate_limit,
      token_rate_limiter::burst_for(cfg->token_rate_limit, cfg->token_rate_burst),
      steady_clock::now, &rate_refused);
  api http_api(*cfg, store, reservations, audit, sets, auth, status, registry, limiter);
  http_api.set_cluster(cluster_view, me.name);
  http_api.install(*routes);
  hub.install(*routes);
  // API.md: /livez, /readyz and /metrics need no token, on either listener.
  routes->add(net::http::verb::get, "/metrics", meter.handler(), "metrics");
  meter.learn_routes(*routes);
  // The admin listener: the operations routes, for probes and Prometheus, and what is for
  // operators only (GET /nodes).
  std::shared_ptr<net::router> admin_routes;
  if (admin_listen) {
    admin_routes = std::make_shared<net::router>();
    http_api.install_admin(*admin_routes);
    admin_routes->add(net::http::verb::get, "/metrics", meter.handler(), "metrics");
    meter.learn_routes(*admin_routes);
  }
  const auto on_request_done = [&meter](std::string_view method, std::string_view route,
                                        unsigned code, std::chrono::nanoseconds took) {
    meter.request_done(method, route, code, took);
  };
  net::server_config server_cfg;
  server_cfg.listen = *listen;
  server_cfg.max_connections = cfg->max_connections;
  server_cfg.max_connections_per_address = cfg->max_connections_per_address;
  server_cfg.head_timeout = cfg->request_head_timeout;
  server_cfg.on_request_done = on_request_done;
  if (tls_context) {
    server_cfg.tls_context = [&tls_mutex, &tls_context] {
      const std::lock_guard lock(tls_mutex);
      return tls_context;
    };
  }
  net::server server(ioc, server_cfg, routes);
  if (mode == serve_mode::print_routes) {
    std::set<std::pair<std::string, std::string>> on_listen;
    for (const auto& r : routes->routes()) {
      std::cout << net::http::to_string(r.method) << ' ' << r.pattern << ' ' << r.name
                << (r.upgrade ? " upgrade" : "") << '\n';
      on_listen.emplace(std::string(net::http::to_string(r.method)), r.pattern);
    }
    // Those served on admin-listen only, marked so.
    for (const auto& r : admin_routes ? admin_routes->routes() : std::vector<net::route_info>{}) {
      if (on_listen.contains({std::string(net::http::to_string(r.method)), r.pattern})) continue;
      std::cout << net::http::to_string(r.method) << ' ' << r.pattern << ' ' << r.name
                << " admin\n";
    }
    return 0;
  }

  std::unique_ptr<net::server> admin;
  if (admin_routes) {
    net::server_config admin_cfg;
    admin_cfg.listen = *admin_listen;
    admin_cfg.max_connections = 256;
    admin_cfg.on_request_done = on_request_done;
    admin = std::make_unique<net::server>(ioc, admin_cfg, admin_routes);
  }

  int exit_code = 0;
  // SIGHUP from the start: before the loop waits for it, a reload is queued, not fatal.
  asio::signal_set signals(ioc, SIGTERM, SIGINT, SIGHUP);
  const sd_notifier systemd;
  std::atomic<bool> stopping{false};
  auto shutdown = [&](std::string why) -> asio::awaitable<void> {
    log::info("shutting down", {{"reason", why}});
    stopping = true;
    systemd.notify("STOPPING=1\nSTATUS=shutting down");
    status.set_draining();
    served.close();
    set_reconciler.close();
    // The roles first, so that another node takes them over at once.
    co_await cluster.leave(after(std::chrono::seconds(3)));
    const auto dl = after(cfg->shutdown_timeout);
    // The server stops taking requests while the jobs in flight finish; out-of-tree drivers
    // stay connected for those jobs, and are let go once the scheduler has drained.
    auto drain_jobs = [&]() -> asio::awaitable<void> {
      co_await sched.drain(dl);
      hub.close_connections();
    };
    using namespace asio::experimental::awaitable_operators;
    co_await (server.shutdown(dl) && drain_jobs());
    // Last, so that probes and scrapes see the drain to its end.
    if (admin) co_await admin->shutdown(after(std::chrono::seconds(2)));
    auth.close();
    ioc.stop();
  };

  // SIGHUP: the provider sections again, from the same file, flags and environment. The
  // requests in flight and those that arrive meanwhile are served throughout.
  auto reload = [&]() -> asio::awaitable<void> {
    systemd.notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) +
                   "\nSTATUS=reloading the configuration");
    log::info("reloading the configuration", {{"config", cfg->config_file}});
    auto reloading = served.reload([args] { return load_config(args, process_environment()); });
    const auto report = co_await std::move(reloading);
    bool ok = report.ok;
    if (report.token_rate) {
      const auto& [rate, burst] = *report.token_rate;
      limiter.set_rate(rate, token_rate_limiter::burst_for(rate, burst));
    }
    if (tls_context) {
      // The same files, read afresh: a renewed certificate is served from the next connection.
      auto loaded = co_await blocking.run([cert = cfg->tls_cert, key = cfg->tls_key] {
        return net::load_server_tls_context(cert, key);
      });
      if (loaded) {
        const std::lock_guard lock(tls_mutex);
        tls_context = std::move(*loaded);
      } else {
        ok = false;
        log::error("tls certificate reload refused; the running one is kept",
                   {{"error", loaded.error().detail}});
      }
    }
    meter.config_reloaded(ok);
    const std::string summary = report.summary();
    if (!report.ok) {
      log::error("configuration reload refused", {{"error", report.error}});
    } else if (!report.changed.empty() || !report.removed.empty() ||
               !report.needs_restart.empty()) {
      log::warn("configuration reloaded in part", {{"summary", summary}});
    } else {
      log::info("configuration reloaded", {{"summary", summary}});
    }
    systemd.notify("READY=1\nSTATUS=serving; " + summary);
  };

  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto ready = co_await wait_for_database(pool, std::chrono::seconds(30));
        if (!ready) {
          if (ready.error().is(errc::db_schema_outdated)) {
            std::cerr << "cloudbrain serve: the database schema is behind this binary ("
                      << ready.error().detail << "); run `sqitch deploy` from schema/ first\n";
          } else {
            std::cerr << "cloudbrain serve: cannot reach the database: " << ready.error().message()
                      << "\n";
          }
          exit_code = 1;
          ioc.stop();
          co_return;
        }
        status.set_schema_ok(true);
        if (auto joined = co_await cluster.join(after(std::chrono::seconds(15))); !joined) {
          std::cerr << "cloudbrain serve: cannot join the cluster as node '" << me.name
                    << "': " << joined.error().message() << "\n";
          exit_code = 1;
          ioc.stop();
          co_return;
        }
        if (auto started = server.start(); !started) {
          std::cerr << "cloudbrain serve: " << started.error().detail << "\n";
          exit_code = 1;
          ioc.stop();
          co_return;
        }
        if (admin) {
          if (auto started = admin->start(); !started) {
            std::cerr << "cloudbrain serve: " << started.error().detail << "\n";
            exit_code = 1;
            ioc.stop();
            co_return;
          }
        }
        auth.start();
        cluster.start();
        hub.start();
        sched.start();
        served.start();
        set_reconciler.start();
        systemd.notify("READY=1\nSTATUS=serving");
        if (const auto every = systemd.watchdog_interval()) {
          // From the event loop itself: a wedged loop stops these, and systemd restarts us.
          asio::co_spawn(
              ioc,
              [&systemd, &stopping, every = *every]() -> asio::awaitable<void> {
                while (!stopping) {
                  systemd.notify("WATCHDOG=1");
                  co_await sleep_for(every);
                }
              },
              asio::detached);
        }
        const auto ep = server.local_endpoint();
        log::info("cloudbrain ready",
                  {{"listen", ep.address().to_string() + ":" + std::to_string(ep.port())},
                   {"providers", served.size()},
                   {"owner", owner},
                   {"node", me.name},
                   {"address", me.address}});
        for (;;) {
          auto [sig_ec, sig] = co_await signals.async_wait(asio::as_tuple(asio::use_awaitable));
          if (sig_ec) co_return;
          if (sig != SIGHUP) {
            auto stopping = shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
            co_await std::move(stopping);
            co_return;
          }
          auto reloading = reload();
          co_await std::move(reloading);
        }
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });

  std::vector<std::thread> threads;
  for (unsigned i = 1; i < cfg->threads; ++i) {
    threads.emplace_back([&ioc] {
      // Named, so that `top -H` and a debugger tell the event loop from the other threads.
      pthread_setname_np(pthread_self(), "cb-loop");
      ioc.run();
    });
  }
  ioc.run();
  for (auto& t : threads) t.join();
  blocking.stop();
  log::info("stopped", {{"exit_code", exit_code}});
  log::shutdown();
  return exit_code;
}

int run_token_command(const std::vector<std::string>& raw_args) {
  std::vector<std::string> args = raw_args;
  const std::string url = take_database_url(args);
  if (args.empty()) {
    std::cerr << "usage: cloudbrain token create [--role client|driver|admin] [--scope own|all] "
                 "\"description\" | list | revoke <id>\n";
    return 2;
  }
  if (url.empty()) {
    std::cerr << "cloudbrain token: no database: set DATABASE_URL or pass --database-url\n";
    return 2;
  }
  const std::string command = args[0];
  asio::io_context ioc;
  pg::pool_config pool_cfg;
  pool_cfg.conninfo = url;
  pool_cfg.max_connections = 1;
  pg::pool pool(ioc.get_executor(), pool_cfg);
  int exit_code = 0;
  const auto dl = [] { return after(std::chrono::seconds(10)); };

  auto work = [&]() -> asio::awaitable<void> {
    if (command == "create") {
      // --role ROLE and --scope SCOPE (or --role=ROLE, --scope=SCOPE) anywhere; the one other
      // argument is the description.
      token_role role = token_role::client;
      std::optional<token_scope> scope;
      std::vector<std::string> words;
      bool bad_option = false;
      for (std::size_t i = 1; i < args.size(); ++i) {
        std::optional<std::string> value;
        bool is_scope = false;
        if ((args[i] == "--role" || args[i] == "--scope") && i + 1 < args.size()) {
          is_scope = args[i] == "--scope";
          value = args[++i];
        } else if (args[i].rfind("--role=", 0) == 0) {
          value = args[i].substr(7);
        } else if (args[i].rfind("--scope=", 0) == 0) {
          is_scope = true;
          value = args[i].substr(8);
        } else {
          words.push_back(args[i]);
          continue;
        }
        if (is_scope) {
          scope = parse_token_scope(*value);
          if (!scope) bad_option = true;
        } else {
          const auto parsed = parse_token_role(*value);
          if (!parsed) bad_option = true;
          role = parsed.value_or(token_role::client);
        }
      }
      // A scope confines what a client token sees; the other roles do not read resources
      // (driver) or see everything (admin).
      const bool scope_misplaced = scope && role != token_role::client;
      if (bad_option || scope_misplaced || words.size() != 1 || words[0].empty()) {
        if (scope_misplaced) {
          std::cerr << "cloudbrain token create: --scope is for client tokens; an admin token "
                       "sees everything and a driver token no resources\n";
        }
        std::cerr << "usage: cloudbrain token create [--role client|driver|admin] "
                     "[--scope own|all] \"description\"\n";
        exit_code = 2;
        co_return;
      }
      // New client tokens see what they create unless told otherwise; admin tokens are
      // recorded as seeing everything, which they do.
      const token_scope granted =
          scope.value_or(role == token_role::admin ? token_scope::all : token_scope::own);
      const auto secret = generate_token_secret();
      const auto salt = generate_token_salt();
      const auto hash = hash_token_secret(secret, salt.data(), salt.size());
      const std::vector<pg::param> query_args_2{
          words[0], to_hex(salt.data(), salt.size()), to_hex(hash.data(), hash.size()),
          std::string(to_string(role)), std::string(to_string(granted))};
      // The token and its audit record, in one statement.
      auto r = co_await pool.query(
          "WITH t AS (INSERT INTO tokens (description, salt, hash, role, scope) "
          "VALUES ($1, decode($2, 'hex'), decode($3, 'hex'), $4, $5) RETURNING id), "
          "a AS (INSERT INTO audit_events (address, action, method, target, status, outcome) "
          "SELECT 'cli', 'token.create', 'CLI', id::text, 0, 'ok' FROM t) "
          "SELECT id FROM t",
          query_args_2, dl());
      if (!r) {
        std::cerr << "cloudbrain token create: " << r.error().message() << "\n";
        exit_code = 1;
        co_return;
      }
      const auto id = std::stoll(std::string(r->text(0, 0)));
      std::cout << "generated token: " << format_token(id, secret) << std::endl;
    } else if (command == "list") {
      auto r = co_await pool.query(
          "SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
          "coalesce(to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
          "'-'), role, scope, description FROM tokens ORDER BY id",
          {}, dl());
      if (!r) {
        std::cerr << "cloudbrain token list: " << r.error().message() << "\n";
        exit_code = 1;
        co_return;
      }
      std::cout << "ID\tCREATED\tREVOKED\tROLE\tSCOPE\tDESCRIPTION\n";
      for (int i = 0; i < static_cast<int>(r->size()); ++i) {
        std::cout << r->text(i, 0) << '\t' << r->text(i, 1) << '\t' << r->text(i, 2) << '\t'
                  << r->text(i, 3) << '\t' << r->text(i, 4) << '\t' << r->text(i, 5) << '\n';
      }
    } else if (command == "revoke") {
      std::int64_t id = 0;
      if (args.size() != 2 ||
          std::from_chars(args[1].data(), args[1].data() + args[1].size(), id).ptr !=
              args[1].data() + args[1].size()) {
        std::cerr << "usage: cloudbrain token revoke <numeric id>\n";
        exit_code = 2;
        co_return;
      }
      const std::vector<pg::param> query_args_3{args[1]};
      // The revocation and its audit record (also of one that changed nothing), in one statement.
      auto r = co_await pool.query(
          "WITH u AS (UPDATE tokens SET revoked_at = now() WHERE id = $1::bigint "
          "AND revoked_at IS NULL RETURNING id), "
          "e AS (SELECT EXISTS (SELECT 1 FROM tokens WHERE id = $1::bigint) AS known), "
          "a AS (INSERT INTO audit_events (address, action, method, target, status, outcome) "
          "SELECT 'cli', 'token.revoke', 'CLI', $1, 0, "
          "CASE WHEN (SELECT count(*) FROM u) = 1 THEN 'ok' "
          "WHEN (SELECT known FROM e) THEN 'already_revoked' ELSE 'not_found' END) "
          "SELECT (SELECT count(*) FROM u), (SELECT known FROM e)",
          query_args_3, dl());
      if (!r) {
        std::cerr << "cloudbrain token revoke: " << r.error().message() << "\n";
        exit_code = 1;
        co_return;
      }
      if (r->text(0, 0) == "1") {
        std::cout << "revoked token " << id << "\n";
      } else if (r->text(0, 1) == "t") {
        std::cout << "token " << id << " was already revoked\n";
      } else {
        std::cerr << "cloudbrain token revoke: no token " << id << "\n";
        exit_code = 1;
      }
    } else {
      std::cerr << "cloudbrain token: unknown command '" << command
                << "' (create, list or revoke)\n";
      exit_code = 2;
    }
  };
  asio::co_spawn(ioc, work(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  ioc.run();
  return exit_code;
}

}  // namespace cloudbrain
