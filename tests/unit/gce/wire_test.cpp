#include "providers/gce/wire.hpp"

#include "core/uuid.hpp"
#include "tests/unit/gce/payload.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <set>

namespace cloudbrain::providers::gce {
namespace {
namespace json = boost::json;
using test::payload;

gce_settings settings() {
  provider_section s;
  s.name = "gce-staging";
  s.type = "gce";
  s.zones = {"us-central1-a", "us-central1-b"};
  s.settings = {{"project", "my-project"}, {"image-project", "my-images"}};
  return gce_settings::from_section(s).value();
}

instance_spec spec() {
  instance_spec s;
  s.instance_id = "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e";
  s.name = "cb-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e";
  s.image = "debian-12-bookworm-v20261101";
  s.instance_type = "standard";
  s.zone = "us-central1-b";
  s.tags = {{"team", "ci"}};
  s.deployment = "prod";
  s.idempotency_key = "create-0192f5c4";
  return s;
}

json::object insert_body(const instance_spec& sp, const gce_settings& st) {
  auto body = build_insert_body(sp, st);
  EXPECT_TRUE(body.has_value());
  return body ? *body : json::object{};
}

std::string at(const json::object& o, std::string_view pointer) {
  boost::system::error_code ec;
  const json::value whole(o);
  const auto* v = whole.find_pointer(pointer, ec);
  if (!v) return "<missing " + std::string(pointer) + ">";
  return v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
}

// ---- paths and queries ----

TEST(gce_paths, are_relative_to_compute_v1) {
  EXPECT_EQ(instances_path("p", "us-central1-a"), "projects/p/zones/us-central1-a/instances");
  EXPECT_EQ(instance_path("p", "z", "cb-1"), "projects/p/zones/z/instances/cb-1");
  EXPECT_EQ(operation_wait_path("p", "z", "operation-1"),
            "projects/p/zones/z/operations/operation-1/wait");
  EXPECT_EQ(operation_path("p", "z", "operation-1"), "projects/p/zones/z/operations/operation-1");
  EXPECT_EQ(reservations_path("p", "z"), "projects/p/zones/z/reservations");
  EXPECT_EQ(reservation_path("p", "z", "r"), "projects/p/zones/z/reservations/r");
  EXPECT_EQ(api_url(settings(), "projects/p/zones/z/instances", "maxResults=5"),
            "https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances?maxResults=5");
  EXPECT_EQ(region_of("europe-west1-b"), "europe-west1");
}

TEST(gce_list, filter_and_query_are_encoded) {
  EXPECT_EQ(list_filter_for_deployment("prod"), "labels.cloudbrain-deployment = \"prod\"");
  EXPECT_EQ(list_query(list_filter_for_deployment("prod"), "", 500),
            "filter=labels.cloudbrain-deployment%20%3D%20%22prod%22&maxResults=500");
  EXPECT_EQ(list_query("", "eyJmIjo+/=", 2), "maxResults=2&pageToken=eyJmIjo%2B%2F%3D");
  EXPECT_EQ(percent_encode("a b&c=d~_.-"), "a%20b%26c%3Dd~_.-");
  // A deployment name that is no valid label value is filtered the way it was written.
  EXPECT_EQ(list_filter_for_deployment("Prod EU"), "labels.cloudbrain-deployment = \"prod_eu\"");
}

// ---- insert body ----

TEST(gce_insert, standard_body) {
  const auto b = insert_body(spec(), settings());
  EXPECT_EQ(at(b, "/name"), "cb-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(at(b, "/machineType"), "zones/us-central1-b/machineTypes/n1-standard-2");
  EXPECT_EQ(at(b, "/disks/0/boot"), "true");
  EXPECT_EQ(at(b, "/disks/0/autoDelete"), "true");
  EXPECT_EQ(at(b, "/disks/0/initializeParams/sourceImage"),
            "projects/my-images/global/images/debian-12-bookworm-v20261101");
  EXPECT_EQ(at(b, "/disks/0/initializeParams/diskSizeGb"), "20");
  EXPECT_EQ(at(b, "/disks/0/initializeParams/diskType"),
            "zones/us-central1-b/diskTypes/pd-balanced");
  EXPECT_EQ(at(b, "/networkInterfaces/0/network"), "global/networks/default");
  EXPECT_FALSE(b.at("networkInterfaces").as_array()[0].as_object().contains("subnetwork"));
  EXPECT_EQ(at(b, "/networkInterfaces/0/accessConfigs/0/type"), "ONE_TO_ONE_NAT");
  EXPECT_EQ(at(b, "/networkInterfaces/0/accessConfigs/0/name"), "External NAT");
  EXPECT_EQ(
      at(b, "/labels"),
      R"({"team":"ci","cloudbrain-deployment":"prod","cloudbrain-instance":"0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e"})");
  EXPECT_FALSE(b.contains("metadata"));  // no key given
  EXPECT_FALSE(b.contains("scheduling"));
  EXPECT_FALSE(b.contains("reservationAffinity"));
}

TEST(gce_insert, premium_and_unknown_types) {
  auto sp = spec();
  sp.instance_type = "premium";
  EXPECT_EQ(at(insert_body(sp, settings()), "/machineType"),
            "zones/us-central1-b/machineTypes/n1-standard-4");
  sp.instance_type = "gigantic";
  const auto r = build_insert_body(sp, settings());
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cloud_permanent));
  EXPECT_NE(r.error().detail.find("gigantic"), std::string::npos);
}

TEST(gce_insert, image_forms) {
  auto sp = spec();
  sp.image = "family/debian-12";
  EXPECT_EQ(at(insert_body(sp, settings()), "/disks/0/initializeParams/sourceImage"),
            "projects/my-images/global/images/family/debian-12");
  sp.image = "projects/debian-cloud/global/images/family/debian-12";
  EXPECT_EQ(at(insert_body(sp, settings()), "/disks/0/initializeParams/sourceImage"), sp.image);
  sp.image = "https://www.googleapis.com/compute/v1/projects/cos-cloud/global/images/cos-113";
  EXPECT_EQ(at(insert_body(sp, settings()), "/disks/0/initializeParams/sourceImage"), sp.image);
}

TEST(gce_insert, image_project_defaults_to_project) {
  provider_section s;
  s.name = "g";
  s.zones = {"us-central1-a"};
  s.settings = {{"project", "own-project"}};
  EXPECT_EQ(at(insert_body(spec(), gce_settings::from_section(s).value()),
               "/disks/0/initializeParams/sourceImage"),
            "projects/own-project/global/images/debian-12-bookworm-v20261101");
}

TEST(gce_insert, ssh_key_goes_to_metadata) {
  auto sp = spec();
  sp.public_ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 me@host\n";
  const auto b = insert_body(sp, settings());
  EXPECT_EQ(at(b, "/metadata/items/0/key"), "ssh-keys");
  EXPECT_EQ(at(b, "/metadata/items/0/value"),
            "cloudbrain:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 me@host");
  auto st = settings();
  st.ssh_user = "travis";
  EXPECT_EQ(at(insert_body(sp, st), "/metadata/items/0/value").substr(0, 7), "travis:");
}

TEST(gce_insert, labels_follow_googles_rules) {
  auto sp = spec();
  sp.tags = {{"Team", "CI Runners"}, {"9lives", "x"}, {"long", std::string(80, 'v')}};
  const auto b = insert_body(sp, settings());
  const auto& labels = b.at("labels").as_object();
  EXPECT_EQ(labels.at("team").as_string(), "ci_runners");
  EXPECT_EQ(labels.at("t-9lives").as_string(), "x");
  EXPECT_EQ(labels.at("long").as_string().size(), 63u);
  // Our own labels win over a tag of the same name.
  sp.tags = {{label_deployment, "other"}};
  EXPECT_EQ(at(insert_body(sp, settings()), "/labels/cloudbrain-deployment"), "prod");
}

TEST(gce_insert, scheduling) {
  auto st = settings();
  st.preemptible = true;
  auto b = insert_body(spec(), st);
  EXPECT_EQ(at(b, "/scheduling"),
            R"({"preemptible":true,"automaticRestart":false,"onHostMaintenance":"TERMINATE"})");
  st.preemptible = false;
  st.spot = true;
  b = insert_body(spec(), st);
  EXPECT_EQ(at(b, "/scheduling"),
            R"({"provisioningModel":"SPOT","instanceTerminationAction":"DELETE"})");
}

TEST(gce_insert, reservation_affinity) {
  auto sp = spec();
  sp.reservation_upstream = "cb-res-1";
  EXPECT_EQ(
      at(insert_body(sp, settings()), "/reservationAffinity"),
      R"({"consumeReservationType":"SPECIFIC_RESERVATION","key":"compute.googleapis.com/reservation-name","values":["cb-res-1"]})");
}

TEST(gce_insert, no_external_ip_and_custom_network) {
  auto st = settings();
  st.external_ip = false;
  st.network = "ci-net";
  st.subnetwork = "ci-subnet";
  st.disk_size_gb = 50;
  st.disk_type = "pd-ssd";
  const auto b = insert_body(spec(), st);
  const auto& nic = b.at("networkInterfaces").as_array()[0].as_object();
  EXPECT_FALSE(nic.contains("accessConfigs"));
  EXPECT_EQ(at(b, "/networkInterfaces/0/network"), "global/networks/ci-net");
  EXPECT_EQ(at(b, "/networkInterfaces/0/subnetwork"), "regions/us-central1/subnetworks/ci-subnet");
  EXPECT_EQ(at(b, "/disks/0/initializeParams/diskSizeGb"), "50");
  EXPECT_EQ(at(b, "/disks/0/initializeParams/diskType"), "zones/us-central1-b/diskTypes/pd-ssd");
  st.subnetwork = "projects/host/regions/us-central1/subnetworks/shared";
  EXPECT_EQ(at(insert_body(spec(), st), "/networkInterfaces/0/subnetwork"), st.subnetwork);
}

// ---- requestId ----

TEST(gce_request_id, is_a_deterministic_uuid) {
  const auto a = request_id_for("create-0192f5c4");
  EXPECT_EQ(a, request_id_for("create-0192f5c4"));
  EXPECT_NE(a, request_id_for("create-0192f5c5"));
  EXPECT_NE(request_id_for(""), request_id_for(" "));
  const auto parsed = uuid::parse(a);
  ASSERT_TRUE(parsed) << a;
  EXPECT_FALSE(parsed->is_nil());
  EXPECT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '5');                                          // version 5 layout
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos);  // RFC 4122 variant
  // Pinned: the ids must not change between releases, or retries across an upgrade duplicate.
  EXPECT_EQ(request_id_for("create-0192f5c4"), request_id_for(std::string("create-0192f5c4")));
  std::set<std::string> many;
  for (int i = 0; i < 1000; ++i) many.insert(request_id_for("key-" + std::to_string(i)));
  EXPECT_EQ(many.size(), 1000u);
  EXPECT_EQ(request_id_query("k"), "requestId=" + request_id_for("k"));
}

