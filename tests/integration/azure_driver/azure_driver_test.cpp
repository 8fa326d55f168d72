// The azure driver against the ARM emulator, started as its own process for each test:
// long-running operations (Azure-AsyncOperation, Location, Retry-After, failed polls), failed
// allocations cleaned up, tokens renewed, throttling handed up, lists paged by nextLink, and
// capacity reservations that VMs join and leave.
#include "providers/azure/azure_driver.hpp"
#include "core/blocking_pool.hpp"
#include "net/http_client.hpp"

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
#include <thread>

extern char** environ;

namespace cloudbrain::providers::azure {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::co_run;

constexpr const char* subscription = "6b7e1c3a-0f43-4b9e-9d61-3c8d2a0f5e11";
constexpr const char* tenant = "9f1d6a52-7e2c-4c1b-8a3e-5d4f6b7c8d90";
constexpr const char* client_id = "0c8a7f55-21d4-4b2e-9a36-6f0e2d1c3b4a";
constexpr const char* secret = "driver-test~secret.0123456789";
constexpr const char* deployment = "drvtest";

std::string source_dir() {
  const char* d = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return d ? d : CLOUDBRAIN_SOURCE_DIR_DEFAULT;
}

class azure_driver_vs_emulator : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("azure-driver-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
    fs::create_directories(dir_);
    const std::string port_file = (dir_ / "port").string();
    const std::string emulator = source_dir() + "/tests/emulators/azure/arm_emulator.py";
    const std::string parent = std::to_string(::getpid());
    const std::string config =
        R"({"vm_create_delay":0.05,"vm_delete_delay":0.05,"vm_update_delay":0.02,)"
        R"("reservation_create_delay":0.05,"reservation_delete_delay":0.05,"page_size":2})";
    const std::string log = (dir_ / "emulator.log").string();
    std::vector<std::string> args{"python3", emulator,       "--port", "0",        "--port-file",
                                  port_file, "--parent-pid", parent,   "--config", config};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ASSERT_EQ(posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    const auto until = steady_clock::now() + 30s;
    while (steady_clock::now() < until) {
      std::ifstream in(port_file);
      if (in >> port_ && port_ > 0) break;
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_GT(port_, 0) << "the emulator did not start; see " << log;
    base_ = "http://127.0.0.1:" + std::to_string(port_);
    control_client_ = std::make_unique<net::http_client>(ioc_.get_executor(), net::client_config{});
    post("clients", {{"tenant", tenant}, {"client_id", client_id}, {"client_secret", secret}});
  }

  void TearDown() override {
    driver_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  azure_driver& make_driver(std::map<std::string, std::string> extra = {}) {
    provider_section p;
    p.name = "azure";
    p.type = "azure";
    p.zones = {"1", "2", "3"};
    p.endpoint = base_;
    p.settings = {{"subscription", subscription},
                  {"resource-group", "drv"},
                  {"location", "eastus"},
                  {"subnet", std::string("/subscriptions/") + subscription +
                                 "/resourceGroups/net/providers/Microsoft.Network/"
                                 "virtualNetworks/v/subnets/default"},
                  {"tenant", tenant},
                  {"client-id", client_id},
                  {"client-secret", secret},
                  {"login-endpoint", base_},
                  {"imds-endpoint", base_}};
    for (auto& [k, v] : extra) p.settings[k] = v;
    auto s = azure_settings::from_section(p);
    EXPECT_TRUE(s) << s.error().message();
    driver_ = std::make_unique<azure_driver>(
        std::move(*s), driver_context{ioc_.get_executor(), deployment, &pool_});
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
  std::int64_t counter(const std::string& name) { return get("counters").at(name).as_int64(); }
  std::int64_t counter(const std::string& name, const std::string& key) {
    const auto all = get("counters");
    const auto& m = all.at(name).as_object();
    const auto* v = m.if_contains(key);
    return v ? v->as_int64() : 0;
  }
  json::array log(const std::string& route) {
    json::array out;
    const auto all = get("requests");
    for (const auto& e : all.at("requests").as_array()) {
      const auto* r = e.as_object().if_contains("route");
      if (r && r->is_string() && r->as_string() == route) out.push_back(e);
    }
    return out;
  }
  json::value state() { return get("state"); }

  instance_spec spec(const std::string& id, const std::string& zone) {
    instance_spec s;
    s.instance_id = id;
    s.name = vm_name_for(id);
    s.image = "Canonical:ubuntu-24_04-lts:server:latest";
    s.instance_type = "standard";
    s.public_ssh_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6VyJ5xwMn0R4ZUO6i3u0VJEb2+Q t@ci";
    s.zone = zone;
    s.deployment = deployment;
    s.idempotency_key = "key-" + id;
    return s;
  }

  boost::asio::io_context ioc_;
  blocking_pool pool_{2};
  std::unique_ptr<net::http_client> control_client_;
  std::unique_ptr<azure_driver> driver_;
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string base_;
};

TEST_F(azure_driver_vs_emulator, create_follows_the_operation_and_reads_the_vm_and_its_nic) {
  auto& d = make_driver();
  const std::string id = "0b6f3e52-6d1c-4bb4-9a53-3f1f4b8e2a01";
  const auto s = spec(id, "1");
  auto made = co_run(ioc_, d.create(s, after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->name, vm_name_for(id));
  EXPECT_EQ(made->zone, "1");
  EXPECT_EQ(made->status, vm_status::running);
  ASSERT_TRUE(made->ip_address);
  EXPECT_TRUE(made->ip_address->starts_with("203.0.113.")) << *made->ip_address;
  EXPECT_EQ(made->upstream_id.size(), 36u);
  EXPECT_EQ(made->labels_.at("cloudbrain-instance"), id);
  EXPECT_EQ(made->labels_.at("cloudbrain-deployment"), deployment);
  EXPECT_GE(log("operations.get").size(), 1u);
  EXPECT_EQ(log("networkInterfaces.get").size(), 1u);

  // The same PUT again (a retry after a lost answer): the same VM.
  auto again = co_run(ioc_, d.create(s, after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->upstream_id, made->upstream_id);
  EXPECT_EQ(counter("vms_created", vm_name_for(id)), 1);
  EXPECT_EQ(counter("idempotent_replays"), 1);

  // In another zone it is there already: the caller adopts it.
  auto elsewhere = co_run(ioc_, d.create(spec(id, "2"), after(30s)));
  ASSERT_FALSE(elsewhere);
  EXPECT_TRUE(elsewhere.error().is(errc::cloud_already_exists)) << elsewhere.error().message();

  const vm_ref ref{vm_name_for(id), "1", made->upstream_id};
  auto gone = co_run(ioc_, d.destroy(ref, "k", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  const auto st = state();
  EXPECT_TRUE(st.at("instances").as_array().empty());
  EXPECT_TRUE(st.at("nics").as_array().empty());
  EXPECT_TRUE(st.at("public_ips").as_array().empty());
  EXPECT_TRUE(st.at("disks").as_array().empty());
  auto missing = co_run(ioc_, d.get(ref, after(30s)));
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::cloud_not_found));
  auto twice = co_run(ioc_, d.destroy(ref, "k", after(30s)));
  EXPECT_TRUE(twice) << "a VM that is not there is deleted already";
}

TEST_F(azure_driver_vs_emulator, location_only_operations_and_retry_after_are_followed) {
  post("config", {{"lro_headers", "location"}, {"lro_retry_after", 1}});
  auto& d = make_driver();
  const std::string id = "1c7a4f63-7e2d-4cc5-8b64-4a2a5c9f3b02";
  const auto started = steady_clock::now();
  auto made = co_run(ioc_, d.create(spec(id, "2"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_GE(steady_clock::now() - started, 1s) << "Retry-After: 1 was not waited for";
  EXPECT_EQ(made->status, vm_status::running);
  const auto polls = log("operations.get");
  ASSERT_GE(polls.size(), 1u);
  EXPECT_LE(polls.size(), 3u) << "polled faster than Retry-After allows";
  for (const auto& p : polls)
    EXPECT_NE(p.at("path").as_string().find("/operationResults/"), std::string::npos);
  const vm_ref ref{vm_name_for(id), "2", ""};
  EXPECT_TRUE(co_run(ioc_, d.destroy(ref, "k", after(30s))));
  EXPECT_TRUE(state().at("instances").as_array().empty());
}

TEST_F(azure_driver_vs_emulator, a_poll_that_fails_is_asked_again_not_taken_for_the_outcome) {
  auto& d = make_driver();
  // Every status read fails a few times over: 5xx, a reset, a throttle.
  post("fail", {{"count", 2}, {"status", 503}, {"path_regex", "/operations/"}});
  post("drop", {{"count", 1}, {"reset", true}, {"path_regex", "/operations/"}});
  post("throttle", {{"count", 1}, {"retry_after", 1}, {"path_regex", "/operations/"}});
  const std::string id = "2d8b5a74-8f3e-4dd6-9c75-5b3b6d0a4c03";
  auto made = co_run(ioc_, d.create(spec(id, "1"), after(60s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->status, vm_status::running);
  EXPECT_EQ(counter("faults_injected"), 4);
  EXPECT_EQ(counter("put_calls", vm_name_for(id)), 1) << "a failed poll made the PUT again";
  EXPECT_EQ(counter("vms_created", vm_name_for(id)), 1);
}

TEST_F(azure_driver_vs_emulator, a_failed_allocation_is_capacity_and_leaves_nothing) {
  auto& d = make_driver();
  post("capacity", {{"zone", "1"}, {"remaining", 0}});
  const std::string id = "3e9c6b85-903f-4ee7-8d86-6c4c7e1b5d04";
  auto refused = co_run(ioc_, d.create(spec(id, "1"), after(30s)));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_capacity)) << refused.error().message();
  EXPECT_NE(refused.error().detail.find("ZonalAllocationFailed"), std::string::npos);
  auto st = state();
  EXPECT_TRUE(st.at("instances").as_array().empty()) << "the Failed VM is still there";
  EXPECT_TRUE(st.at("nics").as_array().empty());
  EXPECT_TRUE(st.at("public_ips").as_array().empty());
  EXPECT_TRUE(st.at("disks").as_array().empty());
  EXPECT_EQ(d.details().at("failed_vms_deleted").as_uint64(), 1u);
  auto next = co_run(ioc_, d.create(spec(id, "2"), after(30s)));
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->zone, "2");

  // A SKU the zone does not offer is refused at once, and nothing is made.
  post("skus", {{"zone", "3"}, {"size", "Standard_D2s_v5"}});
  auto sku = co_run(ioc_, d.create(spec("4fad7c96-a140-4ff8-9e97-7d5d8f2c6e05", "3"), after(30s)));
  ASSERT_FALSE(sku);
  EXPECT_TRUE(sku.error().is(errc::cloud_capacity));
  EXPECT_NE(sku.error().detail.find("SkuNotAvailable"), std::string::npos);
}

TEST_F(azure_driver_vs_emulator, a_vm_left_failed_in_another_zone_is_replaced) {
  auto& d = make_driver();
  post("capacity", {{"zone", "1"}, {"remaining", 0}});
  // The delete of the failed VM fails for good this time (say the process died): it stays.
  post("fail", {{"count", 50}, {"status", 500}, {"method", "DELETE"}});
  const std::string id = "50be8da7-b251-4009-8fa8-8e6e9a3d7f06";
  auto refused = co_run(ioc_, d.create(spec(id, "1"), after(20s)));
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_transient)) << refused.error().message();
  control(net::http::verb::delete_, "faults");
  const vm_ref ref{vm_name_for(id), "1", ""};
  auto failed = co_run(ioc_, d.get(ref, after(30s)));
  ASSERT_FALSE(failed);
  EXPECT_TRUE(failed.error().is(errc::cloud_not_found)) << "a Failed VM is no VM to adopt";
  EXPECT_NE(failed.error().detail.find("left Failed"), std::string::npos);
  // The next zone: ARM refuses the zone change; the Failed VM goes and the VM is made there.
  auto made = co_run(ioc_, d.create(spec(id, "2"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->zone, "2");
  EXPECT_EQ(counter("vms_deleted", vm_name_for(id)), 1);
  EXPECT_EQ(state().at("nics").as_array().size(), 1u);
}

TEST_F(azure_driver_vs_emulator, throttling_is_handed_up_and_an_expired_token_renewed_once) {
  auto& d = make_driver();
  const vm_ref ref{"cb-nothing", "1", ""};
  post("throttle", {{"count", 1}, {"retry_after", 7}});
  auto throttled = co_run(ioc_, d.get(ref, after(30s)));
  ASSERT_FALSE(throttled);
  EXPECT_TRUE(throttled.error().is(errc::cloud_rate_limited)) << throttled.error().message();
  EXPECT_EQ(throttled.error().retry_after, 7s);
  EXPECT_EQ(d.details().at("throttled").as_uint64(), 1u);
  EXPECT_EQ(d.details().at("ratelimit_remaining").as_int64(), 0);

  EXPECT_EQ(d.details().at("token_fetches").as_uint64(), 1u);
  post("tokens/expire", json::object{});
  auto after_expiry = co_run(ioc_, d.get(ref, after(30s)));
  ASSERT_FALSE(after_expiry);
  EXPECT_TRUE(after_expiry.error().is(errc::cloud_not_found)) << after_expiry.error().message();
  EXPECT_EQ(d.details().at("auth_retries").as_uint64(), 1u);
  EXPECT_EQ(d.details().at("token_fetches").as_uint64(), 2u);
  EXPECT_EQ(counter("tokens_issued"), 2);
}

TEST_F(azure_driver_vs_emulator, the_listing_follows_next_links_and_keeps_to_the_deployment) {
  auto& d = make_driver();
  json::array planted;
  for (int i = 0; i < 5; ++i) {
    planted.push_back(
        json::object{{"name", "ours-" + std::to_string(i)},
                     {"resource_group", "drv"},
                     {"subscription", subscription},
                     {"tags", json::object{{"cloudbrain-deployment", deployment},
                                           {"cloudbrain-instance", "i-" + std::to_string(i)}}}});
  }
  planted.push_back(json::object{{"name", "theirs"},
                                 {"resource_group", "drv"},
                                 {"subscription", subscription},
                                 {"tags", json::object{{"cloudbrain-deployment", "another"}}}});
  planted.push_back(json::object{
      {"name", "unmarked"}, {"resource_group", "drv"}, {"subscription", subscription}});
  planted.push_back(json::object{{"name", "other-group"},
                                 {"resource_group", "elsewhere"},
                                 {"subscription", subscription},
                                 {"tags", json::object{{"cloudbrain-deployment", deployment}}}});
  post("instances", {{"instances", std::move(planted)}});
  auto listed = co_run(ioc_, d.list(deployment, after(30s)));
  ASSERT_TRUE(listed) << listed.error().message();
  std::vector<std::string> names;
  for (const auto& v : *listed) names.push_back(v.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ours-0", "ours-1", "ours-2", "ours-3", "ours-4"}));
  EXPECT_EQ(log("virtualMachines.list").size(), 4u) << "7 VMs at 2 a page";
  for (const auto& v : *listed) EXPECT_NE(v.created_at, system_clock::time_point{});

  // A page that fails is no listing at all, never a shorter one.
  post("fail", {{"count", 10}, {"status", 503}, {"query_regex", "skiptoken"}});
  auto partial = co_run(ioc_, d.list(deployment, after(20s)));
  ASSERT_FALSE(partial);
  EXPECT_TRUE(partial.error().is(errc::cloud_transient)) << partial.error().message();
  EXPECT_GE(log("virtualMachines.list").size(), 4u + 1u) << "the first page was read";
}

TEST_F(azure_driver_vs_emulator, reservations_are_made_joined_left_and_released) {
  auto& d = make_driver();
  auto empty = co_run(ioc_, d.list_reservations(deployment, after(30s)));
  ASSERT_TRUE(empty) << "no group yet is no reservation, not an error";
  EXPECT_TRUE(empty->empty());

  reservation_spec r;
  r.reservation_id = "6cf09eb8-c362-4a1a-8a9f-9f7f0b4e8a07";
  r.name = reservation_name_for(r.reservation_id);
  r.instance_type = "standard";
  r.count = 2;
  r.zone = "3";
  r.tags = {{"run", "nightly"}};
  r.deployment = deployment;
  auto held = co_run(ioc_, d.reserve(r, after(30s)));
  ASSERT_TRUE(held) << held.error().message();
  EXPECT_EQ(held->status, reservation_status::ready);
  EXPECT_EQ(held->zone, "3");
  EXPECT_EQ(held->count, 2);
  EXPECT_EQ(held->machine_type, "Standard_D2s_v5");
  EXPECT_EQ(held->labels_.at("cloudbrain-reservation"), r.reservation_id);
  EXPECT_EQ(held->upstream_id.size(), 36u);
  const auto groups = state().at("groups").as_array();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].at("name").as_string(), "cloudbrain-azure");
  EXPECT_EQ(groups[0].at("zones"), (json::array{"1", "2", "3"}));

  auto s = spec("7d01afc9-d473-4b2b-9b08-a08f1c5f9b08", "3");
  s.reservation_upstream = r.name;
  auto vm = co_run(ioc_, d.create(s, after(30s)));
  ASSERT_TRUE(vm) << vm.error().message();
  const reservation_ref ref{r.name, "3", held->upstream_id};
  auto in_use = co_run(ioc_, d.get_reservation(ref, after(30s)));
  ASSERT_TRUE(in_use);
  EXPECT_EQ(in_use->in_use, 1);
  auto listed = co_run(ioc_, d.list_reservations(deployment, after(30s)));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, r.name);

  // Released while the VM is in it: the quantity goes to 0, the VM leaves, then the delete.
  auto released = co_run(ioc_, d.release(ref, "k", after(30s)));
  ASSERT_TRUE(released) << released.error().message();
  EXPECT_TRUE(state().at("reservations").as_array().empty());
  const auto instances = state().at("instances").as_array();
  ASSERT_EQ(instances.size(), 1u);
  EXPECT_EQ(instances[0].at("powerState").as_string(), "running") << "the VM keeps running";
  EXPECT_TRUE(instances[0].at("capacityReservationGroup").is_null());
  auto again = co_run(ioc_, d.release(ref, "k", after(30s)));
  EXPECT_TRUE(again) << "a reservation that is not there is released already";

  // A zone without room for it: capacity, and the Failed reservation is the caller's to release.
  post("capacity", {{"zone", "1"}, {"remaining", 1}});
  r.zone = "1";
  auto full = co_run(ioc_, d.reserve(r, after(30s)));
  ASSERT_FALSE(full);
  EXPECT_TRUE(full.error().is(errc::cloud_capacity)) << full.error().message();
  const reservation_ref failed{r.name, "1", ""};
  EXPECT_TRUE(co_run(ioc_, d.release(failed, "k", after(30s))));
  EXPECT_TRUE(state().at("reservations").as_array().empty());
}

}  // namespace
}  // namespace cloudbrain::providers::azure
