#include "net/router.hpp"

#include <boost/url/pct_string_view.hpp>

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace cloudbrain::net {
namespace {

// Splits "/a/b/c" into {"a","b","c"}; "/" into {}. Nullopt if it does not start with '/'.
std::optional<std::vector<std::string_view>> split_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::vector<std::string_view> out;
  if (path.size() == 1) return out;
  path.remove_prefix(1);
  for (;;) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::string join_methods(const std::vector<http::verb>& methods) {
  std::string out;
  for (const auto m : methods) {
    if (!out.empty()) out += ", ";
    out += http::to_string(m);
  }
  return out;
}

}  // namespace

std::string_view request_context::param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return {};
}

router::method_entry& router::add_entry(http::verb method, const std::string& pattern,
                                        std::string route_name) {
  const auto parts = split_path(pattern);
  if (!parts) throw std::invalid_argument("route pattern must start with '/': " + pattern);
  std::vector<segment> segments;
  segments.reserve(parts->size());
  for (const auto part : *parts) {
    if (part.empty() || part == ":") {
      throw std::invalid_argument("route pattern has an empty segment: " + pattern);
    }
    segment s;
    s.capture = part.front() == ':';
    s.text = s.capture ? part.substr(1) : part;
    if (s.capture && std::any_of(segments.begin(), segments.end(),
                                 [&](const segment& o) { return o.capture && o.text == s.text; })) {
      throw std::invalid_argument("route pattern repeats a capture name: " + pattern);
    }
    segments.push_back(std::move(s));
  }

  const auto same_shape = [&](const resource& r) {
    return std::equal(r.segments.begin(), r.segments.end(), segments.begin(), segments.end(),
                      [](const segment& a, const segment& b) {
                        return a.capture == b.capture && (a.capture || a.text == b.text);
                      });
  };
  auto it = std::find_if(resources_.begin(), resources_.end(), same_shape);
  if (it == resources_.end()) {
    resources_.push_back(resource{pattern, std::move(segments), {}});
    it = std::prev(resources_.end());
  } else {
    const bool taken = std::any_of(it->methods.begin(), it->methods.end(),
                                   [&](const method_entry& e) { return e.method == method; });
    if (taken) {
      throw std::invalid_argument("duplicate route: " + std::string(http::to_string(method)) + " " +
                                  pattern + " (already " + it->pattern + ")");
    }
    // Handlers read captures by name, so every method on a shape must use the same names.
    if (it->pattern != pattern) {
      throw std::invalid_argument("route " + pattern + " names its captures unlike " + it->pattern);
    }
  }
  it->methods.push_back(method_entry{method, std::move(route_name), {}, {}, {}, count_++});
  return it->methods.back();
}

void router::add(http::verb method, std::string pattern, net::handler h, std::string route_name) {
  if (!h) throw std::invalid_argument("route without a handler: " + pattern);
  add_entry(method, pattern, std::move(route_name)).handler = std::move(h);
}

void router::add_upgrade(std::string pattern, net::upgrade_handler h, std::string route_name,
                         net::upgrade_gate gate) {
  if (!h) throw std::invalid_argument("route without a handler: " + pattern);
  auto& entry = add_entry(http::verb::get, pattern, std::move(route_name));
  entry.upgrade = std::move(h);
  entry.gate = std::move(gate);
}

router::match_result router::match(http::verb method, std::string_view encoded_path) const {
  match_result result;
  const auto raw = split_path(encoded_path);
  if (!raw) return result;

  std::vector<std::string> decoded;
  decoded.reserve(raw->size());
  for (const auto part : *raw) {
    auto pct = boost::urls::make_pct_string_view(part);
    if (!pct) return result;
    decoded.push_back(pct->decode());
  }

  // The best resource: at the first place where two candidates differ, a literal beats a capture.
  const resource* best = nullptr;
  for (const auto& r : resources_) {
    if (r.segments.size() != decoded.size()) continue;
    bool matches = true;
    for (std::size_t i = 0; matches && i < decoded.size(); ++i) {
      const auto& s = r.segments[i];
      matches = s.capture ? !decoded[i].empty() : s.text == decoded[i];
    }
    if (!matches) continue;
    if (best != nullptr) {
      for (std::size_t i = 0; i < decoded.size(); ++i) {
        if (r.segments[i].capture != best->segments[i].capture) {
          if (!r.segments[i].capture) best = &r;
          break;
        }
      }
    } else {
      best = &r;
    }
  }
  if (best == nullptr) return result;

  const auto find = [best](http::verb m) -> const method_entry* {
    for (const auto& e : best->methods) {
      if (e.method == m) return &e;
    }
    return nullptr;
  };
  const method_entry* entry = find(method);
  if (entry == nullptr && method == http::verb::head) {
    entry = find(http::verb::get);
    if (entry != nullptr && entry->upgrade) entry = nullptr;
  }
  if (entry == nullptr) {
    std::vector<http::verb> allowed;
    for (const auto& e : best->methods) {
      allowed.push_back(e.method);
      if (e.method == http::verb::get && !e.upgrade && !find(http::verb::head)) {
        allowed.push_back(http::verb::head);
      }
    }
    result.status = http::status::method_not_allowed;
    result.allow = join_methods(allowed);
    result.pattern = best->pattern;
    return result;
  }

  result.status = http::status::ok;
  result.handler = entry->handler ? &entry->handler : nullptr;
  result.upgrade = entry->upgrade ? &entry->upgrade : nullptr;
  result.gate = entry->gate ? &entry->gate : nullptr;
  result.route = entry->name;
  result.pattern = best->pattern;
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    if (best->segments[i].capture) {
      result.params.emplace_back(best->segments[i].text, std::move(decoded[i]));
    }
  }
  return result;
}

std::vector<route_info> router::routes() const {
  std::vector<std::pair<std::size_t, route_info>> ordered;
  for (const auto& r : resources_) {
    for (const auto& e : r.methods) {
      ordered.push_back({e.order, route_info{e.method, r.pattern, e.name, bool(e.upgrade)}});
    }
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<route_info> out;
  out.reserve(ordered.size());
  for (auto& [order, info] : ordered) out.push_back(std::move(info));
  return out;
}

}  // namespace cloudbrain::net