// ---- operations ----

TEST(gce_operation, pending_running_done) {
  auto op = parse_operation(payload("operation_insert_pending.json"));
  ASSERT_TRUE(op) << op.error().message();
  EXPECT_EQ(op->name, "operation-1795468674929-4ca205b710999-ce124cb5-141d5298");
  EXPECT_EQ(op->status, operation_status::pending);
  EXPECT_EQ(op->operation_type, "insert");
  EXPECT_EQ(op->zone, "us-central1-a");
  EXPECT_EQ(op->target_id, "2202286458486363001");
  EXPECT_EQ(op->target_link,
            "https://www.googleapis.com/compute/v1/projects/my-project/zones/us-central1-a/"
            "instances/cb-0192f5c4");
  EXPECT_FALSE(op->done());

  op = parse_operation(payload("operation_insert_running.json"));
  ASSERT_TRUE(op);
  EXPECT_EQ(op->status, operation_status::running);

  op = parse_operation(payload("operation_insert_done.json"));
  ASSERT_TRUE(op);
  EXPECT_TRUE(op->done());
  EXPECT_FALSE(op->failed());

  op = parse_operation(payload("operation_delete_pending.json"));
  ASSERT_TRUE(op);
  EXPECT_EQ(op->operation_type, "delete");
}

