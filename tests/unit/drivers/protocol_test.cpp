#include "providers/driver_protocol/protocol.hpp"

#include "core/time.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gtest/gtest.h>

namespace cloudbrain::driver_protocol {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

json::object object_of(std::string_view text) { return json::parse(text).as_object(); }

std::string reason_of(std::string_view text, sender from) {
  auto m = parse_message(text, from);
  EXPECT_FALSE(m.has_value()) << text;
  return m ? std::string() : m.error().reason;
}

TEST(driver_protocol, vocabularies_round_trip) {
  for (const auto o :
       {operation::create, operation::get, operation::destroy, operation::list, operation::reserve,
        operation::get_reservation, operation::release, operation::list_reservations}) {
    EXPECT_EQ(parse_operation(to_string(o)), o);
  }
  EXPECT_EQ(to_string(operation::destroy), "delete");
  EXPECT_FALSE(parse_operation("destroy"));
  for (const auto k : {error_kind::capacity, error_kind::quota, error_kind::throttled,
                       error_kind::invalid, error_kind::auth, error_kind::not_found,
                       error_kind::already_exists, error_kind::transient}) {
    EXPECT_EQ(parse_error_kind(to_string(k)), k);
  }
  EXPECT_EQ(needed_for(operation::list), capability::list);
  EXPECT_EQ(needed_for(operation::release), capability::reservations);
  EXPECT_EQ(needed_for(operation::get), capability::instances);
  EXPECT_TRUE(mutates(operation::release));
  EXPECT_FALSE(mutates(operation::list_reservations));
}

TEST(driver_protocol, names_and_ids) {
  EXPECT_TRUE(valid_driver_name("vsphere"));
  EXPECT_TRUE(valid_driver_name("lab-pool_2.x"));
  EXPECT_FALSE(valid_driver_name(""));
  EXPECT_FALSE(valid_driver_name("-lead"));
  EXPECT_FALSE(valid_driver_name("Caps"));
  EXPECT_FALSE(valid_driver_name(std::string(64, 'a')));
  EXPECT_TRUE(valid_id("op-1"));
  EXPECT_FALSE(valid_id(""));
  EXPECT_FALSE(valid_id("has space"));
  EXPECT_FALSE(valid_id(std::string(65, 'x')));
}

TEST(driver_protocol, a_registration_round_trips) {
  registration r;
  r.driver = "pool";
  r.capabilities = {capability::instances, capability::list};
  r.max_in_flight = 16;
  const auto text = json::serialize(to_json(r));
  auto m = parse_message(text, sender::driver);
  ASSERT_TRUE(m) << m.error().reason;
  EXPECT_EQ(m->type, "register");
  auto back = registration_from(m->fields);
  ASSERT_TRUE(back) << back.error().reason;
  EXPECT_EQ(back->driver, "pool");
  EXPECT_EQ(back->protocol_version, version);
  EXPECT_TRUE(back->has(capability::list));
  EXPECT_FALSE(back->has(capability::reservations));
  EXPECT_EQ(back->max_in_flight, 16);
}

TEST(driver_protocol, a_bad_registration_says_what_is_wrong) {
  const auto reg = [](std::string_view fields) {
    return registration_from(
        object_of(std::string("{\"type\":\"register\",") + std::string(fields) + "}"));
  };
  auto r = reg(R"("driver":"Pool","protocol_version":1,"capabilities":[],"max_in_flight":1)");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().reason.find("'driver'"), std::string::npos);
  r = reg(R"("driver":"p","protocol_version":1,"capabilities":["teleport"],"max_in_flight":1)");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().reason.find("capabilities"), std::string::npos);
  r = reg(R"("driver":"p","protocol_version":1,"capabilities":[],"max_in_flight":0)");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().reason.find("max_in_flight"), std::string::npos);
  r = reg(R"("driver":"p","protocol_version":1,"capabilities":[],"max_in_flight":5000)");
  ASSERT_FALSE(r);
  // Repeated capabilities count once.
  r = reg(R"("driver":"p","protocol_version":2,"capabilities":["list","list"],"max_in_flight":3)");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->capabilities.size(), 1u);
  EXPECT_EQ(r->protocol_version, 2);
}

