#include "core/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>

namespace cloudbrain::metrics {
namespace {

TEST(metrics, counter_family_renders_help_type_and_one_line_per_label_set) {
  registry r;
  auto& f = r.add_counter("cloudbrain_things_total", "Things done.", {"kind", "outcome"});
  f.with({"b", "ok"}).inc();
  f.with({"a", "ok"}).inc(2);
  f.with({"b", "ok"}).inc();
  EXPECT_EQ(r.expose(),
            "# HELP cloudbrain_things_total Things done.\n"
            "# TYPE cloudbrain_things_total counter\n"
            "cloudbrain_things_total{kind=\"a\",outcome=\"ok\"} 2\n"
            "cloudbrain_things_total{kind=\"b\",outcome=\"ok\"} 2\n");
}

TEST(metrics, a_family_without_labels_has_one_plain_sample) {
  registry r;
  r.add_gauge("cloudbrain_level", "A level.").get().set(1.5);
  EXPECT_EQ(r.expose(),
            "# HELP cloudbrain_level A level.\n"
            "# TYPE cloudbrain_level gauge\n"
            "cloudbrain_level 1.5\n");
}

TEST(metrics, gauges_go_up_and_down) {
  gauge g;
  g.inc();
  g.inc(4);
  g.dec(2);
  EXPECT_EQ(g.value(), 3);
  g.set(-7.25);
  EXPECT_EQ(g.value(), -7.25);
}

TEST(metrics, escapes_help_and_label_values_as_the_text_format_says) {
  registry r;
  r.add_counter("cloudbrain_escaped_total", "Back\\slash and\nnew line \"quotes\" stay.", {"v"})
      .with({"a\\b\"c\nd"})
      .inc();
  EXPECT_EQ(r.expose(),
            "# HELP cloudbrain_escaped_total Back\\\\slash and\\nnew line \"quotes\" stay.\n"
            "# TYPE cloudbrain_escaped_total counter\n"
            "cloudbrain_escaped_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(metrics, histogram_buckets_are_cumulative_with_sum_count_and_inf) {
  registry r;
  auto& h = r.add_histogram("cloudbrain_wait_seconds", "Waits.", {"op"}, {0.125, 0.5, 1});
  auto& get = h.with({"get"});
  for (double v : {0.0625, 0.125, 0.25, 0.75, 2.0, 5.0}) get.observe(v);
  EXPECT_EQ(r.expose(),
            "# HELP cloudbrain_wait_seconds Waits.\n"
            "# TYPE cloudbrain_wait_seconds histogram\n"
            "cloudbrain_wait_seconds_bucket{op=\"get\",le=\"0.125\"} 2\n"
            "cloudbrain_wait_seconds_bucket{op=\"get\",le=\"0.5\"} 3\n"
            "cloudbrain_wait_seconds_bucket{op=\"get\",le=\"1\"} 4\n"
            "cloudbrain_wait_seconds_bucket{op=\"get\",le=\"+Inf\"} 6\n"
            "cloudbrain_wait_seconds_sum{op=\"get\"} 8.1875\n"
            "cloudbrain_wait_seconds_count{op=\"get\"} 6\n");
}

TEST(metrics, a_mirrored_histogram_renders_the_counts_it_was_given) {
  registry r;
  auto& h = r.add_histogram("cloudbrain_batch_size", "Sizes.", {"queue"}, {1, 2, 4});
  auto& q = h.with({"creates"});
  const std::uint64_t first[] = {3, 0, 2, 1};  // per bucket, then +Inf
  q.mirror(first, 20);
  const std::uint64_t later[] = {4, 1, 2, 1};
  q.mirror(later, 23);
  EXPECT_EQ(r.expose(),
            "# HELP cloudbrain_batch_size Sizes.\n"
            "# TYPE cloudbrain_batch_size histogram\n"
            "cloudbrain_batch_size_bucket{queue=\"creates\",le=\"1\"} 4\n"
            "cloudbrain_batch_size_bucket{queue=\"creates\",le=\"2\"} 5\n"
            "cloudbrain_batch_size_bucket{queue=\"creates\",le=\"4\"} 7\n"
            "cloudbrain_batch_size_bucket{queue=\"creates\",le=\"+Inf\"} 8\n"
            "cloudbrain_batch_size_sum{queue=\"creates\"} 23\n"
            "cloudbrain_batch_size_count{queue=\"creates\"} 8\n");
  const std::uint64_t short_counts[] = {1, 2, 3};
  EXPECT_THROW(q.mirror(short_counts, 6), std::invalid_argument);
}

TEST(metrics, histogram_sum_and_count_carry_the_labels) {
  registry r;
  auto& h = r.add_histogram("cloudbrain_op_seconds", "Ops.", {"op"}, {1});
  h.with({"x"}).observe(0.25);
  h.with({"x"}).observe(3);
  const std::string text = r.expose();
  EXPECT_NE(text.find("cloudbrain_op_seconds_bucket{op=\"x\",le=\"1\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("cloudbrain_op_seconds_bucket{op=\"x\",le=\"+Inf\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("cloudbrain_op_seconds_sum{op=\"x\"} 3.25\n"), std::string::npos) << text;
  EXPECT_NE(text.find("cloudbrain_op_seconds_count{op=\"x\"} 2\n"), std::string::npos) << text;
}

TEST(metrics, histogram_without_labels_has_only_le) {
  registry r;
  auto& h = r.add_histogram("cloudbrain_plain_seconds", "Plain.", {}, {0.5}).get();
  h.observe(0.5);  // a bound is inclusive
  h.observe(0.75);
  EXPECT_EQ(r.expose(),
            "# HELP cloudbrain_plain_seconds Plain.\n"
            "# TYPE cloudbrain_plain_seconds histogram\n"
            "cloudbrain_plain_seconds_bucket{le=\"0.5\"} 1\n"
            "cloudbrain_plain_seconds_bucket{le=\"+Inf\"} 2\n"
            "cloudbrain_plain_seconds_sum 1.25\n"
            "cloudbrain_plain_seconds_count 2\n");
}

TEST(metrics, values_render_as_the_format_expects) {
  std::string out;
  for (double v :
       {0.0, 42.0, -3.0, 0.005, 1e20, std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    append_value(out, v);
    out += ' ';
  }
  EXPECT_EQ(out, "0 42 -3 0.005 1e+20 +Inf -Inf NaN ");
}

TEST(metrics, rejects_bad_names_duplicates_and_wrong_arity) {
  registry r;
  EXPECT_THROW(r.add_counter("9starts_with_digit", "x"), std::invalid_argument);
  EXPECT_THROW(r.add_counter("has-dash", "x"), std::invalid_argument);
  EXPECT_THROW(r.add_counter("cloudbrain_x_total", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.add_counter("cloudbrain_x_total", "x", {"a:b"}), std::invalid_argument);
  EXPECT_THROW(r.add_counter("cloudbrain_x_total", "x", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("cloudbrain_h", "x", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("cloudbrain_h", "x", {}, {2, 1}), std::invalid_argument);
  auto& f = r.add_counter("cloudbrain_x_total", "x", {"a"});
  EXPECT_THROW(r.add_gauge("cloudbrain_x_total", "again"), std::invalid_argument);
  EXPECT_THROW(f.with({"one", "two"}), std::invalid_argument);
  EXPECT_THROW(f.get(), std::invalid_argument);
}

TEST(metrics, collectors_run_before_every_exposition) {
  registry r;
  auto& g = r.add_gauge("cloudbrain_seen", "Seen.").get();
  int runs = 0;
  r.on_collect([&] { g.set(++runs); });
  EXPECT_NE(r.expose().find("cloudbrain_seen 1\n"), std::string::npos);
  EXPECT_NE(r.expose().find("cloudbrain_seen 2\n"), std::string::npos);
}

TEST(metrics, the_same_label_values_give_the_same_child) {
  registry r;
  auto& f = r.add_counter("cloudbrain_same_total", "x", {"a"});
  EXPECT_EQ(&f.with({"v"}), &f.with({"v"}));
  EXPECT_NE(&f.with({"v"}), &f.with({"w"}));
}

TEST(metrics, counts_exactly_from_many_threads) {
  registry r;
  auto& f = r.add_counter("cloudbrain_parallel_total", "x", {"t"});
  auto& h = r.add_histogram("cloudbrain_parallel_seconds", "x", {}, {0.5}).get();
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        f.with({(i % 2 == 0) ? "even" : "odd"}).inc();
        h.observe(t % 2 == 0 ? 0.25 : 1.0);
        if (i % 5000 == 0) (void)r.expose();  // scraping while others record
      }
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(f.with({"even"}).value() + f.with({"odd"}).value(), threads * per_thread);
  const auto s = h.read();
  EXPECT_EQ(s.count, static_cast<std::uint64_t>(threads * per_thread));
  EXPECT_EQ(s.cumulative[0], static_cast<std::uint64_t>(threads / 2 * per_thread));
  EXPECT_DOUBLE_EQ(s.sum, threads / 2 * per_thread * 1.25);
}

TEST(metrics, exponential_buckets_multiply) {
  const auto b = exponential_buckets(0.001, 2, 4);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_DOUBLE_EQ(b[0], 0.001);
  EXPECT_DOUBLE_EQ(b[3], 0.008);
  EXPECT_THROW((void)exponential_buckets(0, 2, 3), std::invalid_argument);
}

}  // namespace
}  // namespace cloudbrain::metrics