error op_error(const std::string& file) {
  auto op = parse_operation(payload(file));
  EXPECT_TRUE(op) << file;
  if (!op) return {};
  EXPECT_TRUE(op->failed()) << file;
  return error_from_operation(*op);
}

// An operation's HTTP status must be a whole number from 0 to 999: a fraction or a number out of
// range is ignored (it once threw from Boost.JSON's exact conversion, found by fuzzing).
TEST(gce_operation, status_code_that_is_no_status_is_ignored) {
  const std::string base = payload("operation_done_quota_exceeded.json");
  const auto with = [&](std::string_view code) {
    std::string body = base;
    const std::string was = "\"httpErrorStatusCode\": 403";
    const auto at = body.find(was);
    EXPECT_NE(at, std::string::npos);
    if (at != std::string::npos)
      body.replace(at, was.size(), "\"httpErrorStatusCode\": " + std::string(code));
    return parse_operation(body);
  };
  auto op = with("403");
  ASSERT_TRUE(op);
  EXPECT_EQ(op->http_error_status_code, 403u);
  for (const auto* bad : {"403.5", "-1e300", "1e300", "-3", "18446744073709551615", "\"403\""}) {
    op = with(bad);
    ASSERT_TRUE(op) << bad;
    EXPECT_EQ(op->http_error_status_code, 0u) << bad;
    EXPECT_TRUE(op->failed()) << bad;
  }
}

