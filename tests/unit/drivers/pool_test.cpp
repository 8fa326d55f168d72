#include "providers/pool_driver/pool.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gtest/gtest.h>

namespace cloudbrain::pool_driver {
namespace {

using namespace std::chrono_literals;

machine_pool two_zones() {
  return machine_pool(
      parse_pool("# lab\n10.0.0.1 r1\n10.0.0.2 r1  # second\n\n10.0.1.1 r2\n").value());
}

dp::machine_spec spec(const std::string& name, const std::string& zone = "r1",
                      const std::string& reservation = "") {
  dp::machine_spec s;
  s.instance_id = name;
  s.name = "cb-" + name;
  s.image = "debian-12";
  s.instance_type = "standard";
  s.zone = zone;
  s.reservation = reservation;
  s.labels_ = {{"cloudbrain-deployment", "d1"}, {"cloudbrain-instance", name}};
  return s;
}

const dp::system_time t0 = std::chrono::system_clock::time_point(1'700'000'000s);

TEST(pool_file, reads_machines_and_refuses_mistakes) {
  auto ok = parse_pool("10.0.0.1 r1\n10.0.0.2 r2\n");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[1].zone, "r2");
  auto twice = parse_pool("10.0.0.1 r1\n10.0.0.1 r2\n");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().reason.find("line 2"), std::string::npos);
  auto no_zone = parse_pool("10.0.0.1\n");
  ASSERT_FALSE(no_zone);
  EXPECT_NE(no_zone.error().reason.find("ADDRESS ZONE"), std::string::npos);
  EXPECT_FALSE(parse_pool("# nothing\n\n"));
}

TEST(machine_pool, a_create_leases_a_free_machine_once_per_key) {
  auto pool = two_zones();
  auto first = pool.lease_for(spec("a"), "k1", true, t0);
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->replayed);
  EXPECT_EQ(first->address, "10.0.0.1");
  auto again = pool.lease_for(spec("a"), "k1", true, t0);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->address, "10.0.0.1");
  auto other_key = pool.lease_for(spec("a"), "k2", true, t0);
  ASSERT_FALSE(other_key);
  EXPECT_EQ(other_key.error().kind, dp::error_kind::already_exists);
  EXPECT_EQ(pool.leased_count(), 1u);
}

TEST(machine_pool, an_empty_zone_is_a_capacity_error_and_an_unknown_one_invalid) {
  auto pool = two_zones();
  ASSERT_TRUE(pool.lease_for(spec("a"), "k", true, t0));
  ASSERT_TRUE(pool.lease_for(spec("b"), "k", true, t0));
  auto full = pool.lease_for(spec("c"), "k", true, t0);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().kind, dp::error_kind::capacity);
  auto other_zone = pool.lease_for(spec("c", "r2"), "k", true, t0);
  ASSERT_TRUE(other_zone);
  EXPECT_EQ(other_zone->address, "10.0.1.1");
  auto nowhere = pool.lease_for(spec("d", "r9"), "k", true, t0);
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.error().kind, dp::error_kind::invalid);
  // Given back, the machine is free again.
  pool.give_back(*pool.address_of("cb-a"));
  EXPECT_TRUE(pool.lease_for(spec("c"), "k", true, t0));
}

TEST(machine_pool, machines_are_running_once_prepared) {
  auto pool = two_zones();
  auto leased = pool.lease_for(spec("a"), "k", false, t0);
  ASSERT_TRUE(leased);
  auto m = pool.machine_at(leased->address);
  EXPECT_EQ(m.status, dp::machine_status::provisioning);
  EXPECT_FALSE(m.ip_address);
  EXPECT_EQ(pool.unprepared(), std::vector<std::string>{"10.0.0.1"});
  pool.mark_ready(leased->address);
  m = pool.machine_at(leased->address);
  EXPECT_EQ(m.status, dp::machine_status::running);
  EXPECT_EQ(m.ip_address, "10.0.0.1");
  EXPECT_EQ(m.upstream_id, "10.0.0.1");
  EXPECT_EQ(m.labels_.at("cloudbrain-instance"), "a");
  EXPECT_TRUE(pool.unprepared().empty());
}

