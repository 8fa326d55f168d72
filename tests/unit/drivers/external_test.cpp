#include "providers/external/external_driver.hpp"

#include "core/config.hpp"
#include "tests/support/co_run.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>

namespace cloudbrain::providers {
namespace {

namespace json = boost::json;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using cloudbrain::testing::co_run;

provider_section section(std::map<std::string, std::string> settings) {
  provider_section s;
  s.name = "lab";
  s.type = "external";
  s.zones = {"rack-1", "rack-2"};
  s.settings = std::move(settings);
  return s;
}

TEST(external_settings, splits_configuration_and_secret) {
  auto s = external_settings::from_section(
      section({{"driver", "pool"}, {"site", "lab-1"}, {"secret.password", "pw"}}));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->driver, "pool");
  EXPECT_EQ(json::serialize(s->config), R"({"zones":["rack-1","rack-2"],"site":"lab-1"})");
  EXPECT_EQ(json::serialize(s->secret), R"({"secret.password":"pw"})");
}

// A value written @/path is read once, by the configuration's loader: what the file holds goes
// to the driver as it is, even when it looks like @/path itself.
TEST(external_settings, a_value_from_a_file_is_read_once) {
  char dir[] = "/tmp/cb-external-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string password = std::string(dir) + "/password";
  const std::string conf = std::string(dir) + "/cloudbrain.conf";
  { std::ofstream(password) << "@/etc/hostname\n"; }
  {
    std::ofstream(conf) << "database-url = postgresql://x@127.0.0.1/y\n"
                           "[provider.lab]\ntype = external\ndriver = pool\nzones = rack-1\n"
                           "site = lab-1\nsecret.password = @"
                        << password << "\n";
  }
  const auto no_env = [](const std::string&) -> std::optional<std::string> { return {}; };
  auto cfg = load_config({"--config", conf}, no_env);
  std::remove(password.c_str());
  std::remove(conf.c_str());
  ::rmdir(dir);
  ASSERT_TRUE(cfg) << cfg.error().message();
  ASSERT_NE(cfg->provider("lab"), nullptr);
  auto s = external_settings::from_section(*cfg->provider("lab"));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->secret.at("secret.password").as_string(), "@/etc/hostname");
  EXPECT_EQ(s->config.at("site").as_string(), "lab-1");
  EXPECT_FALSE(s->config.contains("secret.password"));
  // A section made some other way keeps its values as they are too.
  auto direct = external_settings::from_section(
      section({{"driver", "pool"}, {"token", "@/nonexistent/cb-token"}}));
  ASSERT_TRUE(direct) << direct.error().message();
  EXPECT_EQ(direct->config.at("token").as_string(), "@/nonexistent/cb-token");
}

TEST(external_settings, names_what_is_missing_or_wrong) {
  auto no_driver = external_settings::from_section(section({{"site", "x"}}));
  ASSERT_FALSE(no_driver);
  EXPECT_NE(no_driver.error().detail.find("needs 'driver'"), std::string::npos);
  auto bad_name = external_settings::from_section(section({{"driver", "Pool Driver"}}));
  ASSERT_FALSE(bad_name);
  EXPECT_NE(bad_name.error().detail.find("'driver'"), std::string::npos);
  auto no_zones = section({{"driver", "pool"}});
  no_zones.zones.clear();
  EXPECT_FALSE(external_settings::from_section(no_zones));
  auto secret_value = external_settings::from_section(
      section({{"driver", "Bad!"}, {"secret.password", "hunter2"}}));
  ASSERT_FALSE(secret_value);
  EXPECT_EQ(secret_value.error().detail.find("hunter2"), std::string::npos);
}

TEST(external_driver, errors_keep_their_kinds) {
  namespace dp = driver_protocol;
  const std::pair<dp::error_kind, errc> kinds[] = {
      {dp::error_kind::capacity, errc::cloud_capacity},
      {dp::error_kind::quota, errc::cloud_quota},
      {dp::error_kind::throttled, errc::cloud_rate_limited},
      {dp::error_kind::invalid, errc::cloud_permanent},
      {dp::error_kind::auth, errc::cloud_auth},
      {dp::error_kind::not_found, errc::cloud_not_found},
      {dp::error_kind::already_exists, errc::cloud_already_exists},
      {dp::error_kind::transient, errc::cloud_transient}};
  for (const auto& [kind, code] : kinds) {
    const auto e = error_from(dp::failure{kind, "the lab said no", 1500ms}, "pool");
    EXPECT_TRUE(e.is(code)) << dp::to_string(kind);
    EXPECT_EQ(e.detail, "the lab said no");
    EXPECT_EQ(e.retry_after, 1500ms);
  }
  EXPECT_EQ(error_from(dp::failure{dp::error_kind::quota, "", {}}, "pool").detail,
            "driver pool: quota");
}

// A port that answers from a script and remembers what was sent.
class scripted_port final : public remote_port {
 public:
  std::deque<result<json::object>> answers;
  std::vector<json::object> sent;
  std::size_t connected = 1;
  std::vector<std::string> caps{"instances", "list"};

  asio::awaitable<result<json::object>> call(json::object op, deadline) override {
    sent.push_back(std::move(op));
    if (answers.empty()) co_return fail(errc::internal, "no scripted answer");
    auto a = std::move(answers.front());
    answers.pop_front();
    co_return a;
  }
  std::size_t capacity() const override { return connected * 4; }
  std::size_t connections() const override { return connected; }
  bool declares(std::string_view c) const override {
    return std::find(caps.begin(), caps.end(), c) != caps.end();
  }
  void on_capacity_change(std::function<void()>) override {}
  void detach() override { ++detached; }
  int detached = 0;
};