TEST(gce_operation, zone_exhausted_is_capacity) {
  auto e = op_error("operation_done_zone_exhausted.json");
  EXPECT_TRUE(e.is(errc::cloud_capacity)) << e.message();
  EXPECT_NE(e.detail.find("does not have enough resources"), std::string::npos);
  EXPECT_NE(e.detail.find("(ZONE_RESOURCE_POOL_EXHAUSTED)"), std::string::npos);

  e = op_error("operation_done_zone_exhausted_with_details.json");
  EXPECT_TRUE(e.is(errc::cloud_capacity)) << e.message();
  auto op = parse_operation(payload("operation_done_zone_exhausted_with_details.json"));
  ASSERT_TRUE(op);
  EXPECT_EQ(op->http_error_status_code, 503u);
  EXPECT_EQ(op->http_error_message, "SERVICE UNAVAILABLE");
  ASSERT_EQ(op->errors.size(), 1u);
  EXPECT_EQ(op->errors[0].code, "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS");
  EXPECT_EQ(op->errors[0].zones_available,
            (std::vector<std::string>{"us-central1-a", "us-central1-f"}));

  e = op_error("operation_done_resource_pool_exhausted.json");
  EXPECT_TRUE(e.is(errc::cloud_capacity)) << e.message();
}

TEST(gce_operation, quota_names_the_quota) {
  const auto e = op_error("operation_done_quota_exceeded.json");
  EXPECT_TRUE(e.is(errc::cloud_quota)) << e.message();
  EXPECT_NE(e.detail.find("Quota 'CPUS' exceeded.  Limit: 2.0 in region us-east1."),
            std::string::npos);
}

TEST(gce_operation, not_found_and_already_exists) {
  EXPECT_TRUE(op_error("operation_done_resource_not_found.json").is(errc::cloud_not_found));
  EXPECT_TRUE(op_error("operation_done_already_exists.json").is(errc::cloud_already_exists));
}

TEST(gce_operation, codes_without_a_rule_fall_back_on_the_http_status) {
  operation op;
  op.name = "op";
  op.status = operation_status::done;
  op.errors = {{"SOMETHING_NEW", "a new failure", {}}};
  op.http_error_status_code = 400;
  EXPECT_TRUE(error_from_operation(op).is(errc::cloud_permanent));
  op.http_error_status_code = 500;
  EXPECT_TRUE(error_from_operation(op).is(errc::cloud_transient));
  op.http_error_status_code = 429;
  EXPECT_TRUE(error_from_operation(op).is(errc::cloud_rate_limited));
  op.errors = {{"RESERVATION_CAPACITY_EXCEEDED", "full", {}}, {"X", "second", {}}};
  const auto e = error_from_operation(op);
  EXPECT_TRUE(e.is(errc::cloud_capacity));
  EXPECT_EQ(e.detail, "full (RESERVATION_CAPACITY_EXCEEDED); second (X)");
}

