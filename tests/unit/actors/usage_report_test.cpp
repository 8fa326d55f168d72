#include "actors/usage_report.hpp"
#include "actors/api.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace cloudbrain {
namespace {

using namespace std::chrono_literals;

system_clock::time_point at(std::string_view text) { return parse_rfc3339(text).value(); }

usage_report sample() {
  usage_report r;
  r.from = at("2024-05-01T00:00:00Z");
  r.to = at("2024-05-02T00:00:00Z");
  r.as_of = r.to;
  r.group_by = {"provider", "tag.team"};
  r.currency = "EUR";
  usage_group east;
  east.key = {"east", "a"};
  east.figures = {2, 1, "5.5", "16", "11.5", "1.27"};
  usage_group bare;
  bare.key = {"bare", std::nullopt};
  bare.figures = {1, 0, "0.333333", "0", "0", std::nullopt};
  usage_group blank;
  blank.key = {"west", ""};
  blank.figures = {1, 0, "1", "0", "0", "0.12"};
  r.groups = {east, bare, blank};
  r.total = {4, 1, "6.833333", "16", "11.5", std::nullopt};
  return r;
}

TEST(usage_report, csv_is_rfc_4180_with_crlf_and_one_line_per_group) {
  EXPECT_EQ(usage_csv(sample()),
            "provider,tag.team,instances,reservations,instance_hours,reserved_instance_hours,"
            "reserved_unused_instance_hours,estimated_cost,currency\r\n"
            "east,a,2,1,5.5,16,11.5,1.27,EUR\r\n"
            // No tag: an empty field; no cost (a price is missing): no currency either.
            "bare,,1,0,0.333333,0,0,,\r\n"
            // A tag whose value is the empty string: a quoted empty field.
            "west,\"\",1,0,1,0,0,0.12,EUR\r\n");
}

TEST(usage_report, csv_fields_are_quoted_only_when_they_must_be) {
  EXPECT_EQ(csv_field("plain"), "plain");
  EXPECT_EQ(csv_field(""), "");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\r\nlines"), "\"two\r\nlines\"");
}

// The table's lines split at the columns of its header line.
std::vector<std::vector<std::string>> cells_of(const std::string& table) {
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < table.size();) {
    const auto end = table.find('\n', at);
    lines.push_back(table.substr(at, end - at));
    at = end + 1;
  }
  std::vector<std::size_t> starts;
  const std::string& header = lines.at(1);
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] != ' ' && (i == 0 || header[i - 1] == ' ')) starts.push_back(i);
  }
  std::vector<std::vector<std::string>> out;
  for (std::size_t l = 1; l < lines.size(); ++l) {
    std::vector<std::string> row;
    for (std::size_t c = 0; c < starts.size(); ++c) {
      const auto& line = lines[l];
      // Every cell starts at its column, after at least two spaces.
      if (c > 0 && starts[c] < line.size()) {
        EXPECT_EQ(line.substr(starts[c] - 2, 2), "  ") << line;
      }
      const auto end = c + 1 < starts.size() ? starts[c + 1] : std::string::npos;
      std::string cell = starts[c] < line.size() ? line.substr(starts[c], end - starts[c]) : "";
      while (!cell.empty() && cell.back() == ' ') cell.pop_back();
      row.push_back(cell);
    }
    out.push_back(row);
  }
  return out;
}

TEST(usage_report, the_table_aligns_columns_and_ends_with_the_total) {
  const std::string table = usage_table(sample());
  EXPECT_TRUE(
      table.starts_with("usage from 2024-05-01T00:00:00.000000Z to "
                        "2024-05-02T00:00:00.000000Z; estimated cost in EUR\n"));
  using row = std::vector<std::string>;
  EXPECT_EQ(cells_of(table),
            (std::vector<row>{
                {"provider", "tag.team", "instances", "reservations", "instance_hours",
                 "reserved_instance_hours", "reserved_unused_instance_hours", "estimated_cost"},
                {"east", "a", "2", "1", "5.5", "16", "11.5", "1.27"},
                // No tag, no cost: "-"; a tag whose value is empty: "".
                {"bare", "-", "1", "0", "0.333333", "0", "0", "-"},
                {"west", "\"\"", "1", "0", "1", "0", "0", "0.12"},
                {"total", "", "4", "1", "6.833333", "16", "11.5", "-"},
            }));
  for (std::size_t at = table.find('\n'); at != std::string::npos; at = table.find('\n', at + 1)) {
    EXPECT_NE(table[at - 1], ' ') << "a line ends in spaces";
  }
}

TEST(usage_report, the_table_says_how_far_it_counted_and_without_groups_has_one_line) {
  auto r = sample();
  r.group_by.clear();
  r.groups.clear();
  r.currency.clear();
  r.as_of = at("2024-05-01T12:30:00Z");
  const std::string table = usage_table(r);
  EXPECT_EQ(table,
            "usage from 2024-05-01T00:00:00.000000Z to 2024-05-02T00:00:00.000000Z (as of "
            "2024-05-01T12:30:00.000000Z); no prices configured\n"
            "instances  reservations  instance_hours  reserved_instance_hours  "
            "reserved_unused_instance_hours  estimated_cost\n"
            "4          1             6.833333        16                       11.5          "
            "                  -\n");
}

