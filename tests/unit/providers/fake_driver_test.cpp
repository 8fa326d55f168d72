#include "providers/fake/fake_driver.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "tests/support/co_run.hpp"

#include <gtest/gtest.h>

#include <set>

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
  s.tags = {{"team", "ci"}};
  return s;
}

provider_section section(std::map<std::string, std::string> settings,
                         std::vector<std::string> zones = {"zone-a", "zone-b"}) {
  provider_section p;
  p.name = "gce";
  p.type = "fake";
  p.zones = std::move(zones);
  p.settings = std::move(settings);
  return p;
}

TEST(fake_settings, reads_its_keys) {
  auto s = fake_settings::from_section(section({{"boot-delay", "2s"},
                                                {"delete-delay", "5ms"},
                                                {"failure-rate", "0.25"},
                                                {"capacity-per-zone", "7"},
                                                {"seed", "42"}}));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->boot_delay, 2000ms);
  EXPECT_EQ(s->delete_delay, 5ms);
  EXPECT_DOUBLE_EQ(s->failure_rate, 0.25);
  EXPECT_EQ(s->capacity_per_zone, 7u);
  EXPECT_EQ(s->seed, 42u);
  EXPECT_EQ(s->zones, (std::vector<std::string>{"zone-a", "zone-b"}));
}

TEST(fake_settings, names_the_bad_key_or_value) {
  const std::pair<std::map<std::string, std::string>, std::string> cases[] = {
      {{{"boot-delay", "soon"}}, "boot-delay"},
      {{{"failure-rate", "1.5"}}, "failure-rate"},
      {{{"failure-rate", "x"}}, "failure-rate"},
      {{{"capacity-per-zone", "-1"}}, "capacity-per-zone"},
      {{{"zone-capacity", "zone-a"}}, "zone-capacity"},
      {{{"zone-capacity", "zone-a:many"}}, "zone-capacity"},
      {{{"zone-capacity", ":3"}}, "zone-capacity"},
      {{{"project", "p"}}, "unknown key 'project'"},
  };
  for (const auto& [settings, needle] : cases) {
    auto s = fake_settings::from_section(section(settings));
    ASSERT_FALSE(s) << needle;
    EXPECT_TRUE(s.error().is(errc::bad_config));
    EXPECT_NE(s.error().detail.find(needle), std::string::npos) << s.error().detail;
    EXPECT_NE(s.error().detail.find("[provider.gce]"), std::string::npos);
  }
}

TEST(fake_driver, boots_after_the_delay_with_a_test_net_address) {
  fake_settings s;
  s.zones = {"zone-a"};
  s.boot_delay = 100ms;
  fake_driver d(s);
  asio::io_context ioc;
  auto created = co_run(ioc, d.create(spec("0d654ef4-75b9-49a6-9f90-f9b1ae3501fc", "zone-a"), {}));
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(created->status, vm_status::provisioning);
  EXPECT_FALSE(created->ip_address);
  EXPECT_EQ(created->name, "cb-0d654ef4-75b9-49a6-9f90-f9b1ae3501fc");
  EXPECT_EQ(created->labels_.at(label_deployment), "test");
  EXPECT_EQ(created->labels_.at(label_instance), "0d654ef4-75b9-49a6-9f90-f9b1ae3501fc");
  EXPECT_EQ(created->labels_.at("team"), "ci");

  std::this_thread::sleep_for(150ms);
  auto got = co_run(ioc, d.get(vm_ref{created->name, "zone-a", ""}, {}));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, vm_status::running);
  ASSERT_TRUE(got->ip_address);
  EXPECT_EQ(got->ip_address->rfind("203.0.113.", 0), 0u) << *got->ip_address;
}

TEST(fake_driver, a_second_create_of_the_same_name_already_exists) {
  fake_driver d(fake_settings{});
  asio::io_context ioc;
  const auto sp = spec("11111111-1111-4111-8111-111111111111", "fake-zone-a");
  ASSERT_TRUE(co_run(ioc, d.create(sp, {})));
  auto again = co_run(ioc, d.create(sp, {}));
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(errc::cloud_already_exists));
  EXPECT_EQ(d.stats().vms, 1u);
  EXPECT_EQ(d.stats().creates, 1u);
}