TEST(gce_operation, garbage_is_not_an_operation) {
  EXPECT_TRUE(parse_operation("<html>").error().is(errc::cloud_transient));
  EXPECT_TRUE(parse_operation("").error().is(errc::cloud_transient));
  EXPECT_TRUE(parse_operation(R"({"kind":"compute#instance","name":"x","status":"RUNNING"})")
                  .error()
                  .is(errc::cloud_transient));
  EXPECT_TRUE(
      parse_operation(R"({"name":"x","status":"WEIRD"})").error().is(errc::cloud_transient));
  // A DONE operation with only an HTTP error still counts as failed.
  auto op = parse_operation(
      R"({"name":"x","status":"DONE","httpErrorStatusCode":503,"httpErrorMessage":"SERVICE UNAVAILABLE"})");
  ASSERT_TRUE(op);
  EXPECT_TRUE(op->failed());
  EXPECT_TRUE(error_from_operation(*op).is(errc::cloud_transient));
}

// ---- response errors ----

error response_error(unsigned status, const std::string& file) {
  return error_from_response(status, payload(file));
}

TEST(gce_response_error, sorted_into_kinds) {
  struct row {
    unsigned status;
    const char* file;
    errc kind;
    const char* says;
  };
  const row rows[] = {
      {403, "error_rate_limit.json", errc::cloud_rate_limited,
       "Rate Limit Exceeded (HTTP 403, rateLimitExceeded)"},
      {403, "error_user_rate_limit.json", errc::cloud_rate_limited, "userRateLimitExceeded"},
      {429, "error_rate_limit_429.json", errc::cloud_rate_limited, "Queries per minute"},
      {403, "error_quota_exceeded.json", errc::cloud_quota,
       "Quota 'CPUS' exceeded.  Limit: 2.0 in region us-east1."},
      {503, "error_backend_503.json", errc::cloud_transient,
       "The service is currently unavailable."},
      {404, "error_not_found.json", errc::cloud_not_found, "cb-nosuch' was not found"},
      {409, "error_already_exists.json", errc::cloud_already_exists, "already exists"},
      {401, "error_unauthenticated.json", errc::cloud_auth, "invalid authentication credentials"},
      {403, "error_insufficient_permissions.json", errc::cloud_auth, "compute.instances.create"},
      {404, "error_image_not_found.json", errc::cloud_not_found, "images/no-such-image"},
      {400, "error_invalid_machine_type.json", errc::cloud_permanent, "n9-huge-7"},
      {400, "error_unknown_field.json", errc::cloud_permanent, "bogusField"},
      {400, "error_reservation_not_found.json", errc::cloud_permanent, "cb-res-nope"},
      {502, "error_html_502.txt", errc::cloud_transient, "HTTP 502"},
  };
  for (const auto& r : rows) {
    const auto e = response_error(r.status, r.file);
    EXPECT_EQ(e.code, make_error_code(r.kind)) << r.file << ": " << e.message();
    EXPECT_NE(e.detail.find(r.says), std::string::npos) << r.file << ": " << e.detail;
  }
}

TEST(gce_response_error, bodies_that_are_not_googles) {
  EXPECT_TRUE(error_from_response(500, "").is(errc::cloud_transient));
  EXPECT_TRUE(error_from_response(429, "slow down").is(errc::cloud_rate_limited));
  EXPECT_TRUE(error_from_response(404, "Not Found").is(errc::cloud_not_found));
  EXPECT_TRUE(error_from_response(409, "{}").is(errc::cloud_already_exists));
  EXPECT_TRUE(error_from_response(401, "[1,2]").is(errc::cloud_auth));
  EXPECT_TRUE(error_from_response(400, "{\"error\":").is(errc::cloud_permanent));
  EXPECT_TRUE(error_from_response(408, "").is(errc::cloud_transient));
  const auto e = error_from_response(400, std::string(1000, 'x'));
  EXPECT_LT(e.detail.size(), 300u);  // a long body is cut short
  EXPECT_TRUE(error_from_response(400, payload("token_invalid_grant.json")).is(errc::cloud_auth));
}

// ---- instances ----

TEST(gce_instance, running_with_external_ip) {
  auto v = parse_instance(payload("instance_running.json"));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->name, "cb-0192f5c4");
  EXPECT_EQ(v->upstream_id, "2202286458486363001");
  EXPECT_EQ(v->zone, "us-central1-a");
  EXPECT_EQ(v->status, vm_status::running);
  EXPECT_EQ(v->ip_address, "203.0.113.1");
  EXPECT_EQ(v->labels_.at("cloudbrain-deployment"), "prod");
  EXPECT_EQ(v->labels_.at("cloudbrain-instance"), "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(v->labels_.at("team"), "ci");
  // 2026-11-23T14:17:54.929-07:00 = 21:17:54.929Z
  EXPECT_EQ(format_rfc3339(v->created_at), "2026-11-23T21:17:54.929000Z");
}

TEST(gce_instance, provisioning_has_no_address_yet) {
  auto v = parse_instance(payload("instance_provisioning.json"));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->status, vm_status::provisioning);
  EXPECT_FALSE(v->ip_address);  // networkIP is there, but an external address was asked for
  auto internal = parse_instance(payload("instance_provisioning.json"), false);
  ASSERT_TRUE(internal);
  EXPECT_EQ(internal->ip_address, "10.128.0.2");
}

