// GET /usage: what ran, what was reserved and left unused, and what it cost (usage_report).
#include "actors/api.hpp"

#include "actors/usage_report.hpp"
#include "net/problem.hpp"

#include <cctype>
#include <charconv>

namespace cloudbrain {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool same_token(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

}  // namespace

usage_format usage_format_for(std::string_view accept) {
  if (trimmed(accept).empty()) return usage_format::json;
  // For each format, the q of the most specific range that covers it (RFC 9110 12.5.1).
  struct candidate {
    usage_format format;
    std::string_view type;
    std::string_view subtype;
    int specificity = -1;
    double q = 0;
  };
  candidate candidates[] = {{usage_format::json, "application", "json"},
                            {usage_format::csv, "text", "csv"}};
  std::size_t start = 0;
  while (start <= accept.size()) {
    const auto comma = accept.find(',', start);
    const auto range = accept.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    start = comma == std::string_view::npos ? accept.size() + 1 : comma + 1;
    const auto semi = range.find(';');
    const auto media = trimmed(range.substr(0, semi));
    const auto slash = media.find('/');
    if (media.empty() || slash == std::string_view::npos) continue;
    const auto type = media.substr(0, slash);
    const auto subtype = media.substr(slash + 1);
    double q = 1;
    for (auto rest = semi == std::string_view::npos ? std::string_view() : range.substr(semi + 1);
         !rest.empty();) {
      const auto next = rest.find(';');
      const auto param = trimmed(rest.substr(0, next));
      rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
      if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        const auto value = param.substr(2);
        double parsed = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
        q = ec == std::errc{} && end == value.data() + value.size() && parsed >= 0 && parsed <= 1
                ? parsed
                : 0;
      }
    }
    for (auto& c : candidates) {
      int specificity = -1;
      if (same_token(type, c.type) && same_token(subtype, c.subtype)) {
        specificity = 2;
      } else if (same_token(type, c.type) && subtype == "*") {
        specificity = 1;
      } else if (type == "*" && subtype == "*") {
        specificity = 0;
      }
      if (specificity > c.specificity) {
        c.specificity = specificity;
        c.q = q;
      }
    }
  }
  // The better q wins; JSON on a tie.
  const auto& json = candidates[0];
  const auto& csv = candidates[1];
  if (csv.q > json.q) return usage_format::csv;
  if (json.q > 0) return usage_format::json;
  return usage_format::none;
}

void api::install_usage(net::router& r) {
  r.add(http::verb::get, "/usage", authenticated(&api::get_usage), "usage.get");
}

asio::awaitable<net::response> api::get_usage(net::request_context& ctx,
                                              const verified_token& token) {
  const auto accept = ctx.req.find(http::field::accept);
  std::string_view accepted;
  if (accept != ctx.req.end()) accepted = accept->value();
  const auto format = usage_format_for(accepted);
  if (format == usage_format::none) {
    co_return net::problem(http::status::not_acceptable, "not_acceptable", "Not acceptable",
                           "GET /usage answers application/json or text/csv; the Accept header "
                           "allows neither");
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& p : ctx.query) {
    pairs.emplace_back(p.key, p.has_value ? std::string(p.value) : std::string());
  }
  usage_query_problems problems;
  auto query = parse_usage_query(pairs, system_clock::now(), problems);
  if (!problems.errors.empty()) {
    validation v;
    v.errors = std::move(problems.errors);
    v.code = problems.code;
    co_return invalid(v);
  }
  // A client token's report covers what it created, as its listings do.
  query.owner = token.owner();
  // Sections live as long as the process (a registry never drops a provider).
  const auto served = providers_.snapshot();
  std::vector<const provider_section*> sections;
  for (const auto& [name, actor] : *served) sections.push_back(&actor->section());
  auto computing =
      compute_usage(store_.pool(), std::move(query), prices_of(cfg_.currency, sections));
  auto report = co_await std::move(computing);
  if (!report) {
    if (report.error().is(errc::invalid_argument)) {
      validation v;
      v.code = "too_many_groups";
      v.errors.push_back(report.error().detail);
      co_return invalid(v);
    }
    co_return net::problem_from_error(report.error());
  }
  if (format == usage_format::csv) {
    co_return net::text_response(http::status::ok, "text/csv", usage_csv(*report));
  }
  co_return raw_json(http::status::ok, usage_json(*report));
}

}  // namespace cloudbrain