TEST(driver_protocol, operations_round_trip_with_their_arguments) {
  operation_request create;
  create.id = "op-7";
  create.op = operation::create;
  create.provider = "lab";
  create.idempotency_key = "job-1/dc1";
  create.deadline = 30s;
  create.config_version = "c1";
  create.secret_version = "s1";
  machine_spec spec;
  spec.instance_id = "0190b3e4-0000-7000-8000-000000000001";
  spec.name = "cb-0190b3e4-0000-7000-8000-000000000001";
  spec.image = "debian-12";
  spec.instance_type = "standard";
  spec.zone = "dc1";
  spec.labels_ = {{"cloudbrain-deployment", "d"}, {"team", "ci"}};
  create.args = spec;
  auto m = parse_message(json::serialize(to_json(create)), sender::hub);
  ASSERT_TRUE(m) << m.error().reason;
  auto back = operation_from(m->fields);
  ASSERT_TRUE(back) << back.error().reason;
  EXPECT_EQ(back->op, operation::create);
  EXPECT_EQ(back->idempotency_key, "job-1/dc1");
  EXPECT_EQ(back->deadline, 30s);
  const auto& s = std::get<machine_spec>(back->args);
  EXPECT_EQ(s.name, spec.name);
  EXPECT_EQ(s.labels_, spec.labels_);
  EXPECT_TRUE(s.public_ssh_key.empty());
  EXPECT_TRUE(s.reservation.empty());

  operation_request list;
  list.id = "op-8";
  list.op = operation::list;
  list.provider = "lab";
  list.deadline = 1s;
  list.args = page_request{"d", std::string("p2"), 50};
  const auto listed = to_json(list);
  EXPECT_FALSE(listed.contains("idempotency_key"));
  back = operation_from(listed);
  ASSERT_TRUE(back) << back.error().reason;
  const auto& p = std::get<page_request>(back->args);
  EXPECT_EQ(p.page_token, "p2");
  EXPECT_EQ(p.page_size, 50u);

  operation_request release;
  release.id = "op-9";
  release.op = operation::release;
  release.provider = "lab";
  release.idempotency_key = "k";
  release.args = reservation_ref{"cbr-1", "dc1", ""};
  back = operation_from(to_json(release));
  ASSERT_TRUE(back) << back.error().reason;
  EXPECT_EQ(std::get<reservation_ref>(back->args).name, "cbr-1");
}

TEST(driver_protocol, a_mutation_without_an_idempotency_key_is_a_violation) {
  auto op = object_of(
      R"({"type":"delete","id":"1","provider":"p","deadline_ms":10,"config_version":"a",
          "secret_version":"b","ref":{"name":"cb-x","zone":"z"}})");
  auto m = parse_message(json::serialize(op), sender::hub);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().reason.find("idempotency_key"), std::string::npos);
}

TEST(driver_protocol, results_are_read_for_their_operation) {
  machine vm;
  vm.name = "cb-1";
  vm.upstream_id = "10.0.0.5";
  vm.zone = "dc1";
  vm.status = machine_status::running;
  vm.ip_address = "10.0.0.5";
  vm.labels_ = {{"cloudbrain-instance", "1"}};
  vm.created_at = parse_rfc3339("2026-01-02T03:04:05.000006Z").value();
  auto m = parse_message(json::serialize(machine_result("op-1", vm)), sender::driver);
  ASSERT_TRUE(m) << m.error().reason;
  auto got = machine_answer(m->fields);
  ASSERT_TRUE(got) << got.error().reason;
  EXPECT_EQ(got->ip_address, "10.0.0.5");
  EXPECT_EQ(got->status, machine_status::running);
  EXPECT_EQ(got->created_at, vm.created_at);
  // The wrong payload for the operation.
  EXPECT_FALSE(machines_answer(m->fields));
  EXPECT_FALSE(reservation_answer(m->fields));

  page<machine> pg{{vm, vm}, std::string("next")};
  m = parse_message(json::serialize(machines_result("op-2", pg)), sender::driver);
  ASSERT_TRUE(m);
  auto listed = machines_answer(m->fields);
  ASSERT_TRUE(listed) << listed.error().reason;
  EXPECT_EQ(listed->items.size(), 2u);
  EXPECT_EQ(listed->next_page_token, "next");

  auto bad_status = object_of(
      R"({"type":"result","id":"x","machine":{"name":"a","status":"melting","labels":{}}})");
  auto refused = machine_answer(bad_status);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().reason.find("status"), std::string::npos);
}