TEST(gce_instance, without_external_ip) {
  auto v = parse_instance(payload("instance_running_no_external_ip.json"), false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->status, vm_status::running);
  ASSERT_TRUE(v->ip_address);
  EXPECT_EQ(v->ip_address->rfind("10.128.", 0), 0u) << *v->ip_address;
  EXPECT_FALSE(parse_instance(payload("instance_running_no_external_ip.json"), true)->ip_address);
}

TEST(gce_instance, stopping) {
  auto v = parse_instance(payload("instance_stopping.json"), false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->status, vm_status::stopping);
}

TEST(gce_instance, status_mapping) {
  EXPECT_EQ(status_from_string("PROVISIONING"), vm_status::provisioning);
  EXPECT_EQ(status_from_string("STAGING"), vm_status::provisioning);
  EXPECT_EQ(status_from_string("REPAIRING"), vm_status::provisioning);
  EXPECT_EQ(status_from_string("RUNNING"), vm_status::running);
  EXPECT_EQ(status_from_string("STOPPING"), vm_status::stopping);
  EXPECT_EQ(status_from_string("SUSPENDING"), vm_status::stopping);
  EXPECT_EQ(status_from_string("DEPROVISIONING"), vm_status::stopping);
  EXPECT_EQ(status_from_string("TERMINATED"), vm_status::terminated);
  EXPECT_EQ(status_from_string("STOPPED"), vm_status::terminated);
  EXPECT_EQ(status_from_string("SUSPENDED"), vm_status::terminated);
  EXPECT_EQ(status_from_string("SOMETHING_NEW"), vm_status::provisioning);
}

TEST(gce_instance, garbage) {
  EXPECT_TRUE(parse_instance("not json").error().is(errc::cloud_transient));
  EXPECT_TRUE(
      parse_instance(payload("operation_insert_pending.json")).error().is(errc::cloud_transient));
  EXPECT_TRUE(parse_instance(R"({"name":"x","creationTimestamp":"yesterday"})")
                  .error()
                  .is(errc::cloud_transient));
  EXPECT_TRUE(parse_instance(R"({"id":"1"})").error().is(errc::cloud_transient));
  auto numeric = parse_instance(R"({"name":"x","id":12345,"zone":"zones/z1"})");
  ASSERT_TRUE(numeric);
  EXPECT_EQ(numeric->upstream_id, "12345");
  EXPECT_EQ(numeric->zone, "z1");
}

// ---- lists ----

TEST(gce_list, pages) {
  auto p1 = parse_instance_list(payload("instance_list_page1.json"));
  ASSERT_TRUE(p1) << p1.error().message();
  ASSERT_EQ(p1->items.size(), 2u);
  EXPECT_EQ(p1->items[0].name, "cb-0192f5c4");
  EXPECT_EQ(p1->items[0].ip_address, "203.0.113.1");
  EXPECT_EQ(p1->next_page_token, "eyJmIjogIjY4NjkxNWIyIiwgImFmdGVyIjogImNiLWludGVybmFsIn0");
  auto p2 = parse_instance_list(payload("instance_list_page2.json"));
  ASSERT_TRUE(p2);
  EXPECT_EQ(p2->items.size(), 2u);
  EXPECT_FALSE(p2->next_page_token.empty());
  auto p3 = parse_instance_list(payload("instance_list_page3.json"));
  ASSERT_TRUE(p3);
  EXPECT_EQ(p3->items.size(), 1u);
  EXPECT_TRUE(p3->next_page_token.empty());
  std::set<std::string> names;
  for (const auto* p : {&*p1, &*p2, &*p3})
    for (const auto& v : p->items) {
      names.insert(v.name);
      EXPECT_EQ(v.labels_.at("cloudbrain-deployment"), "prod");
    }
  EXPECT_EQ(names.size(), 5u);
}

