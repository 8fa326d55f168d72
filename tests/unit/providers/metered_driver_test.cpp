#include "providers/metered_driver.hpp"

#include "providers/fake/fake_driver.hpp"

#include <boost/asio/io_context.hpp>

#include "tests/support/co_run.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::providers {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using testing::co_run;

instance_spec spec(const std::string& id, const std::string& zone) {
  instance_spec s;
  s.instance_id = id;
  s.name = vm_name_for(id);
  s.image = "image-2016-01-01";
  s.instance_type = "standard";
  s.zone = zone;
  s.deployment = "test";
  return s;
}

struct metered_driver_test : ::testing::Test {
  metrics::registry registry;
  cloud_call_metrics families{
      registry.add_counter("cloudbrain_cloud_calls_total", "calls",
                           {"provider", "operation", "outcome"}),
      registry.add_histogram("cloudbrain_cloud_call_duration_seconds", "latency",
                             {"provider", "operation"}, {0.001, 1})};

  double calls(std::string_view op, std::string_view outcome) {
    return families.calls.with({"gce", op, outcome}).value();
  }
};

TEST_F(metered_driver_test, counts_each_call_by_operation_and_outcome) {
  fake_settings s;
  s.zones = {"zone-a"};
  s.capacity_per_zone = 1;
  s.delete_delay = 0ms;
  metered_driver d(std::make_unique<fake_driver>(s), "gce", families);
  asio::io_context ioc;
  ASSERT_TRUE(co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000001", "zone-a"), {})));
  auto full = co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000002", "zone-a"), {}));
  ASSERT_FALSE(full);
  auto missing = co_run(ioc, d.get(vm_ref{"cb-nothing", "zone-a", ""}, {}));
  ASSERT_FALSE(missing);
  ASSERT_TRUE(co_run(ioc, d.list("test", {})));
  const vm_ref first{vm_name_for("a0000000-0000-4000-8000-000000000001"), "zone-a", ""};
  ASSERT_TRUE(co_run(ioc, d.destroy(first, "k", {})));

  EXPECT_EQ(calls("create", "ok"), 1);
  EXPECT_EQ(calls("create", "capacity"), 1);
  EXPECT_EQ(calls("get", "not_found"), 1);
  EXPECT_EQ(calls("list", "ok"), 1);
  EXPECT_EQ(calls("delete", "ok"), 1);
  EXPECT_EQ(families.durations.with({"gce", "create"}).read().count, 2u);
  EXPECT_EQ(families.durations.with({"gce", "delete"}).read().count, 1u);
  // What the inner driver says of itself comes through.
  EXPECT_EQ(d.type(), "fake");
  EXPECT_EQ(d.zones(), (std::vector<std::string>{"zone-a"}));
}

TEST_F(metered_driver_test, hands_the_pacer_to_the_driver_it_wraps) {
  metered_driver d(std::make_unique<fake_driver>(fake_settings{}), "gce", families);
  int paced = 0;
  d.set_pacer([&paced]() -> asio::awaitable<void> {
    ++paced;
    co_return;
  });
  asio::io_context ioc;
  ASSERT_TRUE(co_run(ioc, d.list("test", {})));
  EXPECT_GT(paced, 0);
}

TEST(outcome_label, names_each_kind_of_cloud_error) {
  EXPECT_EQ(outcome_label(error(errc::cloud_rate_limited)), "rate_limited");
  EXPECT_EQ(outcome_label(error(errc::cloud_transient)), "transient");
  EXPECT_EQ(outcome_label(error(errc::timeout)), "timeout");
  EXPECT_EQ(outcome_label(error(errc::cloud_auth)), "auth");
  EXPECT_EQ(outcome_label(error(errc::cloud_unavailable)), "unavailable");
  EXPECT_EQ(outcome_label(error(errc::db_unavailable)), "other");
}

}  // namespace
}  // namespace cloudbrain::providers
