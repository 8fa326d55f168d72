// The Core API codec on payloads in OCI's shapes (tests/unit/oci/payloads, see its README).
#include "providers/oci/wire.hpp"

#include "core/encoding.hpp"
#include "providers/oci/signer.hpp"
#include "tests/unit/oci/payload.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace cloudbrain::providers::oci {
namespace {
namespace json = boost::json;
using test::payload;

constexpr const char* image = "ocid1.image.oc1.iad.aaaaaaaaxcqnmo5jq7pmtfsuxvfzfwvpokf4gvo6cgsbz";

oci_settings settings() {
  provider_section p;
  p.name = "oci";
  p.type = "oci";
  p.zones = {"Uocm:US-ASHBURN-AD-1", "Uocm:US-ASHBURN-AD-2"};
  p.settings = {{"region", "us-ashburn-1"},
                {"compartment", "ocid1.compartment.oc1..aaaaaaaa4eiqbcuxqewyoyzmx5cd27jqjdnjq"},
                {"subnet", "ocid1.subnet.oc1.iad.aaaaaaaazyx5qc2smsn5ofdf7jlfvxhkcyb4jkwwy"},
                {"tenancy", "ocid1.tenancy.oc1..aaaa"},
                {"user", "ocid1.user.oc1..bbbb"},
                {"fingerprint", "20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34"},
                {"key-file", "/k.pem"},
                {"premium-shape", "VM.Standard2.2"}};
  auto s = oci_settings::from_section(p);
  EXPECT_TRUE(s) << s.error().message();
  return *s;
}

instance_spec spec() {
  instance_spec s;
  s.instance_id = "018e3b3c-6e1a-7c4e-9a5b-2f1d0c9e8b7a";
  s.name = "cb-018e3b3c-6e1a-7c4e-9a5b-2f1d0c9e8b7a";
  s.image = image;
  s.instance_type = "standard";
  s.public_ssh_key = "ssh-ed25519 AAAAC3Nza tester@ci\n";
  s.zone = "Uocm:US-ASHBURN-AD-2";
  s.tags = {{"team", "ci"}, {"build.id", "42"}, {"cloudbrain-instance", "forged"}};
  s.deployment = "ci-east";
  s.idempotency_key = "job-7/Uocm:US-ASHBURN-AD-2";
  return s;
}

TEST(oci_wire, urls_and_queries) {
  const auto s = settings();
  EXPECT_EQ(api_url(s, "/instances"),
            "https://iaas.us-ashburn-1.oraclecloud.com/20160918/instances");
  EXPECT_EQ(api_url(s, "/instances",
                    query_string({{"compartmentId", "ocid1.x"},
                                  {"availabilityDomain", "Uocm:US-ASHBURN-AD-1"},
                                  {"page", ""},
                                  {"displayName", "a b"}})),
            "https://iaas.us-ashburn-1.oraclecloud.com/20160918/instances?compartmentId=ocid1.x&"
            "availabilityDomain=Uocm%3AUS-ASHBURN-AD-1&displayName=a%20b");
}

TEST(oci_wire, retry_tokens_follow_the_idempotency_key) {
  const auto a = retry_token_for("job-7/Uocm:US-ASHBURN-AD-1");
  EXPECT_EQ(a.size(), 64u);  // OCI takes at most 64
  EXPECT_EQ(a, retry_token_for("job-7/Uocm:US-ASHBURN-AD-1"));
  EXPECT_NE(a, retry_token_for("job-7/Uocm:US-ASHBURN-AD-2"));
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(oci_wire, launch_body_for_a_flex_shape) {
  auto body = build_launch_body(spec(), settings());
  ASSERT_TRUE(body) << body.error().message();
  const json::value expected = json::parse(R"({
    "compartmentId": "ocid1.compartment.oc1..aaaaaaaa4eiqbcuxqewyoyzmx5cd27jqjdnjq",
    "availabilityDomain": "Uocm:US-ASHBURN-AD-2",
    "displayName": "cb-018e3b3c-6e1a-7c4e-9a5b-2f1d0c9e8b7a",
    "shape": "VM.Standard.E4.Flex",
    "shapeConfig": {"ocpus": 1, "memoryInGBs": 8},
    "sourceDetails": {"sourceType": "image",
                      "imageId": "ocid1.image.oc1.iad.aaaaaaaaxcqnmo5jq7pmtfsuxvfzfwvpokf4gvo6cgsbz"},
    "createVnicDetails": {"subnetId": "ocid1.subnet.oc1.iad.aaaaaaaazyx5qc2smsn5ofdf7jlfvxhkcyb4jkwwy",
                          "assignPublicIp": true},
    "metadata": {"ssh_authorized_keys": "ssh-ed25519 AAAAC3Nza tester@ci"},
    "freeformTags": {"team": "ci", "build_id": "42", "cloudbrain-deployment": "ci-east",
                     "cloudbrain-instance": "018e3b3c-6e1a-7c4e-9a5b-2f1d0c9e8b7a"}
  })");
  EXPECT_EQ(json::value(*body), expected) << json::serialize(*body);
  // Whole numbers go out as JSON integers.
  EXPECT_NE(json::serialize(*body).find(R"("shapeConfig":{"ocpus":1,"memoryInGBs":8})"),
            std::string::npos);
}

TEST(oci_wire, launch_body_for_a_fixed_shape_into_a_reservation) {
  auto sp = spec();
  sp.instance_type = "premium";
  sp.public_ssh_key.clear();
  auto s = settings();
  s.boot_volume_size_gb = 100;
  s.assign_public_ip = false;
  auto body = build_launch_body(sp, s, "ocid1.capacityreservation.oc1.iad.aaaa");
  ASSERT_TRUE(body) << body.error().message();
  EXPECT_EQ(body->at("shape"), "VM.Standard2.2");
  EXPECT_FALSE(body->contains("shapeConfig"));
  EXPECT_FALSE(body->contains("metadata"));
  EXPECT_EQ(body->at("capacityReservationId"), "ocid1.capacityreservation.oc1.iad.aaaa");
  EXPECT_EQ(body->at("sourceDetails").at("bootVolumeSizeInGBs"), 100);
  EXPECT_EQ(body->at("createVnicDetails").at("assignPublicIp"), false);
}

TEST(oci_wire, another_ssh_user_is_made_by_cloud_init) {
  auto s = settings();
  s.ssh_user = "travis";
  auto body = build_launch_body(spec(), s);
  ASSERT_TRUE(body);
  const auto& md = body->at("metadata").as_object();
  EXPECT_EQ(md.at("ssh_authorized_keys"), "ssh-ed25519 AAAAC3Nza tester@ci");
  auto user_data = base64_decode(md.at("user_data").as_string());
  ASSERT_TRUE(user_data);
  EXPECT_TRUE(user_data->starts_with("#cloud-config\n")) << *user_data;
  EXPECT_NE(user_data->find("name: travis"), std::string::npos);
  EXPECT_NE(user_data->find("- ssh-ed25519 AAAAC3Nza tester@ci\n"), std::string::npos);
}

TEST(oci_wire, launch_refuses_what_oci_would) {
  auto sp = spec();
  sp.image = "image-2016-01-01";
  auto body = build_launch_body(sp, settings());
  ASSERT_FALSE(body);
  EXPECT_TRUE(body.error().is(errc::cloud_permanent));
  EXPECT_NE(body.error().detail.find("image OCID"), std::string::npos);
  sp = spec();
  sp.instance_type = "huge";
  EXPECT_TRUE(build_launch_body(sp, settings()).error().is(errc::cloud_permanent));
}

TEST(oci_wire, reservation_body) {
  reservation_spec r;
  r.reservation_id = "018e3b61-2d44-7a80-8f0e-5c1b2a3d4e5f";
  r.name = "cbr-018e3b61-2d44-7a80-8f0e-5c1b2a3d4e5f";
  r.instance_type = "standard";
  r.count = 20;
  r.zone = "Uocm:US-ASHBURN-AD-1";
  r.tags = {{"run", "nightly-42"}};
  r.deployment = "ci-east";
  auto body = build_reservation_body(r, settings());
  ASSERT_TRUE(body) << body.error().message();
  const json::value expected = json::parse(R"({
    "compartmentId": "ocid1.compartment.oc1..aaaaaaaa4eiqbcuxqewyoyzmx5cd27jqjdnjq",
    "availabilityDomain": "Uocm:US-ASHBURN-AD-1",
    "displayName": "cbr-018e3b61-2d44-7a80-8f0e-5c1b2a3d4e5f",
    "isDefaultReservation": false,
    "instanceReservationConfigs": [{"instanceShape": "VM.Standard.E4.Flex", "reservedCount": 20,
                                    "instanceShapeConfig": {"ocpus": 1, "memoryInGBs": 8}}],
    "freeformTags": {"run": "nightly-42", "cloudbrain-deployment": "ci-east",
                     "cloudbrain-reservation": "018e3b61-2d44-7a80-8f0e-5c1b2a3d4e5f"}
  })");
  EXPECT_EQ(json::value(*body), expected) << json::serialize(*body);
  r.count = 0;
  EXPECT_FALSE(build_reservation_body(r, settings()));
  r.count = 2;
  r.instance_type = "premium";
  body = build_reservation_body(r, settings());
  ASSERT_TRUE(body);
  EXPECT_FALSE(
      body->at("instanceReservationConfigs").at(0).as_object().contains("instanceShapeConfig"));
}