TEST(driver_protocol, errors_carry_their_kind_and_retry_hint) {
  failure f{error_kind::throttled, "slow down", 1500ms};
  auto m = parse_message(json::serialize(error_message("op-3", f)), sender::driver);
  ASSERT_TRUE(m);
  auto back = failure_from(m->fields.at("error"));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->kind, error_kind::throttled);
  EXPECT_EQ(back->retry_after, 1500ms);
  EXPECT_EQ(back->message, "slow down");
  auto unknown = failure_from(json::parse(R"({"kind":"oops","message":"m"})"));
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().reason.find("error.kind"), std::string::npos);
}

TEST(driver_protocol, malformed_and_unknown_messages_are_refused_with_a_reason) {
  EXPECT_NE(reason_of("{nope", sender::driver).find("not JSON"), std::string::npos);
  EXPECT_NE(reason_of("[1,2]", sender::driver).find("JSON object"), std::string::npos);
  EXPECT_NE(reason_of(R"({"id":"1"})", sender::driver).find("'type'"), std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"teleport","id":"1"})", sender::driver).find("unknown"),
            std::string::npos);
  // A hub's message is not a driver's to send, and the other way round.
  EXPECT_NE(reason_of(R"({"type":"config","id":"1","provider":"p","version":"v","config":{}})",
                      sender::driver)
                .find("unknown"),
            std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"register","driver":"p","protocol_version":1,
                          "capabilities":[],"max_in_flight":1})",
                      sender::hub)
                .find("unknown"),
            std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"ping"})", sender::driver).find("'id'"), std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"ping","id":""})", sender::driver).find("id"), std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"get_secret","id":"1","provider":7})", sender::driver)
                .find("'provider'"),
            std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"result","id":"1","machine":{},"machines":[]})", sender::driver)
                .find("at most one"),
            std::string::npos);
  EXPECT_NE(reason_of(std::string(max_message_bytes + 1, ' '), sender::driver).find("too big"),
            std::string::npos);
}

