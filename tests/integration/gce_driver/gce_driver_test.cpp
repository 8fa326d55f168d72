// The GCE driver against the GCE emulator, started as its own process for each test: paging,
// partial listings, operations, requestId, tokens, retries, Retry-After, deadlines and pacing.
#include "providers/gce/gce_driver.hpp"
#include "core/blocking_pool.hpp"
#include "net/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "tests/support/co_run.hpp"

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

namespace cloudbrain::providers::gce {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* project = "cb-driver-test";
constexpr const char* deployment = "drvtest";

using testing::co_run;

std::string source_dir() {
  const char* d = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return d ? d : CLOUDBRAIN_SOURCE_DIR_DEFAULT;
}

class gce_driver_vs_emulator : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gce-driver-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
    fs::create_directories(dir_);
    start_emulator({});
  }

  // Starts the emulator (again), with `extra` arguments; HTTPS when they name a certificate.
  void start_emulator(std::vector<std::string> extra, const std::string& ca_file = {}) {
    stop_emulator();
    const std::string port_file = (dir_ / "port").string();
    fs::remove(port_file);
    const std::string emulator = source_dir() + "/tests/emulators/gce/gce_emulator.py";
    const std::string parent = std::to_string(::getpid());
    const std::string config =
        R"({"op_pending_delay":0.02,"provisioning_delay":0.05,"staging_delay":0.05,)"
        R"("stopping_delay":0.05,"wait_timeout":0.5})";
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
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A driver for the emulator's project, tokens from its metadata server unless `extra` says.
  gce_driver& make_driver(std::map<std::string, std::string> extra = {},
                          std::vector<std::string> zones = {"us-central1-a", "us-central1-b"}) {
    provider_section p;
    p.name = "gce";
    p.type = "gce";
    p.zones = std::move(zones);
    p.endpoint = base_;
    p.settings = {{"project", project},
                  {"image-project", "debian-cloud"},
                  {"standard-machine-type", "e2-small"},
                  {"metadata-host", "127.0.0.1:" + std::to_string(port_)}};
    for (auto& [k, v] : extra) p.settings[k] = v;
    auto s = gce_settings::from_section(p);
    EXPECT_TRUE(s) << s.error().message();
    driver_ = std::make_unique<gce_driver>(std::move(*s),
                                           driver_context{ioc_.get_executor(), deployment, &pool_});
    return *driver_;
  }

  // The emulator's control API; fails the test on anything but 200.
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

  json::array requests(const std::string& prefix = "/compute/") {
    return get("requests?path_prefix=" + prefix).at("requests").as_array();
  }

  // Queues a VM to plant at the emulator (no external address: there are only 254).
  void plant(const std::string& zone, const std::string& name, json::object labels) {
    planting_.push_back(json::object{{"project", project},
                                     {"zone", zone},
                                     {"name", name},
                                     {"labels", std::move(labels)},
                                     {"status", "RUNNING"},
                                     {"external", false}});
  }
  void plant_all() {
    post("instances", {{"instances", std::move(planting_)}});
    planting_ = {};
  }

  instance_spec spec(const std::string& id, const std::string& zone, const std::string& key) {
    instance_spec s;
    s.instance_id = id;
    s.name = vm_name_for(id);
    s.image = "family/debian-12";
    s.instance_type = "standard";
    s.zone = zone;
    s.deployment = deployment;
    s.idempotency_key = key;
    return s;
  }

  asio::io_context ioc_;
  blocking_pool pool_{2};
  std::unique_ptr<net::http_client> control_client_;
  std::unique_ptr<gce_driver> driver_;
  json::array planting_;
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string base_;
};

std::size_t count_route(const json::array& log, std::string_view route) {
  std::size_t n = 0;
  for (const auto& e : log) {
    const auto* r = e.as_object().if_contains("route");
    if (r && r->is_string() && r->as_string() == route) ++n;
  }
  return n;
}

