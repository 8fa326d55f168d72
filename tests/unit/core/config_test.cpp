#include "core/config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace cloudbrain {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The example from API.md, verbatim.
constexpr const char* api_example = R"ini(listen = 127.0.0.1:8080
database-url = postgresql://cloudbrain@localhost/cloudbrain
reconcile-interval = 30s   # how often each provider's VMs are compared with the database
orphan-grace = 10m         # a VM of ours with no live instance behind it is deleted once this old

[provider.gce]
type = fake              # fake | gce | aws | azure | oci | external
zones = zone-a zone-b    # fake: the zones it simulates
# fake only: boot-delay = 50ms, failure-rate = 0.0, capacity-per-zone = 1000

[provider.gce-staging]
type = gce
project = my-project
zones = us-central1-a us-central1-b             # tried in this order
credentials = /etc/cloudbrain/gce-staging.json   # service-account key; omit for the metadata server
image-project = my-images                        # where images are looked up (default: project)
standard-machine-type = n1-standard-2
premium-machine-type = n1-standard-4
ssh-user = travis                                # user for public_ssh_key
rate-limit = 20                                  # cloud calls per second, this provider
max-in-flight = 50                               # concurrent cloud calls, this provider
endpoint = https://compute.googleapis.com        # tests point this at an emulator
)ini";

class config_test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "cloudbrain-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string write(const std::string& text, const std::string& name = "cloudbrain.ini") {
    const auto path = dir_ / name;
    std::ofstream out(path);
    out << text;
    return path.string();
  }

  // A fake environment: only what the test puts in `env`.
  environment_lookup fake_env() {
    return [this](const std::string& name) -> std::optional<std::string> {
      lookups.push_back(name);
      if (auto it = env.find(name); it != env.end()) return it->second;
      return std::nullopt;
    };
  }

  result<service_config> load(const std::vector<std::string>& args) {
    return load_config(args, fake_env());
  }

  // Loads `text` as the config file (plus a database URL unless the text has one) and expects
  // failure naming `needle`.
  void expect_error_naming(const std::string& text, const std::string& needle) {
    const auto path = write(text);
    const auto r = load({"--config", path, "--database-url", "postgresql://x@y/z"});
    ASSERT_FALSE(r) << "accepted:\n" << text;
    EXPECT_TRUE(r.error().is(errc::bad_config)) << r.error().message();
    EXPECT_NE(r.error().detail.find(needle), std::string::npos)
        << "detail '" << r.error().detail << "' does not name '" << needle << "'";
  }

  fs::path dir_;
  std::map<std::string, std::string> env;
  std::vector<std::string> lookups;
};

TEST_F(config_test, loads_the_api_example) {
  const auto path = write(api_example);
  const auto r = load({"--config", path});
  ASSERT_TRUE(r) << r.error().message();
  const auto& c = *r;
  EXPECT_EQ(c.listen, "127.0.0.1:8080");
  EXPECT_EQ(c.database_url, "postgresql://cloudbrain@localhost/cloudbrain");
  EXPECT_EQ(c.reconcile_interval, 30s);
  EXPECT_EQ(c.orphan_grace, 10min);
  EXPECT_EQ(c.config_file, path);

  ASSERT_EQ(c.providers.size(), 2u);
  const auto& gce = c.providers[0];
  EXPECT_EQ(gce.name, "gce");
  EXPECT_EQ(gce.type, "fake");  // the inline comment is not part of the value
  EXPECT_EQ(gce.zones, (std::vector<std::string>{"zone-a", "zone-b"}));
  EXPECT_TRUE(gce.settings.empty()) << "the commented-out line must not become settings";
  EXPECT_EQ(gce.rate_limit, 20.0);
  EXPECT_EQ(gce.max_in_flight, 50u);
  EXPECT_EQ(gce.endpoint, "");

  const auto& staging = c.providers[1];
  EXPECT_EQ(staging.name, "gce-staging");
  EXPECT_EQ(staging.type, "gce");
  EXPECT_EQ(staging.zones, (std::vector<std::string>{"us-central1-a", "us-central1-b"}));
  EXPECT_EQ(staging.rate_limit, 20.0);
  EXPECT_EQ(staging.max_in_flight, 50u);
  EXPECT_EQ(staging.endpoint, "https://compute.googleapis.com");
  const std::map<std::string, std::string> want_settings = {
      {"project", "my-project"},
      {"credentials", "/etc/cloudbrain/gce-staging.json"},
      {"image-project", "my-images"},
      {"standard-machine-type", "n1-standard-2"},
      {"premium-machine-type", "n1-standard-4"},
      {"ssh-user", "travis"},
  };
  EXPECT_EQ(staging.settings, want_settings);

  EXPECT_EQ(c.provider("gce"), &c.providers[0]);
  EXPECT_EQ(c.provider("gce-staging"), &c.providers[1]);
  EXPECT_EQ(c.provider("gce-"), nullptr);
  EXPECT_EQ(c.provider("aws"), nullptr);
}

