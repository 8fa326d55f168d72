// `cloudbrain usage`: GET /usage's report, read from the database, printed in the terminal.
#include "actors/service.hpp"
#include "actors/usage_report.hpp"
#include "core/pg/pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <iostream>

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

constexpr const char* usage_help = R"(Usage: cloudbrain usage [OPTIONS]

Prints what ran, what was reserved, what of that stood unused and what it cost over a period,
as GET /usage computes it from the database's history, one line per group and a total.

Options:
  --from TIME          start of the period, RFC 3339 (default: 24 hours before --to)
  --to TIME            end of the period, RFC 3339, not included (default: now)
  --group-by KEYS      provider, instance_type and tag.KEY, comma-separated
                       (default: provider,instance_type; "" for one line)
  --tag KEY=VALUE      only instances and reservations with this tag (repeatable)
  --provider NAME      only this provider's
  --format FORMAT      table (default), csv or json
  --config FILE        the service's configuration, for its prices and currency
                       (also CLOUDBRAIN_CONFIG; without it, no cost is estimated)
  --database-url URL   the database (also CLOUDBRAIN_DATABASE_URL or DATABASE_URL)
)";

int usage_error(const std::string& message) {
  std::cerr << "cloudbrain usage: " << message << "\n";
  return 2;
}

}  // namespace

int run_usage_command(const std::vector<std::string>& raw_args) {
  std::vector<std::string> args = raw_args;
  const std::string url = take_database_url(args);
  std::vector<std::pair<std::string, std::string>> query;
  std::string format = "table";
  std::string config_file;
  if (const char* env = std::getenv("CLOUDBRAIN_CONFIG")) config_file = env;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> value;
    if (const auto eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag == "--help" || flag == "-h") {
      std::cout << usage_help;
      return 0;
    }
    static const std::map<std::string, std::string> to_query = {
        {"--from", "from"}, {"--to", "to"}, {"--group-by", "group_by"}, {"--provider", "provider"}};
    const bool known =
        to_query.contains(flag) || flag == "--tag" || flag == "--format" || flag == "--config";
    if (!known) return usage_error("unknown option '" + flag + "' (see --help)");
    if (!value) {
      if (i + 1 == args.size()) return usage_error("'" + flag + "' needs a value");
      value = args[++i];
    }
    if (flag == "--format") {
      if (*value != "table" && *value != "csv" && *value != "json") {
        return usage_error("'--format' is table, csv or json, not '" + *value + "'");
      }
      format = *value;
    } else if (flag == "--config") {
      config_file = *value;
    } else if (flag == "--tag") {
      const auto eq = value->find('=');
      if (eq == std::string::npos || eq == 0) {
        return usage_error("'--tag' takes KEY=VALUE, not '" + *value + "'");
      }
      query.emplace_back("tag." + value->substr(0, eq), value->substr(eq + 1));
    } else {
      query.emplace_back(to_query.at(flag), *value);
    }
  }
  if (url.empty()) {
    return usage_error("no database: set DATABASE_URL or pass --database-url");
  }
  usage_query_problems problems;
  auto q = parse_usage_query(query, system_clock::now(), problems);
  if (!problems.errors.empty()) {
    std::string all;
    for (const auto& e : problems.errors) all += (all.empty() ? "" : "; ") + e;
    return usage_error(all);
  }

  usage_prices prices;
  if (!config_file.empty()) {
    // The service's own reading of its file, so that the prices are the ones it serves with.
    auto cfg = load_config({"--config", config_file, "--database-url", url}, process_environment());
    if (!cfg) return usage_error(cfg.error().detail);
    std::vector<const provider_section*> sections;
    for (const auto& s : cfg->providers) sections.push_back(&s);
    prices = prices_of(cfg->currency, sections);
  }

  asio::io_context ioc;
  pg::pool_config pool_cfg;
  pool_cfg.conninfo = url;
  pool_cfg.max_connections = 1;
  pg::pool pool(ioc.get_executor(), pool_cfg);
  int exit_code = 0;
  auto work = [&]() -> asio::awaitable<void> {
    auto computing = compute_usage(pool, std::move(q), std::move(prices));
    auto report = co_await std::move(computing);
    if (!report) {
      std::cerr << "cloudbrain usage: " << report.error().message() << "\n";
      exit_code = report.error().is(errc::invalid_argument) ? 2 : 1;
      co_return;
    }
    if (format == "csv") {
      std::cout << usage_csv(*report);
    } else if (format == "json") {
      std::cout << usage_json(*report) << "\n";
    } else {
      std::cout << usage_table(*report);
    }
  };
  asio::co_spawn(ioc, work(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  ioc.run();
  return exit_code;
}

}  // namespace cloudbrain
