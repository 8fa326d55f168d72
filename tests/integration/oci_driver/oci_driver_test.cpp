// The OCI driver against the OCI emulator, started as its own process for each test: signed
// requests, work requests, opc-retry-token, paging, addresses, capacity reservations, errors,
// retries, deadlines, pacing, keys (fields and ~/.oci/config) and TLS.
#include "providers/oci/oci_driver.hpp"
#include "core/blocking_pool.hpp"
#include "net/http_client.hpp"

#include <boost/asio/io_context.hpp>
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

namespace cloudbrain::providers::oci {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::co_run;

constexpr const char* deployment = "drvtest";
constexpr const char* tenancy = "ocid1.tenancy.oc1..aaaaaaaadrivertesttenancy";
constexpr const char* user = "ocid1.user.oc1..aaaaaaaadrivertestuser";
constexpr const char* compartment = "ocid1.compartment.oc1..aaaaaaaadrivertestcompartment";
constexpr const char* subnet = "ocid1.subnet.oc1.iad.aaaaaaaadrivertestsubnet";
constexpr const char* image = "ocid1.image.oc1.iad.aaaaaaaadrivertestimage";
constexpr const char* ad1 = "Uocm:US-ASHBURN-AD-1";
constexpr const char* ad2 = "Uocm:US-ASHBURN-AD-2";

std::string source_dir() {
  const char* d = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return d ? d : CLOUDBRAIN_SOURCE_DIR_DEFAULT;
}

class oci_driver_vs_emulator : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("oci-driver-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
    fs::create_directories(dir_);
    start_emulator({});
    new_key();
  }

  void start_emulator(std::vector<std::string> extra, const std::string& ca_file = {}) {
    stop_emulator();
    const std::string port_file = (dir_ / "port").string();
    fs::remove(port_file);
    const std::string emulator = source_dir() + "/tests/emulators/oci/oci_emulator.py";
    const std::string parent = std::to_string(::getpid());
    const std::string config =
        R"({"provisioning_delay":0.05,"terminate_delay":0.05,"failure_delay":0.05,)"
        R"("reservation_create_delay":0.05,"reservation_delete_delay":0.05,)"
        R"("work_request_start_delay":0.01})";
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
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find("Traceback"), std::string::npos) << "the emulator failed:\n" << text;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A new API key pair made by the emulator, registered there, its private half in a file.
  void new_key(bool register_it = true) {
    const auto made = post("api-keys", {{"tenancy", tenancy}, {"user", user}});
    key_file_ = (dir_ / ("key-" + std::to_string(++keys_) + ".pem")).string();
    std::ofstream(key_file_) << made.at("private_key_pem").as_string().c_str();
    private_pem_ = made.at("private_key_pem").as_string().c_str();
    fingerprint_ = made.at("fingerprint").as_string().c_str();
    if (!register_it) post("keys", {{"keyId", made.at("keyId")}}, net::http::verb::delete_);
  }

  provider_section section(std::map<std::string, std::string> extra = {}) {
    provider_section p;
    p.name = "oci";
    p.type = "oci";
    p.zones = {ad1, ad2};
    p.endpoint = base_;
    p.settings = {{"region", "us-ashburn-1"},
                  {"compartment", compartment},
                  {"subnet", subnet},
                  {"tenancy", tenancy},
                  {"user", user},
                  {"fingerprint", fingerprint_},
                  {"key-file", key_file_}};
    for (auto& [k, v] : extra) {
      if (v.empty())
        p.settings.erase(k);
      else
        p.settings[k] = v;
    }
    return p;
  }

