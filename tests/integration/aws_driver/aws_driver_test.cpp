// The AWS driver against the EC2 emulator, started as its own process for each test: launches
// made once per ClientToken, reads by id and by name, termination followed to the end, paging
// and partial listings, images by name, eventual consistency, errors sorted into kinds,
// retries, throttling, lost answers, every credential source (file, environment, IMDSv2 with
// renewal before expiry, one fetch for all), refused and expired credentials, clock skew,
// capacity reservations, TLS and pacing.
#include "providers/aws/aws_driver.hpp"

#include "core/blocking_pool.hpp"
#include "net/http_client.hpp"
#include "tests/support/co_run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

extern char** environ;

namespace cloudbrain::providers::aws {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::co_run;

constexpr const char* deployment = "drvtest";
constexpr const char* key_id = "AKIAEMULATOREXAMPLE1";
constexpr const char* secret = "emulator/secret/KEY/EXAMPLEKEYEXAMPLEKEY";
constexpr const char* ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6V tester@ci";

std::string source_dir() {
  const char* d = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return d ? d : CLOUDBRAIN_SOURCE_DIR_DEFAULT;
}

std::string str(const json::value& v, std::string_view key) {
  const auto* f = v.as_object().if_contains(key);
  return f && f->is_string() ? std::string(f->as_string()) : std::string();
}

class aws_driver_vs_emulator : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("aws-driver-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
    fs::create_directories(dir_);
    start_emulator({});
  }

