// `cloudbrain audit`: the audit trail, read from the database as the token commands read it.
#include "actors/audit_log.hpp"
#include "actors/service.hpp"
#include "core/pg/pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <charconv>
#include <iostream>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr const char* audit_usage =
    "usage: cloudbrain audit [--limit N] [--token ID] [--action NAME] [--before ID] [--json] "
    "[--database-url URL]\n";

bool parse_int(const std::string& s, std::int64_t& out) {
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::string text_of(const json::value& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return std::string(v.as_string());
  return json::serialize(v);
}

}  // namespace

int run_audit_command(const std::vector<std::string>& raw_args) {
  std::vector<std::string> args = raw_args;
  const std::string url = take_database_url(args);
  audit_query q;
  bool as_json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    std::int64_t n = 0;
    if (a == "--json") {
      as_json = true;
    } else if (a == "--limit" && has_value && parse_int(args[i + 1], n) && n >= 1 && n <= 1000) {
      q.limit = static_cast<std::size_t>(n);
      ++i;
    } else if (a == "--token" && has_value && parse_int(args[i + 1], n)) {
      q.token_id = n;
      ++i;
    } else if (a == "--action" && has_value && !args[i + 1].empty()) {
      q.action = args[++i];
    } else if (a == "--before" && has_value && parse_int(args[i + 1], n)) {
      q.before = n;
      ++i;
    } else {
      std::cerr << "cloudbrain audit: cannot use '" << a
                << "' (--limit takes 1 to 1000, --token and --before an id)\n"
                << audit_usage;
      return 2;
    }
  }
  if (url.empty()) {
    std::cerr << "cloudbrain audit: no database: set DATABASE_URL or pass --database-url\n";
    return 2;
  }
  asio::io_context ioc;
  pg::pool_config pool_cfg;
  pool_cfg.conninfo = url;
  pool_cfg.max_connections = 1;
  pg::pool pool(ioc.get_executor(), pool_cfg);
  audit_log trail(ioc.get_executor(), pool);
  int exit_code = 0;
  auto work = [&]() -> asio::awaitable<void> {
    auto page = co_await trail.read(q);
    if (!page) {
      std::cerr << "cloudbrain audit: " << page.error().message() << "\n";
      exit_code = 1;
      co_return;
    }
    if (as_json) {
      json::object out{{"events", json::parse(page->events_json)}, {"next_before", nullptr}};
      if (page->next_before) out["next_before"] = *page->next_before;
      std::cout << json::serialize(out) << "\n";
      co_return;
    }
    std::cout << "ID\tAT\tTOKEN\tREQUEST\tADDRESS\tMETHOD\tACTION\tTARGET\tSTATUS\tOUTCOME\n";
    const json::value events = json::parse(page->events_json);
    for (const auto& v : events.as_array()) {
      const auto& e = v.as_object();
      std::cout << text_of(e.at("id")) << '\t' << text_of(e.at("at")) << '\t'
                << text_of(e.at("token_id")) << '\t' << text_of(e.at("request_id")) << '\t'
                << text_of(e.at("address")) << '\t' << text_of(e.at("method")) << '\t'
                << text_of(e.at("action")) << '\t' << text_of(e.at("target")) << '\t'
                << text_of(e.at("status")) << '\t' << text_of(e.at("outcome")) << '\n';
    }
    if (page->next_before) {
      std::cout << "# more: cloudbrain audit --before " << *page->next_before << "\n";
    }
  };
  asio::co_spawn(ioc, work(), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  ioc.run();
  return exit_code;
}

}  // namespace cloudbrain