TEST_F(gce_driver_vs_emulator, create_follows_the_operation_and_reads_the_vm_back) {
  auto& d = make_driver();
  const std::string id = "0b6f3e52-6d1c-4bb4-9a53-3f1f4b8e2a01";
  auto made = co_run(ioc_, d.create(spec(id, "us-central1-a", "key-1"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->name, vm_name_for(id));
  EXPECT_EQ(made->zone, "us-central1-a");
  EXPECT_EQ(made->status, vm_status::running);
  ASSERT_TRUE(made->ip_address);
  EXPECT_TRUE(made->ip_address->starts_with("203.0.113.")) << *made->ip_address;
  EXPECT_FALSE(made->upstream_id.empty());
  EXPECT_EQ(made->labels_.at("cloudbrain-instance"), id);
  EXPECT_EQ(made->labels_.at("cloudbrain-deployment"), deployment);

  // The same call again (a retry after a lost answer): Google's requestId makes it a no-op.
  auto again = co_run(ioc_, d.create(spec(id, "us-central1-a", "key-1"), after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->upstream_id, made->upstream_id);
  const auto counters = get("counters");
  EXPECT_EQ(counters.at("instances_created").at(vm_name_for(id)).as_int64(), 1);
  EXPECT_EQ(counters.at("dedup_hits").as_int64(), 1);

  // Another key for the same name: the VM is there already, which the caller adopts.
  auto other = co_run(ioc_, d.create(spec(id, "us-central1-a", "key-2"), after(30s)));
  ASSERT_FALSE(other);
  EXPECT_TRUE(other.error().is(errc::cloud_already_exists)) << other.error().message();
}

TEST_F(gce_driver_vs_emulator, destroy_follows_the_operation_and_a_missing_vm_is_success) {
  auto& d = make_driver();
  const std::string id = "5d0c8d1e-1111-4c2e-8f00-aaaaaaaaaaaa";
  auto made = co_run(ioc_, d.create(spec(id, "us-central1-b", "k"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  const vm_ref ref{made->name, "us-central1-b", made->upstream_id};
  auto gone = co_run(ioc_, d.destroy(ref, "del-1", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  // DONE means gone: the next read says so at once.
  auto read = co_run(ioc_, d.get(ref, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  auto twice = co_run(ioc_, d.destroy(ref, "del-2", after(30s)));
  EXPECT_TRUE(twice) << twice.error().message();
  EXPECT_GE(count_route(requests(), "zoneOperations.wait"), 1u);
}

TEST_F(gce_driver_vs_emulator, lists_every_labelled_vm_across_zones_and_pages) {
  auto& d = make_driver();
  std::set<std::string> ours;
  for (int i = 0; i < 520; ++i) {
    const std::string name = "ours-a-" + std::to_string(i);
    plant("us-central1-a", name, {{"cloudbrain-deployment", deployment}});
    ours.insert(name);
  }
  for (int i = 0; i < 30; ++i) {
    const std::string name = "ours-b-" + std::to_string(i);
    plant("us-central1-b", name, {{"cloudbrain-deployment", deployment}, {"team", "x"}});
    ours.insert(name);
  }
  for (int i = 0; i < 15; ++i)
    plant("us-central1-a", "other-" + std::to_string(i), {{"cloudbrain-deployment", "other"}});
  for (int i = 0; i < 5; ++i) plant("us-central1-b", "bare-" + std::to_string(i), {});
  plant("us-central1-c", "ours-elsewhere", {{"cloudbrain-deployment", deployment}});
  plant_all();

  auto listed = co_run(ioc_, d.list(deployment, after(60s)));
  ASSERT_TRUE(listed) << listed.error().message();
  std::set<std::string> names;
  for (const auto& v : *listed) names.insert(v.name);
  EXPECT_EQ(listed->size(), ours.size());  // no VM twice
  EXPECT_EQ(names, ours);                  // and only the configured zones
  // 520 in zone a: two pages there, one in zone b.
  EXPECT_EQ(count_route(requests(), "instances.list"), 3u);
}

TEST_F(gce_driver_vs_emulator, a_listing_that_fails_part_way_is_an_error_not_a_shorter_list) {
  auto& d = make_driver();
  for (int i = 0; i < 510; ++i)
    plant("us-central1-a", "vm-" + std::to_string(i), {{"cloudbrain-deployment", deployment}});
  plant_all();
  // After the first page, every list call fails: the driver retries, then gives up whole.
  int calls = 0;
  d.set_pacer([this, &calls]() -> asio::awaitable<void> {
    if (++calls == 2) {
      net::client_request req;
      req.method = net::http::verb::post;
      req.url = base_ + "/_emulator/fail";
      req.body = R"({"count": null, "status": 503, "method": "GET"})";
      auto sending = control_client_->send(std::move(req), after(10s));
      auto res = co_await std::move(sending);
      EXPECT_TRUE(res && res->status == 200);
    }
  });
  auto listed = co_run(ioc_, d.list(deployment, after(60s)));
  ASSERT_FALSE(listed) << "got " << listed->size() << " VMs";
  EXPECT_TRUE(listed.error().is(errc::cloud_transient)) << listed.error().message();
  EXPECT_EQ(d.details().at("retried").as_uint64(), 2u);
}

reservation_spec reservation(const std::string& id, const std::string& zone, int count,
                             const std::string& key) {
  reservation_spec r;
  r.reservation_id = id;
  r.name = reservation_name_for(id);
  r.instance_type = "standard";
  r.count = count;
  r.zone = zone;
  r.ends_at = system_clock::now() + std::chrono::hours(2);
  r.tags = {{"run", "nightly"}};
  r.deployment = deployment;
  r.idempotency_key = key;
  return r;
}

TEST_F(gce_driver_vs_emulator, reserve_follows_the_operation_and_is_idempotent) {
  auto& d = make_driver();
  const std::string id = "1e0c9a4b-2f3d-4c5e-8a6b-7c8d9e0f1a2b";
  auto held = co_run(ioc_, d.reserve(reservation(id, "us-central1-b", 3, "res-1"), after(30s)));
  ASSERT_TRUE(held) << held.error().message();
  EXPECT_EQ(held->name, reservation_name_for(id));
  EXPECT_EQ(held->zone, "us-central1-b");
  EXPECT_EQ(held->machine_type, "e2-small");
  EXPECT_EQ(held->count, 3);
  EXPECT_EQ(held->in_use, 0);
  EXPECT_EQ(held->status, reservation_status::ready);
  EXPECT_FALSE(held->upstream_id.empty());
  EXPECT_EQ(held->labels_.at(label_deployment), deployment);
  EXPECT_EQ(held->labels_.at(label_reservation), id);
  EXPECT_EQ(held->labels_.at("run"), "nightly");
  ASSERT_TRUE(held->ends_at);
  EXPECT_EQ(d.machine_type_for("standard"), "e2-small");

  // Retried with the same key: Google's requestId makes it a no-op.
  auto again = co_run(ioc_, d.reserve(reservation(id, "us-central1-b", 3, "res-1"), after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->upstream_id, held->upstream_id);
  EXPECT_EQ(get("counters").at("reservations_created").at(held->name).as_int64(), 1);
  // Another key: it is there already, which the caller adopts with get_reservation.
  auto other = co_run(ioc_, d.reserve(reservation(id, "us-central1-b", 3, "res-2"), after(30s)));
  ASSERT_FALSE(other);
  EXPECT_TRUE(other.error().is(errc::cloud_already_exists)) << other.error().message();
  auto read = co_run(ioc_, d.get_reservation({held->name, "us-central1-b", ""}, after(10s)));
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->upstream_id, held->upstream_id);

  const auto reservations = get("reservations").at("reservations").as_array();
  ASSERT_EQ(reservations.size(), 1u);
  EXPECT_TRUE(reservations[0].at("specificReservationRequired").as_bool());
}

TEST_F(gce_driver_vs_emulator, a_zone_without_room_is_a_capacity_error) {
  auto& d = make_driver();
  post("capacity", {{"zones", json::array{"us-central1-a"}}, {"remaining", 1}});
  auto held = co_run(
      ioc_, d.reserve(reservation("2a0c9a4b-2f3d-4c5e-8a6b-7c8d9e0f1a2b", "us-central1-a", 2, "k"),
                      after(30s)));
  ASSERT_FALSE(held);
  EXPECT_TRUE(held.error().is(errc::cloud_capacity)) << held.error().message();
  EXPECT_NE(held.error().detail.find("ZONE_RESOURCE_POOL_EXHAUSTED"), std::string::npos)
      << held.error().detail;
  EXPECT_TRUE(get("reservations").at("reservations").as_array().empty());
}

TEST_F(gce_driver_vs_emulator, release_follows_the_operation_and_a_missing_one_is_success) {
  auto& d = make_driver();
  auto held = co_run(
      ioc_, d.reserve(reservation("3b0c9a4b-2f3d-4c5e-8a6b-7c8d9e0f1a2b", "us-central1-a", 1, "k"),
                      after(30s)));
  ASSERT_TRUE(held) << held.error().message();
  const reservation_ref ref{held->name, held->zone, held->upstream_id};
  auto gone = co_run(ioc_, d.release(ref, "rel-1", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  auto read = co_run(ioc_, d.get_reservation(ref, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  auto twice = co_run(ioc_, d.release(ref, "rel-2", after(30s)));
  EXPECT_TRUE(twice) << twice.error().message();
  EXPECT_TRUE(get("reservations").at("reservations").as_array().empty());
}

TEST_F(gce_driver_vs_emulator, lists_this_deployments_reservations_across_zones_and_pages) {
  auto& d = make_driver();
  // Planted straight through the compute API: ours (520 in zone a, over two pages), another
  // deployment's, someone's by hand, and ours in a zone the provider does not use.
  post("tokens", {{"token", "planter"}, {"email", "planter@example.com"}});
  std::vector<std::pair<std::string, std::string>> planted;  // zone, name
  std::vector<std::string> descriptions;
  auto plant_reservation = [&](const std::string& zone, const std::string& name,
                               const std::string& desc) {
    planted.emplace_back(zone, name);
    descriptions.push_back(desc);
  };
  auto marked = [](const std::string& dep, int i) {
    return "cloudbrain reservation: cloudbrain-deployment=" + dep +
           " cloudbrain-reservation=00000000-0000-4000-8000-" + std::to_string(100000000000 + i);
  };
  std::set<std::string> ours;
  for (int i = 0; i < 505; ++i) {
    plant_reservation("us-central1-a", "ours-a-" + std::to_string(i), marked(deployment, i));
    ours.insert("ours-a-" + std::to_string(i));
  }
  for (int i = 0; i < 3; ++i) {
    plant_reservation("us-central1-b", "ours-b-" + std::to_string(i), marked(deployment, 1000 + i));
    ours.insert("ours-b-" + std::to_string(i));
  }
  plant_reservation("us-central1-a", "theirs", marked("other", 1));
  plant_reservation("us-central1-b", "by-hand", "capacity for the nightly run");
  plant_reservation("us-central1-c", "ours-elsewhere", marked(deployment, 2000));
  // 16 inserts at a time: the emulator answers each in a few milliseconds.
  for (std::size_t first = 0; first < planted.size(); first += 16) {
    std::vector<std::future<result<net::client_response>>> sent;
    for (std::size_t i = first; i < std::min(planted.size(), first + 16); ++i) {
      net::client_request req;
      req.method = net::http::verb::post;
      req.url = base_ + "/compute/v1/projects/" + project + "/zones/" + planted[i].first +
                "/reservations";
      req.headers = {{"Authorization", "Bearer planter"}, {"Content-Type", "application/json"}};
      req.body = json::serialize(
          json::object{{"name", planted[i].second},
                       {"description", descriptions[i]},
                       {"specificReservation",
                        {{"count", "1"}, {"instanceProperties", {{"machineType", "e2-small"}}}}}});
      sent.push_back(asio::co_spawn(ioc_, control_client_->send(std::move(req), after(20s)),
                                    asio::use_future));
    }
    ioc_.restart();
    ioc_.run();
    for (auto& f : sent) {
      auto res = f.get();
      ASSERT_TRUE(res && res->status == 200) << (res ? res->body : res.error().message());
    }
  }
  const auto before = count_route(requests(), "reservations.list");

  auto listed = co_run(ioc_, d.list_reservations(deployment, after(60s)));
  ASSERT_TRUE(listed) << listed.error().message();
  std::set<std::string> names;
  for (const auto& r : *listed) {
    names.insert(r.name);
    EXPECT_EQ(r.labels_.at(label_deployment), deployment);
    EXPECT_FALSE(r.zone.empty());
  }
  EXPECT_EQ(listed->size(), ours.size());
  EXPECT_EQ(names, ours);
  EXPECT_EQ(count_route(requests(), "reservations.list") - before, 3u);  // 2 pages + 1 page

  // A listing that fails part-way is an error, never a shorter list.
  post("fail", {{"count", nullptr}, {"status", 503}, {"method", "GET"}});
  auto failed = co_run(ioc_, d.list_reservations(deployment, after(60s)));
  ASSERT_FALSE(failed) << "got " << failed->size();
  EXPECT_TRUE(failed.error().is(errc::cloud_transient)) << failed.error().message();
}

TEST_F(gce_driver_vs_emulator, one_token_fetch_serves_all_concurrent_callers) {
  auto& d = make_driver();
  const vm_ref ref{"nope", "us-central1-a", ""};
  auto burst = [&](int n) {
    std::vector<std::future<result<vm>>> fs;
    for (int i = 0; i < n; ++i)
      fs.push_back(asio::co_spawn(ioc_, d.get(ref, after(30s)), asio::use_future));
    ioc_.restart();
    ioc_.run();
    for (auto& f : fs) {
      auto r = f.get();
      ASSERT_FALSE(r);
      EXPECT_TRUE(r.error().is(errc::cloud_not_found)) << r.error().message();
    }
  };
  burst(40);
  EXPECT_EQ(requests("/computeMetadata/").size(), 1u);
  // The token runs out early at the cloud's end: the 401s bring one new token for everyone.
  const auto email = get("config").at("metadata_email").as_string();
  EXPECT_GE(post("tokens/expire", {{"email", email}}).at("expired").as_int64(), 1);
  burst(20);
  EXPECT_EQ(requests("/computeMetadata/").size(), 2u);
  EXPECT_GE(d.details().at("auth_retries").as_uint64(), 1u);
  EXPECT_EQ(d.details().at("token_fetches").as_uint64(), 2u);
}

TEST_F(gce_driver_vs_emulator, a_service_account_key_signs_a_jwt_the_emulator_accepts) {
  const auto key =
      post("service-accounts",
           {{"email", "drv@cb-driver-test.iam.gserviceaccount.com"}, {"project_id", project}});
  const auto path = (dir_ / "key.json").string();
  std::ofstream(path) << json::serialize(key);
  auto& d = make_driver({{"credentials", path}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(30s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  const auto tokens = requests("/token");
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].at("status").as_int64(), 200);
  EXPECT_TRUE(requests("/computeMetadata/").empty());
}

TEST_F(gce_driver_vs_emulator, a_missing_key_file_is_a_clear_error) {
  auto& d = make_driver({{"credentials", (dir_ / "absent.json").string()}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::bad_config)) << read.error().message();
  EXPECT_NE(read.error().detail.find("absent.json"), std::string::npos);
}

TEST_F(gce_driver_vs_emulator, transient_failures_are_retried_within_the_call) {
  auto& d = make_driver();
  post("fail", {{"count", 2}, {"status", 503}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(30s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  EXPECT_EQ(d.details().at("retried").as_uint64(), 2u);
}

TEST_F(gce_driver_vs_emulator, rate_limit_answers_are_not_retried_and_carry_retry_after) {
  auto& d = make_driver();
  post("throttle", {{"count", 1}, {"status", 429}, {"retry_after", 7}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(30s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_rate_limited)) << read.error().message();
  EXPECT_EQ(read.error().retry_after, 7s);
  EXPECT_EQ(requests().size(), 1u);

  post("throttle", {{"count", 1}});  // 403 rateLimitExceeded, no hint
  read = co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(30s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_rate_limited)) << read.error().message();
  EXPECT_EQ(read.error().retry_after, 0ms);
}

TEST_F(gce_driver_vs_emulator, a_stalled_call_ends_at_its_deadline) {
  auto& d = make_driver();
  // Fetch the token first, so that only the compute call stalls.
  ASSERT_FALSE(co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(10s))));
  post("stall", {{"count", 1}, {"seconds", 5}});
  const auto started = steady_clock::now();
  auto read = co_run(ioc_, d.get(vm_ref{"nope", "us-central1-a", ""}, after(1s)));
  const auto took = steady_clock::now() - started;
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::timeout)) << read.error().message();
  EXPECT_LT(took, 2500ms);
  EXPECT_GE(took, 900ms);
}

TEST_F(gce_driver_vs_emulator, every_request_to_the_cloud_is_paced) {
  auto& d = make_driver();
  int paced = 0;
  d.set_pacer([&paced]() -> asio::awaitable<void> {
    ++paced;
    co_return;
  });
  auto made = co_run(
      ioc_,
      d.create(spec("7c1a0000-0000-4000-8000-000000000007", "us-central1-a", "k"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  auto gone =
      co_run(ioc_, d.destroy(vm_ref{made->name, made->zone, made->upstream_id}, "d", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  EXPECT_EQ(static_cast<std::size_t>(paced), requests().size());
  EXPECT_GE(paced, 4);  // insert, wait..., get, delete, wait...
}

TEST_F(gce_driver_vs_emulator, tls_is_verified_against_the_configured_ca) {
  const auto cert = (dir_ / "cert.pem").string();
  const auto key = (dir_ / "key.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
      " -addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  start_emulator({"--tls-cert", cert, "--tls-key", key}, cert);
  const auto sa = post("service-accounts", {{"email", "tls@cb-driver-test.iam.gserviceaccount.com"},
                                            {"project_id", project}});
  const auto key_file = (dir_ / "sa.json").string();
  std::ofstream(key_file) << json::serialize(sa);
  ASSERT_TRUE(sa.at("token_uri").as_string().starts_with("https://"));

  // Trusting the emulator's certificate: the whole flow works over HTTPS.
  auto& trusting = make_driver({{"credentials", key_file}, {"ca-file", cert}});
  auto made = co_run(
      ioc_, trusting.create(spec("7c1a0000-0000-4000-8000-0000000000f1", "us-central1-a", "tls"),
                            after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->status, vm_status::running);

  // Without it (the system store only), nothing is sent: the certificate does not verify.
  const auto before = requests().size();
  auto& strict = make_driver({{"credentials", key_file}});
  auto read = co_run(ioc_, strict.get(vm_ref{made->name, made->zone, ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_permanent)) << read.error().message();
  EXPECT_EQ(requests().size(), before);
  EXPECT_EQ(requests("/token").size(), 1u);  // only the trusting driver's
}

}  // namespace
}  // namespace cloudbrain::providers::gce