TEST(oci_wire, tags_follow_oci_rules) {
  EXPECT_EQ(tag_key("build.id"), "build_id");
  EXPECT_EQ(tag_key("a b\tc"), "a_b_c");
  EXPECT_EQ(tag_key(std::string(150, 'k')).size(), 100u);
  EXPECT_EQ(tag_value(std::string(300, 'v')).size(), 256u);
}

TEST(oci_wire, instance) {
  auto i = parse_instance(payload("instance_running.json"));
  ASSERT_TRUE(i) << i.error().message();
  EXPECT_EQ(i->v.name, "cb-018e3b3c-6e1a-7c4e-9a5b-2f1d0c9e8b7a");
  EXPECT_EQ(i->v.upstream_id,
            "ocid1.instance.oc1.iad.anuwcljtc3oxkmycufrbcdqvyqpnbbx3upw2gpvrvwe5rbkuyfdgwt6y6aha");
  EXPECT_EQ(i->v.zone, "Uocm:US-ASHBURN-AD-2");
  EXPECT_EQ(i->v.status, vm_status::running);
  EXPECT_EQ(i->lifecycle_state, "RUNNING");
  EXPECT_FALSE(i->v.ip_address);  // addresses live on the VNIC
  EXPECT_EQ(i->v.labels_.at(label_deployment), "ci-east");
  EXPECT_EQ(i->v.labels_.at(label_instance), "018e3b3c-6e1a-7c4e-9a5b-2f1d0c9e8b7a");
  EXPECT_EQ(i->v.labels_.size(), 3u);  // definedTags are not ours
  EXPECT_EQ(format_rfc3339(i->v.created_at), "2024-03-14T09:26:53.717000Z");
  EXPECT_EQ(i->shape, "VM.Standard.E4.Flex");
  EXPECT_EQ(i->capacity_reservation_id, "");

  EXPECT_FALSE(parse_instance("<html>502</html>"));
  EXPECT_TRUE(parse_instance("{}").error().is(errc::cloud_transient));
  EXPECT_FALSE(parse_instance(R"({"id":"ocid1.instance.oc1.iad.x"})"));  // no lifecycleState
}