TEST_F(config_test, defaults_with_only_a_database) {
  env["DATABASE_URL"] = "postgresql://only@env/db";
  const auto r = load({});
  ASSERT_TRUE(r) << r.error().message();
  const service_config defaults;
  EXPECT_EQ(r->database_url, "postgresql://only@env/db");
  EXPECT_EQ(r->listen, "127.0.0.1:8080");
  EXPECT_EQ(r->admin_listen, "");
  EXPECT_EQ(r->deployment, "cloudbrain");
  EXPECT_EQ(r->reconcile_interval, 30s);
  EXPECT_EQ(r->orphan_grace, 10min);
  EXPECT_EQ(r->job_lease, 30s);
  EXPECT_EQ(r->shutdown_timeout, 20s);
  EXPECT_EQ(r->token_cache_ttl, 5min);
  EXPECT_EQ(r->token_rate_limit, 0.0);  // no limit
  EXPECT_EQ(r->token_rate_burst, 0u);
  EXPECT_EQ(r->job_max_attempts, 10u);
  EXPECT_EQ(r->threads, 2u);
  EXPECT_EQ(r->blocking_threads, 2u);
  EXPECT_EQ(r->db_pool_size, 16u);
  EXPECT_EQ(r->max_connections, 10'000u);
  EXPECT_EQ(r->log_level, log::level::info);
  EXPECT_TRUE(r->providers.empty());
  EXPECT_EQ(r->config_file, "");
}

TEST_F(config_test, flags_override_environment_override_file) {
  const auto path = write(std::string(api_example) + "\n");
  // file only
  {
    const auto r = load({"--config", path});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->listen, "127.0.0.1:8080");
    EXPECT_EQ(r->orphan_grace, 10min);
  }
  // environment beats the file
  env["CLOUDBRAIN_LISTEN"] = "0.0.0.0:9000";
  env["CLOUDBRAIN_ORPHAN_GRACE"] = "1h";
  {
    const auto r = load({"--config", path});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->listen, "0.0.0.0:9000");
    EXPECT_EQ(r->orphan_grace, 1h);
    EXPECT_EQ(r->reconcile_interval, 30s);  // untouched keys still come from the file
  }
  // flags beat the environment
  {
    const auto r = load({"--config", path, "--listen", "10.0.0.1:7000", "--orphan-grace=2h"});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->listen, "10.0.0.1:7000");
    EXPECT_EQ(r->orphan_grace, 2h);
  }
  // the environment name is CLOUDBRAIN_ + upper case, '-' -> '_'
  EXPECT_NE(std::find(lookups.begin(), lookups.end(), "CLOUDBRAIN_RECONCILE_INTERVAL"),
            lookups.end());
  EXPECT_NE(std::find(lookups.begin(), lookups.end(), "CLOUDBRAIN_DB_POOL_SIZE"), lookups.end());
}