TEST(usage_report, json_carries_numbers_exactly_and_nulls_where_nothing_is_known) {
  const auto doc = boost::json::parse(usage_json(sample())).as_object();
  EXPECT_EQ(doc.at("currency"), "EUR");
  EXPECT_EQ(doc.at("from"), "2024-05-01T00:00:00.000000Z");
  EXPECT_EQ(doc.at("as_of"), "2024-05-02T00:00:00.000000Z");
  const auto& groups = doc.at("groups").as_array();
  ASSERT_EQ(groups.size(), 3u);
  const auto& bare = groups[1].as_object();
  EXPECT_EQ(bare.at("group").as_object().at("provider"), "bare");
  EXPECT_TRUE(bare.at("group").as_object().at("tag.team").is_null());
  EXPECT_TRUE(bare.at("figures").as_object().at("estimated_cost").is_null());
  const auto& east = groups[0].as_object().at("figures").as_object();
  EXPECT_EQ(east.at("instances"), 2);
  EXPECT_DOUBLE_EQ(east.at("instance_hours").as_double(), 5.5);
  EXPECT_EQ(east.at("reserved_instance_hours"), 16);
  EXPECT_TRUE(doc.at("total").as_object().at("estimated_cost").is_null());
  // The decimal text goes in as PostgreSQL wrote it, not through a double.
  EXPECT_NE(usage_json(sample()).find("\"instance_hours\":0.333333,"), std::string::npos);
}

std::pair<usage_query, usage_query_problems> parse(
    std::vector<std::pair<std::string, std::string>> params) {
  usage_query_problems problems;
  auto q = parse_usage_query(params, at("2024-05-02T10:00:00.123456789Z"), problems);
  return {q, problems};
}

TEST(usage_query, defaults_to_the_last_day_by_provider_and_instance_type) {
  auto [q, problems] = parse({});
  EXPECT_TRUE(problems.errors.empty());
  EXPECT_EQ(format_rfc3339(q.to), "2024-05-02T10:00:00.123456Z");
  EXPECT_EQ(q.to - q.from, 24h);
  EXPECT_EQ(q.group_by, (std::vector<std::string>{"provider", "instance_type"}));
  auto [none, ok] = parse({{"group_by", ""}, {"tag.run", "r1"}, {"provider", "east"}});
  EXPECT_TRUE(ok.errors.empty());
  EXPECT_TRUE(none.group_by.empty());
  EXPECT_EQ(none.tags.at("run"), "r1");
  EXPECT_EQ(none.provider, "east");
}

TEST(usage_query, every_problem_is_named) {
  const auto parsed = parse({{"from", "2024-05-03T00:00:00Z"},
                             {"group_by", "provider,zone,tag.Run,provider"},
                             {"colour", "red"},
                             {"provider", ""}});
  const auto& problems = parsed.second;
  const auto has = [&problems](std::string_view text) {
    for (const auto& e : problems.errors)
      if (e.find(text) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("'from' must be before 'to'"));
  EXPECT_TRUE(has("not 'zone'"));
  EXPECT_TRUE(has("not 'tag.Run'"));
  EXPECT_TRUE(has("names 'provider' twice"));
  EXPECT_TRUE(has("unknown query parameter 'colour'"));
  EXPECT_TRUE(has("'provider' must name a provider"));
  EXPECT_EQ(problems.code, "unknown_parameter");
  auto [long_q, too_long] = parse({{"from", "2020-01-01T00:00:00Z"}});
  EXPECT_EQ(too_long.errors, std::vector<std::string>{"the period may be at most 366 days long"});
  auto [twice_q, twice] = parse({{"to", "2024-05-01T00:00:00Z"}, {"to", "2024-05-01T00:00:00Z"}});
  EXPECT_EQ(twice.errors, std::vector<std::string>{"'to' is given twice"});
}

TEST(usage_format, the_better_q_wins_json_on_a_tie_and_neither_is_none) {
  EXPECT_EQ(usage_format_for(""), usage_format::json);
  EXPECT_EQ(usage_format_for("text/csv"), usage_format::csv);
  EXPECT_EQ(usage_format_for("TEXT/CSV; charset=utf-8"), usage_format::csv);
  EXPECT_EQ(usage_format_for("application/json"), usage_format::json);
  EXPECT_EQ(usage_format_for("*/*"), usage_format::json);
  EXPECT_EQ(usage_format_for("text/*"), usage_format::csv);
  EXPECT_EQ(usage_format_for("text/csv, application/json"), usage_format::json);
  EXPECT_EQ(usage_format_for("text/csv;q=0.5, application/json"), usage_format::json);
  EXPECT_EQ(usage_format_for("application/json;q=0.2, text/csv"), usage_format::csv);
  EXPECT_EQ(usage_format_for("*/*;q=0.1, text/csv"), usage_format::csv);
  // The most specific range decides: text/csv refused outright, whatever */* says.
  EXPECT_EQ(usage_format_for("text/csv;q=0, */*"), usage_format::json);
  EXPECT_EQ(usage_format_for("text/html"), usage_format::none);
  EXPECT_EQ(usage_format_for("application/json;q=0"), usage_format::none);
  EXPECT_EQ(usage_format_for("application/json;q=oops"), usage_format::none);
}

}  // namespace
}  // namespace cloudbrain