TEST(fake_driver, a_full_zone_reports_capacity_and_frees_room_on_delete) {
  fake_settings s;
  s.zones = {"zone-a"};
  s.capacity_per_zone = 2;
  s.delete_delay = 0ms;
  fake_driver d(s);
  asio::io_context ioc;
  ASSERT_TRUE(co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000001", "zone-a"), {})));
  ASSERT_TRUE(co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000002", "zone-a"), {})));
  auto full = co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000003", "zone-a"), {}));
  ASSERT_FALSE(full);
  EXPECT_TRUE(full.error().is(errc::cloud_capacity));
  EXPECT_NE(full.error().detail.find("zone-a"), std::string::npos);

  const vm_ref first{vm_name_for("a0000000-0000-4000-8000-000000000001"), "zone-a", ""};
  ASSERT_TRUE(co_run(ioc, d.destroy(first, "k", {})));
  EXPECT_TRUE(co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000003", "zone-a"), {})));
}

TEST(fake_driver, an_unknown_zone_is_refused_for_good) {
  fake_driver d(fake_settings{});
  asio::io_context ioc;
  auto r = co_run(ioc, d.create(spec("b0000000-0000-4000-8000-000000000001", "mars-1"), {}));
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cloud_permanent));
}

TEST(fake_driver, the_failure_rate_fails_that_share_of_creates) {
  fake_settings s;
  s.failure_rate = 0.3;
  s.seed = 7;
  s.capacity_per_zone = 10000;
  fake_driver d(s);
  asio::io_context ioc;
  int failed = 0;
  for (int i = 0; i < 1000; ++i) {
    char id[40];
    std::snprintf(id, sizeof id, "c0000000-0000-4000-8000-%012d", i);
    auto r = co_run(ioc, d.create(spec(id, "fake-zone-a"), {}));
    if (!r) {
      EXPECT_TRUE(r.error().is(errc::cloud_transient));
      ++failed;
    }
  }
  EXPECT_GT(failed, 240);
  EXPECT_LT(failed, 360);
  EXPECT_EQ(d.stats().create_failures, static_cast<std::uint64_t>(failed));
  EXPECT_EQ(d.stats().vms, static_cast<std::size_t>(1000 - failed));
}

TEST(fake_driver, deletes_are_idempotent_and_lists_only_show_the_deployment) {
  fake_settings s;
  s.delete_delay = 0ms;
  fake_driver d(s);
  asio::io_context ioc;
  ASSERT_TRUE(
      co_run(ioc, d.create(spec("d0000000-0000-4000-8000-000000000001", "fake-zone-a"), {})));
  auto other = spec("d0000000-0000-4000-8000-000000000002", "fake-zone-a");
  other.deployment = "someone-else";
  ASSERT_TRUE(co_run(ioc, d.create(other, {})));

  auto ours = co_run(ioc, d.list("test", {}));
  ASSERT_TRUE(ours);
  ASSERT_EQ(ours->size(), 1u);
  EXPECT_EQ(ours->front().labels_.at(label_instance), "d0000000-0000-4000-8000-000000000001");

  const vm_ref ref{vm_name_for("d0000000-0000-4000-8000-000000000001"), "fake-zone-a", ""};
  EXPECT_TRUE(co_run(ioc, d.destroy(ref, "k", {})));
  EXPECT_TRUE(co_run(ioc, d.destroy(ref, "k", {})));  // gone already: still success
  auto gone = co_run(ioc, d.get(ref, {}));
  ASSERT_FALSE(gone);
  EXPECT_TRUE(gone.error().is(errc::cloud_not_found));
  EXPECT_EQ(d.stats().vms, 1u);
}

TEST(fake_driver, addresses_are_distinct_while_there_are_fewer_than_254_vms) {
  fake_settings s;
  s.boot_delay = 0ms;
  fake_driver d(s);
  asio::io_context ioc;
  std::set<std::string> seen;
  for (int i = 0; i < 254; ++i) {
    char id[40];
    std::snprintf(id, sizeof id, "e0000000-0000-4000-8000-%012d", i);
    auto r = co_run(ioc, d.create(spec(id, "fake-zone-a"), {}));
    ASSERT_TRUE(r);
    ASSERT_TRUE(r->ip_address);
    seen.insert(*r->ip_address);
  }
  EXPECT_EQ(seen.size(), 254u);
}

reservation_spec reservation(const std::string& id, const std::string& zone, int count) {
  reservation_spec r;
  r.reservation_id = id;
  r.name = reservation_name_for(id);
  r.instance_type = "standard";
  r.count = count;
  r.zone = zone;
  r.deployment = "test";
  r.ends_at = system_clock::now() + std::chrono::hours(1);
  return r;
}

TEST(fake_settings, zone_capacity_overrides_the_default) {
  auto s = fake_settings::from_section(
      section({{"capacity-per-zone", "9"}, {"zone-capacity", "zone-a:0  zone-b:3"}}));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->zone_capacity, (std::map<std::string, std::size_t>{{"zone-a", 0}, {"zone-b", 3}}));
}