TEST_F(config_test, every_global_key_from_each_source) {
  const std::map<std::string, std::string> values = {
      {"listen", "0.0.0.0:1"},
      {"admin-listen", "127.0.0.1:9"},
      {"database-url", "pg://a/b"},
      {"deployment", "ci-7"},
      {"base-url", "https://x.test"},
      {"reconcile-interval", "5s"},
      {"orphan-grace", "2m"},
      {"job-lease", "45s"},
      {"job-max-attempts", "3"},
      {"shutdown-timeout", "1500ms"},
      {"token-cache-ttl", "1m"},
      {"threads", "8"},
      {"blocking-threads", "4"},
      {"db-pool-size", "32"},
      {"max-connections", "500"},
      {"log-level", "debug"},
      {"database-direct-url", "pg://direct/b"},
      {"node-name", "node-7"},
      {"db-prepared-statements", "false"},
      {"driver-heartbeat", "750ms"},
      {"token-rate-limit", "12.5"},
      {"token-rate-burst", "40"},
  };
  auto check = [](const service_config& c) {
    EXPECT_EQ(c.listen, "0.0.0.0:1");
    EXPECT_EQ(c.admin_listen, "127.0.0.1:9");
    EXPECT_EQ(c.database_url, "pg://a/b");
    EXPECT_EQ(c.deployment, "ci-7");
    EXPECT_EQ(c.base_url, "https://x.test");
    EXPECT_EQ(c.reconcile_interval, 5s);
    EXPECT_EQ(c.orphan_grace, 2min);
    EXPECT_EQ(c.job_lease, 45s);
    EXPECT_EQ(c.job_max_attempts, 3u);
    EXPECT_EQ(c.shutdown_timeout, 1500ms);
    EXPECT_EQ(c.token_cache_ttl, 1min);
    EXPECT_EQ(c.threads, 8u);
    EXPECT_EQ(c.blocking_threads, 4u);
    EXPECT_EQ(c.db_pool_size, 32u);
    EXPECT_FALSE(c.db_prepared_statements);
    EXPECT_EQ(c.max_connections, 500u);
    EXPECT_EQ(c.log_level, log::level::debug);
    EXPECT_EQ(c.database_direct_url, "pg://direct/b");
    EXPECT_EQ(c.direct_url(), "pg://direct/b");
    EXPECT_EQ(c.node_name, "node-7");
    EXPECT_EQ(c.driver_heartbeat, 750ms);
    EXPECT_EQ(c.token_rate_limit, 12.5);
    EXPECT_EQ(c.token_rate_burst, 40u);
  };
  {  // flags
    std::vector<std::string> args;
    args.reserve(values.size());
    for (const auto& [k, v] : values)
      args.push_back(std::string("--").append(k).append("=").append(v));
    const auto r = load(args);
    ASSERT_TRUE(r) << r.error().message();
    check(*r);
  }
  {  // environment
    for (const auto& [k, v] : values) {
      std::string name = "CLOUDBRAIN_";
      for (char ch : k) name += ch == '-' ? '_' : static_cast<char>(std::toupper(ch));
      env[name] = v;
    }
    const auto r = load({});
    ASSERT_TRUE(r) << r.error().message();
    check(*r);
    env.clear();
  }
  {  // file
    std::string text;
    for (const auto& [k, v] : values) text.append(k).append(" = ").append(v).append("\n");
    const auto r = load({"--config", write(text)});
    ASSERT_TRUE(r) << r.error().message();
    check(*r);
  }
}

TEST_F(config_test, database_url_fallbacks) {
  const auto path = write("database-url = pg://file/db\n");
  {
    const auto r = load({"--config", path});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->database_url, "pg://file/db");
  }
  env["DATABASE_URL"] = "pg://plain-env/db";
  {
    const auto r = load({"--config", path});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->database_url, "pg://plain-env/db");  // DATABASE_URL beats the file
  }
  env["CLOUDBRAIN_DATABASE_URL"] = "pg://cloudbrain-env/db";
  {
    const auto r = load({"--config", path});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->database_url, "pg://cloudbrain-env/db");  // CLOUDBRAIN_* beats DATABASE_URL
  }
  {
    const auto r = load({"--config", path, "--database-url", "pg://flag/db"});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->database_url, "pg://flag/db");
  }
}

TEST_F(config_test, config_file_from_environment) {
  const auto a = write("database-url = pg://a/a\n", "a.ini");
  const auto b = write("database-url = pg://b/b\n", "b.ini");
  env["CLOUDBRAIN_CONFIG"] = a;
  {
    const auto r = load({});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->database_url, "pg://a/a");
    EXPECT_EQ(r->config_file, a);
  }
  {
    const auto r = load({"--config", b});  // the flag wins
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->database_url, "pg://b/b");
    EXPECT_EQ(r->config_file, b);
  }
}

TEST_F(config_test, missing_database_url_is_an_error) {
  const auto r = load({});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::bad_config));
  EXPECT_NE(r.error().detail.find("database-url"), std::string::npos) << r.error().detail;
  EXPECT_NE(r.error().detail.find("DATABASE_URL"), std::string::npos) << r.error().detail;
  // An empty value is no database either.
  env["DATABASE_URL"] = "";
  EXPECT_FALSE(load({}));
}

TEST_F(config_test, missing_config_file_is_an_error) {
  const std::string path = (dir_ / "nope.ini").string();
  const auto r = load({"--config", path, "--database-url", "pg://x/y"});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::bad_config));
  EXPECT_NE(r.error().detail.find(path), std::string::npos) << r.error().detail;
}

TEST_F(config_test, unknown_global_key_is_named) {
  expect_error_naming("listen = 127.0.0.1:1\nbogus-key = 1\n", "bogus-key");
  expect_error_naming("config = /etc/other.ini\n", "config");
  expect_error_naming("[other]\nkey = 1\n", "other.key");
}

