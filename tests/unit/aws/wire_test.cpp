#include "providers/aws/wire.hpp"

#include "core/encoding.hpp"
#include "providers/aws/sigv4.hpp"
#include "vectors.hpp"

#include <gtest/gtest.h>

#include <map>

namespace cloudbrain::providers::aws {
namespace {

using test::payload;

aws_settings settings() {
  provider_section s;
  s.name = "aws-eu";
  s.type = "aws";
  s.zones = {"eu-west-1a", "eu-west-1b", "eu-west-1c"};
  s.settings = {{"region", "eu-west-1"},
                {"subnets", "eu-west-1b=subnet-0bbb"},
                {"security-groups", "sg-0123 sg-0456"},
                {"ssh-user", "ubuntu"}};
  auto a = aws_settings::from_section(s);
  EXPECT_TRUE(a) << a.error().message();
  return *a;
}

instance_spec spec_in(std::string zone) {
  instance_spec s;
  s.instance_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  s.name = vm_name_for(s.instance_id);
  s.image = "ami-0c1bea58988a98915";
  s.instance_type = "premium";
  s.public_ssh_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx tester@ci\n";
  s.zone = std::move(zone);
  s.tags = {{"team", "infra"}, {"Name", "not ours to set"}};
  s.deployment = "prod-eu";
  s.idempotency_key = "job-17/eu-west-1a";
  return s;
}

std::map<std::string, std::string> as_map(const query_params& p) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : p) EXPECT_TRUE(m.emplace(k, v).second) << "twice: " << k;
  return m;
}