TEST(oci_wire, lifecycle_states) {
  EXPECT_EQ(status_from_lifecycle("PROVISIONING"), vm_status::provisioning);
  EXPECT_EQ(status_from_lifecycle("STARTING"), vm_status::provisioning);
  EXPECT_EQ(status_from_lifecycle("MOVING"), vm_status::provisioning);
  EXPECT_EQ(status_from_lifecycle("RUNNING"), vm_status::running);
  EXPECT_EQ(status_from_lifecycle("STOPPING"), vm_status::stopping);
  EXPECT_EQ(status_from_lifecycle("TERMINATING"), vm_status::stopping);
  EXPECT_EQ(status_from_lifecycle("STOPPED"), vm_status::terminated);
  EXPECT_EQ(status_from_lifecycle("TERMINATED"), vm_status::terminated);
  EXPECT_EQ(reservation_status_from_lifecycle("CREATING"), reservation_status::creating);
  EXPECT_EQ(reservation_status_from_lifecycle("ACTIVE"), reservation_status::ready);
  EXPECT_EQ(reservation_status_from_lifecycle("UPDATING"), reservation_status::updating);
  EXPECT_EQ(reservation_status_from_lifecycle("DELETING"), reservation_status::deleting);
}

TEST(oci_wire, instance_list) {
  auto list = parse_instance_list(payload("instance_list.json"));
  ASSERT_TRUE(list) << list.error().message();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1].v.status, vm_status::provisioning);
  EXPECT_EQ((*list)[1].v.zone, "Uocm:US-ASHBURN-AD-1");
  EXPECT_EQ((*list)[1].capacity_reservation_id,
            "ocid1.capacityreservation.oc1.iad."
            "anuwcljtc3oxkmyc7ihzjdkkd2ovqbsuhx7vbbdsy2j7m3yfmzlq7hgbbcxa");
  EXPECT_EQ((*list)[2].lifecycle_state, "TERMINATED");
  EXPECT_TRUE((*list)[2].v.labels_.empty());
  EXPECT_TRUE(parse_instance_list("[]").value().empty());
  EXPECT_FALSE(parse_instance_list(payload("instance_running.json")));  // not a list
  EXPECT_FALSE(parse_instance_list("[1]"));
}