TEST_F(config_test, provider_key_without_section_key_is_named) {
  expect_error_naming("provider.x = 1\n", "provider.x");
  expect_error_naming("[provider]\ntype = fake\n", "provider.type");
}

TEST_F(config_test, bad_duration_is_named) {
  expect_error_naming("orphan-grace = 10parsecs\n", "orphan-grace");
  expect_error_naming("reconcile-interval = -5s\n", "reconcile-interval");
  expect_error_naming("job-lease = \n", "job-lease");
  expect_error_naming("shutdown-timeout = 1.5s\n", "shutdown-timeout");
  expect_error_naming("token-cache-ttl = 99999999999d\n", "token-cache-ttl");
  expect_error_naming("driver-heartbeat = 10ms\n", "driver-heartbeat");
}

TEST_F(config_test, bad_token_rate_limits_are_named) {
  expect_error_naming("token-rate-limit = 0\n", "token-rate-limit");
  expect_error_naming("token-rate-limit = -3\n", "token-rate-limit");
  expect_error_naming("token-rate-limit = fast\n", "token-rate-limit");
  expect_error_naming("token-rate-limit = 50/s\n", "token-rate-limit");
  expect_error_naming("token-rate-limit = nan\n", "token-rate-limit");
  expect_error_naming("token-rate-limit = 2000000\n", "token-rate-limit");
  expect_error_naming("token-rate-limit = 5\ntoken-rate-burst = 0\n", "token-rate-burst");
  expect_error_naming("token-rate-burst = 10\n", "token-rate-burst");  // without a rate
}

TEST_F(config_test, bad_number_is_named) {
  expect_error_naming("threads = many\n", "threads");
  expect_error_naming("threads = 0\n", "threads");
  expect_error_naming("threads = 257\n", "threads");
  expect_error_naming("threads = -1\n", "threads");
  expect_error_naming("threads = 4x\n", "threads");
  expect_error_naming("blocking-threads = 0\n", "blocking-threads");
  expect_error_naming("db-pool-size = 1001\n", "db-pool-size");
  expect_error_naming("db-prepared-statements = no\n", "db-prepared-statements");
  expect_error_naming("max-connections = 0\n", "max-connections");
  expect_error_naming("job-max-attempts = 1001\n", "job-max-attempts");
  expect_error_naming("job-max-attempts = 2.5\n", "job-max-attempts");
}

TEST_F(config_test, bad_log_level_is_named) {
  expect_error_naming("log-level = loud\n", "log-level");
  expect_error_naming("log-level = INFO\n", "log-level");
}

TEST_F(config_test, accepted_log_levels) {
  for (const auto& [text, want] :
       std::vector<std::pair<std::string, log::level>>{{"trace", log::level::trace},
                                                       {"debug", log::level::debug},
                                                       {"info", log::level::info},
                                                       {"warn", log::level::warn},
                                                       {"warning", log::level::warn},
                                                       {"error", log::level::error}}) {
    const auto r = load({"--database-url", "pg://x/y", "--log-level", text});
    ASSERT_TRUE(r) << text;
    EXPECT_EQ(r->log_level, want) << text;
  }
}

TEST_F(config_test, bad_listen_and_deployment_are_named) {
  expect_error_naming("listen = nohostport\n", "listen");
  expect_error_naming("admin-listen = host:99999\n", "admin-listen");
  expect_error_naming("deployment = Prod!\n", "deployment");
  expect_error_naming("deployment = " + std::string(41, 'a') + "\n", "deployment");
}

TEST_F(config_test, provider_without_type_is_named) {
  expect_error_naming("[provider.lonely]\nzones = a b\n", "provider.lonely");
  expect_error_naming("[provider.lonely]\nzones = a b\n", "type");
  expect_error_naming("[provider.empty]\ntype =\n", "provider.empty");
}

TEST_F(config_test, bad_provider_name_is_named) {
  expect_error_naming("[provider.GCE]\ntype = fake\n", "GCE");
  expect_error_naming("[provider.a+b]\ntype = fake\n", "a+b");
  expect_error_naming("[provider." + std::string(64, 'x') + "]\ntype = fake\n",
                      std::string(64, 'x'));
}