TEST(machine_pool, list_pages_through_one_deployment) {
  auto pool =
      machine_pool(parse_pool("10.0.0.1 r1\n10.0.0.2 r1\n10.0.0.3 r1\n10.0.0.4 r1\n").value());
  for (const auto* n : {"c", "a", "b"}) ASSERT_TRUE(pool.lease_for(spec(n), "k", true, t0));
  auto foreign = spec("z");
  foreign.labels_["cloudbrain-deployment"] = "d2";
  ASSERT_TRUE(pool.lease_for(foreign, "k", true, t0));
  std::vector<std::string> names;
  dp::page_request p{"d1", std::nullopt, 2};
  for (int pages = 0; pages < 5; ++pages) {
    auto page = pool.list(p);
    for (const auto& m : page.items) names.push_back(m.name);
    if (!page.next_page_token) break;
    p.page_token = page.next_page_token;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"cb-a", "cb-b", "cb-c"}));
  EXPECT_TRUE(pool.list({"d3", std::nullopt, 10}).items.empty());
}

TEST(machine_pool, reservations_hold_machines_for_their_instances) {
  auto pool = two_zones();
  dp::reservation_spec r;
  r.reservation_id = "r";
  r.name = "cbr-r";
  r.instance_type = "standard";
  r.count = 2;
  r.zone = "r1";
  r.ends_at = t0 + 1h;
  r.labels_ = {{"cloudbrain-deployment", "d1"}};
  auto held = pool.reserve(r, "rk", t0);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->count, 2);
  EXPECT_EQ(held->in_use, 0);
  EXPECT_EQ(held->status, dp::reservation_status::ready);
  EXPECT_TRUE(pool.reserve(r, "rk", t0));  // the same key: the same reservation
  EXPECT_EQ(pool.reserve(r, "other", t0).error().kind, dp::error_kind::already_exists);
  // Held machines are nobody else's.
  EXPECT_EQ(pool.lease_for(spec("x"), "k", true, t0).error().kind, dp::error_kind::capacity);
  ASSERT_TRUE(pool.lease_for(spec("in", "r1", "cbr-r"), "k", true, t0));
  EXPECT_EQ(pool.reservation_named("cbr-r")->in_use, 1);
  EXPECT_EQ(pool.list_reservations({"d1", std::nullopt, 10}).items.size(), 1u);
  // Released: the free one goes back, the one in use stays leased.
  EXPECT_TRUE(pool.release("cbr-r"));
  EXPECT_FALSE(pool.release("cbr-r"));
  EXPECT_EQ(pool.reservation_named("cbr-r").error().kind, dp::error_kind::not_found);
  EXPECT_EQ(pool.leased_count(), 1u);
  EXPECT_TRUE(pool.lease_for(spec("x"), "k", true, t0));
  dp::reservation_spec big = r;
  big.name = "cbr-big";
  big.count = 5;
  EXPECT_EQ(pool.reserve(big, "k", t0).error().kind, dp::error_kind::capacity);
}

TEST(machine_pool, the_state_survives_a_restart) {
  auto pool = two_zones();
  ASSERT_TRUE(pool.lease_for(spec("a"), "k1", false, t0));
  dp::reservation_spec r;
  r.name = "cbr-r";
  r.count = 1;
  r.zone = "r2";
  r.ends_at = t0 + 1h;
  ASSERT_TRUE(pool.reserve(r, "rk", t0));
  const auto saved = boost::json::serialize(pool.snapshot());

  auto restarted = two_zones();
  ASSERT_TRUE(restarted.restore(boost::json::parse(saved).as_object()));
  auto replay = restarted.lease_for(spec("a"), "k1", false, t0);
  ASSERT_TRUE(replay);
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(restarted.unprepared(), std::vector<std::string>{"10.0.0.1"});
  EXPECT_EQ(restarted.reservation_named("cbr-r")->count, 1);
  EXPECT_EQ(boost::json::serialize(restarted.snapshot()), saved);
  EXPECT_FALSE(restarted.restore(boost::json::parse(R"({"leases":[1]})").as_object()));
}

}  // namespace
}  // namespace cloudbrain::pool_driver
