#include "net/router.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace cloudbrain::net {
namespace {

handler returns(http::status status) {
  return [status](request_context&) -> boost::asio::awaitable<response> {
    co_return response{status, 11};
  };
}

router sample_router() {
  router r;
  r.add(http::verb::get, "/instances", returns(http::status::ok), "instances.list");
  r.add(http::verb::post, "/instances", returns(http::status::created), "instances.create");
  r.add(http::verb::get, "/instances/:id", returns(http::status::ok), "instances.get");
  r.add(http::verb::delete_, "/instances/:id", returns(http::status::accepted), "instances.delete");
  r.add(http::verb::get, "/instances/search", returns(http::status::ok), "instances.search");
  r.add(http::verb::get, "/providers/:name/zones/:zone", returns(http::status::ok), "zones.get");
  r.add(http::verb::get, "/", returns(http::status::ok), "root");
  return r;
}

TEST(router, matches_a_literal_route) {
  const auto r = sample_router();
  const auto m = r.match(http::verb::post, "/instances");
  ASSERT_TRUE(m);
  EXPECT_EQ(m.route, "instances.create");
  EXPECT_EQ(m.pattern, "/instances");
  EXPECT_NE(m.handler, nullptr);
  EXPECT_EQ(m.upgrade, nullptr);
  EXPECT_TRUE(m.params.empty());
}

TEST(router, captures_named_segments) {
  const auto r = sample_router();
  const auto m = r.match(http::verb::get, "/providers/gce/zones/us-central1-a");
  ASSERT_TRUE(m);
  EXPECT_EQ(m.route, "zones.get");
  ASSERT_EQ(m.params.size(), 2u);
  EXPECT_EQ(m.params[0], (std::pair<std::string, std::string>{"name", "gce"}));
  EXPECT_EQ(m.params[1], (std::pair<std::string, std::string>{"zone", "us-central1-a"}));
}

TEST(router, decodes_captures_after_splitting) {
  const auto r = sample_router();
  // %2F stays inside its segment instead of becoming a separator.
  const auto m = r.match(http::verb::get, "/instances/a%2Fb%20c");
  ASSERT_TRUE(m);
  EXPECT_EQ(m.route, "instances.get");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].second, "a/b c");
}

TEST(router, request_context_param_looks_up_by_name) {
  request req;
  request_context ctx{req, "id", {}, "/p", {}, {{"id", "42"}, {"zone", "z"}}, "r"};
  EXPECT_EQ(ctx.param("zone"), "z");
  EXPECT_EQ(ctx.param("id"), "42");
  EXPECT_EQ(ctx.param("nope"), "");
}

TEST(router, literal_segment_beats_capture) {
  const auto r = sample_router();
  EXPECT_EQ(r.match(http::verb::get, "/instances/search").route, "instances.search");
  EXPECT_EQ(r.match(http::verb::get, "/instances/searching").route, "instances.get");
}

TEST(router, most_specific_path_decides_the_allowed_methods) {
  const auto r = sample_router();
  // "/instances/search" only has GET, even though "/instances/:id" has DELETE.
  const auto m = r.match(http::verb::delete_, "/instances/search");
  EXPECT_EQ(m.status, http::status::method_not_allowed);
  EXPECT_EQ(m.allow, "GET, HEAD");
}

TEST(router, unknown_paths_are_not_found) {
  const auto r = sample_router();
  for (const char* path : {"/nope", "/instances/1/2", "/providers/gce/zones", "", "instances",
                           "/instances/", "//instances", "/providers//zones/z"}) {
    const auto m = r.match(http::verb::get, path);
    EXPECT_EQ(m.status, http::status::not_found) << path;
    EXPECT_FALSE(m) << path;
    EXPECT_EQ(m.handler, nullptr) << path;
  }
}