TEST(ec2_requests, run_instances_through_placement) {
  auto p = run_instances_params(spec_in("eu-west-1a"), settings(), "ami-0c1bea58988a98915", "");
  ASSERT_TRUE(p) << p.error().message();
  auto m = as_map(*p);
  EXPECT_EQ(p->front(), (std::pair<std::string, std::string>{"Action", "RunInstances"}));
  EXPECT_EQ(m["Version"], "2016-11-15");
  EXPECT_EQ(m["ImageId"], "ami-0c1bea58988a98915");
  EXPECT_EQ(m["InstanceType"], "m5.2xlarge");
  EXPECT_EQ(m["MinCount"], "1");
  EXPECT_EQ(m["MaxCount"], "1");
  EXPECT_EQ(m["ClientToken"], hex_sha256("job-17/eu-west-1a"));
  EXPECT_EQ(m["ClientToken"].size(), 64u);
  EXPECT_EQ(m["Placement.AvailabilityZone"], "eu-west-1a");
  EXPECT_EQ(m["SecurityGroupId.1"], "sg-0123");
  EXPECT_EQ(m["SecurityGroupId.2"], "sg-0456");
  EXPECT_EQ(m["InstanceInitiatedShutdownBehavior"], "terminate");
  EXPECT_FALSE(m.contains("NetworkInterface.1.SubnetId"));
  EXPECT_FALSE(
      m.contains("CapacityReservationSpecification.CapacityReservationTarget."
                 "CapacityReservationId"));
  // Tags: the request's (its Name left out), then Name and the markers; instance and volume.
  for (const std::string spec : {"TagSpecification.1", "TagSpecification.2"}) {
    EXPECT_EQ(m[spec + ".Tag.1.Key"], "team");
    EXPECT_EQ(m[spec + ".Tag.1.Value"], "infra");
    EXPECT_EQ(m[spec + ".Tag.2.Key"], "Name");
    EXPECT_EQ(m[spec + ".Tag.2.Value"], "cb-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    EXPECT_EQ(m[spec + ".Tag.3.Key"], "cloudbrain-deployment");
    EXPECT_EQ(m[spec + ".Tag.3.Value"], "prod-eu");
    EXPECT_EQ(m[spec + ".Tag.4.Key"], "cloudbrain-instance");
    EXPECT_EQ(m[spec + ".Tag.4.Value"], "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    EXPECT_FALSE(m.contains(spec + ".Tag.5.Key"));
  }
  EXPECT_EQ(m["TagSpecification.1.ResourceType"], "instance");
  EXPECT_EQ(m["TagSpecification.2.ResourceType"], "volume");
  const auto user_data = base64_decode(m["UserData"]);
  ASSERT_TRUE(user_data);
  EXPECT_EQ(*user_data,
            "#cloud-config\nusers:\n  - default\n  - name: ubuntu\n    shell: /bin/bash\n"
            "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    ssh_authorized_keys:\n"
            "      - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx tester@ci\"\n");
}

TEST(ec2_requests, run_instances_through_the_zones_subnet_into_a_reservation) {
  auto spec = spec_in("eu-west-1b");
  spec.public_ssh_key.clear();
  auto p = run_instances_params(spec, settings(), "ami-0d2cfb69a99b9a026", "cr-0123456789abcdef0");
  ASSERT_TRUE(p);
  auto m = as_map(*p);
  EXPECT_FALSE(m.contains("Placement.AvailabilityZone"));
  EXPECT_FALSE(m.contains("SecurityGroupId.1"));
  EXPECT_FALSE(m.contains("UserData"));
  EXPECT_EQ(m["NetworkInterface.1.DeviceIndex"], "0");
  EXPECT_EQ(m["NetworkInterface.1.SubnetId"], "subnet-0bbb");
  EXPECT_EQ(m["NetworkInterface.1.AssociatePublicIpAddress"], "true");
  EXPECT_EQ(m["NetworkInterface.1.SecurityGroupId.1"], "sg-0123");
  EXPECT_EQ(m["NetworkInterface.1.SecurityGroupId.2"], "sg-0456");
  EXPECT_EQ(m["CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"],
            "cr-0123456789abcdef0");
}

TEST(ec2_requests, run_instances_refuses_what_ec2_would) {
  auto spec = spec_in("eu-west-1a");
  spec.instance_type = "huge";
  auto type = run_instances_params(spec, settings(), "ami-0c1bea58988a98915", "");
  ASSERT_FALSE(type);
  EXPECT_TRUE(type.error().is(errc::cloud_permanent));
  spec = spec_in("eu-west-1a");
  spec.public_ssh_key = "ssh-ed25519 AAAA\nssh-rsa BBBB";
  auto key = run_instances_params(spec, settings(), "ami-0c1bea58988a98915", "");
  ASSERT_FALSE(key);
  EXPECT_NE(key.error().detail.find("one line"), std::string::npos);
}

TEST(ec2_requests, user_data_quotes_the_key_for_yaml) {
  auto u = user_data_for("travis", "ssh-rsa AAAA \"quoted\\comment\"");
  ASSERT_TRUE(u);
  EXPECT_NE(u->find("      - \"ssh-rsa AAAA \\\"quoted\\\\comment\\\"\"\n"), std::string::npos);
}

TEST(ec2_requests, describe_and_terminate) {
  EXPECT_EQ(describe_instances_params({"i-1", "i-2"}, {}),
            (query_params{{"Action", "DescribeInstances"},
                          {"Version", "2016-11-15"},
                          {"InstanceId.1", "i-1"},
                          {"InstanceId.2", "i-2"}}));
  EXPECT_EQ(describe_instances_params({},
                                      {{"tag:cloudbrain-deployment", {"prod-eu"}},
                                       {"instance-state-name", {"pending", "running"}}},
                                      "tok", 2),
            (query_params{{"Action", "DescribeInstances"},
                          {"Version", "2016-11-15"},
                          {"Filter.1.Name", "tag:cloudbrain-deployment"},
                          {"Filter.1.Value.1", "prod-eu"},
                          {"Filter.2.Name", "instance-state-name"},
                          {"Filter.2.Value.1", "pending"},
                          {"Filter.2.Value.2", "running"},
                          {"MaxResults", "5"},
                          {"NextToken", "tok"}}));
  EXPECT_EQ(terminate_instances_params({"i-1"}), (query_params{{"Action", "TerminateInstances"},
                                                               {"Version", "2016-11-15"},
                                                               {"InstanceId.1", "i-1"}}));
  EXPECT_EQ(describe_images_params("ubuntu/*", {"self", "099720109477"}),
            (query_params{{"Action", "DescribeImages"},
                          {"Version", "2016-11-15"},
                          {"Owner.1", "self"},
                          {"Owner.2", "099720109477"},
                          {"Filter.1.Name", "name"},
                          {"Filter.1.Value.1", "ubuntu/*"},
                          {"Filter.2.Name", "state"},
                          {"Filter.2.Value.1", "available"},
                          {"MaxResults", "1000"}}));
}

TEST(ec2_requests, capacity_reservations) {
  reservation_spec r;
  r.reservation_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  r.name = reservation_name_for(r.reservation_id);
  r.instance_type = "standard";
  r.count = 20;
  r.zone = "eu-west-1b";
  r.ends_at = *parse_rfc3339("2026-01-01T12:00:00.75Z");
  r.tags = {{"run", "nightly-42"}};
  r.deployment = "prod-eu";
  r.idempotency_key = "job-9/eu-west-1b";
  auto p = create_capacity_reservation_params(r, settings());
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, (query_params{{"Action", "CreateCapacityReservation"},
                              {"Version", "2016-11-15"},
                              {"ClientToken", hex_sha256("job-9/eu-west-1b")},
                              {"InstanceType", "m5.large"},
                              {"InstancePlatform", "Linux/UNIX"},
                              {"AvailabilityZone", "eu-west-1b"},
                              {"InstanceCount", "20"},
                              {"InstanceMatchCriteria", "targeted"},
                              {"EndDateType", "limited"},
                              {"EndDate", "2026-01-01T12:00:00Z"},
                              {"TagSpecifications.1.ResourceType", "capacity-reservation"},
                              {"TagSpecifications.1.Tag.1.Key", "run"},
                              {"TagSpecifications.1.Tag.1.Value", "nightly-42"},
                              {"TagSpecifications.1.Tag.2.Key", "Name"},
                              {"TagSpecifications.1.Tag.2.Value", r.name},
                              {"TagSpecifications.1.Tag.3.Key", "cloudbrain-deployment"},
                              {"TagSpecifications.1.Tag.3.Value", "prod-eu"},
                              {"TagSpecifications.1.Tag.4.Key", "cloudbrain-reservation"},
                              {"TagSpecifications.1.Tag.4.Value", r.reservation_id}}));
  r.count = 0;
  EXPECT_FALSE(create_capacity_reservation_params(r, settings()));
  EXPECT_EQ(describe_capacity_reservations_params({}, {{"state", {"active"}}}, "", 1000),
            (query_params{{"Action", "DescribeCapacityReservations"},
                          {"Version", "2016-11-15"},
                          {"Filter.1.Name", "state"},
                          {"Filter.1.Value.1", "active"},
                          {"MaxResults", "1000"}}));
  EXPECT_EQ(cancel_capacity_reservation_params("cr-1"),
            (query_params{{"Action", "CancelCapacityReservation"},
                          {"Version", "2016-11-15"},
                          {"CapacityReservationId", "cr-1"}}));
}

TEST(ec2_requests, form_encoding_round_trips) {
  const query_params p{{"Filter.1.Value.1", "a b+c/d~e&f=g\xE2\x82\xAC"}, {"Empty", ""}};
  const auto body = form_body(p);
  EXPECT_EQ(body, "Filter.1.Value.1=a%20b%2Bc%2Fd~e%26f%3Dg%E2%82%AC&Empty=");
  auto back = parse_form(body);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, p);
  EXPECT_EQ(parse_form("a=b+c").value(), (query_params{{"a", "b c"}}));
  EXPECT_FALSE(parse_form("a=%zz"));
  EXPECT_FALSE(parse_form("a=%4"));
}

