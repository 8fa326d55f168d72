#include "actors/usage_report.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <algorithm>
#include <set>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

using params = std::vector<pg::param>;

constexpr std::chrono::hours default_period{24};
constexpr std::chrono::hours longest_period{24 * 366};
constexpr std::size_t max_group_keys = 8;

// A run or a hold in [started, ended) (ended NULL: still on) clipped to the window [t0, t1),
// in seconds: the SQL of each overlap below, with its own intervals.
constexpr const char* usage_sql = R"(
WITH w AS (SELECT $1::timestamptz AS t0, least($2::timestamptz, now()) AS t1),
inst AS (
  SELECT i.id, i.provider, i.instance_type, i.tags, i.reservation_id
  FROM instances i
  WHERE i.id IN (SELECT id FROM instances
                 WHERE state IN ('creating', 'starting', 'running', 'terminating')
                 UNION
                 SELECT e.instance_id FROM instance_events e, w
                 WHERE e.kind = 'state' AND e.to_state IN ('terminated', 'errored')
                   AND e.at >= w.t0 AND e.instance_id IS NOT NULL)
    AND ($3::jsonb IS NULL OR i.tags @> $3::jsonb)
    AND ($4::text IS NULL OR i.provider = $4)
    AND ($10::bigint IS NULL OR i.created_by = $10)),
runs AS (
  SELECT inst.*, x.started, x.ended FROM inst
  CROSS JOIN LATERAL (
    SELECT s.at AS started,
           (SELECT min(e.at) FROM instance_events e
            WHERE e.instance_id = inst.id AND e.kind = 'state'
              AND e.to_state IN ('terminated', 'errored') AND e.at >= s.at) AS ended
    FROM instance_events s
    WHERE s.instance_id = inst.id AND s.kind = 'state' AND s.to_state = 'running'
    ORDER BY s.at LIMIT 1) x),
res AS (
  SELECT r.id FROM reservations r
  WHERE r.id IN (SELECT id FROM reservations WHERE state IN ('pending', 'active', 'cancelling')
                 UNION
                 SELECT e.reservation_id FROM reservation_events e, w
                 WHERE e.kind = 'state' AND e.to_state IN ('cancelled', 'expired', 'failed')
                   AND e.at >= w.t0 AND e.reservation_id IS NOT NULL)
    AND ($3::jsonb IS NULL OR r.tags @> $3::jsonb)
    AND ($4::text IS NULL OR r.provider = $4)
    AND ($10::bigint IS NULL OR r.created_by = $10)),
spans AS (
  SELECT r.id, r.provider, r.instance_type, r.tags, r.count, x.started, x.ended,
         r.id IN (SELECT id FROM res) AS selected
  FROM reservations r
  CROSS JOIN LATERAL (
    SELECT s.at AS started,
           (SELECT min(e.at) FROM reservation_events e
            WHERE e.reservation_id = r.id AND e.kind = 'state'
              AND e.to_state IN ('cancelled', 'expired', 'failed') AND e.at >= s.at) AS ended
    FROM reservation_events s
    WHERE s.reservation_id = r.id AND s.kind = 'state' AND s.to_state = 'active'
    ORDER BY s.at LIMIT 1) x
  WHERE r.id IN (SELECT id FROM res
                 UNION
                 SELECT reservation_id FROM runs WHERE reservation_id IS NOT NULL)),
inside AS (
  SELECT i.reservation_id, x.started, x.ended FROM instances i
  CROSS JOIN LATERAL (
    SELECT s.at AS started,
           (SELECT min(e.at) FROM instance_events e
            WHERE e.instance_id = i.id AND e.kind = 'state'
              AND e.to_state IN ('terminated', 'errored') AND e.at >= s.at) AS ended
    FROM instance_events s
    WHERE s.instance_id = i.id AND s.kind = 'state' AND s.to_state = 'running'
    ORDER BY s.at LIMIT 1) x
  WHERE i.reservation_id IN (SELECT id FROM spans WHERE selected)),