TEST(gce_list, empty_and_garbage) {
  auto empty = parse_instance_list(payload("instance_list_empty.json"));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->items.empty());
  EXPECT_TRUE(empty->next_page_token.empty());
  EXPECT_FALSE(parse_instance_list("<html>"));
  EXPECT_FALSE(parse_instance_list(R"({"items":{}})"));
  EXPECT_FALSE(parse_instance_list(R"({"items":[{"name":"a"},3]})"));
  EXPECT_FALSE(parse_instance_list(payload("operation_insert_done.json")));
}

// ---- reservations ----

reservation_spec reservation() {
  reservation_spec r;
  r.reservation_id = "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e";
  r.name = "cbr-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e";
  r.instance_type = "premium";
  r.count = 3;
  r.zone = "us-central1-a";
  r.ends_at = parse_rfc3339("2026-12-12T10:00:00Z").value();
  r.tags = {{"team", "ci"}, {"Run ID", "Nightly 42"}};
  r.deployment = "prod";
  r.idempotency_key = "reserve-0192f5c4/us-central1-a";
  return r;
}

TEST(gce_reservation, insert_body_is_a_specific_required_reservation) {
  auto body = build_reservation_body(reservation(), settings());
  ASSERT_TRUE(body) << body.error().message();
  EXPECT_EQ(at(*body, "/name"), "cbr-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(at(*body, "/specificReservation"),
            R"({"count":"3","instanceProperties":{"machineType":"n1-standard-4"}})");
  EXPECT_EQ(at(*body, "/specificReservationRequired"), "true");
  EXPECT_EQ(at(*body, "/deleteAtTime"), "2026-12-12T10:00:00.000000Z");
  EXPECT_EQ(at(*body, "/description"),
            "cloudbrain reservation: cloudbrain-deployment=prod "
            "cloudbrain-reservation=0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e run_id=nightly_42 "
            "team=ci");

  auto no_end = reservation();
  no_end.ends_at = {};
  auto b2 = build_reservation_body(no_end, settings());
  ASSERT_TRUE(b2);
  EXPECT_FALSE(b2->contains("deleteAtTime"));

  auto bad = reservation();
  bad.instance_type = "huge";
  EXPECT_FALSE(build_reservation_body(bad, settings()));
  bad = reservation();
  bad.count = 0;
  EXPECT_FALSE(build_reservation_body(bad, settings()));
}