  void start_emulator(std::vector<std::string> extra, const std::string& ca_file = {}) {
    stop_emulator();
    const std::string port_file = (dir_ / "port").string();
    fs::remove(port_file);
    const std::string emulator = source_dir() + "/tests/emulators/aws/ec2_emulator.py";
    const std::string parent = std::to_string(::getpid());
    const std::string config =
        R"({"pending_delay":0.1,"stopping_delay":0.1,"reservation_create_delay":0.1})";
    const std::string log = (dir_ / "emulator.log").string();
    std::vector<std::string> args{"python3", emulator,       "--port", "0",        "--port-file",
                                  port_file, "--parent-pid", parent,   "--config", config};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ASSERT_EQ(posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    port_ = 0;
    const auto until = steady_clock::now() + 30s;
    while (steady_clock::now() < until) {
      std::ifstream in(port_file);
      if (in >> port_ && port_ > 0) break;
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_GT(port_, 0) << "the emulator did not start; see " << log;
    const bool tls = std::find(extra.begin(), extra.end(), "--tls-cert") != extra.end();
    base_ = (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
    net::client_config cc;
    cc.ca_file = ca_file;
    control_client_ = std::make_unique<net::http_client>(ioc_.get_executor(), cc);
  }

  void stop_emulator() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  void TearDown() override {
    driver_.reset();
    stop_emulator();
    std::ifstream log(dir_ / "emulator.log");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    EXPECT_EQ(text.find("Traceback"), std::string::npos) << "the emulator failed:\n" << text;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string write_file(const std::string& name, const std::string& text) {
    const auto path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // A credentials file with the emulator's key under profile [ci] (and a wrong one as default).
  std::string credentials_file(const std::string& the_secret = secret) {
    return write_file("credentials-" + std::to_string(std::hash<std::string>{}(the_secret)),
                      std::string("[default]\naws_access_key_id = AKIAWRONG\n"
                                  "aws_secret_access_key = wrong\n\n[ci]\n"
                                  "aws_access_key_id = ") +
                          key_id + "\naws_secret_access_key = " + the_secret + "\n");
  }

  // A driver for the emulator; credentials from a file (profile ci) unless `extra` or
  // `environment` say otherwise.
  aws_driver& make_driver(std::map<std::string, std::string> extra = {},
                          std::optional<credentials> environment = std::nullopt) {
    provider_section p;
    p.name = "aws-test";
    p.type = "aws";
    p.zones = {"eu-west-1a", "eu-west-1b", "eu-west-1c"};
    p.endpoint = base_;
    p.settings = {{"region", "eu-west-1"},
                  {"standard-instance-type", "m5.large"},
                  {"premium-instance-type", "m5.2xlarge"},
                  {"subnets", "eu-west-1b=subnet-0bbb"},
                  {"security-groups", "sg-0123 sg-0456"},
                  {"ssh-user", "ubuntu"},
                  {"metadata-endpoint", base_}};
    if (!environment) {
      p.settings["credentials"] = credentials_file();
      p.settings["profile"] = "ci";
    }
    for (auto& [k, v] : extra) {
      if (v.empty()) {
        p.settings.erase(k);
      } else {
        p.settings[k] = v;
      }
    }
    auto s = aws_settings::from_section(p);
    EXPECT_TRUE(s) << s.error().message();
    driver_ = std::make_unique<aws_driver>(std::move(*s),
                                           driver_context{ioc_.get_executor(), deployment, &pool_},
                                           std::move(environment));
    driver_->set_pacer([this]() -> asio::awaitable<void> {
      ++paced_;
      co_return;
    });
    return *driver_;
  }

  json::value control(net::http::verb method, const std::string& path, json::object body = {}) {
    net::client_request req;
    req.method = method;
    req.url = base_ + "/_emulator/" + path;
    if (method != net::http::verb::get) {
      req.body = json::serialize(body);
      req.headers = {{"Content-Type", "application/json"}};
    }
    auto res = co_run(ioc_, control_client_->send(std::move(req), after(30s)));
    EXPECT_TRUE(res) << res.error().message();
    if (!res) return nullptr;
    EXPECT_EQ(res->status, 200u) << path << ": " << res->body;
    return json::parse(res->body);
  }
  json::value post(const std::string& path, json::object body) {
    return control(net::http::verb::post, path, std::move(body));
  }
  json::value get(const std::string& path) { return control(net::http::verb::get, path); }
  json::value counters() { return get("counters"); }
  std::int64_t counter(std::string_view name) { return counters().at(name).as_int64(); }

  json::array requests() { return get("requests?path_prefix=/").at("requests").as_array(); }
  std::size_t count_route(std::string_view route) {
    std::size_t n = 0;
    const auto log = requests();
    for (const auto& e : log) {
      if (str(e, "route") == route) ++n;
    }
    return n;
  }

  json::object emu_instance(const std::string& upstream_id) {
    const auto state = get("instances");
    for (const auto& i : state.at("instances").as_array()) {
      if (str(i, "id") == upstream_id) return i.as_object();
    }
    ADD_FAILURE() << "no instance " << upstream_id << " at the emulator";
    return {};
  }

  instance_spec spec(const std::string& id, const std::string& zone, const std::string& key) {
    instance_spec s;
    s.instance_id = id;
    s.name = vm_name_for(id);
    s.image = "ami-0c1bea58988a98915";
    s.instance_type = "standard";
    s.public_ssh_key = ssh_key;
    s.zone = zone;
    s.tags = {{"team", "infra"}};
    s.deployment = deployment;
    s.idempotency_key = key;
    return s;
  }

  reservation_spec rspec(const std::string& id, const std::string& zone, int count) {
    reservation_spec s;
    s.reservation_id = id;
    s.name = reservation_name_for(id);
    s.instance_type = "standard";
    s.count = count;
    s.zone = zone;
    s.ends_at = system_clock::now() + 2h;
    s.tags = {{"run", "nightly"}};
    s.deployment = deployment;
    s.idempotency_key = "reserve/" + id + "/" + zone;
    return s;
  }

  // Polls get() until the VM runs.
  vm wait_running(aws_driver& d, const vm& v) {
    const vm_ref ref{v.name, v.zone, v.upstream_id};
    for (int i = 0; i < 100; ++i) {
      auto got = co_run(ioc_, d.get(ref, after(20s)));
      EXPECT_TRUE(got) << got.error().message();
      if (!got) break;
      if (got->status == vm_status::running && got->ip_address) return *got;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "never running";
    return v;
  }

  asio::io_context ioc_;
  blocking_pool pool_{2};
  std::unique_ptr<net::http_client> control_client_;
  std::unique_ptr<aws_driver> driver_;
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string base_;
  int paced_ = 0;
};

TEST_F(aws_driver_vs_emulator, launches_once_per_client_token_with_everything_it_should_carry) {
  auto& d = make_driver();
  const std::string id = "0b6f3e52-6d1c-4bb4-9a53-3f1f4b8e2a01";
  auto made = co_run(ioc_, d.create(spec(id, "eu-west-1a", "job-1/eu-west-1a"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->name, vm_name_for(id));
  EXPECT_EQ(made->zone, "eu-west-1a");
  EXPECT_EQ(made->status, vm_status::provisioning);
  EXPECT_EQ(made->labels_.at("cloudbrain-instance"), id);
  EXPECT_EQ(made->labels_.at("cloudbrain-deployment"), deployment);
  EXPECT_EQ(made->labels_.at("team"), "infra");
  const auto running = wait_running(d, *made);
  EXPECT_TRUE(running.ip_address->starts_with("198.1")) << *running.ip_address;

  // A retry after a lost answer or a crash: the same launch to EC2, no second instance.
  auto again = co_run(ioc_, d.create(spec(id, "eu-west-1a", "job-1/eu-west-1a"), after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->upstream_id, made->upstream_id);
  const auto c = counters();
  EXPECT_EQ(c.at("instances_created").at(vm_name_for(id)).as_int64(), 1);
  EXPECT_EQ(c.at("dedup_hits").as_int64(), 1);

  const auto at_emu = emu_instance(made->upstream_id);
  EXPECT_EQ(str(at_emu, "instanceType"), "m5.large");
  EXPECT_EQ(str(at_emu, "zone"), "eu-west-1a");
  EXPECT_EQ(str(at_emu, "shutdownBehavior"), "terminate");
  EXPECT_EQ(at_emu.at("securityGroups"), (json::array{"sg-0123", "sg-0456"}));
  EXPECT_EQ(str(at_emu.at("tags"), "Name"), vm_name_for(id));
  EXPECT_EQ(str(at_emu.at("volume_tags"), "cloudbrain-instance"), id);
  const auto user_data = str(at_emu, "userData");
  EXPECT_NE(user_data.find("name: ubuntu"), std::string::npos) << user_data;
  EXPECT_NE(user_data.find(ssh_key), std::string::npos) << user_data;
  EXPECT_EQ(str(at_emu, "clientToken").size(), 64u);
  EXPECT_EQ(str(at_emu, "accessKey"), key_id);

  // The zone with a subnet: placed through it, groups on its network interface.
  const std::string id_b = "0b6f3e52-6d1c-4bb4-9a53-3f1f4b8e2a02";
  auto in_b = co_run(ioc_, d.create(spec(id_b, "eu-west-1b", "job-2/eu-west-1b"), after(30s)));
  ASSERT_TRUE(in_b) << in_b.error().message();
  EXPECT_EQ(in_b->zone, "eu-west-1b");
  EXPECT_EQ(str(emu_instance(in_b->upstream_id), "subnetId"), "subnet-0bbb");
  EXPECT_EQ(paced_,
            static_cast<int>(count_route("RunInstances") + count_route("DescribeInstances")))
      << "every request is paced";
}

TEST_F(aws_driver_vs_emulator, reads_by_id_and_by_name_and_terminates_to_the_end) {
  auto& d = make_driver();
  const std::string id = "5d0c8d1e-1111-4c2e-8f00-aaaaaaaaaaaa";
  auto made = co_run(ioc_, d.create(spec(id, "eu-west-1c", "k"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  // By name only, as the reconciler and an adopting retry ask.
  auto by_name = co_run(ioc_, d.get(vm_ref{made->name, "eu-west-1c", ""}, after(10s)));
  ASSERT_TRUE(by_name) << by_name.error().message();
  EXPECT_EQ(by_name->upstream_id, made->upstream_id);
  auto elsewhere = co_run(ioc_, d.get(vm_ref{made->name, "eu-west-1a", ""}, after(10s)));
  ASSERT_FALSE(elsewhere);
  EXPECT_TRUE(elsewhere.error().is(errc::cloud_not_found));

  const vm_ref ref{made->name, "eu-west-1c", made->upstream_id};
  auto gone = co_run(ioc_, d.destroy(ref, "del-1", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  EXPECT_EQ(str(emu_instance(made->upstream_id), "state"), "terminated");
  // By id, a terminated instance is still described: terminated. By name, nothing lives.
  auto read = co_run(ioc_, d.get(ref, after(10s)));
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->status, vm_status::terminated);
  auto named = co_run(ioc_, d.get(vm_ref{made->name, "eu-west-1c", ""}, after(10s)));
  ASSERT_FALSE(named);
  EXPECT_TRUE(named.error().is(errc::cloud_not_found)) << named.error().message();
  auto twice = co_run(ioc_, d.destroy(ref, "del-2", after(30s)));
  EXPECT_TRUE(twice) << twice.error().message();
  auto by_name_gone = co_run(ioc_, d.destroy(vm_ref{made->name, "eu-west-1c", ""}, "", after(5s)));
  EXPECT_TRUE(by_name_gone) << by_name_gone.error().message();
  // An id EC2 never knew (and this driver did not make): gone, at once.
  const auto started = steady_clock::now();
  auto unknown = co_run(ioc_, d.get(vm_ref{"x", "eu-west-1a", "i-0123456789abcdef0"}, after(10s)));
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(unknown.error().is(errc::cloud_not_found));
  EXPECT_LT(steady_clock::now() - started, 2s);
  auto unknown_gone =
      co_run(ioc_, d.destroy(vm_ref{"x", "eu-west-1a", "i-0123456789abcdef0"}, "", after(10s)));
  EXPECT_TRUE(unknown_gone) << unknown_gone.error().message();
}

TEST_F(aws_driver_vs_emulator, eventual_consistency_is_waited_out_never_taken_for_vanished) {
  post("config", {{"consistency_delay", 1.5}});
  auto& d = make_driver();
  const std::string id = "6e1d9e2f-2222-4d3f-9a11-bbbbbbbbbbbb";
  auto made = co_run(ioc_, d.create(spec(id, "eu-west-1a", "ec-1"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  const vm_ref ref{made->name, made->zone, made->upstream_id};
  auto read = co_run(ioc_, d.get(ref, after(30s)));
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->upstream_id, made->upstream_id);
  EXPECT_GE(counter("consistency_not_found"), 1);
  EXPECT_GE(d.details().at("consistency_waits").as_uint64(), 1u);
  // Not visible before the deadline: an error to retry, never "not found".
  const std::string id2 = "6e1d9e2f-2222-4d3f-9a11-cccccccccccc";
  auto made2 = co_run(ioc_, d.create(spec(id2, "eu-west-1a", "ec-2"), after(30s)));
  ASSERT_TRUE(made2);
  auto early =
      co_run(ioc_, d.get(vm_ref{made2->name, made2->zone, made2->upstream_id}, after(300ms)));
  ASSERT_FALSE(early);
  EXPECT_TRUE(early.error().is(errc::cloud_transient)) << early.error().message();
  EXPECT_NE(early.error().detail.find("eventually consistent"), std::string::npos);
  // Terminating one made moments ago waits until EC2 knows it, then terminates it.
  auto gone =
      co_run(ioc_, d.destroy(vm_ref{made2->name, made2->zone, made2->upstream_id}, "", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  EXPECT_EQ(str(emu_instance(made2->upstream_id), "state"), "terminated");
}

TEST_F(aws_driver_vs_emulator, lists_every_page_of_the_deployment_and_no_partial_listing) {
  post("config", {{"max_page_size", 7}});
  json::array planting;
  for (int i = 0; i < 30; ++i) {
    planting.push_back(json::object{{"zone", i % 2 ? "eu-west-1a" : "eu-west-1b"},
                                    {"tags", json::object{{"cloudbrain-deployment", deployment},
                                                          {"Name", "ours-" + std::to_string(i)}}}});
  }
  for (int i = 0; i < 5; ++i)
    planting.push_back(json::object{{"tags", json::object{{"cloudbrain-deployment", "other"}}}});
  for (int i = 0; i < 3; ++i) {
    planting.push_back(json::object{{"state", "terminated"},
                                    {"tags", json::object{{"cloudbrain-deployment", deployment}}}});
  }
  post("instances", {{"instances", planting}});
  auto& d = make_driver();
  auto listed = co_run(ioc_, d.list(deployment, after(60s)));
  ASSERT_TRUE(listed) << listed.error().message();
  std::set<std::string> names;
  for (const auto& v : *listed) names.insert(v.name);
  EXPECT_EQ(names.size(), 30u);
  EXPECT_TRUE(names.contains("ours-0"));
  EXPECT_GE(count_route("DescribeInstances"), 5u);
  // A page that fails part-way (after its retries): an error, never a shorter list.
  post("fail", {{"count", nullptr},
                {"status", 503},
                {"action", "DescribeInstances"},
                {"params", json::object{{"NextToken", ".+"}}}});
  auto partial = co_run(ioc_, d.list(deployment, after(60s)));
  ASSERT_FALSE(partial);
  EXPECT_TRUE(partial.error().is(errc::cloud_transient)) << partial.error().message();
}

TEST_F(aws_driver_vs_emulator, images_by_name_resolved_once_and_refused_clearly) {
  auto& d = make_driver({{"image-owners", "self amazon"}});
  auto s = spec("7f2e0f30-3333-4e40-8b22-dddddddddddd", "eu-west-1a", "img-1");
  s.image = "cloudbrain-ci-*";
  auto made = co_run(ioc_, d.create(s, after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  // The newest available one (2024-03 is still pending).
  EXPECT_EQ(str(emu_instance(made->upstream_id), "imageId"), "ami-0d2cfb69a99b9a026");
  auto s2 = spec("7f2e0f30-3333-4e40-8b22-eeeeeeeeeeee", "eu-west-1a", "img-2");
  s2.image = "cloudbrain-ci-*";
  ASSERT_TRUE(co_run(ioc_, d.create(s2, after(30s))));
  EXPECT_EQ(count_route("DescribeImages"), 1u) << "looked up once";
  auto s3 = spec("7f2e0f30-3333-4e40-8b22-ffffffffffff", "eu-west-1a", "img-3");
  s3.image = "al2023-ami-*";
  auto amazon = co_run(ioc_, d.create(s3, after(30s)));
  ASSERT_TRUE(amazon) << amazon.error().message();
  EXPECT_EQ(str(emu_instance(amazon->upstream_id), "imageId"), "ami-0f0c2b4c3d5e6f708");
  auto s4 = spec("7f2e0f30-3333-4e40-8b22-000000000000", "eu-west-1a", "img-4");
  s4.image = "no-such-image";
  auto missing = co_run(ioc_, d.create(s4, after(30s)));
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::cloud_permanent));
  EXPECT_EQ(missing.error().detail,
            "no available image named 'no-such-image' owned by self, amazon (DescribeImages)");
  auto s5 = spec("7f2e0f30-3333-4e40-8b22-000000000001", "eu-west-1a", "img-5");
  s5.image = "ami-0123456789abcdef0";
  auto unknown_ami = co_run(ioc_, d.create(s5, after(30s)));
  ASSERT_FALSE(unknown_ami);
  EXPECT_TRUE(unknown_ami.error().is(errc::cloud_permanent));
  EXPECT_NE(unknown_ami.error().detail.find("InvalidAMIID.NotFound"), std::string::npos);
}

TEST_F(aws_driver_vs_emulator, errors_are_sorted_into_the_kinds_the_scheduler_acts_on) {
  auto& d = make_driver();
  post("capacity", {{"zone", "eu-west-1a"}, {"remaining", 0}});
  auto full = co_run(
      ioc_,
      d.create(spec("8a3f1041-4444-4f51-9c33-000000000001", "eu-west-1a", "e-1"), after(30s)));
  ASSERT_FALSE(full);
  EXPECT_TRUE(full.error().is(errc::cloud_capacity)) << full.error().message();
  EXPECT_NE(full.error().detail.find("InsufficientInstanceCapacity, HTTP 500"), std::string::npos);
  EXPECT_EQ(count_route("RunInstances"), 1u) << "a capacity error is not retried here";

  auto s = spec("8a3f1041-4444-4f51-9c33-000000000002", "eu-west-1c", "e-2");
  s.instance_type = "premium";
  auto unsupported =
      co_run(ioc_, make_driver({{"premium-instance-type", "p4d.24xlarge"}}).create(s, after(30s)));
  ASSERT_FALSE(unsupported);
  EXPECT_TRUE(unsupported.error().is(errc::cloud_capacity)) << unsupported.error().message();
  EXPECT_NE(unsupported.error().detail.find("(Unsupported, HTTP 400"), std::string::npos);

  post("quota", {{"metric", "vcpus"}, {"limit", 4}});
  s = spec("8a3f1041-4444-4f51-9c33-000000000003", "eu-west-1b", "e-3");
  s.instance_type = "premium";
  auto quota = co_run(ioc_, make_driver().create(s, after(30s)));
  ASSERT_FALSE(quota);
  EXPECT_TRUE(quota.error().is(errc::cloud_quota)) << quota.error().message();
  post("quota", {{"metric", "vcpus"}, {"limit", nullptr}});

  auto& fresh = make_driver();
  post("throttle", {{"count", 1}, {"retry_after", 3}});
  auto throttled = co_run(ioc_, fresh.list(deployment, after(30s)));
  ASSERT_FALSE(throttled);
  EXPECT_TRUE(throttled.error().is(errc::cloud_rate_limited));
  EXPECT_EQ(throttled.error().retry_after, 3s);

  post("fail", {{"count", 2}, {"status", 500}});
  auto retried = co_run(ioc_, fresh.list(deployment, after(30s)));
  EXPECT_TRUE(retried) << retried.error().message();
  EXPECT_EQ(fresh.details().at("retried").as_uint64(), 2u);
  post("fail", {{"count", 3}, {"status", 503}});
  auto given_up = co_run(ioc_, fresh.list(deployment, after(30s)));
  ASSERT_FALSE(given_up);
  EXPECT_TRUE(given_up.error().is(errc::cloud_transient));
  EXPECT_NE(given_up.error().detail.find("(Unavailable, HTTP 503"), std::string::npos);
}

TEST_F(aws_driver_vs_emulator, lost_answers_and_reset_connections_never_launch_twice) {
  auto& d = make_driver();
  post("drop", {{"count", 1}, {"when", "after"}, {"action", "RunInstances"}});
  post("drop", {{"count", 1}, {"when", "before"}, {"reset", true}});
  const std::string id = "9b4a2152-5555-4a62-8d44-000000000001";
  auto made = co_run(ioc_, d.create(spec(id, "eu-west-1a", "lost-1"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  const auto c = counters();
  EXPECT_EQ(c.at("instances_created").at(vm_name_for(id)).as_int64(), 1);
  EXPECT_EQ(c.at("dedup_hits").as_int64(), 1);
  EXPECT_EQ(get("instances").at("instances").as_array().size(), 1u);
}

TEST_F(aws_driver_vs_emulator, credentials_from_the_environment_and_a_refused_secret) {
  credentials env;
  env.access_key_id = key_id;
  env.secret_access_key = secret;
  env.source = "environment";
  auto& d = make_driver({}, env);
  EXPECT_EQ(d.details().at("credentials").as_string(), "environment");
  ASSERT_TRUE(co_run(ioc_, d.list(deployment, after(30s))));

  // A wrong secret in the file: EC2's own words, once renewed (the file read again), never
  // the secret.
  const std::string wrong = "not/the/secret/0123456789abcdefghijklmn";
  auto& bad = make_driver({{"credentials", credentials_file(wrong)}});
  auto refused = co_run(ioc_, bad.list(deployment, after(30s)));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_auth));
  EXPECT_NE(refused.error().detail.find("(SignatureDoesNotMatch, HTTP 403"), std::string::npos)
      << refused.error().detail;
  EXPECT_EQ(refused.error().detail.find(wrong), std::string::npos);
  EXPECT_EQ(bad.details().at("credential_fetches").as_uint64(), 2u);
  EXPECT_EQ(bad.details().at("auth_retries").as_uint64(), 1u);

  auto& missing_profile = make_driver({{"profile", "nope"}});
  auto none = co_run(ioc_, missing_profile.list(deployment, after(30s)));
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().is(errc::cloud_auth));
  EXPECT_NE(none.error().detail.find("has no profile [nope]"), std::string::npos);
  auto& unreadable = make_driver({{"credentials", (dir_ / "missing").string()}});
  auto unread = co_run(ioc_, unreadable.list(deployment, after(30s)));
  ASSERT_FALSE(unread);
  EXPECT_TRUE(unread.error().is(errc::cloud_auth));
  EXPECT_NE(unread.error().detail.find("cannot read the credentials file"), std::string::npos);
}

TEST_F(aws_driver_vs_emulator, imdsv2_credentials_one_fetch_for_all_renewed_before_expiry) {
  post("config", {{"imds_credentials_lifetime", 8}});
  auto& d = make_driver({{"credentials", ""}, {"profile", ""}});
  EXPECT_EQ(d.details().at("credentials").as_string(), "IMDSv2");
  // Twenty calls at once: one IMDS round serves them all.
  auto ex = ioc_.get_executor();
  const std::string ours = deployment;  // outlives the calls, which refer to it
  std::vector<std::future<result<std::vector<vm>>>> calls;
  for (int i = 0; i < 20; ++i)
    calls.push_back(asio::co_spawn(ex, d.list(ours, after(30s)), asio::use_future));
  ioc_.restart();
  ioc_.run();
  for (auto& f : calls) {
    auto r = f.get();
    EXPECT_TRUE(r) << r.error().message();
  }
  EXPECT_EQ(counter("imds_credentials_issued"), 1);
  EXPECT_EQ(counter("imds_tokens_issued"), 1);
  EXPECT_EQ(d.details().at("credential_fetches").as_uint64(), 1u);
  // Through two lifetimes of 8 s: renewed before they end, never refused.
  const auto until = steady_clock::now() + 12s;
  while (steady_clock::now() < until) {
    auto r = co_run(ioc_, d.list(deployment, after(10s)));
    ASSERT_TRUE(r) << r.error().message();
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_GE(counter("imds_credentials_issued"), 2);
  EXPECT_EQ(counter("auth_failures"), 0);
  std::set<std::string> keys;
  const auto log = requests();
  for (const auto& e : log) {
    if (str(e, "route") == "DescribeInstances") keys.insert(str(e, "access_key"));
  }
  EXPECT_GE(keys.size(), 2u);
  for (const auto& k : keys) EXPECT_TRUE(k.starts_with("ASIA")) << k;
}

TEST_F(aws_driver_vs_emulator, expired_session_credentials_are_renewed_once_then_reported) {
  // IMDS credentials expired behind our back: RequestExpired, a new set, the call goes through.
  auto& d = make_driver({{"credentials", ""}, {"profile", ""}});
  ASSERT_TRUE(co_run(ioc_, d.list(deployment, after(30s))));
  post("credentials/expire", {{"source", "imds"}});
  auto again = co_run(ioc_, d.list(deployment, after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(d.details().at("auth_retries").as_uint64(), 1u);
  EXPECT_EQ(counter("imds_credentials_issued"), 2);

  // Session credentials from the environment cannot be renewed: reported as expired.
  post("credentials", {{"access_key_id", "ASIAENVSESSION000000"},
                       {"secret_access_key", "env-session-secret-0123456789"},
                       {"session_token", "FwoGZXIvYXdzEXAMPLEtoken"},
                       {"expires_in", 1}});
  credentials env;
  env.access_key_id = "ASIAENVSESSION000000";
  env.secret_access_key = "env-session-secret-0123456789";
  env.session_token = "FwoGZXIvYXdzEXAMPLEtoken";
  auto& e = make_driver({}, env);
  ASSERT_TRUE(co_run(ioc_, e.list(deployment, after(30s))));
  std::this_thread::sleep_for(1200ms);
  auto expired = co_run(ioc_, e.list(deployment, after(30s)));
  ASSERT_FALSE(expired);
  EXPECT_TRUE(expired.error().is(errc::cloud_auth));
  EXPECT_EQ(expired.error().detail.rfind("expired credentials (this host's clock agrees with "
                                         "EC2's): Request has expired. (RequestExpired, HTTP 400",
                                         0),
            0u)
      << expired.error().detail;
  EXPECT_EQ(expired.error().detail.find("FwoGZXIvYXdzEXAMPLEtoken"), std::string::npos);
}

TEST_F(aws_driver_vs_emulator, a_skewed_clock_is_reported_as_such) {
  post("config", {{"clock_offset", 900}});
  auto& d = make_driver();
  auto skewed = co_run(ioc_, d.list(deployment, after(30s)));
  ASSERT_FALSE(skewed);
  EXPECT_TRUE(skewed.error().is(errc::cloud_auth));
  const std::string prefix = "clock skew: this host's clock is ";
  const auto& detail = skewed.error().detail;
  ASSERT_EQ(detail.rfind(prefix, 0), 0u) << detail;
  const int seconds = std::stoi(detail.substr(prefix.size()));
  EXPECT_GE(seconds, 895) << detail;
  EXPECT_LE(seconds, 905) << detail;
  EXPECT_NE(detail.find(" s behind EC2's; Request has expired. (RequestExpired, HTTP 400"),
            std::string::npos)
      << detail;
  // Renewed once (the credentials might have been the cause), then reported.
  EXPECT_EQ(d.details().at("auth_retries").as_uint64(), 1u);
}

TEST_F(aws_driver_vs_emulator, capacity_reservations_made_found_consumed_and_cancelled) {
  auto& d = make_driver();
  const std::string rid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  auto held = co_run(ioc_, d.reserve(rspec(rid, "eu-west-1b", 2), after(30s)));
  ASSERT_TRUE(held) << held.error().message();
  EXPECT_EQ(held->name, reservation_name_for(rid));
  EXPECT_EQ(held->zone, "eu-west-1b");
  EXPECT_EQ(held->count, 2);
  EXPECT_EQ(held->machine_type, "m5.large");
  EXPECT_EQ(held->status, reservation_status::creating);
  EXPECT_EQ(held->labels_.at("cloudbrain-reservation"), rid);
  ASSERT_TRUE(held->ends_at);
  // The same call again: EC2's ClientToken answers with the first reservation.
  auto again = co_run(ioc_, d.reserve(rspec(rid, "eu-west-1b", 2), after(30s)));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->upstream_id, held->upstream_id);
  EXPECT_EQ(counters().at("reservations_created").at(reservation_name_for(rid)).as_int64(), 1);

  std::this_thread::sleep_for(300ms);
  auto by_id =
      co_run(ioc_, d.get_reservation({held->name, "eu-west-1b", held->upstream_id}, after(10s)));
  ASSERT_TRUE(by_id) << by_id.error().message();
  EXPECT_EQ(by_id->status, reservation_status::ready);
  auto by_name = co_run(ioc_, d.get_reservation({held->name, "eu-west-1b", ""}, after(10s)));
  ASSERT_TRUE(by_name) << by_name.error().message();
  EXPECT_EQ(by_name->upstream_id, held->upstream_id);

  // An instance launched into it takes one of its places.
  auto s = spec("aa5b3263-6666-4b73-8e55-000000000001", "eu-west-1b", "into-1");
  s.reservation_upstream = held->name;
  auto inside = co_run(ioc_, d.create(s, after(30s)));
  ASSERT_TRUE(inside) << inside.error().message();
  EXPECT_EQ(str(emu_instance(inside->upstream_id), "capacityReservationId"), held->upstream_id);
  auto used =
      co_run(ioc_, d.get_reservation({held->name, "eu-west-1b", held->upstream_id}, after(10s)));
  ASSERT_TRUE(used);
  EXPECT_EQ(used->in_use, 1);

  // The janitor's view: ours, across zones, cancelled ones left out.
  post("reservations",
       {{"zone", "eu-west-1c"}, {"tags", json::object{{"cloudbrain-deployment", "other"}}}});
  post("reservations", {{"zone", "eu-west-1a"},
                        {"tags", json::object{{"cloudbrain-deployment", deployment},
                                              {"cloudbrain-reservation", "orphan"}}}});
  auto listed = co_run(ioc_, d.list_reservations(deployment, after(30s)));
  ASSERT_TRUE(listed) << listed.error().message();
  EXPECT_EQ(listed->size(), 2u);

  auto released = co_run(ioc_, d.release({held->name, "eu-west-1b", ""}, "rel-1", after(30s)));
  ASSERT_TRUE(released) << released.error().message();
  const auto reservations = get("reservations");
  for (const auto& r : reservations.at("reservations").as_array()) {
    if (str(r, "id") == held->upstream_id) EXPECT_EQ(str(r, "state"), "cancelled");
  }
  auto after_cancel =
      co_run(ioc_, d.get_reservation({held->name, "eu-west-1b", held->upstream_id}, after(10s)));
  ASSERT_FALSE(after_cancel);
  EXPECT_TRUE(after_cancel.error().is(errc::cloud_not_found));
  EXPECT_TRUE(
      co_run(ioc_, d.release({held->name, "eu-west-1b", held->upstream_id}, "rel-2", after(30s))));
  EXPECT_TRUE(co_run(ioc_, d.release({held->name, "eu-west-1b", ""}, "rel-3", after(30s))));
  auto fewer = co_run(ioc_, d.list_reservations(deployment, after(30s)));
  ASSERT_TRUE(fewer);
  EXPECT_EQ(fewer->size(), 1u);

  post("capacity", {{"zone", "eu-west-1c"}, {"remaining", 1}});
  auto no_room = co_run(ioc_, d.reserve(rspec(rid, "eu-west-1c", 2), after(30s)));
  ASSERT_FALSE(no_room);
  EXPECT_TRUE(no_room.error().is(errc::cloud_capacity)) << no_room.error().message();
  EXPECT_EQ(count_route("CancelCapacityReservation"), 1u);
}

TEST_F(aws_driver_vs_emulator, tls_is_verified_against_the_ca_file) {
  const auto key = (dir_ / "key.pem").string();
  const auto cert = (dir_ / "cert.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  start_emulator({"--tls-cert", cert, "--tls-key", key}, cert);
  auto& trusting = make_driver({{"ca-file", cert}});
  auto ok = co_run(ioc_, trusting.list(deployment, after(30s)));
  EXPECT_TRUE(ok) << ok.error().message();
  auto& strict = make_driver();
  auto refused = co_run(ioc_, strict.list(deployment, after(30s)));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().detail.find("certificate"), std::string::npos)
      << refused.error().detail;
}

}  // namespace
}  // namespace cloudbrain::providers::aws