TEST_F(config_test, bad_provider_values_are_named) {
  expect_error_naming("[provider.p]\ntype = fake\nrate-limit = fast\n", "rate-limit");
  expect_error_naming("[provider.p]\ntype = fake\nrate-limit = 0\n", "rate-limit");
  expect_error_naming("[provider.p]\ntype = fake\nrate-limit = -3\n", "rate-limit");
  expect_error_naming("[provider.p]\ntype = fake\nrate-limit = nan\n", "rate-limit");
  expect_error_naming("[provider.p]\ntype = fake\nrate-limit = 10/s\n", "rate-limit");
  expect_error_naming("[provider.p]\ntype = fake\nmax-in-flight = 0\n", "max-in-flight");
  expect_error_naming("[provider.p]\ntype = fake\nmax-in-flight = lots\n", "max-in-flight");
  expect_error_naming("[provider.p]\ntype = fake\nmax-reserved-instances = -1\n",
                      "max-reserved-instances");
  expect_error_naming("[provider.p]\ntype = fake\nmax-reservation-duration = 0s\n",
                      "max-reservation-duration");
  expect_error_naming("[provider.p]\ntype = fake\nmax-reservation-duration = forever\n",
                      "max-reservation-duration");
  for (const char* price :
       {"standard-price-per-hour", "premium-price-per-hour", "reserved-price-per-hour"}) {
    for (const char* bad :
         {"-1", "free", "1e3", "0.", ".5", "1,50", "10000000000", "0.1234567890"}) {
      expect_error_naming(
          std::string("currency = USD\n[provider.p]\ntype = fake\n") + price + " = " + bad + "\n",
          price);
    }
  }
  // ... and the section too.
  expect_error_naming("[provider.p]\ntype = fake\nmax-in-flight = 0\n", "provider.p");
}

TEST_F(config_test, prices_and_their_currency) {
  const auto path = write(
      "database-url = pg://x/y\n"
      "currency = EUR\n"
      "spend-ceiling-per-hour = 250.5\n"
      "[provider.east]\n"
      "type = fake\n"
      "standard-price-per-hour = 0.095\n"
      "premium-price-per-hour = 0.38\n"
      "reserved-price-per-hour = 0.07\n"
      "[provider.west]\n"
      "type = fake\n"
      "standard-price-per-hour = 12\n");
  const auto r = load({"--config", path});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->currency, "EUR");
  EXPECT_EQ(r->spend_ceiling_per_hour, "250.5");
  const auto* east = r->provider("east");
  ASSERT_NE(east, nullptr);
  // Kept as written: PostgreSQL does the arithmetic in exact decimals.
  EXPECT_EQ(east->standard_price_per_hour, "0.095");
  EXPECT_EQ(east->premium_price_per_hour, "0.38");
  EXPECT_EQ(east->reserved_price_per_hour, "0.07");
  EXPECT_TRUE(east->settings.empty()) << "prices are common keys, not the driver's";
  const auto* west = r->provider("west");
  ASSERT_NE(west, nullptr);
  EXPECT_EQ(west->standard_price_per_hour, "12");
  EXPECT_EQ(west->premium_price_per_hour, "");
  EXPECT_EQ(west->reserved_price_per_hour, "");
}

TEST_F(config_test, a_price_needs_a_currency) {
  expect_error_naming("[provider.p]\ntype = fake\nstandard-price-per-hour = 0.1\n", "currency");
  expect_error_naming("[provider.p]\ntype = fake\nreserved-price-per-hour = 0.1\n", "provider.p");
  expect_error_naming("spend-ceiling-per-hour = 100\n", "currency");
  expect_error_naming("currency = usd\n", "currency");
  expect_error_naming("currency = EURO\n", "currency");
  expect_error_naming("currency = USD\nspend-ceiling-per-hour = lots\n", "spend-ceiling-per-hour");
}

TEST(valid_decimal, digits_with_an_optional_fraction) {
  for (const char* good : {"0", "12", "0.095", "123456789.123456789", "007"}) {
    EXPECT_TRUE(valid_decimal(good)) << good;
  }
  for (const char* bad : {"", ".", "1.", ".1", "-1", "+1", "1e3", "1.2.3", " 1", "1 ", "1234567890",
                          "0.1234567890", "NaN"}) {
    EXPECT_FALSE(valid_decimal(bad)) << bad;
  }
}