// ---- answers -------------------------------------------------------------------------------

TEST(ec2_answers, run_instances) {
  auto i = parse_run_instances(payload("run_instances_pending.xml"), true);
  ASSERT_TRUE(i) << i.error().message();
  EXPECT_EQ(i->v.upstream_id, "i-a3747249ca8edf0f6");
  EXPECT_EQ(i->v.name, "cb-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(i->v.zone, "eu-west-1a");
  EXPECT_EQ(i->state, "pending");
  EXPECT_EQ(i->v.status, vm_status::provisioning);
  EXPECT_FALSE(i->v.ip_address);
  EXPECT_EQ(i->v.labels_.at("team"), "ci & infra <core>");
  EXPECT_EQ(i->v.labels_.at(label_deployment), "prod-eu");
  EXPECT_EQ(i->v.labels_.at(label_instance), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(format_rfc3339(i->v.created_at), "2026-12-06T12:53:25.836000Z");
  EXPECT_EQ(i->client_token, std::string(64, 'a'));
  EXPECT_EQ(i->instance_type, "m5.large");
  EXPECT_EQ(i->image_id, "ami-0c1bea58988a98915");
}

TEST(ec2_answers, describe_instances_running_public_or_private) {
  auto page = parse_describe_instances(payload("describe_instances_running.xml"), true);
  ASSERT_TRUE(page) << page.error().message();
  ASSERT_EQ(page->instances.size(), 1u);
  EXPECT_EQ(page->next_token, "");
  const auto& i = page->instances.front();
  EXPECT_EQ(i.v.status, vm_status::running);
  EXPECT_EQ(i.v.ip_address, "198.18.0.2");
  auto internal = parse_describe_instances(payload("describe_instances_running.xml"), false);
  ASSERT_TRUE(internal);
  EXPECT_EQ(internal->instances.front().v.ip_address, "10.0.0.14");
}

TEST(ec2_answers, describe_instances_pages) {
  auto first = parse_describe_instances(payload("describe_instances_page1.xml"), true);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->instances.size(), 5u);
  EXPECT_EQ(first->next_token, "cGFnZToxMTowMzJhZmE5Mg==");
  for (const auto& i : first->instances) {
    EXPECT_EQ(i.v.zone, "eu-west-1b");
    EXPECT_EQ(i.v.labels_.at(label_deployment), "paged");
    EXPECT_EQ(i.v.name, vm_name_for(i.v.labels_.at(label_instance)));
  }
  auto last = parse_describe_instances(payload("describe_instances_page2.xml"), true);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->instances.size(), 1u);
  EXPECT_EQ(last->next_token, "");
  auto empty = parse_describe_instances(payload("describe_instances_empty.xml"), true);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->instances.empty());
}