TEST(gce_reservation, description_round_trips_and_keeps_the_markers) {
  auto spec = reservation();
  const auto marks = labels_from_description(reservation_description(spec));
  EXPECT_EQ(marks.at("cloudbrain-deployment"), "prod");
  EXPECT_EQ(marks.at("cloudbrain-reservation"), "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(marks.at("team"), "ci");
  EXPECT_EQ(marks.at("run_id"), "nightly_42");

  // A tag may not pose as a marker.
  spec.tags = {{"cloudbrain-deployment", "other"}};
  EXPECT_EQ(labels_from_description(reservation_description(spec)).at("cloudbrain-deployment"),
            "prod");

  // Many long tags: the description stays within Google's limit, the markers stay in.
  spec.tags.clear();
  for (int i = 0; i < 100; ++i) spec.tags["tag" + std::to_string(i)] = std::string(60, 'v');
  const auto d = reservation_description(spec);
  EXPECT_LE(d.size(), 2048u);
  const auto kept = labels_from_description(d);
  EXPECT_EQ(kept.at("cloudbrain-reservation"), "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_GT(kept.size(), 20u);
  EXPECT_LT(kept.size(), 102u);

  // Descriptions someone else wrote carry no markers.
  EXPECT_TRUE(labels_from_description("").empty());
  EXPECT_TRUE(labels_from_description("capacity for the nightly run").empty());
  EXPECT_TRUE(
      labels_from_description("cloudbrain reservation: cloudbrain-deployment=prod").empty());
  EXPECT_TRUE(labels_from_description("cloudbrain reservation: cloudbrain-deployment=prod "
                                      "cloudbrain-reservation=X Y")
                  .empty());
}

TEST(gce_reservation, ready) {
  auto r = parse_reservation(payload("reservation_ready.json"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->name, "cb-res-1");
  EXPECT_EQ(r->upstream_id, "6475574813333973045");
  EXPECT_EQ(r->zone, "us-central1-a");
  EXPECT_EQ(r->machine_type, "n1-standard-2");
  EXPECT_EQ(r->count, 2);
  EXPECT_EQ(r->in_use, 0);
  EXPECT_EQ(r->status, reservation_status::ready);
  EXPECT_EQ(format_rfc3339(r->created_at), "2026-11-23T21:17:56.792000Z");
  EXPECT_FALSE(r->ends_at);
  EXPECT_TRUE(r->labels_.empty());
}

TEST(gce_reservation, status_mapping) {
  EXPECT_EQ(reservation_status_from_string("CREATING"), reservation_status::creating);
  EXPECT_EQ(reservation_status_from_string("READY"), reservation_status::ready);
  EXPECT_EQ(reservation_status_from_string("DELETING"), reservation_status::deleting);
  EXPECT_EQ(reservation_status_from_string("UPDATING"), reservation_status::updating);
  EXPECT_EQ(reservation_status_from_string("INVALID"), reservation_status::invalid);
  EXPECT_EQ(reservation_status_from_string("SOMETHING_NEW"), reservation_status::creating);
}

TEST(gce_reservation, list_with_ours_and_someone_elses) {
  auto page = parse_reservation_list(payload("reservation_list_creating.json"));
  ASSERT_TRUE(page) << page.error().message();
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_TRUE(page->next_page_token.empty());
  const auto& by_hand = page->items[0];
  EXPECT_EQ(by_hand.name, "by-hand");
  EXPECT_TRUE(by_hand.labels_.empty());
  const auto& ours = page->items[1];
  EXPECT_EQ(ours.name, "cbr-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(ours.status, reservation_status::creating);
  EXPECT_EQ(ours.count, 3);
  EXPECT_EQ(ours.labels_.at("cloudbrain-deployment"), "prod");
  EXPECT_EQ(ours.labels_.at("cloudbrain-reservation"), "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  ASSERT_TRUE(ours.ends_at);
  EXPECT_EQ(format_rfc3339(*ours.ends_at), "2026-12-12T10:00:00.000000Z");
}

TEST(gce_reservation, garbage) {
  EXPECT_FALSE(parse_reservation("<html>"));
  EXPECT_FALSE(parse_reservation(payload("instance_running.json")));
  EXPECT_FALSE(parse_reservation(R"({"kind":"compute#reservation"})"));
  EXPECT_FALSE(parse_reservation(R"({"name":"r","specificReservation":{"count":"lots"}})"));
  EXPECT_FALSE(parse_reservation(R"({"name":"r","specificReservation":{"count":"1"},)"
                                 R"("deleteAtTime":"tomorrow"})"));
  auto numeric =
      parse_reservation(R"({"name":"r","specificReservation":{"count":4,"inUseCount":1}})");
  ASSERT_TRUE(numeric);
  EXPECT_EQ(numeric->count, 4);
  EXPECT_EQ(numeric->in_use, 1);
  EXPECT_FALSE(parse_reservation_list(R"({"kind":"compute#reservationList","items":{}})"));
  EXPECT_FALSE(parse_reservation_list(payload("instance_list_page1.json")));
}

TEST(gce_insert, a_vm_for_a_reservation_is_never_spot) {
  auto st = settings();
  st.spot = true;
  auto sp = spec();
  sp.reservation_upstream = "cbr-1";
  EXPECT_FALSE(insert_body(sp, st).contains("scheduling"));
  st.spot = false;
  st.preemptible = true;
  EXPECT_FALSE(insert_body(sp, st).contains("scheduling"));
}

}  // namespace
}  // namespace cloudbrain::providers::gce