TEST_F(config_test, provider_settings_and_zones) {
  const auto path = write(
      "database-url = pg://x/y\n"
      "[provider.aws-eu]\n"
      "type = aws\n"
      "region = eu-west-1\n"
      "zones =   eu-west-1a\t eu-west-1b    eu-west-1c  \n"
      "rate-limit = 2.5\n"
      "max-in-flight = 7\n"
      "endpoint = http://127.0.0.1:4566\n"
      "subnet-id = subnet-123   # inline comment\n"
      "[provider.local]\n"
      "type = fake\n"
      "max-reserved-instances = 12\n"
      "max-reservation-duration = 36h\n");
  const auto r = load({"--config", path});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->providers.size(), 2u);
  const auto* aws = r->provider("aws-eu");
  ASSERT_NE(aws, nullptr);
  EXPECT_EQ(aws->type, "aws");
  EXPECT_EQ(aws->zones, (std::vector<std::string>{"eu-west-1a", "eu-west-1b", "eu-west-1c"}));
  EXPECT_DOUBLE_EQ(aws->rate_limit, 2.5);
  EXPECT_EQ(aws->max_in_flight, 7u);
  EXPECT_EQ(aws->endpoint, "http://127.0.0.1:4566");
  EXPECT_EQ(aws->settings, (std::map<std::string, std::string>{{"region", "eu-west-1"},
                                                               {"subnet-id", "subnet-123"}}));
  // The cost guards: safe defaults, which a section may change.
  EXPECT_EQ(aws->max_reserved_instances, 1000u);
  EXPECT_EQ(aws->max_reservation_duration, std::chrono::hours(24 * 7));
  const auto* local = r->provider("local");
  ASSERT_NE(local, nullptr);
  EXPECT_EQ(local->max_reserved_instances, 12u);
  EXPECT_EQ(local->max_reservation_duration, std::chrono::hours(36));
  EXPECT_TRUE(local->zones.empty());
  EXPECT_TRUE(local->settings.empty());
  // Sections keep the file's order.
  EXPECT_EQ(r->providers[0].name, "aws-eu");
  EXPECT_EQ(r->providers[1].name, "local");
}

// systemd's LoadCredential= puts key files in $CREDENTIALS_DIRECTORY; the file names them so.
TEST_F(config_test, credentials_directory_in_file_values) {
  env["CREDENTIALS_DIRECTORY"] = "/run/credentials/cloudbrain.service";
  const auto path = write(
      "database-url = pg://x/y\n"
      "[provider.gce-staging]\n"
      "type = gce\n"
      "credentials = ${CREDENTIALS_DIRECTORY}/cloud_gce-staging.json\n"
      "ca-file = ${CREDENTIALS_DIRECTORY}/ca.pem  # both\n"
      "note = ${CREDENTIALS_DIRECTORY}:${CREDENTIALS_DIRECTORY}\n"
      "other = $CREDENTIALS_DIRECTORY/${HOME}\n");
  const auto r = load({"--config", path});
  ASSERT_TRUE(r) << r.error().message();
  const auto& settings = r->provider("gce-staging")->settings;
  EXPECT_EQ(settings.at("credentials"),
            "/run/credentials/cloudbrain.service/cloud_gce-staging.json");
  EXPECT_EQ(settings.at("ca-file"), "/run/credentials/cloudbrain.service/ca.pem");
  EXPECT_EQ(settings.at("note"),
            "/run/credentials/cloudbrain.service:/run/credentials/cloudbrain.service");
  // Only the braced name is replaced; nothing else in a value is an environment variable.
  EXPECT_EQ(settings.at("other"), "$CREDENTIALS_DIRECTORY/${HOME}");
}

// "@/path": the value is in that file (a secret the configuration file must not hold).
TEST_F(config_test, a_value_may_name_a_file_with_at) {
  const std::string dir = dir_.string();
  env["CREDENTIALS_DIRECTORY"] = dir;
  std::ofstream(dir + "/phrase") << "correct horse\n";
  const auto path = write(
      "[provider.oci]\n"
      "type = oci\n"
      "pass-phrase = @${CREDENTIALS_DIRECTORY}/phrase\n"
      "note = not@/a/file\n");
  const auto r = load({"--config", path, "--database-url", "pg://x/y"});
  ASSERT_TRUE(r) << r.error().message();
  const auto& settings = r->provider("oci")->settings;
  EXPECT_EQ(settings.at("pass-phrase"), "correct horse");
  EXPECT_EQ(settings.at("note"), "not@/a/file");

  expect_error_naming("[provider.oci]\ntype = oci\npass-phrase = @/nonexistent/phrase\n",
                      "'provider.oci.pass-phrase' names the file '/nonexistent/phrase', which "
                      "cannot be read");
  std::ofstream(dir + "/big") << std::string(70 * 1024, 'x');
  expect_error_naming("[provider.oci]\ntype = oci\npass-phrase = @" + dir + "/big\n",
                      "larger than 64 KiB");
}