TEST(oci_wire, vnics) {
  auto attachments = parse_vnic_attachments(payload("vnic_attachments.json"));
  ASSERT_TRUE(attachments) << attachments.error().message();
  ASSERT_EQ(attachments->size(), 2u);
  const auto* primary = primary_attachment(*attachments);
  ASSERT_NE(primary, nullptr);
  EXPECT_EQ(primary->vnic_id,
            "ocid1.vnic.oc1.iad.abuwcljtwdcq7ktbkpu7ldjcmfqwstnfyx4kbojdgbmrbvdmx6y7qegkrcoq");
  EXPECT_EQ(primary_attachment({{"a", "", "ATTACHING", 0}}), nullptr);

  auto vnic = parse_vnic(payload("vnic.json"));
  ASSERT_TRUE(vnic) << vnic.error().message();
  EXPECT_EQ(vnic->public_ip, "203.0.113.25");
  EXPECT_EQ(vnic->private_ip, "10.0.1.37");
  EXPECT_TRUE(vnic->is_primary);
  EXPECT_FALSE(parse_vnic("[]"));
}

TEST(oci_wire, capacity_reservation) {
  std::string state;
  auto r = parse_reservation(payload("reservation_active.json"), &state);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(state, "ACTIVE");
  EXPECT_EQ(r->status, reservation_status::ready);
  EXPECT_EQ(r->name, "cbr-018e3b61-2d44-7a80-8f0e-5c1b2a3d4e5f");
  EXPECT_EQ(r->zone, "Uocm:US-ASHBURN-AD-1");
  EXPECT_EQ(r->count, 20);
  EXPECT_EQ(r->in_use, 3);
  EXPECT_EQ(r->machine_type, "VM.Standard.E4.Flex (1 OCPU, 8 GB)");
  EXPECT_EQ(r->labels_.at(label_reservation), "018e3b61-2d44-7a80-8f0e-5c1b2a3d4e5f");
  EXPECT_FALSE(r->ends_at);  // OCI reservations have no end date

  auto list = parse_reservation_list(payload("reservation_list.json"));
  ASSERT_TRUE(list) << list.error().message();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].r.in_use, 3);
  EXPECT_EQ((*list)[0].r.machine_type, "");  // summaries carry no configs
  EXPECT_EQ((*list)[1].lifecycle_state, "DELETED");
  EXPECT_FALSE(parse_reservation(R"({"id":"x","lifecycleState":"ACTIVE",)"
                                 R"("reservedInstanceCount":-1})"));
}

TEST(oci_wire, work_requests) {
  auto wr = parse_work_request(payload("work_request_failed.json"));
  ASSERT_TRUE(wr) << wr.error().message();
  EXPECT_EQ(wr->status, work_request_status::failed);
  EXPECT_TRUE(wr->finished());
  EXPECT_EQ(wr->percent_complete, 100);
  EXPECT_EQ(wr->operation_type, "CreateComputeCapacityReservation");
  auto errors = parse_work_request_errors(payload("work_request_errors.json"));
  ASSERT_TRUE(errors);
  const auto e = error_from_work_request(*wr, *errors);
  EXPECT_TRUE(e.is(errc::cloud_capacity)) << e.message();
  EXPECT_NE(e.detail.find("Out of host capacity. (InternalError)"), std::string::npos) << e.detail;
  EXPECT_NE(e.detail.find(wr->id), std::string::npos);

  const auto quota = error_from_work_request(
      *wr,
      {{"LimitExceeded", "The following service limits were exceeded: standard-e4-core-count"}});
  EXPECT_TRUE(quota.is(errc::cloud_quota));
  // A failure of another kind is for good: retrying it with the same token would replay it.
  EXPECT_TRUE(error_from_work_request(*wr, {{"InternalError", "Internal error occurred"}})
                  .is(errc::cloud_permanent));
  EXPECT_TRUE(error_from_work_request(*wr, {}).is(errc::cloud_permanent));

  auto running = parse_work_request(R"({"id":"w","status":"IN_PROGRESS","percentComplete":40.5})");
  ASSERT_TRUE(running);
  EXPECT_FALSE(running->finished());
}