TEST(fake_driver, a_reservation_takes_its_zones_room_and_gives_it_to_its_instances) {
  fake_settings s;
  s.zones = {"zone-a"};
  s.capacity_per_zone = 3;
  s.delete_delay = 0ms;
  fake_driver d(s);
  asio::io_context ioc;
  const auto rid = "b0000000-0000-4000-8000-000000000001";
  auto held = co_run(ioc, d.reserve(reservation(rid, "zone-a", 2), {}));
  ASSERT_TRUE(held) << held.error().message();
  EXPECT_EQ(held->name, "cbr-b0000000-0000-4000-8000-000000000001");
  EXPECT_EQ(held->status, reservation_status::ready);
  EXPECT_EQ(held->machine_type, "fake-small");
  EXPECT_EQ(held->labels_.at(label_reservation), rid);
  EXPECT_EQ(held->labels_.at(label_deployment), "test");
  // One unit of room is left outside the reservation.
  ASSERT_TRUE(co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000001", "zone-a"), {})));
  auto outside = co_run(ioc, d.create(spec("a0000000-0000-4000-8000-000000000002", "zone-a"), {}));
  ASSERT_FALSE(outside);
  EXPECT_TRUE(outside.error().is(errc::cloud_capacity));
  // Inside it, two fit and a third does not.
  for (const char* id :
       {"a0000000-0000-4000-8000-000000000003", "a0000000-0000-4000-8000-000000000004"}) {
    auto in = spec(id, "zone-a");
    in.reservation_upstream = held->name;
    ASSERT_TRUE(co_run(ioc, d.create(in, {})));
  }
  auto third = spec("a0000000-0000-4000-8000-000000000005", "zone-a");
  third.reservation_upstream = held->name;
  auto refused = co_run(ioc, d.create(third, {}));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_capacity));
  EXPECT_NE(refused.error().detail.find("fully used"), std::string::npos);
  auto got = co_run(ioc, d.get_reservation(reservation_ref{held->name, "zone-a", ""}, {}));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->in_use, 2);
  // Another machine type or a missing reservation is refused for good.
  auto premium = spec("a0000000-0000-4000-8000-000000000006", "zone-a");
  premium.instance_type = "premium";
  premium.reservation_upstream = held->name;
  auto wrong = co_run(ioc, d.create(premium, {}));
  ASSERT_FALSE(wrong);
  EXPECT_TRUE(wrong.error().is(errc::cloud_permanent));
  // Releasing it keeps its running VMs; once they go, the room is free again.
  ASSERT_TRUE(co_run(ioc, d.release(reservation_ref{held->name, "zone-a", ""}, "k", {})));
  ASSERT_TRUE(co_run(ioc, d.release(reservation_ref{held->name, "zone-a", ""}, "k", {})));
  EXPECT_FALSE(co_run(ioc, d.get_reservation(reservation_ref{held->name, "zone-a", ""}, {})));
  EXPECT_EQ(d.stats().vms, 3u);
  for (const char* id :
       {"a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000003",
        "a0000000-0000-4000-8000-000000000004"})
    ASSERT_TRUE(co_run(ioc, d.destroy(vm_ref{vm_name_for(id), "zone-a", ""}, "k", {})));
  EXPECT_TRUE(
      co_run(ioc, d.reserve(reservation("b0000000-0000-4000-8000-000000000002", "zone-a", 3), {})));
}

TEST(fake_driver, a_reservation_without_room_fails_and_holds_nothing) {
  fake_settings s;
  s.zones = {"zone-a", "zone-b"};
  s.capacity_per_zone = 4;
  fake_driver d(s);
  asio::io_context ioc;
  auto big =
      co_run(ioc, d.reserve(reservation("b0000000-0000-4000-8000-000000000003", "zone-a", 5), {}));
  ASSERT_FALSE(big);
  EXPECT_TRUE(big.error().is(errc::cloud_capacity));
  auto listed = co_run(ioc, d.list_reservations("test", {}));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  auto fits =
      co_run(ioc, d.reserve(reservation("b0000000-0000-4000-8000-000000000003", "zone-b", 4), {}));
  ASSERT_TRUE(fits);
  auto twice =
      co_run(ioc, d.reserve(reservation("b0000000-0000-4000-8000-000000000003", "zone-b", 4), {}));
  ASSERT_FALSE(twice);
  EXPECT_TRUE(twice.error().is(errc::cloud_already_exists));
  EXPECT_EQ(co_run(ioc, d.list_reservations("test", {}))->size(), 1u);
  EXPECT_TRUE(co_run(ioc, d.list_reservations("another", {}))->empty());
}

TEST(fake_driver, a_reservation_past_its_end_is_gone) {
  fake_driver d(fake_settings{});
  asio::io_context ioc;
  auto r = reservation("b0000000-0000-4000-8000-000000000004", "fake-zone-a", 1);
  r.ends_at = system_clock::now() + 50ms;
  ASSERT_TRUE(co_run(ioc, d.reserve(r, {})));
  std::this_thread::sleep_for(80ms);
  auto got = co_run(ioc, d.get_reservation(reservation_ref{r.name, "fake-zone-a", ""}, {}));
  ASSERT_FALSE(got);
  EXPECT_TRUE(got.error().is(errc::cloud_not_found));
}

}  // namespace
}  // namespace cloudbrain::providers