TEST_F(config_test, credentials_directory_unset_is_named) {
  expect_error_naming(
      "[provider.gce]\ntype = gce\ncredentials = ${CREDENTIALS_DIRECTORY}/gce.json\n",
      "'provider.gce.credentials' names ${CREDENTIALS_DIRECTORY}, which is not set");
  env["CREDENTIALS_DIRECTORY"] = "";
  expect_error_naming("base-url = ${CREDENTIALS_DIRECTORY}\n", "'base-url' names");
}

TEST_F(config_test, unknown_flag_is_named) {
  const auto r = load({"--database-url", "pg://x/y", "--bogus-flag", "1"});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::bad_config));
  EXPECT_NE(r.error().detail.find("bogus-flag"), std::string::npos) << r.error().detail;
}

TEST_F(config_test, bad_environment_value_is_named) {
  env["DATABASE_URL"] = "pg://x/y";
  env["CLOUDBRAIN_THREADS"] = "abc";
  const auto r = load({});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("threads"), std::string::npos) << r.error().detail;
  // A flag hides the bad environment value.
  EXPECT_TRUE(load({"--threads", "3"}));
}

TEST_F(config_test, bad_file_value_hidden_by_flag) {
  const auto path = write("database-url = pg://x/y\nthreads = lots\n");
  EXPECT_FALSE(load({"--config", path}));
  const auto r = load({"--config", path, "--threads", "3"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->threads, 3u);
}

// The session of LISTEN and the advisory locks defaults to the request path's database; a node
// name is one word of printable characters.
TEST_F(config_test, direct_url_and_node_name) {
  const auto plain = load({"--database-url", "pg://pooled/db"});
  ASSERT_TRUE(plain) << plain.error().message();
  EXPECT_EQ(plain->direct_url(), "pg://pooled/db");
  EXPECT_EQ(plain->node_name, "");
  const auto direct =
      load({"--database-url", "pg://pooled/db", "--database-direct-url", "pg://direct/db"});
  ASSERT_TRUE(direct) << direct.error().message();
  EXPECT_EQ(direct->direct_url(), "pg://direct/db");
  for (const char* bad : {"two words", "", "tab\there"}) {
    const auto r = load({"--database-url", "pg://x/y", std::string("--node-name=") + bad});
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().detail.find("node-name"), std::string::npos) << r.error().detail;
  }
}

TEST_F(config_test, help_mentions_every_key) {
  const std::string help = config_help();
  for (const char* key :
       {"--config", "--listen", "--admin-listen", "--database-url", "--reconcile-interval",
        "--orphan-grace", "--log-level", "--token-cache-ttl", "CLOUDBRAIN_", "DATABASE_URL"}) {
    EXPECT_NE(help.find(key), std::string::npos) << key;
  }
}

// A reload tells which top-level keys it could not apply: every key of the manual, bar
// --config, must be compared, and alone make a difference.
TEST_F(config_test, changed_settings_names_each_key_that_differs) {
  const std::map<std::string, std::string> other_value{
      {"listen", "127.0.0.1:9999"},
      {"admin-listen", "127.0.0.1:9998"},
      {"database-url", "postgresql://elsewhere/db"},
      {"database-direct-url", "postgresql://direct/db"},
      {"node-name", "node-9"},
      {"deployment", "blue"},
      {"base-url", "https://cb.example.com"},
      {"reconcile-interval", "7s"},
      {"orphan-grace", "7m"},
      {"janitor-interval", "7s"},
      {"reservation-unused-grace", "7m"},
      {"job-lease", "7s"},
      {"job-max-attempts", "7"},
      {"shutdown-timeout", "7s"},
      {"token-cache-ttl", "7s"},
      {"token-rate-limit", "7"},
      {"token-rate-burst", "7"},
      {"driver-heartbeat", "7s"},
      {"threads", "7"},
      {"blocking-threads", "7"},
      {"db-pool-size", "7"},
      {"db-prepared-statements", "false"},
      {"max-connections", "7"},
      {"max-connections-per-address", "7"},
      {"request-head-timeout", "7s"},
      {"log-level", "debug"},
      {"currency", "EUR"},
      {"spend-ceiling-per-hour", "7"},
      {"tls-cert", "/etc/cloudbrain/b.crt"},
      {"tls-key", "/etc/cloudbrain/b.key"}};
  std::vector<std::string> in_help;
  const std::string help = config_help();
  for (std::size_t at = help.find("\n    --"); at != std::string::npos;
       at = help.find("\n    --", at + 1)) {
    const auto start = at + 7;
    const auto key = help.substr(start, help.find_first_of(" \n", start) - start);
    if (key != "config") in_help.push_back(key);
  }
  std::vector<std::string> in_table;
  for (const auto& [k, v] : other_value) in_table.push_back(k);
  std::sort(in_help.begin(), in_help.end());
  EXPECT_EQ(in_help, in_table);

  // A spend ceiling needs a currency and a TLS key its certificate: every configuration names
  // them, and the key under test takes its other value.
  const std::map<std::string, std::string> base_values{{"database-url", "postgresql://here/db"},
                                                       {"currency", "USD"},
                                                       {"token-rate-limit", "5"},
                                                       {"tls-cert", "/etc/cloudbrain/a.crt"},
                                                       {"tls-key", "/etc/cloudbrain/a.key"}};
  const auto args_of = [](const std::map<std::string, std::string>& values) {
    std::vector<std::string> args;
    for (const auto& [k, v] : values) {
      args.push_back("--" + k);
      args.push_back(v);
    }
    return args;
  };
  const auto base = load(args_of(base_values));
  ASSERT_TRUE(base) << base.error().detail;
  EXPECT_TRUE(changed_settings(*base, *base).empty());
  for (const auto& [key, value] : other_value) {
    auto values = base_values;
    values[key] = value;
    const auto next = load(args_of(values));
    ASSERT_TRUE(next) << key << ": " << next.error().detail;
    EXPECT_EQ(changed_settings(*base, *next), std::vector<std::string>{key}) << key;
  }
}

