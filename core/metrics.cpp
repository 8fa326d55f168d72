#include "core/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace cloudbrain::metrics {

namespace {

bool valid_name(std::string_view n, bool colon_allowed) {
  if (n.empty()) return false;
  const auto first_ok = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (colon_allowed && c == ':');
  };
  if (!first_ok(n[0])) return false;
  return std::all_of(n.begin() + 1, n.end(),
                     [&](char c) { return first_ok(c) || (c >= '0' && c <= '9'); });
}

std::string_view type_name(metric_type t) {
  switch (t) {
    case metric_type::counter: return "counter";
    case metric_type::gauge: return "gauge";
    case metric_type::histogram: return "histogram";
  }
  return "untyped";
}

// `name{a="x",b="y"` plus an optional extra label, then `}` -- or just `name` without labels.
void append_series(std::string& out, std::string_view name, std::span<const std::string> labels,
                   std::span<const std::string> values, std::string_view extra_label = {},
                   std::string_view extra_value = {}) {
  out += name;
  if (labels.empty() && extra_label.empty()) return;
  out += '{';
  bool first = true;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out += labels[i];
    out += "=\"";
    append_escaped_label_value(out, values[i]);
    out += '"';
  }
  if (!extra_label.empty()) {
    if (!first) out += ',';
    out += extra_label;
    out += "=\"";
    append_escaped_label_value(out, extra_value);
    out += '"';
  }
  out += '}';
}

}  // namespace

void append_escaped_help(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_escaped_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  // Whole numbers as integers (counts are the common case); others in the shortest form that
  // reads back as the same double.
  char buf[32];
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v));
    out.append(buf, end);
    return;
  }
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// --- histogram -------------------------------------------------------------------------------

histogram::histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
      throw std::invalid_argument("histogram bounds must be finite and strictly ascending");
    }
  }
}

void histogram::observe(double v) noexcept {
  // Buckets are inclusive upper bounds: v lands in the first bound >= v.
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  const auto i = static_cast<std::size_t>(it - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

void histogram::mirror(std::span<const std::uint64_t> per_bucket, double sum) {
  if (per_bucket.size() != bounds_.size() + 1) {
    throw std::invalid_argument("a mirrored histogram needs one count per bucket and +Inf");
  }
  for (std::size_t i = 0; i < per_bucket.size(); ++i) {
    buckets_[i].store(per_bucket[i], std::memory_order_relaxed);
  }
  sum_.store(sum, std::memory_order_relaxed);
}

histogram::snapshot histogram::read() const {
  snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  if (start <= 0 || factor <= 1) {
    throw std::invalid_argument("exponential buckets need start > 0 and factor > 1");
  }
  std::vector<double> out;
  out.reserve(count);
  double b = start;
  for (std::size_t i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

// --- families --------------------------------------------------------------------------------

namespace detail {

family_base::family_base(std::string name, std::string help, std::vector<std::string> labels,
                         metric_type type)
    : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)), type_(type) {
  if (!valid_name(name_, true)) throw std::invalid_argument("bad metric name '" + name_ + "'");
  for (const auto& l : labels_) {
    if (!valid_name(l, false) || l.starts_with("__") ||
        (type_ == metric_type::histogram && l == "le")) {
      throw std::invalid_argument("bad label name '" + l + "' on metric '" + name_ + "'");
    }
    if (std::count(labels_.begin(), labels_.end(), l) > 1) {
      throw std::invalid_argument("label '" + l + "' twice on metric '" + name_ + "'");
    }
  }
}

void family_base::check_arity(std::size_t n) const {
  if (n != labels_.size()) {
    throw std::invalid_argument("metric '" + name_ + "' takes " + std::to_string(labels_.size()) +
                                " label values, not " + std::to_string(n));
  }
}

void family_base::render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  append_escaped_help(out, help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type_name(type_);
  out += '\n';
  render_samples(out);
}

}  // namespace detail

template <>
void family<counter>::render_samples(std::string& out) const {
  for_each([&](const std::vector<std::string>& values, const counter& c) {
    append_series(out, name_, labels_, values);
    out += ' ';
    append_value(out, c.value());
    out += '\n';
  });
}

template <>
void family<gauge>::render_samples(std::string& out) const {
  for_each([&](const std::vector<std::string>& values, const gauge& g) {
    append_series(out, name_, labels_, values);
    out += ' ';
    append_value(out, g.value());
    out += '\n';
  });
}

template <>
void family<histogram>::render_samples(std::string& out) const {
  const std::string bucket = name_ + "_bucket";
  const std::string sum = name_ + "_sum";
  const std::string count = name_ + "_count";
  for_each([&](const std::vector<std::string>& values, const histogram& h) {
    const auto s = h.read();
    std::string le;
    for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
      le.clear();
      if (i < h.bounds().size()) {
        append_value(le, h.bounds()[i]);
      } else {
        le = "+Inf";
      }
      append_series(out, bucket, labels_, values, "le", le);
      out += ' ';
      append_value(out, static_cast<double>(s.cumulative[i]));
      out += '\n';
    }
    append_series(out, sum, labels_, values);
    out += ' ';
    append_value(out, s.sum);
    out += '\n';
    append_series(out, count, labels_, values);
    out += ' ';
    append_value(out, static_cast<double>(s.count));
    out += '\n';
  });
}

// --- registry --------------------------------------------------------------------------------

template <class F>
F& registry::add(std::unique_ptr<F> f) {
  std::lock_guard lock(mutex_);
  for (const auto& existing : families_) {
    if (existing->name() == f->name()) {
      throw std::invalid_argument("metric '" + f->name() + "' registered twice");
    }
  }
  F& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

family<counter>& registry::add_counter(std::string name, std::string help,
                                       std::vector<std::string> labels) {
  return add(std::make_unique<family<counter>>(std::move(name), std::move(help), std::move(labels),
                                               metric_type::counter,
                                               [] { return std::make_unique<counter>(); }));
}

family<gauge>& registry::add_gauge(std::string name, std::string help,
                                   std::vector<std::string> labels) {
  return add(std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(labels),
                                             metric_type::gauge,
                                             [] { return std::make_unique<gauge>(); }));
}

family<histogram>& registry::add_histogram(std::string name, std::string help,
                                           std::vector<std::string> labels,
                                           std::vector<double> bounds) {
  histogram check(bounds);  // throws for bad bounds now, not at first use
  return add(std::make_unique<family<histogram>>(
      std::move(name), std::move(help), std::move(labels), metric_type::histogram,
      [bounds = std::move(bounds)] { return std::make_unique<histogram>(bounds); }));
}

void registry::on_collect(std::function<void()> f) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(f));
}

std::string registry::expose() const {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mutex_);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c();
  std::string out;
  out.reserve(16 * 1024);
  std::lock_guard lock(mutex_);
  for (const auto& f : families_) f->render(out);
  return out;
}

}  // namespace cloudbrain::metrics