  oci_driver& make_driver(std::map<std::string, std::string> extra = {}) {
    auto s = oci_settings::from_section(section(std::move(extra)));
    EXPECT_TRUE(s) << s.error().message();
    driver_ = std::make_unique<oci_driver>(std::move(*s),
                                           driver_context{ioc_.get_executor(), deployment, &pool_});
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
  json::value post(const std::string& path, json::object body,
                   net::http::verb method = net::http::verb::post) {
    return control(method, path, std::move(body));
  }
  json::value get(const std::string& path) { return control(net::http::verb::get, path); }
  json::array requests() {
    return get("requests?path_prefix=/20160918/").at("requests").as_array();
  }
  json::object emulated(const std::string& id) {
    const auto all = get("instances");
    for (const auto& i : all.at("instances").as_array())
      if (i.at("id").as_string() == id) return i.as_object();
    return {};
  }

  instance_spec spec(const std::string& id, const std::string& zone, const std::string& key,
                     const std::string& type = "standard") {
    instance_spec s;
    s.instance_id = id;
    s.name = vm_name_for(id);
    s.image = image;
    s.instance_type = type;
    s.public_ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6VyJ5xwMn0R4 t@ci";
    s.zone = zone;
    s.tags = {{"team", "ci"}};
    s.deployment = deployment;
    s.idempotency_key = key;
    return s;
  }

  asio::io_context ioc_;
  blocking_pool pool_{2};
  std::unique_ptr<net::http_client> control_client_;
  std::unique_ptr<oci_driver> driver_;
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string base_;
  std::string key_file_;
  std::string private_pem_;
  std::string fingerprint_;
  int keys_ = 0;
};

std::size_t count_route(const json::array& log, std::string_view route) {
  std::size_t n = 0;
  for (const auto& e : log) {
    const auto* r = e.as_object().if_contains("route");
    if (r && r->is_string() && r->as_string() == route) ++n;
  }
  return n;
}

TEST_F(oci_driver_vs_emulator, create_follows_the_work_request_and_finds_the_address) {
  auto& d = make_driver();
  const std::string id = "0b6f3e52-6d1c-4bb4-9a53-3f1f4b8e2a01";
  auto made = co_run(ioc_, d.create(spec(id, ad1, "key-1"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->name, vm_name_for(id));
  EXPECT_EQ(made->zone, ad1);
  EXPECT_EQ(made->status, vm_status::running);
  ASSERT_TRUE(made->ip_address);
  EXPECT_TRUE(made->ip_address->starts_with("203.0.113.")) << *made->ip_address;
  EXPECT_TRUE(made->upstream_id.starts_with("ocid1.instance.oc1.iad.")) << made->upstream_id;
  EXPECT_EQ(made->labels_.at(label_instance), id);
  EXPECT_EQ(made->labels_.at(label_deployment), deployment);
  EXPECT_EQ(made->labels_.at("team"), "ci");

  // At the emulator: the Flex shape configuration, the key, the tags.
  const auto inst = emulated(made->upstream_id);
  EXPECT_EQ(inst.at("shape"), "VM.Standard.E4.Flex");
  EXPECT_EQ(inst.at("shapeConfig").at("ocpus").to_number<double>(), 1.0);
  EXPECT_EQ(inst.at("shapeConfig").at("memoryInGBs").to_number<double>(), 8.0);
  EXPECT_EQ(inst.at("metadata").at("ssh_authorized_keys"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6VyJ5xwMn0R4 t@ci");
  EXPECT_EQ(inst.at("imageId"), image);

  const auto log = requests();
  EXPECT_EQ(count_route(log, "LaunchInstance"), 1u);
  EXPECT_GE(count_route(log, "GetWorkRequest"), 1u);
  EXPECT_EQ(count_route(log, "ListVnicAttachments"), 1u);
  EXPECT_EQ(count_route(log, "GetVnic"), 1u);
  for (const auto& e : log) {
    // Every request signed with our key, and accepted.
    EXPECT_EQ(std::string(e.at("key_id").as_string()),
              std::string(tenancy) + "/" + user + "/" + fingerprint_);
    if (e.at("route") == "LaunchInstance") EXPECT_EQ(e.at("retry_token").as_string().size(), 64u);
  }
  EXPECT_EQ(get("counters").at("auth_failures").as_int64(), 0);

  // The same call again (a retry after a crash): the retry token makes it a replay.
  auto again = co_run(ioc_, d.create(spec(id, ad1, "key-1"), after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->upstream_id, made->upstream_id);
  const auto counters = get("counters");
  EXPECT_EQ(counters.at("instances_created").at(vm_name_for(id)).as_int64(), 1);
  EXPECT_EQ(counters.at("instances_launched_by_tag").at(id).as_int64(), 1);
  EXPECT_EQ(counters.at("dedup_hits").as_int64(), 1);
}

TEST_F(oci_driver_vs_emulator, a_lost_launch_answer_is_retried_under_the_same_token) {
  auto& d = make_driver();
  const std::string id = "0b6f3e52-6d1c-4bb4-9a53-3f1f4b8e2a02";
  post("drop", {{"count", 1}, {"when", "after"}, {"method", "POST"}});
  auto made = co_run(ioc_, d.create(spec(id, ad2, "lost"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  const auto counters = get("counters");
  EXPECT_EQ(counters.at("insert_calls").at(vm_name_for(id)).as_int64(), 2);
  EXPECT_EQ(counters.at("instances_created").at(vm_name_for(id)).as_int64(), 1);
  EXPECT_EQ(counters.at("dedup_hits").as_int64(), 1);
  EXPECT_EQ(d.details().at("retried").as_uint64(), 1u);
}

TEST_F(oci_driver_vs_emulator, get_by_name_list_and_terminate) {
  auto& d = make_driver({{"assign-public-ip", "false"}, {"standard-shape", "VM.Standard2.1"}});
  const std::string id = "5d0c8d1e-1111-4c2e-8f00-aaaaaaaaaaaa";
  auto made = co_run(ioc_, d.create(spec(id, ad2, "k"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  ASSERT_TRUE(made->ip_address);
  EXPECT_TRUE(made->ip_address->starts_with("10.0.")) << *made->ip_address;
  EXPECT_FALSE(emulated(made->upstream_id).at("shapeConfig").as_object().empty());

  // Found by its name alone (what a retry after a crash has), not in the other AD.
  auto by_name = co_run(ioc_, d.get(vm_ref{made->name, ad2, ""}, after(10s)));
  ASSERT_TRUE(by_name) << by_name.error().message();
  EXPECT_EQ(by_name->upstream_id, made->upstream_id);
  auto elsewhere = co_run(ioc_, d.get(vm_ref{made->name, ad1, ""}, after(10s)));
  ASSERT_FALSE(elsewhere);
  EXPECT_TRUE(elsewhere.error().is(errc::cloud_not_found)) << elsewhere.error().message();

  auto listed = co_run(ioc_, d.list(deployment, after(10s)));
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].ip_address, made->ip_address);  // remembered, no VNIC lookup

  // By name too: a delete that never learnt the OCID.
  auto gone = co_run(ioc_, d.destroy(vm_ref{made->name, ad2, ""}, "del-1", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  const auto inst = emulated(made->upstream_id);
  EXPECT_EQ(inst.at("status"), "TERMINATED");
  EXPECT_EQ(inst.at("preserveBootVolume"), false);
  auto read = co_run(ioc_, d.get(vm_ref{made->name, ad2, made->upstream_id}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  auto twice =
      co_run(ioc_, d.destroy(vm_ref{made->name, ad2, made->upstream_id}, "del-2", after(30s)));
  EXPECT_TRUE(twice) << twice.error().message();
  listed = co_run(ioc_, d.list(deployment, after(10s)));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());  // TERMINATED is gone
  auto nothing = co_run(ioc_, d.destroy(vm_ref{"cb-never", ad1, ""}, "del-3", after(30s)));
  EXPECT_TRUE(nothing) << nothing.error().message();
}

TEST_F(oci_driver_vs_emulator, lists_every_tagged_instance_across_pages) {
  auto& d = make_driver();
  std::set<std::string> ours;
  json::array planting;
  for (int i = 0; i < 230; ++i) {
    const std::string name = "ours-" + std::to_string(i);
    planting.push_back(json::object{{"compartmentId", compartment},
                                    {"zone", i % 2 ? ad1 : ad2},
                                    {"name", name},
                                    {"labels", {{label_deployment, deployment}}}});
    ours.insert(name);
  }
  for (int i = 0; i < 15; ++i) {
    planting.push_back(json::object{{"compartmentId", compartment},
                                    {"name", "other-" + std::to_string(i)},
                                    {"labels", {{label_deployment, "other"}}}});
  }
  planting.push_back(json::object{{"compartmentId", compartment}, {"name", "bare"}});
  planting.push_back(json::object{{"compartmentId", "ocid1.compartment.oc1..aaaaaaaaelsewhere"},
                                  {"name", "not-here"},
                                  {"labels", {{label_deployment, deployment}}}});
  post("instances", {{"instances", std::move(planting)}});

  auto listed = co_run(ioc_, d.list(deployment, after(60s)));
  ASSERT_TRUE(listed) << listed.error().message();
  std::set<std::string> names;
  for (const auto& v : *listed) names.insert(v.name);
  EXPECT_EQ(listed->size(), ours.size());  // none twice
  EXPECT_EQ(names, ours);
  EXPECT_EQ(count_route(requests(), "ListInstances"), 3u);  // 247 in 100s
}

TEST_F(oci_driver_vs_emulator, a_listing_that_fails_part_way_is_an_error_not_a_shorter_list) {
  auto& d = make_driver();
  json::array planting;
  for (int i = 0; i < 150; ++i) {
    planting.push_back(json::object{{"compartmentId", compartment},
                                    {"name", "vm-" + std::to_string(i)},
                                    {"labels", {{label_deployment, deployment}}}});
  }
  post("instances", {{"instances", std::move(planting)}});
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
  ASSERT_FALSE(listed) << "got " << listed->size() << " instances";
  EXPECT_TRUE(listed.error().is(errc::cloud_transient)) << listed.error().message();
  EXPECT_NE(listed.error().detail.find("ServiceUnavailable"), std::string::npos);
  EXPECT_EQ(d.details().at("retried").as_uint64(), 2u);
}

TEST_F(oci_driver_vs_emulator, out_of_host_capacity_is_a_capacity_error_either_way) {
  auto& d = make_driver();
  post("capacity", {{"zone", ad1}, {"remaining", 0}});
  auto made =
      co_run(ioc_, d.create(spec("11110000-0000-4000-8000-000000000001", ad1, "c1"), after(30s)));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::cloud_capacity)) << made.error().message();
  EXPECT_NE(made.error().detail.find("Out of host capacity. (HTTP 500 InternalError"),
            std::string::npos)
      << made.error().detail;
  EXPECT_EQ(count_route(requests(), "LaunchInstance"), 1u);  // a 500 of this kind is no fault

  // Found out later: the launch's work request fails, and says why.
  post("capacity", {{"zone", ad2}, {"remaining", 0}, {"mode", "work_request"}});
  made =
      co_run(ioc_, d.create(spec("11110000-0000-4000-8000-000000000002", ad2, "c2"), after(30s)));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::cloud_capacity)) << made.error().message();
  EXPECT_NE(made.error().detail.find("(work request ocid1.coreservicesworkrequest."),
            std::string::npos)
      << made.error().detail;
  EXPECT_EQ(count_route(requests(), "ListWorkRequestErrors"), 1u);
}

TEST_F(oci_driver_vs_emulator, refusals_keep_ocis_message_and_request_id) {
  auto& d = make_driver();
  post("limits", {{"metric", "core-count"}, {"limit", 2}});
  auto made = co_run(
      ioc_,
      d.create(spec("22220000-0000-4000-8000-000000000001", ad1, "q", "premium"), after(30s)));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::cloud_quota)) << made.error().message();
  EXPECT_NE(made.error().detail.find("LimitExceeded, opc-request-id "), std::string::npos)
      << made.error().detail;

  post("catalogue", {{"subnets", json::array{"ocid1.subnet.oc1.iad.aaaaaaaasomeoneelses"}}});
  made = co_run(ioc_, d.create(spec("22220000-0000-4000-8000-000000000002", ad1, "s"), after(30s)));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::cloud_permanent)) << made.error().message();
  EXPECT_NE(made.error().detail.find("RelatedResourceNotAuthorizedOrNotFound"), std::string::npos);

  auto bad_image = spec("22220000-0000-4000-8000-000000000003", ad1, "i");
  bad_image.image = "debian-12";
  made = co_run(ioc_, d.create(bad_image, after(30s)));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::cloud_permanent));
  EXPECT_NE(made.error().detail.find("image OCID"), std::string::npos);
}

TEST_F(oci_driver_vs_emulator, transient_failures_are_retried_within_the_call) {
  auto& d = make_driver();
  post("fail", {{"count", 2}, {"status", 503}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(30s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  EXPECT_EQ(d.details().at("retried").as_uint64(), 2u);
}

TEST_F(oci_driver_vs_emulator, throttling_is_not_retried_here_and_carries_retry_after) {
  auto& d = make_driver();
  post("throttle", {{"count", 1}, {"retry_after", 7}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(30s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_rate_limited)) << read.error().message();
  EXPECT_NE(read.error().detail.find("TooManyRequests"), std::string::npos);
  EXPECT_EQ(read.error().retry_after, 7s);
  EXPECT_EQ(requests().size(), 1u);
}

TEST_F(oci_driver_vs_emulator, a_stalled_call_ends_at_its_deadline) {
  auto& d = make_driver();
  ASSERT_FALSE(co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(10s))));  // the key is loaded
  post("stall", {{"count", 1}, {"seconds", 5}});
  const auto started = steady_clock::now();
  auto read = co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(1s)));
  const auto took = steady_clock::now() - started;
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::timeout)) << read.error().message();
  EXPECT_LT(took, 2500ms);
  EXPECT_GE(took, 900ms);
}

TEST_F(oci_driver_vs_emulator, every_request_is_paced_and_signed_afresh) {
  auto& d = make_driver();
  int paced = 0;
  d.set_pacer([&paced]() -> asio::awaitable<void> {
    ++paced;
    co_return;
  });
  post("fail", {{"count", 1}, {"status", 500}});
  auto made =
      co_run(ioc_, d.create(spec("7c1a0000-0000-4000-8000-000000000007", ad1, "k"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  auto gone =
      co_run(ioc_, d.destroy(vm_ref{made->name, made->zone, made->upstream_id}, "d", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  const auto log = requests();
  EXPECT_EQ(static_cast<std::size_t>(paced), log.size());
  EXPECT_EQ(d.stats().signatures, log.size());
  EXPECT_EQ(d.stats().key_loads, 1u);
  EXPECT_GE(paced, 6);  // launch twice, work request, instance, VNICs, terminate, reads
  EXPECT_EQ(count_route(log, "TerminateInstance"), 1u);
}

TEST_F(oci_driver_vs_emulator, a_key_oci_does_not_know_is_refused_with_a_clear_reason) {
  new_key(false);  // made, but not registered
  auto& d = make_driver();
  auto read = co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_auth)) << read.error().message();
  const auto& why = read.error().detail;
  EXPECT_NE(why.find("OCI refused the request signature (check tenancy, user, fingerprint and "
                     "key-file)"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("NotAuthenticated, opc-request-id "), std::string::npos) << why;
  // The key file was read again once, in case it had been replaced; never any of it shown.
  EXPECT_EQ(d.stats().key_loads, 2u);
  EXPECT_EQ(d.details().at("auth_retries").as_uint64(), 1u);
  EXPECT_EQ(why.find("PRIVATE KEY"), std::string::npos);
  const auto body = private_pem_.substr(private_pem_.find('\n') + 1, 40);
  EXPECT_EQ(why.find(body), std::string::npos);
  EXPECT_EQ(json::serialize(d.details()).find(body), std::string::npos);
}

TEST_F(oci_driver_vs_emulator, a_key_that_is_not_the_fingerprints_is_never_sent) {
  const std::string registered = fingerprint_;
  new_key(false);
  auto& d = make_driver({{"fingerprint", registered}});
  auto read = co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_auth)) << read.error().message();
  EXPECT_NE(read.error().detail.find("has the fingerprint " + fingerprint_ +
                                     ", not the configured " + registered),
            std::string::npos)
      << read.error().detail;
  EXPECT_TRUE(requests().empty());

  auto& missing = make_driver({{"key-file", (dir_ / "absent.pem").string()}});
  read = co_run(ioc_, missing.get(vm_ref{"nope", ad1, ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_auth));
  EXPECT_NE(read.error().detail.find("absent.pem"), std::string::npos);
}

TEST_F(oci_driver_vs_emulator, clock_skew_is_reported_as_such) {
  auto& d = make_driver();
  post("config", {{"clock_offset", 600}});  // OCI's clock ten minutes ahead of ours
  auto read = co_run(ioc_, d.get(vm_ref{"nope", ad1, ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_auth)) << read.error().message();
  // An HTTP date counts whole seconds: 600 give or take the time the request took.
  const auto& why = read.error().detail;
  const auto at = why.find("this host's clock is ");
  ASSERT_NE(at, std::string::npos) << why;
  const int seconds = std::atoi(why.c_str() + at + 21);
  EXPECT_GE(seconds, 598) << why;
  EXPECT_LE(seconds, 602) << why;
  EXPECT_NE(why.find(" s behind OCI's (at most 5 minutes are accepted); fix the clock"),
            std::string::npos)
      << why;
}

TEST_F(oci_driver_vs_emulator, an_oci_config_file_profile_and_an_encrypted_key) {
  // The key encrypted under a pass phrase, as `oci setup keys` can make it.
  const auto encrypted = (dir_ / "encrypted.pem").string();
  const std::string cmd = "openssl pkey -in " + key_file_ + " -aes256 -passout pass:s3cret -out " +
                          encrypted + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto config = (dir_ / "config").string();
  std::ofstream(config) << "[DEFAULT]\nregion=us-phoenix-1\n\n[CI]\nuser=" << user
                        << "\nfingerprint=" << fingerprint_ << "\ntenancy=" << tenancy
                        << "\nkey_file=" << encrypted << "\npass_phrase=s3cret\n";
  auto& d = make_driver({{"config-file", config},
                         {"profile", "CI"},
                         {"tenancy", ""},
                         {"user", ""},
                         {"fingerprint", ""},
                         {"key-file", ""},
                         {"region", ""}});
  EXPECT_NE(json::serialize(d.details()).find("config-file " + config + " [CI]"),
            std::string::npos);
  auto made =
      co_run(ioc_, d.create(spec("33330000-0000-4000-8000-000000000001", ad1, "cf"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->status, vm_status::running);
  EXPECT_EQ(json::serialize(d.details()).find("s3cret"), std::string::npos);
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

TEST_F(oci_driver_vs_emulator, reservations_are_made_used_listed_and_released) {
  auto& d = make_driver();
  const std::string id = "1e0c9a4b-2f3d-4c5e-8a6b-7c8d9e0f1a2b";
  auto held = co_run(ioc_, d.reserve(reservation(id, ad2, 3, "res-1"), after(30s)));
  ASSERT_TRUE(held) << held.error().message();
  EXPECT_EQ(held->name, reservation_name_for(id));
  EXPECT_EQ(held->zone, ad2);
  EXPECT_EQ(held->machine_type, "VM.Standard.E4.Flex (1 OCPU, 8 GB)");
  EXPECT_EQ(held->count, 3);
  EXPECT_EQ(held->in_use, 0);
  EXPECT_EQ(held->status, reservation_status::ready);
  EXPECT_TRUE(held->upstream_id.starts_with("ocid1.capacityreservation.")) << held->upstream_id;
  EXPECT_EQ(held->labels_.at(label_deployment), deployment);
  EXPECT_EQ(held->labels_.at(label_reservation), id);
  EXPECT_EQ(held->labels_.at("run"), "nightly");
  EXPECT_EQ(d.machine_type_for("standard"), "VM.Standard.E4.Flex (1 OCPU, 8 GB)");

  // Again with the same key: the retry token makes it the same one.
  auto again = co_run(ioc_, d.reserve(reservation(id, ad2, 3, "res-1"), after(30s)));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->upstream_id, held->upstream_id);
  EXPECT_EQ(get("counters").at("reservations_created").at(reservation_name_for(id)).as_int64(), 1);

  // An instance launched into it takes a place.
  auto into = spec("44440000-0000-4000-8000-000000000001", ad2, "into");
  into.reservation_upstream = reservation_name_for(id);
  auto made = co_run(ioc_, d.create(into, after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(std::string(emulated(made->upstream_id).at("reservation").as_string()),
            held->upstream_id);
  auto used = co_run(ioc_, d.get_reservation(reservation_ref{held->name, ad2, ""}, after(10s)));
  ASSERT_TRUE(used) << used.error().message();
  EXPECT_EQ(used->in_use, 1);
  EXPECT_EQ(used->upstream_id, held->upstream_id);

  auto listed = co_run(ioc_, d.list_reservations(deployment, after(10s)));
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].in_use, 1);
  EXPECT_EQ((*listed)[0].labels_.at(label_reservation), id);

  auto gone = co_run(ioc_, d.release(reservation_ref{held->name, ad2, ""}, "rel-1", after(30s)));
  ASSERT_TRUE(gone) << gone.error().message();
  const auto reservations = get("reservations");
  for (const auto& r : reservations.at("reservations").as_array())
    EXPECT_EQ(r.at("status"), "DELETED");
  auto read = co_run(
      ioc_, d.get_reservation(reservation_ref{held->name, ad2, held->upstream_id}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_not_found)) << read.error().message();
  listed = co_run(ioc_, d.list_reservations(deployment, after(10s)));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  auto twice = co_run(
      ioc_, d.release(reservation_ref{held->name, ad2, held->upstream_id}, "rel-2", after(30s)));
  EXPECT_TRUE(twice) << twice.error().message();

  // A reservation that is not there cannot be launched into.
  into.instance_id = "44440000-0000-4000-8000-000000000002";
  into.name = vm_name_for(into.instance_id);
  made = co_run(ioc_, d.create(into, after(30s)));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::cloud_permanent)) << made.error().message();
}

TEST_F(oci_driver_vs_emulator, an_availability_domain_without_room_refuses_a_reservation) {
  auto& d = make_driver();
  post("capacity", {{"zone", ad1}, {"remaining", 2}});
  auto held = co_run(
      ioc_,
      d.reserve(reservation("55550000-0000-4000-8000-000000000001", ad1, 3, "r"), after(30s)));
  ASSERT_FALSE(held);
  EXPECT_TRUE(held.error().is(errc::cloud_capacity)) << held.error().message();
  post("capacity", {{"zone", ad2}, {"remaining", 0}, {"mode", "work_request"}});
  held = co_run(ioc_, d.reserve(reservation("55550000-0000-4000-8000-000000000002", ad2, 1, "r"),
                                after(30s)));
  ASSERT_FALSE(held);
  EXPECT_TRUE(held.error().is(errc::cloud_capacity)) << held.error().message();
  // What a failed create left behind is DELETED: nothing to release.
  auto gone = co_run(
      ioc_, d.release(reservation_ref{reservation_name_for("55550000-0000-4000-8000-000000000002"),
                                      ad2, ""},
                      "rel", after(30s)));
  EXPECT_TRUE(gone) << gone.error().message();
  EXPECT_EQ(count_route(requests(), "DeleteComputeCapacityReservation"), 0u);
}

TEST_F(oci_driver_vs_emulator, tls_is_verified_against_the_configured_ca) {
  const auto cert = (dir_ / "cert.pem").string();
  const auto key = (dir_ / "tls-key.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
      " -addext subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  start_emulator({"--tls-cert", cert, "--tls-key", key}, cert);
  new_key();
  auto& trusting = make_driver({{"ca-file", cert}});
  auto made = co_run(
      ioc_, trusting.create(spec("7c1a0000-0000-4000-8000-0000000000f1", ad1, "tls"), after(30s)));
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(made->status, vm_status::running);

  const auto before = requests().size();
  auto& strict = make_driver();
  auto read = co_run(ioc_, strict.get(vm_ref{made->name, made->zone, ""}, after(10s)));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(errc::cloud_permanent)) << read.error().message();
  EXPECT_EQ(requests().size(), before);
}

}  // namespace
}  // namespace cloudbrain::providers::oci