TEST(router, root_route_matches_only_the_root) {
  const auto r = sample_router();
  EXPECT_EQ(r.match(http::verb::get, "/").route, "root");
  EXPECT_EQ(r.match(http::verb::get, "/x").status, http::status::not_found);
}

TEST(router, wrong_method_is_405_with_allow) {
  const auto r = sample_router();
  const auto m = r.match(http::verb::put, "/instances/abc");
  EXPECT_EQ(m.status, http::status::method_not_allowed);
  EXPECT_FALSE(m);
  EXPECT_EQ(m.allow, "GET, HEAD, DELETE");
  EXPECT_EQ(m.handler, nullptr);

  const auto list = r.match(http::verb::delete_, "/instances");
  EXPECT_EQ(list.status, http::status::method_not_allowed);
  EXPECT_EQ(list.allow, "GET, HEAD, POST");
}

TEST(router, head_falls_back_to_get) {
  const auto r = sample_router();
  const auto m = r.match(http::verb::head, "/instances/abc");
  ASSERT_TRUE(m);
  EXPECT_EQ(m.route, "instances.get");
  EXPECT_EQ(r.match(http::verb::head, "/nope").status, http::status::not_found);
}

TEST(router, malformed_percent_encoding_is_not_found) {
  const auto r = sample_router();
  for (const char* path : {"/instances/%zz", "/instances/%", "/instances/abc%4", "/%gg/x"}) {
    EXPECT_EQ(r.match(http::verb::get, path).status, http::status::not_found) << path;
  }
}

TEST(router, encoded_literals_match_their_decoded_form) {
  const auto r = sample_router();
  EXPECT_EQ(r.match(http::verb::get, "/%69nstances").route, "instances.list");
}

TEST(router, lists_routes_in_the_order_added) {
  const auto r = sample_router();
  const std::vector<route_info> expected{
      {http::verb::get, "/instances", "instances.list"},
      {http::verb::post, "/instances", "instances.create"},
      {http::verb::get, "/instances/:id", "instances.get"},
      {http::verb::delete_, "/instances/:id", "instances.delete"},
      {http::verb::get, "/instances/search", "instances.search"},
      {http::verb::get, "/providers/:name/zones/:zone", "zones.get"},
      {http::verb::get, "/", "root"},
  };
  EXPECT_EQ(r.routes(), expected);
}

TEST(router, rejects_bad_routes_at_startup) {
  router r;
  r.add(http::verb::get, "/instances/:id", returns(http::status::ok), "a");
  EXPECT_THROW(r.add(http::verb::get, "/instances/:id", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::get, "/instances/:other", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::delete_, "/instances/:other", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::get, "instances", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::get, "/a//b", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::get, "/a/:", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::get, "/a/:x/:x", returns(http::status::ok), "b"),
               std::invalid_argument);
  EXPECT_THROW(r.add(http::verb::get, "/a", handler{}, "b"), std::invalid_argument);
  EXPECT_EQ(r.routes().size(), 1u);
}

TEST(router, upgrade_routes_are_get_only) {
  router r;
  r.add_upgrade(
      "/drivers/connect",
      [](request_context&, connection_stream) -> boost::asio::awaitable<void> { co_return; },
      "drivers.connect");
  const auto m = r.match(http::verb::get, "/drivers/connect");
  ASSERT_TRUE(m);
  EXPECT_NE(m.upgrade, nullptr);
  EXPECT_EQ(m.handler, nullptr);
  const auto post = r.match(http::verb::post, "/drivers/connect");
  EXPECT_EQ(post.status, http::status::method_not_allowed);
  EXPECT_EQ(post.allow, "GET");
  EXPECT_EQ(r.match(http::verb::head, "/drivers/connect").status, http::status::method_not_allowed);
  EXPECT_EQ(
      r.routes(),
      (std::vector<route_info>{{http::verb::get, "/drivers/connect", "drivers.connect", true}}));
}

}  // namespace
}  // namespace cloudbrain::net