items AS (
  SELECT runs.provider, runs.instance_type, runs.tags, 'instance' AS kind,
         greatest(0, extract(epoch FROM least(coalesce(runs.ended, 'infinity'), w.t1)
                                        - greatest(runs.started, w.t0))) AS run_s,
         CASE WHEN sp.id IS NULL THEN 0
              ELSE greatest(0, extract(epoch FROM
                     least(coalesce(runs.ended, 'infinity'), coalesce(sp.ended, 'infinity'), w.t1)
                     - greatest(runs.started, sp.started, w.t0))) END AS covered_s,
         0::numeric AS reserved_s, 0::numeric AS used_s
  FROM runs CROSS JOIN w LEFT JOIN spans sp ON sp.id = runs.reservation_id
  UNION ALL
  SELECT sp.provider, sp.instance_type, sp.tags, 'reservation', 0, 0,
         sp.count * greatest(0, extract(epoch FROM least(coalesce(sp.ended, 'infinity'), w.t1)
                                                   - greatest(sp.started, w.t0))),
         coalesce((SELECT sum(greatest(0, extract(epoch FROM
                            least(coalesce(x.ended, 'infinity'), coalesce(sp.ended, 'infinity'),
                                  w.t1)
                            - greatest(x.started, sp.started, w.t0))))
                   FROM inside x WHERE x.reservation_id = sp.id), 0)
  FROM spans sp CROSS JOIN w WHERE sp.selected),
priced AS (
  SELECT it.*,
         CASE WHEN it.kind = 'instance' THEN ($5::jsonb -> it.provider ->> it.instance_type)
              ELSE coalesce($5::jsonb -> it.provider ->> 'reserved',
                            $5::jsonb -> it.provider ->> it.instance_type)
         END::numeric AS price,
         CASE WHEN it.kind = 'instance' THEN it.run_s - it.covered_s ELSE it.reserved_s END
           AS billed_s
  FROM items it WHERE it.run_s > 0 OR it.reserved_s > 0),
keyed AS (
  SELECT CASE WHEN $6::boolean THEN p.provider END AS g_provider,
         CASE WHEN $7::boolean THEN p.instance_type END AS g_type,
         ARRAY(SELECT p.tags ->> u.k FROM unnest($8::text[]) WITH ORDINALITY AS u(k, n)
               ORDER BY u.n) AS g_tags,
         p.*
  FROM priced p)
SELECT g_provider, g_type, to_json(g_tags)::text,
       GROUPING(g_provider, g_type, g_tags) <> 0 AS is_total,
       count(*) FILTER (WHERE kind = 'instance'),
       count(*) FILTER (WHERE kind = 'reservation'),
       trim_scale(round(coalesce(sum(run_s), 0) / 3600, 6))::text,
       trim_scale(round(coalesce(sum(reserved_s), 0) / 3600, 6))::text,
       trim_scale(round(coalesce(sum(greatest(0, reserved_s - used_s)), 0) / 3600, 6))::text,
       CASE WHEN coalesce(bool_and(price IS NOT NULL OR billed_s = 0), true)
            THEN trim_scale(round(coalesce(sum(billed_s * coalesce(price, 0)), 0) / 3600, 6))::text
       END,
       to_char((SELECT t1 FROM w) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
FROM keyed
GROUP BY GROUPING SETS ((g_provider, g_type, g_tags), ())
ORDER BY is_total, g_provider NULLS LAST, g_type NULLS LAST, g_tags
LIMIT $9::int)";

// The deadline of the report's statement: it reads history, which may be long.
constexpr std::chrono::seconds usage_deadline{25};

bool valid_tag_key(std::string_view k) {
  if (k.empty() || k.size() > 63 || !(k[0] >= 'a' && k[0] <= 'z')) return false;
  return k.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string_view::npos;
}