TEST(ec2_answers, terminated_instances_say_why) {
  auto changes = parse_terminate_instances(payload("terminate_instances.xml"));
  ASSERT_TRUE(changes) << changes.error().message();
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ(changes->front().instance_id, "i-a3747249ca8edf0f6");
  EXPECT_EQ(changes->front().current_state, "shutting-down");
  EXPECT_EQ(changes->front().previous_state, "running");
  auto page = parse_describe_instances(payload("describe_instances_terminated.xml"), true);
  ASSERT_TRUE(page);
  const auto& i = page->instances.front();
  EXPECT_EQ(i.state, "terminated");
  EXPECT_EQ(i.v.status, vm_status::terminated);
  EXPECT_EQ(i.state_reason, "Client.UserInitiatedShutdown: User initiated shutdown");
  EXPECT_FALSE(i.v.ip_address);  // given back on termination
}

TEST(ec2_answers, a_prefixed_namespace_reads_the_same) {
  auto page = parse_describe_instances(payload("describe_instances_prefixed.xml"), true);
  ASSERT_TRUE(page) << page.error().message();
  ASSERT_EQ(page->instances.size(), 1u);
  EXPECT_EQ(page->instances.front().v.name, "by-hand & \xE2\x98\xBA");
  EXPECT_EQ(page->instances.front().v.ip_address, "203.0.113.20");
}

TEST(ec2_answers, images_and_the_newest_available) {
  auto page = parse_describe_images(payload("describe_images.xml"));
  ASSERT_TRUE(page) << page.error().message();
  ASSERT_EQ(page->images.size(), 3u);
  EXPECT_EQ(page->images[0].name, "cloudbrain-ci-2024-01");
  EXPECT_EQ(page->images[0].owner_id, "123456789012");
  const auto* newest = newest_image(page->images);
  ASSERT_NE(newest, nullptr);
  EXPECT_EQ(newest->image_id, "ami-0d2cfb69a99b9a026");  // 2024-03 is still pending
  EXPECT_EQ(newest_image({}), nullptr);
}