// Inputs a peer may send by mistake or on purpose; every one is refused with a reason, none is
// taken for something else, and none throws.
TEST(driver_protocol, bad_inputs_are_refused_and_never_taken_for_something_else) {
  // Not one JSON object: nothing, trailing data, bytes that are not UTF-8, a NUL, nesting
  // deeper than any message needs, a number where an object should be.
  for (const std::string& text :
       {std::string(), std::string("   "), std::string(R"({"type":"ping","id":"1"} {})"),
        std::string("{\"type\":\"ping\",\"id\":\"\xff\xfe\"}"),
        std::string("{\"type\":\"ping\",\"id\":\"1\"}\0", 25),
        std::string(100, '[') + std::string(100, ']'), std::string("42"), std::string("null"),
        std::string(R"({"type":"ping","id":"1")")}) {
    const auto m = parse_message(text, sender::driver);
    EXPECT_FALSE(m) << "taken: " << text;
  }
  EXPECT_NE(reason_of(std::string(max_message_bytes + 1, 'x'), sender::hub).find("too big"),
            std::string::npos);

  // The right fields with the wrong JSON kinds: named, and refused before any reader sees them.
  EXPECT_NE(reason_of(R"({"type":7,"id":"1"})", sender::driver).find("'type'"), std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"pong","id":12})", sender::driver).find("'id'"),
            std::string::npos);
  EXPECT_NE(reason_of(std::string(R"({"type":"pong","id":")") + std::string(65, 'x') + "\"}",
                      sender::driver)
                .find("'id'"),
            std::string::npos);
  EXPECT_NE(
      reason_of(R"({"type":"error","id":"1","error":"capacity"})", sender::driver).find("'error'"),
      std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"register","driver":"p","protocol_version":"1",
                          "capabilities":[],"max_in_flight":1})",
                      sender::driver)
                .find("'protocol_version'"),
            std::string::npos);
  EXPECT_NE(reason_of(R"({"type":"register","driver":"p","protocol_version":1,
                          "capabilities":"list","max_in_flight":1})",
                      sender::driver)
                .find("'capabilities'"),
            std::string::npos);
  // A fraction is not an integer, however whole it looks.
  EXPECT_NE(reason_of(R"({"type":"register","driver":"p","protocol_version":1,
                          "capabilities":[],"max_in_flight":2.0})",
                      sender::driver)
                .find("'max_in_flight'"),
            std::string::npos);

  // Numbers out of their range, in the typed readers.
  const auto operation_reason = [](std::string_view text) {
    auto m = parse_message(text, sender::hub);
    if (!m) return m.error().reason;
    auto op = operation_from(m->fields);
    EXPECT_FALSE(op) << text;
    return op ? std::string() : op.error().reason;
  };
  const std::string common =
      R"("id":"op-1","provider":"p","config_version":"c","secret_version":"s")";
  EXPECT_NE(
      operation_reason(R"({"type":"get",)" + common + R"(,"deadline_ms":-1,"ref":{"name":"cb-1"}})")
          .find("'deadline_ms'"),
      std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"get",)" + common +
                             R"(,"deadline_ms":18446744073709551615,"ref":{"name":"cb-1"}})")
                .find("'deadline_ms'"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"list",)" + common +
                             R"(,"deadline_ms":10,"deployment":"d","page_size":0})")
                .find("'page_size'"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"list",)" + common +
                             R"(,"deadline_ms":10,"deployment":"d","page_size":1001})")
                .find("'page_size'"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"list",)" + common +
                             R"(,"deadline_ms":10,"deployment":"d","page_size":5,"page_token":3})")
                .find("'page_token'"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"delete",)" + common +
                             R"(,"deadline_ms":10,"idempotency_key":"","ref":{"name":"cb-1"}})")
                .find("'idempotency_key'"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"delete",)" + common +
                             R"(,"deadline_ms":10,"idempotency_key":"k","ref":{"name":""}})")
                .find("'ref.name'"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"create",)" + common +
                             R"(,"deadline_ms":10,"idempotency_key":"k","spec":{"name":"cb-1"}})")
                .find("is missing"),
            std::string::npos);
  EXPECT_NE(operation_reason(R"({"type":"reserve",)" + common +
                             R"(,"deadline_ms":10,"idempotency_key":"k","spec":{
                             "reservation_id":"r","name":"cbr-1","instance_type":"standard",
                             "zone":"z","count":0,"ends_at":"2026-01-01T00:00:00Z"}})")
                .find("'count'"),
            std::string::npos);
  // A message the hub sends that is not an operation is not read as one, and the reason does
  // not repeat what it was given.
  auto not_an_operation = operation_from(object_of(R"({"type":"Hunter2","id":"1"})"));
  ASSERT_FALSE(not_an_operation);
  EXPECT_EQ(not_an_operation.error().reason.find("Hunter2"), std::string::npos);

  // What a driver answers with: times, labels, statuses and counts are checked, not trusted.
  const auto machine_reason = [](std::string_view payload) {
    auto got = machine_from(json::parse(payload));
    EXPECT_FALSE(got) << payload;
    return got ? std::string() : got.error().reason;
  };
  EXPECT_NE(machine_reason(R"({"name":"cb-1","status":"running","created_at":"yesterday"})")
                .find("'created_at'"),
            std::string::npos);
  EXPECT_NE(
      machine_reason(R"({"name":"cb-1","status":"running","created_at":7})").find("'created_at'"),
      std::string::npos);
  EXPECT_NE(
      machine_reason(R"({"name":"cb-1","status":"running","labels":{"team":1}})").find("'labels'"),
      std::string::npos);
  EXPECT_NE(
      machine_reason(R"({"name":"cb-1","status":"running","ip_address":[]})").find("'ip_address'"),
      std::string::npos);
  EXPECT_NE(machine_reason(R"({"name":"","status":"running"})").find("'name'"), std::string::npos);
  EXPECT_NE(machine_reason(R"(["cb-1"])").find("object"), std::string::npos);
  auto reservation = reservation_from(
      json::parse(R"({"name":"cbr-1","count":2,"in_use":-1,"status":"ready","labels":{}})"));
  ASSERT_FALSE(reservation);
  EXPECT_NE(reservation.error().reason.find("'in_use'"), std::string::npos);

  // A page bigger than the protocol allows, and a next page token that cannot be followed.
  json::array many;
  for (std::size_t i = 0; i <= max_page_size; ++i) {
    many.push_back(json::object{{"name", "cb-" + std::to_string(i)}, {"status", "running"}});
  }
  json::object big{{"type", "result"}, {"id", "op-2"}, {"machines", many}};
  auto too_many = machines_answer(big);
  ASSERT_FALSE(too_many);
  EXPECT_NE(too_many.error().reason.find("more than"), std::string::npos);
  auto loop = machines_answer(
      object_of(R"({"type":"result","id":"op-2","machines":[],"next_page_token":""})"));
  ASSERT_FALSE(loop);
  EXPECT_NE(loop.error().reason.find("'next_page_token'"), std::string::npos);
  // One bad machine spoils its page: the reconciler never acts on half a listing.
  auto spoiled = machines_answer(object_of(
      R"({"type":"result","id":"op-2","machines":[{"name":"a","status":"running"},
          {"name":"b","status":"melting"}]})"));
  ASSERT_FALSE(spoiled);
  EXPECT_NE(spoiled.error().reason.find("'status'"), std::string::npos);

  // An error's retry hint is bounded and an integer.
  for (const auto* e : {R"({"kind":"throttled","retry_after_ms":-5})",
                        R"({"kind":"throttled","retry_after_ms":"5"})",
                        R"({"kind":"throttled","retry_after_ms":3600001})",
                        R"({"kind":"throttled","retry_after_ms":null})"}) {
    auto f = failure_from(json::parse(e));
    ASSERT_FALSE(f) << e;
    EXPECT_NE(f.error().reason.find("'retry_after_ms'"), std::string::npos) << e;
  }
  EXPECT_FALSE(failure_from(json::parse(R"({"message":"no kind"})")));
  EXPECT_FALSE(failure_from(json::parse(R"("capacity")")));

  // Settings answers: the values must be an object under the answer's own type.
  EXPECT_FALSE(settings_answer_from(
      object_of(R"({"type":"secret","id":"1","provider":"p","version":"v","config":{}})")));
  EXPECT_FALSE(
      settings_answer_from(object_of(R"({"type":"config","id":"1","provider":"p","config":{}})")));
  EXPECT_FALSE(settings_answer_from(
      object_of(R"({"type":"result","id":"1","provider":"p","version":"v","result":{}})")));
}