std::vector<std::string> split_commas(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    const auto end = comma == std::string_view::npos ? s.size() : comma;
    out.emplace_back(s.substr(start, end - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string quoted(std::string_view s) { return json::serialize(json::string(s)); }

std::string figures_json(const usage_figures& f) {
  std::string out = "{\"instances\":" + std::to_string(f.instances) +
                    ",\"reservations\":" + std::to_string(f.reservations) +
                    ",\"instance_hours\":" + f.instance_hours +
                    ",\"reserved_instance_hours\":" + f.reserved_instance_hours +
                    ",\"reserved_unused_instance_hours\":" + f.reserved_unused_instance_hours +
                    ",\"estimated_cost\":" + f.estimated_cost.value_or("null");
  out += '}';
  return out;
}

std::vector<std::string> figure_cells(const usage_figures& f) {
  return {
      std::to_string(f.instances), std::to_string(f.reservations),   f.instance_hours,
      f.reserved_instance_hours,   f.reserved_unused_instance_hours, f.estimated_cost.value_or("")};
}

constexpr const char* figure_names[] = {"instances",
                                        "reservations",
                                        "instance_hours",
                                        "reserved_instance_hours",
                                        "reserved_unused_instance_hours",
                                        "estimated_cost"};

// A PostgreSQL number as the report shows it: digits and at most one point, nothing else, so
// that it can stand in JSON as it is.
bool plain_number(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789.") == std::string_view::npos &&
         std::count(s.begin(), s.end(), '.') <= 1 && s.front() != '.' && s.back() != '.';
}

}  // namespace

usage_query parse_usage_query(const std::vector<std::pair<std::string, std::string>>& params,
                              system_clock::time_point now, usage_query_problems& problems) {
  usage_query q;
  auto& errors = problems.errors;
  std::optional<system_clock::time_point> from;
  std::optional<system_clock::time_point> to;
  std::optional<std::vector<std::string>> group_by;
  std::set<std::string> seen;
  for (const auto& [key, value] : params) {
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      errors.push_back("query parameters must not contain NUL characters");
      continue;
    }
    const bool tag = key.starts_with("tag.") && key.size() > 4;
    if (!tag && !seen.insert(key).second) {
      errors.push_back("'" + key + "' is given twice");
      continue;
    }
    if (key == "from" || key == "to") {
      auto t = parse_rfc3339(value);
      if (!t) {
        errors.push_back("'" + key + "' must be an RFC 3339 time, not '" + value.substr(0, 64) +
                         "'");
      } else {
        (key == "from" ? from : to) = *t;
      }
    } else if (key == "provider") {
      if (value.empty()) {
        errors.push_back("'provider' must name a provider");
      } else {
        q.provider = value;
      }
    } else if (tag) {
      q.tags[key.substr(4)] = value;
    } else if (key == "group_by") {
      std::vector<std::string> keys;
      if (!value.empty()) keys = split_commas(value);
      std::set<std::string> named;
      std::set<std::string> repeated;
      for (const auto& k : keys) {
        if (k != "provider" && k != "instance_type" &&
            !(k.starts_with("tag.") && valid_tag_key(std::string_view(k).substr(4)))) {
          errors.push_back("'group_by' takes provider, instance_type and tag.KEY, not '" +
                           k.substr(0, 64) + "'");
        } else if (!named.insert(k).second && repeated.insert(k).second) {
          errors.push_back("'group_by' names '" + k + "' twice");
        }
      }
      if (keys.size() > max_group_keys) {
        errors.push_back("'group_by' takes at most " + std::to_string(max_group_keys) + " keys");
      }
      group_by = std::move(keys);
    } else {
      problems.code = "unknown_parameter";
      errors.push_back("unknown query parameter '" + key.substr(0, 64) + "'");
    }
  }
  // In microseconds, as PostgreSQL keeps times: `to` and the report's as_of then compare equal.
  q.to = to.value_or(std::chrono::floor<std::chrono::microseconds>(now));
  q.from = from.value_or(q.to - default_period);
  if (q.from >= q.to) {
    errors.push_back("'from' must be before 'to'");
  } else if (q.to - q.from > longest_period) {
    errors.push_back("the period may be at most 366 days long");
  }
  q.group_by = group_by.value_or(std::vector<std::string>{"provider", "instance_type"});
  return q;
}

usage_prices prices_of(const std::string& currency,
                       const std::vector<const provider_section*>& sections) {
  usage_prices p;
  p.currency = currency;
  for (const auto* s : sections) {
    if (s->standard_price_per_hour.empty() && s->premium_price_per_hour.empty() &&
        s->reserved_price_per_hour.empty()) {
      continue;
    }
    p.by_provider[s->name] = {s->standard_price_per_hour, s->premium_price_per_hour,
                              s->reserved_price_per_hour};
  }
  return p;
}

asio::awaitable<result<usage_report>> compute_usage(pg::pool& pool, usage_query q,
                                                    usage_prices prices) {
  json::object price_json;
  for (const auto& [name, p] : prices.by_provider) {
    json::object o;
    if (!p.standard.empty()) o["standard"] = p.standard;
    if (!p.premium.empty()) o["premium"] = p.premium;
    if (!p.reserved.empty()) o["reserved"] = p.reserved;
    price_json[name] = std::move(o);
  }
  bool by_provider = false;
  bool by_type = false;
  std::string tag_keys = "{";
  for (const auto& k : q.group_by) {
    if (k == "provider") {
      by_provider = true;
    } else if (k == "instance_type") {
      by_type = true;
    } else {
      if (tag_keys.size() > 1) tag_keys += ',';
      tag_keys += k.substr(4);  // checked tag keys: no quotes, commas or braces
    }
  }
  tag_keys += '}';
  std::optional<std::string> tags;
  if (!q.tags.empty()) tags = json::serialize(q.tags);
  const params args{format_rfc3339(q.from),
                    format_rfc3339(q.to),
                    tags,
                    q.provider,
                    json::serialize(price_json),
                    by_provider ? "true" : "false",
                    by_type ? "true" : "false",
                    tag_keys,
                    std::to_string(max_usage_groups + 2),
                    q.owner ? std::optional<std::string>(std::to_string(*q.owner)) : std::nullopt};
  auto r = co_await pool.query(usage_sql, args, after(usage_deadline));
  if (!r) co_return r.error();

  usage_report out;
  out.from = q.from;
  out.to = q.to;
  out.group_by = q.group_by;
  out.currency = prices.currency;
  for (int i = 0; i < static_cast<int>(r->size()); ++i) {
    usage_figures f;
    f.instances = std::stoll(std::string(r->text(i, 4)));
    f.reservations = std::stoll(std::string(r->text(i, 5)));
    f.instance_hours = std::string(r->text(i, 6));
    f.reserved_instance_hours = std::string(r->text(i, 7));
    f.reserved_unused_instance_hours = std::string(r->text(i, 8));
    if (!r->is_null(i, 9)) f.estimated_cost = std::string(r->text(i, 9));
    for (const auto* n :
         {&f.instance_hours, &f.reserved_instance_hours, &f.reserved_unused_instance_hours}) {
      if (!plain_number(*n)) co_return fail(errc::internal, "usage: not a number: " + *n);
    }
    if (f.estimated_cost && !plain_number(*f.estimated_cost)) {
      co_return fail(errc::internal, "usage: not a number: " + *f.estimated_cost);
    }
    if (auto t = parse_rfc3339(r->text(i, 10))) out.as_of = *t;
    if (r->text(i, 3) == "t") {
      out.total = std::move(f);
      continue;
    }
    usage_group g;
    g.figures = std::move(f);
    boost::system::error_code ec;
    const auto tag_values = json::parse(r->text(i, 2), ec);
    std::size_t tag_at = 0;
    for (const auto& k : q.group_by) {
      if (k == "provider" || k == "instance_type") {
        const int col = k == "provider" ? 0 : 1;
        g.key.push_back(r->is_null(i, col) ? std::nullopt
                                           : std::optional<std::string>(r->text(i, col)));
        continue;
      }
      std::optional<std::string> v;
      if (!ec && tag_values.is_array() && tag_at < tag_values.as_array().size()) {
        const auto& e = tag_values.as_array()[tag_at];
        if (e.is_string()) v = std::string(e.as_string());
      }
      ++tag_at;
      g.key.push_back(std::move(v));
    }
    out.groups.push_back(std::move(g));
  }
  if (out.groups.size() > max_usage_groups) {
    co_return fail(errc::invalid_argument, "the report would have more than " +
                                               std::to_string(max_usage_groups) +
                                               " groups: narrow the filter or group by fewer keys");
  }
  co_return out;
}

std::string usage_json(const usage_report& r) {
  std::string out =
      "{\"from\":" + quoted(format_rfc3339(r.from)) + ",\"to\":" + quoted(format_rfc3339(r.to)) +
      ",\"as_of\":" + quoted(format_rfc3339(r.as_of)) +
      ",\"currency\":" + (r.currency.empty() ? std::string("null") : quoted(r.currency)) +
      ",\"group_by\":[";
  for (std::size_t i = 0; i < r.group_by.size(); ++i) {
    if (i) out += ',';
    out += quoted(r.group_by[i]);
  }
  out += "],\"groups\":[";
  for (std::size_t g = 0; g < r.groups.size(); ++g) {
    if (g) out += ',';
    out += "{\"group\":{";
    for (std::size_t k = 0; k < r.group_by.size(); ++k) {
      if (k) out += ',';
      const auto& v = r.groups[g].key[k];
      out += quoted(r.group_by[k]) + ":" + (v ? quoted(*v) : std::string("null"));
    }
    out += "},\"figures\":" + figures_json(r.groups[g].figures) + "}";
  }
  out += "],\"total\":" + figures_json(r.total) + "}";
  return out;
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string usage_csv(const usage_report& r) {
  std::vector<std::string> header = r.group_by;
  header.insert(header.end(), std::begin(figure_names), std::end(figure_names));
  header.emplace_back("currency");
  std::string out;
  // Cells as written: an absent value is an empty field, an empty string a quoted one ("").
  const auto line = [&out](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i) out += ',';
      out += cells[i];
    }
    out += "\r\n";
  };
  std::vector<std::string> cells;
  for (const auto& h : header) cells.push_back(csv_field(h));
  line(cells);
  for (const auto& g : r.groups) {
    cells.clear();
    for (const auto& k : g.key)
      cells.push_back(k && k->empty() ? "\"\"" : csv_field(k.value_or("")));
    for (auto& c : figure_cells(g.figures)) cells.push_back(csv_field(c));
    cells.push_back(csv_field(g.figures.estimated_cost ? r.currency : std::string()));
    line(cells);
  }
  return out;
}