TEST(ec2_answers, capacity_reservations) {
  auto made = parse_create_capacity_reservation(payload("create_capacity_reservation.xml"));
  ASSERT_TRUE(made) << made.error().message();
  const auto& r = made->r;
  EXPECT_EQ(r.upstream_id, "cr-efae5f7a55f1645ae");
  EXPECT_EQ(r.name, "cbr-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(r.zone, "eu-west-1b");
  EXPECT_EQ(r.machine_type, "m5.large");
  EXPECT_EQ(r.count, 3);
  EXPECT_EQ(r.in_use, 0);
  EXPECT_EQ(made->state, "pending");
  EXPECT_EQ(r.status, reservation_status::creating);
  EXPECT_EQ(r.labels_.at(label_reservation), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(r.labels_.at("run"), "nightly-42");
  ASSERT_TRUE(r.ends_at);
  EXPECT_EQ(format_rfc3339(*r.ends_at), "2026-12-06T16:53:27.510000Z");
  EXPECT_EQ(format_rfc3339(r.created_at), "2026-12-06T12:53:27.538000Z");

  auto listed = parse_describe_capacity_reservations(payload("describe_capacity_reservations.xml"));
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ(listed->reservations.size(), 1u);
  EXPECT_EQ(listed->reservations[0].state, "active");
  EXPECT_EQ(listed->reservations[0].r.status, reservation_status::ready);
  EXPECT_EQ(listed->reservations[0].r.in_use, 1);  // one instance launched into it
  EXPECT_EQ(parse_cancel_capacity_reservation(payload("cancel_capacity_reservation.xml")).value(),
            true);
  EXPECT_TRUE(reservation_over("cancelled"));
  EXPECT_TRUE(reservation_over("expired"));
  EXPECT_FALSE(reservation_over("active"));
  EXPECT_EQ(reservation_status_from_state("failed"), reservation_status::invalid);
  EXPECT_EQ(reservation_status_from_state("assessing"), reservation_status::creating);
}

TEST(ec2_answers, anything_else_is_a_garbled_answer) {
  for (const auto& body : {std::string(), std::string("<html>"), payload("error_html_502.txt"),
                           payload("describe_instances_running.xml")}) {
    auto r = parse_run_instances(body, true);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(errc::cloud_transient)) << r.error().message();
  }
  auto wrong_ns = parse_describe_instances(
      "<DescribeInstancesResponse xmlns=\"urn:not-ec2\"><reservationSet/>"
      "</DescribeInstancesResponse>",
      true);
  ASSERT_FALSE(wrong_ns);
  EXPECT_NE(wrong_ns.error().detail.find("not a DescribeInstancesResponse"), std::string::npos);
  auto no_id = parse_describe_instances(
      "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
      "<reservationSet><item><instancesSet><item><instanceState><name>running</name>"
      "</instanceState></item></instancesSet></item></reservationSet>"
      "</DescribeInstancesResponse>",
      true);
  ASSERT_FALSE(no_id);
  EXPECT_NE(no_id.error().detail.find("without an id"), std::string::npos);
}

// ---- errors --------------------------------------------------------------------------------

struct error_case {
  const char* file;
  unsigned status;
  errc kind;
  const char* code;
  const char* words;
};

TEST(ec2_errors, every_recorded_error_sorted_into_its_kind) {
  for (const auto& c : std::initializer_list<error_case>{
           {"error_insufficient_instance_capacity.xml", 500, errc::cloud_capacity,
            "InsufficientInstanceCapacity", "sufficient m5.large capacity"},
           {"error_unsupported.xml", 400, errc::cloud_capacity, "Unsupported",
            "is not supported in your requested Availability Zone (eu-west-1c)"},
           {"error_vcpu_limit.xml", 400, errc::cloud_quota, "VcpuLimitExceeded",
            "current vCPU limit of 4"},
           {"error_request_limit.xml", 503, errc::cloud_rate_limited, "RequestLimitExceeded",
            "Request limit exceeded."},
           {"error_unavailable.xml", 503, errc::cloud_transient, "Unavailable", "overloaded"},
           {"error_not_found.xml", 400, errc::cloud_not_found, "InvalidInstanceID.NotFound",
            "'i-0123456789abcdef0' does not exist"},
           {"error_ami_not_found.xml", 400, errc::cloud_permanent, "InvalidAMIID.NotFound",
            "ami-0123456789abcdef0"},
           {"error_idempotent_mismatch.xml", 400, errc::cloud_permanent,
            "IdempotentParameterMismatch", "inconsistent"},
           {"error_auth_failure.xml", 401, errc::cloud_auth, "AuthFailure", "not able to validate"},
           {"error_signature_does_not_match.xml", 403, errc::cloud_auth, "SignatureDoesNotMatch",
            "Check your AWS Secret Access Key"},
           {"error_response_shape.xml", 400, errc::cloud_auth, "ExpiredToken", "is expired"},
       }) {
    SCOPED_TRACE(c.file);
    const auto body = payload(c.file);
    const auto parsed = parse_error_body(body);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->code, c.code);
    EXPECT_FALSE(parsed->request_id.empty());
    const auto e = error_from_response(c.status, body);
    EXPECT_TRUE(e.is(c.kind)) << e.message();
    EXPECT_NE(e.detail.find(c.words), std::string::npos) << e.detail;
    EXPECT_NE(e.detail.find(std::string("(") + c.code + ", HTTP " + std::to_string(c.status) +
                            ", request " + parsed->request_id + ")"),
              std::string::npos)
        << e.detail;
  }
}