TEST(provider_section, equal_only_when_every_key_is) {
  provider_section a;
  a.name = "gce";
  a.type = "fake";
  a.zones = {"zone-a"};
  a.settings["boot-delay"] = "50ms";
  provider_section b = a;
  EXPECT_EQ(a, b);
  b.settings["boot-delay"] = "60ms";
  EXPECT_NE(a, b);
  b = a;
  b.max_reservation_duration = std::chrono::hours(1);
  EXPECT_NE(a, b);
  b = a;
  b.zones.push_back("zone-b");
  EXPECT_NE(a, b);
  b = a;
  b.reserved_price_per_hour = "0.5";
  EXPECT_NE(a, b);
}

TEST(split_host_port, ipv4_and_hostnames) {
  EXPECT_EQ(split_host_port("127.0.0.1:8080").value(),
            (std::pair<std::string, unsigned short>{"127.0.0.1", 8080}));
  EXPECT_EQ(split_host_port("0.0.0.0:0").value(),
            (std::pair<std::string, unsigned short>{"0.0.0.0", 0}));
  EXPECT_EQ(split_host_port("localhost:80").value(),
            (std::pair<std::string, unsigned short>{"localhost", 80}));
  EXPECT_EQ(split_host_port("db.example.com:65535").value(),
            (std::pair<std::string, unsigned short>{"db.example.com", 65535}));
}

TEST(split_host_port, bracketed_ipv6) {
  EXPECT_EQ(split_host_port("[::1]:8080").value(),
            (std::pair<std::string, unsigned short>{"::1", 8080}));
  EXPECT_EQ(split_host_port("[2001:db8::1]:443").value(),
            (std::pair<std::string, unsigned short>{"2001:db8::1", 443}));
  EXPECT_EQ(split_host_port("[::]:1").value(), (std::pair<std::string, unsigned short>{"::", 1}));
}

TEST(split_host_port, rejects_malformed) {
  for (const char* bad :
       {"",          "localhost", ":8080",           "host:",      "host:65536",
        "host:-1",   "host:80x",  "host: 80",        "host:+80",   "[::1]",
        "[::1]8080", "[::1",      "[::1]:",          "[::1]:http", "host:99999999999",
        "::1",       "::1:8080",  "2001:db8::1:443", "[]:80",      "a:b:80"}) {
    const auto r = split_host_port(bad);
    EXPECT_FALSE(r) << "'" << bad << "'";
    if (!r) {
      EXPECT_TRUE(r.error().is(errc::invalid_argument));
      EXPECT_NE(r.error().detail.find(bad), std::string::npos) << r.error().detail;
    }
  }
}

TEST(process_environment, reads_the_real_environment) {
  ::setenv("CLOUDBRAIN_UNIT_TEST_PROBE", "42", 1);
  const auto env = process_environment();
  EXPECT_EQ(env("CLOUDBRAIN_UNIT_TEST_PROBE"), std::optional<std::string>("42"));
  ::unsetenv("CLOUDBRAIN_UNIT_TEST_PROBE");
  EXPECT_EQ(env("CLOUDBRAIN_UNIT_TEST_PROBE"), std::nullopt);
}

}  // namespace
}  // namespace cloudbrain