TEST(driver_protocol, a_violation_never_repeats_the_value_it_was_about) {
  const std::string secret = "Hunter2-S3cr3t";
  for (const auto& text : {R"({"type":")" + secret + R"(","id":"1"})",
                           R"({"type":"register","driver":")" + secret + R"(","protocol_version":1,
           "capabilities":[],"max_in_flight":1})",
                           R"({"type":"error","id":"1","error":{"kind":")" + secret + R"("}})"}) {
    auto m = parse_message(text, sender::driver);
    std::string reason = m ? std::string() : m.error().reason;
    if (m && m->type == "register") reason = registration_from(m->fields).error().reason;
    if (m && m->type == "error") reason = failure_from(m->fields.at("error")).error().reason;
    EXPECT_FALSE(reason.empty()) << text;
    EXPECT_EQ(reason.find(secret), std::string::npos) << reason;
  }
}

TEST(driver_protocol, acceptance_and_settings_round_trip) {
  acceptance a;
  a.session = "s-1";
  a.providers = {{"lab", {"dc1", "dc2"}, "c1", "s1"}};
  a.heartbeat_interval = 500ms;
  a.heartbeat_timeout = 1500ms;
  auto m = parse_message(json::serialize(to_json(a)), sender::hub);
  ASSERT_TRUE(m) << m.error().reason;
  auto back = acceptance_from(m->fields);
  ASSERT_TRUE(back) << back.error().reason;
  ASSERT_EQ(back->providers.size(), 1u);
  EXPECT_EQ(back->providers[0].zones, (std::vector<std::string>{"dc1", "dc2"}));
  EXPECT_EQ(back->heartbeat_timeout, 1500ms);

  settings_answer s{"r-1", "lab", "v9", {{"secret.password", "pw"}}};
  m = parse_message(json::serialize(settings_message("secret", s)), sender::hub);
  ASSERT_TRUE(m) << m.error().reason;
  auto got = settings_answer_from(m->fields);
  ASSERT_TRUE(got) << got.error().reason;
  EXPECT_EQ(got->version, "v9");
  EXPECT_EQ(got->values.at("secret.password").as_string(), "pw");
}

}  // namespace
}  // namespace cloudbrain::driver_protocol