json::object machine_answer(const std::string& name) {
  return json::parse(R"({"type":"result","id":"op-1","machine":{"name":")" + name +
                     R"(","upstream_id":"10.0.0.1","zone":"rack-1","status":"running",
                        "ip_address":"10.0.0.1","labels":{},"created_at":null}})")
      .as_object();
}

struct driver_fixture {
  asio::io_context ioc;
  std::shared_ptr<scripted_port> port = std::make_shared<scripted_port>();
  std::unique_ptr<external_driver> driver;
  driver_fixture() {
    auto s = external_settings::from_section(section({{"driver", "pool"}}));
    driver = std::make_unique<external_driver>("lab", std::move(*s), port);
  }
};

TEST(external_driver, a_create_becomes_a_create_operation) {
  driver_fixture f;
  f.port->answers.push_back(machine_answer("cb-1"));
  instance_spec spec;
  spec.instance_id = "1";
  spec.name = "cb-1";
  spec.image = "debian-12";
  spec.zone = "rack-1";
  spec.tags = {{"team", "ci"}};
  spec.deployment = "prod";
  spec.idempotency_key = "job-7/rack-1";
  auto made = co_run(f.ioc, f.driver->create(spec, after(5s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->ip_address, "10.0.0.1");
  EXPECT_EQ(made->status, vm_status::running);
  ASSERT_EQ(f.port->sent.size(), 1u);
  const auto& op = f.port->sent[0];
  EXPECT_EQ(op.at("type"), "create");
  EXPECT_EQ(op.at("provider"), "lab");
  EXPECT_EQ(op.at("idempotency_key"), "job-7/rack-1");
  const auto& labels = op.at("spec").at("labels").as_object();
  EXPECT_EQ(labels.at("team"), "ci");
  EXPECT_EQ(labels.at(label_deployment), "prod");
  EXPECT_EQ(labels.at(label_instance), "1");
  EXPECT_EQ(op.at("spec").at("instance_type"), "standard");
}

TEST(external_driver, a_typed_error_and_a_malformed_result) {
  driver_fixture f;
  f.port->answers.push_back(json::parse(R"({"type":"error","id":"op-1","error":{
      "kind":"throttled","message":"slow down","retry_after_ms":2500}})")
                                .as_object());
  f.port->answers.push_back(json::parse(R"({"type":"result","id":"op-2"})").as_object());
  auto throttled = co_run(f.ioc, f.driver->get(vm_ref{"cb-1", "rack-1", ""}, after(5s)));
  ASSERT_FALSE(throttled);
  EXPECT_TRUE(throttled.error().is(errc::cloud_rate_limited));
  EXPECT_EQ(throttled.error().retry_after, 2500ms);
  auto malformed = co_run(f.ioc, f.driver->get(vm_ref{"cb-1", "rack-1", ""}, after(5s)));
  ASSERT_FALSE(malformed);
  EXPECT_TRUE(malformed.error().is(errc::cloud_transient));
  EXPECT_NE(malformed.error().detail.find("malformed"), std::string::npos);
}

TEST(external_driver, delete_of_what_is_gone_succeeds) {
  driver_fixture f;
  f.port->answers.push_back(json::parse(R"({"type":"error","id":"op-1","error":{
      "kind":"not_found","message":"gone"}})")
                                .as_object());
  auto gone = co_run(f.ioc, f.driver->destroy(vm_ref{"cb-1", "rack-1", ""}, "k", after(5s)));
  EXPECT_TRUE(gone) << gone.error().message();
  EXPECT_EQ(f.port->sent.at(0).at("idempotency_key"), "k");
}

TEST(external_driver, a_listing_walks_every_page_and_refuses_a_loop) {
  driver_fixture f;
  f.port->answers.push_back(json::parse(R"({"type":"result","id":"op-1","next_page_token":"p2",
      "machines":[{"name":"cb-1","status":"running"}]})")
                                .as_object());
  f.port->answers.push_back(json::parse(R"({"type":"result","id":"op-2","next_page_token":null,
      "machines":[{"name":"cb-2","status":"provisioning"}]})")
                                .as_object());
  auto listed = co_run(f.ioc, f.driver->list("prod", after(5s)));
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].name, "cb-2");
  EXPECT_EQ(f.port->sent.at(1).at("page_token"), "p2");
  EXPECT_EQ(f.port->sent.at(0).at("deployment"), "prod");

  for (int i = 0; i < 2; ++i) {
    f.port->answers.push_back(json::parse(R"({"type":"result","id":"op-3",
        "next_page_token":"same","machines":[]})")
                                  .as_object());
  }
  auto looping = co_run(f.ioc, f.driver->list("prod", after(5s)));
  ASSERT_FALSE(looping);
  EXPECT_TRUE(looping.error().is(errc::cloud_transient));
}

TEST(external_driver, with_no_driver_a_listing_fails_at_once_and_undeclared_calls_are_refused) {
  driver_fixture f;
  f.port->connected = 0;
  auto listed = co_run(f.ioc, f.driver->list("prod", after(5s)));
  ASSERT_FALSE(listed);
  EXPECT_TRUE(listed.error().is(errc::cloud_unavailable));
  EXPECT_TRUE(f.port->sent.empty());
  EXPECT_EQ(f.driver->capacity(), 0u);

  f.port->connected = 1;
  auto reserved = co_run(f.ioc, f.driver->list_reservations("prod", after(5s)));
  ASSERT_FALSE(reserved);
  EXPECT_TRUE(reserved.error().is(errc::cloud_permanent));
  EXPECT_NE(reserved.error().detail.find("reservations"), std::string::npos);
  EXPECT_TRUE(f.port->sent.empty());
  f.driver.reset();
  EXPECT_EQ(f.port->detached, 1);
}

}  // namespace
}  // namespace cloudbrain::providers
