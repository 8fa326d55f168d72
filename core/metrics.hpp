#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// A small Prometheus metrics registry: counters, gauges and histograms with fixed buckets, in
// families keyed by label values, rendered in the text exposition format 0.0.4. Recording is an
// atomic add on a metric the caller may keep a reference to; finding a labelled child takes a
// shared lock (an exclusive one only the first time a label combination is seen).
namespace cloudbrain::metrics {

// The Content-Type of expose()'s output.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4";

class counter {
 public:
  void inc(double by = 1.0) noexcept { value_.fetch_add(by, std::memory_order_relaxed); }
  // For a total kept elsewhere (an actor's atomic) and copied in when collecting; the caller
  // guarantees it never decreases.
  void mirror(double total) noexcept { value_.store(total, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1.0) noexcept { value_.fetch_add(by, std::memory_order_relaxed); }
  void dec(double by = 1.0) noexcept { value_.fetch_sub(by, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted in fixed buckets: upper bounds, ascending, finite; +Inf is implicit.
class histogram {
 public:
  explicit histogram(std::span<const double> bounds);

  void observe(double v) noexcept;
  // For observations counted elsewhere (a queue's atomics) and copied in when collecting:
  // `per_bucket` holds one count per bound and one for +Inf, not cumulative, none of them ever
  // decreasing. Anything of another size is a programming error: std::invalid_argument.
  void mirror(std::span<const std::uint64_t> per_bucket, double sum);

  struct snapshot {
    std::vector<std::uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    std::uint64_t count = 0;
  };
  // Buckets are read one by one while others observe, so the count is taken as the sum of the
  // buckets read: +Inf and _count always agree.
  [[nodiscard]] snapshot read() const;
  [[nodiscard]] const std::vector<double>& bounds() const noexcept { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0.0};
};

// Bucket bounds: `count` bounds from `start`, each `factor` times the one before.
[[nodiscard]] std::vector<double> exponential_buckets(double start, double factor,
                                                      std::size_t count);

enum class metric_type { counter, gauge, histogram };

namespace detail {
// Orders label value lists, and lets a list of views find a stored list of strings.
struct values_less {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};

class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> labels,
              metric_type type);
  virtual ~family_base() = default;
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::vector<std::string>& label_names() const noexcept { return labels_; }
  void render(std::string& out) const;

 protected:
  // Appends the family's samples, label sets in order.
  virtual void render_samples(std::string& out) const = 0;
  void check_arity(std::size_t n) const;

  std::string name_;
  std::string help_;
  std::vector<std::string> labels_;
  metric_type type_;
};
}  // namespace detail

// All metrics of one name: one child per combination of label values. Label values must come
// from a bounded set (a route template, a provider's name), never from a request or an id.
template <class Metric>
class family final : public detail::family_base {
 public:
  using factory = std::function<std::unique_ptr<Metric>()>;

  family(std::string name, std::string help, std::vector<std::string> labels, metric_type type,
         factory make)
      : family_base(std::move(name), std::move(help), std::move(labels), type),
        make_(std::move(make)) {}

  // The child for these label values (in the order of the label names), made on first use. The
  // reference stays valid for the registry's lifetime. Throws std::invalid_argument for the
  // wrong number of values.
  Metric& with(std::span<const std::string_view> values) {
    check_arity(values.size());
    {
      std::shared_lock lock(mutex_);
      if (auto it = children_.find(values); it != children_.end()) return *it->second;
    }
    std::unique_lock lock(mutex_);
    auto it = children_.find(values);
    if (it == children_.end()) {
      it = children_.emplace(std::vector<std::string>(values.begin(), values.end()), make_()).first;
    }
    return *it->second;
  }
  Metric& with(std::initializer_list<std::string_view> values) {
    return with(std::span<const std::string_view>(values.begin(), values.size()));
  }
  Metric& get() { return with(std::span<const std::string_view>{}); }

  // Calls f(values, metric) for each child, in label order, under the shared lock.
  template <class F>
  void for_each(F&& f) const {
    std::shared_lock lock(mutex_);
    for (const auto& [values, m] : children_) f(values, *m);
  }

 private:
  void render_samples(std::string& out) const override;

  factory make_;
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, detail::values_less> children_;
};

template <>
void family<counter>::render_samples(std::string& out) const;
template <>
void family<gauge>::render_samples(std::string& out) const;
template <>
void family<histogram>::render_samples(std::string& out) const;

class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Metric and label names are checked ([a-zA-Z_:][a-zA-Z0-9_:]*, labels without ':' and not
  // starting "__", no "le" on a histogram) and must be unique: otherwise std::invalid_argument,
  // a programming error found at start-up. Families are rendered in the order they were added.
  family<counter>& add_counter(std::string name, std::string help,
                               std::vector<std::string> labels = {});
  family<gauge>& add_gauge(std::string name, std::string help,
                           std::vector<std::string> labels = {});
  family<histogram>& add_histogram(std::string name, std::string help,
                                   std::vector<std::string> labels, std::vector<double> bounds);

  // Runs at the start of every expose(), to copy figures kept elsewhere into metrics. Must be
  // cheap and must not block: it runs on the thread that renders.
  void on_collect(std::function<void()> f);

  // Every family in the text exposition format 0.0.4.
  [[nodiscard]] std::string expose() const;

 private:
  template <class F>
  F& add(std::unique_ptr<F> f);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<detail::family_base>> families_;
  std::vector<std::function<void()>> collectors_;
};

// Text-format helpers, public for tests.
void append_escaped_help(std::string& out, std::string_view help);
void append_escaped_label_value(std::string& out, std::string_view value);
void append_value(std::string& out, double v);

}  // namespace cloudbrain::metrics