TEST(ec2_errors, a_refused_time_is_reported_as_clock_skew) {
  const auto body = payload("error_request_expired.xml");
  const auto t = *parse_rfc3339("2026-12-06T13:13:00Z");
  const auto ahead = error_from_response(400, body, t, t + std::chrono::seconds(1200));
  EXPECT_TRUE(ahead.is(errc::cloud_auth));
  EXPECT_EQ(ahead.detail.rfind("clock skew: this host's clock is 1200 s ahead of EC2's; "
                               "Request has expired. (RequestExpired, HTTP 400, request ",
                               0),
            0u)
      << ahead.detail;
  const auto behind = error_from_response(400, body, t, t - std::chrono::seconds(400));
  EXPECT_NE(behind.detail.find("400 s behind EC2's"), std::string::npos) << behind.detail;
  const auto unknown = error_from_response(400, body);
  EXPECT_EQ(unknown.detail.rfind("clock skew or expired credentials: EC2 refused the request's "
                                 "time; ",
                                 0),
            0u)
      << unknown.detail;
  // In step with EC2: not the clock, the session token.
  const auto expired = error_from_response(400, body, t, t + std::chrono::seconds(3));
  EXPECT_EQ(expired.detail.rfind("expired credentials (this host's clock agrees with EC2's): "
                                 "Request has expired.",
                                 0),
            0u)
      << expired.detail;
  const auto signature = error_from_response(
      403,
      "<Response><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>Signature expired: "
      "20240101T000000Z is now earlier than 20240101T001000Z (20240101T001500Z - 5 min.)"
      "</Message></Error></Errors><RequestID>r</RequestID></Response>");
  EXPECT_NE(signature.detail.find("clock skew"), std::string::npos);
  // A plain wrong secret is no clock problem.
  EXPECT_EQ(error_from_response(403, payload("error_signature_does_not_match.xml"))
                .detail.find("clock skew"),
            std::string::npos);
}

TEST(ec2_errors, bodies_that_are_no_error_document) {
  const auto html = error_from_response(502, payload("error_html_502.txt"));
  EXPECT_TRUE(html.is(errc::cloud_transient));
  EXPECT_NE(html.detail.find("502 Bad Gateway"), std::string::npos);
  EXPECT_NE(html.detail.find("(HTTP 502)"), std::string::npos);
  EXPECT_TRUE(error_from_response(429, "").is(errc::cloud_rate_limited));
  EXPECT_EQ(error_from_response(400, "").detail, "empty body (HTTP 400)");
  EXPECT_TRUE(error_from_response(400, "oops").is(errc::cloud_permanent));
  EXPECT_TRUE(error_from_response(403, "").is(errc::cloud_auth));
  const auto state = error_from_response(
      400,
      "<Response><Errors><Error><Code>IncorrectState</Code><Message>cr-1 is cancelled (not "
      "active)</Message></Error></Errors><RequestID>r</RequestID></Response>");
  EXPECT_TRUE(has_code(state, "IncorrectState"));
  EXPECT_FALSE(has_code(state, "Incorrect"));
  EXPECT_FALSE(has_code(error_from_response(400, "(IncorrectState, HTTP 400)"), "IncorrectState"));
  EXPECT_EQ(kind_of_code("InsufficientCapacity", 500), errc::cloud_capacity);
  EXPECT_EQ(kind_of_code("InstanceLimitExceeded", 400), errc::cloud_quota);
  EXPECT_EQ(kind_of_code("ReservationCapacityExceeded", 400), errc::cloud_capacity);
  EXPECT_EQ(kind_of_code("InvalidCapacityReservationId.NotFound", 400), errc::cloud_not_found);
  EXPECT_EQ(kind_of_code("InternalError", 500), errc::cloud_transient);
}

}  // namespace
}  // namespace cloudbrain::providers::aws