std::string usage_table(const usage_report& r) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = r.group_by;
  header.insert(header.end(), std::begin(figure_names), std::end(figure_names));
  rows.push_back(header);
  const auto shown = [](std::vector<std::string> cells) {
    for (auto& c : cells)
      if (c.empty()) c = "-";
    return cells;
  };
  for (const auto& g : r.groups) {
    std::vector<std::string> cells;
    for (const auto& k : g.key) cells.push_back(!k ? "-" : k->empty() ? "\"\"" : *k);
    for (auto& c : shown(figure_cells(g.figures))) cells.push_back(std::move(c));
    rows.push_back(std::move(cells));
  }
  if (!r.group_by.empty()) {
    std::vector<std::string> cells(r.group_by.size(), "");
    cells[0] = "total";
    std::vector<std::string> figures = shown(figure_cells(r.total));
    cells.insert(cells.end(), figures.begin(), figures.end());
    rows.push_back(std::move(cells));
  } else if (r.groups.empty()) {
    rows.push_back(shown(figure_cells(r.total)));
  }
  std::vector<std::size_t> width(header.size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());

  std::string out = "usage from " + format_rfc3339(r.from) + " to " + format_rfc3339(r.to);
  if (format_rfc3339(r.as_of) != format_rfc3339(r.to)) {
    out += " (as of " + format_rfc3339(r.as_of) + ")";
  }
  out +=
      r.currency.empty() ? "; no prices configured\n" : "; estimated cost in " + r.currency + "\n";
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace cloudbrain