TEST(oci_wire, errors_sorted_into_kinds) {
  struct row {
    unsigned status;
    std::string body;
    errc kind;
  };
  for (const auto& r : std::vector<row>{
           {500, R"({"code":"InternalError","message":"Out of host capacity."})",
            errc::cloud_capacity},
           {400, R"({"code":"LimitExceeded","message":"Service limit exceeded"})",
            errc::cloud_quota},
           {400, R"({"code":"QuotaExceeded","message":"Quota exceeded"})", errc::cloud_quota},
           {429, R"({"code":"TooManyRequests","message":"Too many requests for the user"})",
            errc::cloud_rate_limited},
           {409, R"({"code":"IncorrectState","message":"Instance is in an incorrect state"})",
            errc::cloud_transient},
           {409, R"({"code":"Conflict","message":"Conflict"})", errc::cloud_permanent},
           {409, R"({"code":"NotAuthorizedOrResourceAlreadyExists","message":"m"})",
            errc::cloud_already_exists},
           {401,
            R"({"code":"NotAuthenticated","message":"The required information to complete )"
            R"(authentication was not provided or was incorrect."})",
            errc::cloud_auth},
           {404,
            R"({"code":"NotAuthorizedOrNotFound","message":"Authorization failed or )"
            R"(requested resource not found."})",
            errc::cloud_not_found},
           {400, R"({"code":"InvalidParameter","message":"Invalid shape"})", errc::cloud_permanent},
           {500, R"({"code":"InternalServerError","message":"Internal Server Error"})",
            errc::cloud_transient},
           {503, "<html>Service Unavailable</html>", errc::cloud_transient},
           {502, "", errc::cloud_transient},
       }) {
    SCOPED_TRACE(r.body);
    const auto e = error_from_response(r.status, r.body, {.opc_request_id = "rid/1/2"});
    EXPECT_TRUE(e.is(r.kind)) << e.message();
    EXPECT_NE(e.detail.find("opc-request-id rid/1/2"), std::string::npos) << e.detail;
    EXPECT_NE(e.detail.find("HTTP " + std::to_string(r.status)), std::string::npos);
  }
  const auto nf = error_from_response(
      404,
      R"({"code":"NotAuthorizedOrNotFound","message":"Authorization failed or requested )"
      R"(resource not found."})",
      {.opc_request_id = "ABC"});
  EXPECT_EQ(nf.detail,
            "Authorization failed or requested resource not found. (HTTP 404 "
            "NotAuthorizedOrNotFound, opc-request-id ABC)");
}

TEST(oci_wire, an_unauthenticated_answer_says_whether_the_clock_is_off) {
  const std::string body = R"({"code":"NotAuthenticated","message":"The required information )"
                           R"(to complete authentication was not provided or was incorrect."})";
  const auto now = system_clock::from_time_t(1700000000);
  // OCI's clock 7 minutes behind ours.
  auto e = error_from_response(401, body, {"r1", http_date(now - std::chrono::minutes(7)), now});
  EXPECT_TRUE(e.is(errc::cloud_auth));
  EXPECT_NE(e.detail.find("this host's clock is 420 s ahead of OCI's"), std::string::npos)
      << e.detail;
  EXPECT_NE(e.detail.find("NotAuthenticated, opc-request-id r1"), std::string::npos);
  e = error_from_response(401, body, {"r2", http_date(now + std::chrono::minutes(6)), now});
  EXPECT_NE(e.detail.find("360 s behind OCI's"), std::string::npos) << e.detail;
  // Clocks in step: the key, not the clock.
  e = error_from_response(401, body, {"r3", http_date(now + std::chrono::seconds(20)), now});
  EXPECT_EQ(e.detail.find("clock"), std::string::npos) << e.detail;
  EXPECT_NE(e.detail.find("check tenancy, user, fingerprint and key-file"), std::string::npos);
}

}  // namespace
}  // namespace cloudbrain::providers::oci
