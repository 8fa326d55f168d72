#include "providers/driver_protocol/protocol.hpp"

#include "core/time.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>

namespace cloudbrain::driver_protocol {
namespace json = boost::json;

void throw_exception_from_error(const violation& v, const boost::source_location&) {
  throw std::runtime_error("driver protocol violation: " + v.reason);
}

void throw_exception_from_error(const failure& f, const boost::source_location&) {
  throw std::runtime_error("driver operation failed: " + std::string(to_string(f.kind)) + ": " +
                           f.message);
}

namespace {

constexpr std::array<std::pair<capability, std::string_view>, 3> capability_names{{
    {capability::instances, "instances"},
    {capability::reservations, "reservations"},
    {capability::list, "list"},
}};
constexpr std::array<std::pair<operation, std::string_view>, 8> operation_names{{
    {operation::create, "create"},
    {operation::get, "get"},
    {operation::destroy, "delete"},
    {operation::list, "list"},
    {operation::reserve, "reserve"},
    {operation::get_reservation, "get_reservation"},
    {operation::release, "release"},
    {operation::list_reservations, "list_reservations"},
}};
constexpr std::array<std::pair<error_kind, std::string_view>, 8> error_kind_names{{
    {error_kind::capacity, "capacity"},
    {error_kind::quota, "quota"},
    {error_kind::throttled, "throttled"},
    {error_kind::invalid, "invalid"},
    {error_kind::auth, "auth"},
    {error_kind::not_found, "not_found"},
    {error_kind::already_exists, "already_exists"},
    {error_kind::transient, "transient"},
}};
constexpr std::array<std::pair<machine_status, std::string_view>, 4> machine_status_names{{
    {machine_status::provisioning, "provisioning"},
    {machine_status::running, "running"},
    {machine_status::stopping, "stopping"},
    {machine_status::terminated, "terminated"},
}};
constexpr std::array<std::pair<reservation_status, std::string_view>, 5> reservation_status_names{{
    {reservation_status::creating, "creating"},
    {reservation_status::ready, "ready"},
    {reservation_status::deleting, "deleting"},
    {reservation_status::updating, "updating"},
    {reservation_status::invalid, "invalid"},
}};

template <class E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& names, E e) {
  for (const auto& [value, name] : names)
    if (value == e) return name;
  return "unknown";
}

template <class E, std::size_t N>
std::optional<E> value_of(const std::array<std::pair<E, std::string_view>, N>& names,
                          std::string_view s) {
  for (const auto& [value, name] : names)
    if (name == s) return value;
  return std::nullopt;
}

violation bad(std::string reason) { return violation{std::move(reason)}; }

// Field readers: each names the field (never its value) when it is missing or mistyped.
parsed<std::string> string_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v) return bad("'" + std::string(key) + "' is missing");
  if (!v->is_string()) return bad("'" + std::string(key) + "' must be a string");
  return std::string(v->as_string());
}

parsed<std::string> optional_string(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::string();
  if (!v->is_string()) return bad("'" + std::string(key) + "' must be a string or null");
  return std::string(v->as_string());
}

parsed<std::int64_t> integer_field(const json::object& o, std::string_view key, std::int64_t min,
                                   std::int64_t max) {
  const auto* v = o.if_contains(key);
  if (!v) return bad("'" + std::string(key) + "' is missing");
  std::int64_t n = 0;
  if (v->is_int64()) {
    n = v->as_int64();
  } else if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(max)) {
    n = static_cast<std::int64_t>(v->as_uint64());
  } else {
    return bad("'" + std::string(key) + "' must be an integer");
  }
  if (n < min || n > max) {
    return bad("'" + std::string(key) + "' must be from " + std::to_string(min) + " to " +
               std::to_string(max));
  }
  return n;
}

parsed<labels> labels_field(const json::object& o, std::string_view key) {
  labels out;
  const auto* v = o.if_contains(key);
  if (!v || v->is_null()) return out;
  if (!v->is_object()) return bad("'" + std::string(key) + "' must be an object of strings");
  for (const auto& [k, val] : v->as_object()) {
    if (!val.is_string()) return bad("'" + std::string(key) + "' must be an object of strings");
    out.emplace(std::string(k), std::string(val.as_string()));
  }
  return out;
}

parsed<system_time> time_field(const json::object& o, std::string_view key, bool required) {
  const auto* v = o.if_contains(key);
  if (!v || v->is_null()) {
    if (required) return bad("'" + std::string(key) + "' is missing");
    return system_time{};
  }
  if (!v->is_string()) return bad("'" + std::string(key) + "' must be an RFC 3339 time");
  auto t = parse_rfc3339(v->as_string());
  if (!t) return bad("'" + std::string(key) + "' must be an RFC 3339 time");
  return *t;
}

json::object labels_json(const labels& l) {
  json::object o;
  for (const auto& [k, v] : l) o[k] = v;
  return o;
}

json::value time_json(system_time t) {
  if (t == system_time{}) return nullptr;
  return json::value(format_rfc3339(t));
}

// The fields a message of each type needs, with the JSON kind of each; other fields are
// ignored, so that a later version may add some.
enum class kind { string, integer, object, array, string_or_null, id };
struct field_rule {
  std::string_view name;
  kind k;
};
struct type_rule {
  std::string_view type;
  std::vector<field_rule> fields;
};

const std::vector<field_rule> operation_fields{{"id", kind::id},
                                               {"provider", kind::string},
                                               {"deadline_ms", kind::integer},
                                               {"config_version", kind::string},
                                               {"secret_version", kind::string}};

std::vector<field_rule> with(std::vector<field_rule> base, std::vector<field_rule> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

const std::vector<type_rule>& rules_for(sender from) {
  static const std::vector<type_rule> driver_rules{
      {"register",
       {{"driver", kind::string},
        {"protocol_version", kind::integer},
        {"capabilities", kind::array},
        {"max_in_flight", kind::integer}}},
      {"result", {{"id", kind::id}}},
      {"error", {{"id", kind::id}, {"error", kind::object}}},
      {"get_config", {{"id", kind::id}, {"provider", kind::string}}},
      {"get_secret", {{"id", kind::id}, {"provider", kind::string}}},
      {"ping", {{"id", kind::id}}},
      {"pong", {{"id", kind::id}}},
  };
  static const std::vector<type_rule> hub_rules{
      {"registered",
       {{"protocol_version", kind::integer},
        {"session", kind::string},
        {"providers", kind::array},
        {"heartbeat_interval_ms", kind::integer},
        {"heartbeat_timeout_ms", kind::integer}}},
      {"refused", {{"reason", kind::string}, {"message", kind::string}}},
      {"create",
       with(operation_fields, {{"idempotency_key", kind::string}, {"spec", kind::object}})},
      {"get", with(operation_fields, {{"ref", kind::object}})},
      {"delete",
       with(operation_fields, {{"idempotency_key", kind::string}, {"ref", kind::object}})},
      {"list",
       with(operation_fields, {{"deployment", kind::string}, {"page_size", kind::integer}})},
      {"reserve",
       with(operation_fields, {{"idempotency_key", kind::string}, {"spec", kind::object}})},
      {"get_reservation", with(operation_fields, {{"ref", kind::object}})},
      {"release",
       with(operation_fields, {{"idempotency_key", kind::string}, {"ref", kind::object}})},
      {"list_reservations",
       with(operation_fields, {{"deployment", kind::string}, {"page_size", kind::integer}})},
      {"config",
       {{"id", kind::id},
        {"provider", kind::string},
        {"version", kind::string},
        {"config", kind::object}}},
      {"secret",
       {{"id", kind::id},
        {"provider", kind::string},
        {"version", kind::string},
        {"secret", kind::object}}},
      {"error", {{"id", kind::id}, {"error", kind::object}}},
      {"ping", {{"id", kind::id}}},
      {"pong", {{"id", kind::id}}},
      {"protocol_error", {{"message", kind::string}}},
  };
  return from == sender::driver ? driver_rules : hub_rules;
}

std::string_view kind_name(kind k) {
  switch (k) {
    case kind::string: return "a string";
    case kind::integer: return "an integer";
    case kind::object: return "an object";
    case kind::array: return "an array";
    case kind::string_or_null: return "a string or null";
    case kind::id: return "an id (1 to 64 printable ASCII characters)";
  }
  return "?";
}

bool has_kind(const json::value& v, kind k) {
  switch (k) {
    case kind::string: return v.is_string();
    case kind::integer: return v.is_int64() || v.is_uint64();
    case kind::object: return v.is_object();
    case kind::array: return v.is_array();
    case kind::string_or_null: return v.is_string() || v.is_null();
    case kind::id: return v.is_string() && valid_id(v.as_string());
  }
  return false;
}

parsed<machine_spec> machine_spec_from(const json::object& o) {
  machine_spec s;
  for (auto [key, out] : {std::pair<std::string_view, std::string*>{"instance_id", &s.instance_id},
                          {"name", &s.name},
                          {"image", &s.image},
                          {"instance_type", &s.instance_type},
                          {"zone", &s.zone}}) {
    auto v = string_field(o, key);
    if (!v) return v.error();
    *out = std::move(*v);
  }
  if (s.name.empty()) return bad("'spec.name' must not be empty");
  auto key = optional_string(o, "public_ssh_key");
  if (!key) return key.error();
  s.public_ssh_key = std::move(*key);
  auto res = optional_string(o, "reservation");
  if (!res) return res.error();
  s.reservation = std::move(*res);
  auto l = labels_field(o, "labels");
  if (!l) return l.error();
  s.labels_ = std::move(*l);
  return s;
}

template <class Ref>
parsed<Ref> ref_from(const json::object& o) {
  Ref r;
  auto name = string_field(o, "name");
  if (!name) return name.error();
  if (name->empty()) return bad("'ref.name' must not be empty");
  r.name = std::move(*name);
  auto zone = optional_string(o, "zone");
  if (!zone) return zone.error();
  r.zone = std::move(*zone);
  auto up = optional_string(o, "upstream_id");
  if (!up) return up.error();
  r.upstream_id = std::move(*up);
  return r;
}

parsed<reservation_spec> reservation_spec_from(const json::object& o) {
  reservation_spec s;
  for (auto [key, out] :
       {std::pair<std::string_view, std::string*>{"reservation_id", &s.reservation_id},
        {"name", &s.name},
        {"instance_type", &s.instance_type},
        {"zone", &s.zone}}) {
    auto v = string_field(o, key);
    if (!v) return v.error();
    *out = std::move(*v);
  }
  if (s.name.empty()) return bad("'spec.name' must not be empty");
  auto count = integer_field(o, "count", 1, 100000);
  if (!count) return count.error();
  s.count = static_cast<int>(*count);
  auto ends = time_field(o, "ends_at", true);
  if (!ends) return ends.error();
  s.ends_at = *ends;
  auto l = labels_field(o, "labels");
  if (!l) return l.error();
  s.labels_ = std::move(*l);
  return s;
}

parsed<page_request> page_request_from(const json::object& o) {
  page_request p;
  auto dep = string_field(o, "deployment");
  if (!dep) return dep.error();
  p.deployment = std::move(*dep);
  if (const auto* t = o.if_contains("page_token"); t && !t->is_null()) {
    if (!t->is_string()) return bad("'page_token' must be a string or null");
    p.page_token = std::string(t->as_string());
  }
  auto size = integer_field(o, "page_size", 1, static_cast<std::int64_t>(max_page_size));
  if (!size) return size.error();
  p.page_size = static_cast<std::size_t>(*size);
  return p;
}

template <class T, class From>
parsed<page<T>> page_from(const json::object& result, std::string_view key, From from) {
  const auto* items = result.if_contains(key);
  if (!items || !items->is_array()) {
    return bad("a result for this operation must carry '" + std::string(key) + "', an array");
  }
  if (items->as_array().size() > max_page_size) {
    return bad("'" + std::string(key) + "' holds more than " + std::to_string(max_page_size));
  }
  page<T> p;
  for (const auto& item : items->as_array()) {
    auto one = from(item);
    if (!one) return one.error();
    p.items.push_back(std::move(*one));
  }
  if (const auto* t = result.if_contains("next_page_token"); t && !t->is_null()) {
    if (!t->is_string() || t->as_string().empty()) {
      return bad("'next_page_token' must be a non-empty string or null");
    }
    p.next_page_token = std::string(t->as_string());
  }
  return p;
}

}  // namespace

std::string_view to_string(capability c) { return name_of(capability_names, c); }
std::string_view to_string(operation o) { return name_of(operation_names, o); }
std::string_view to_string(error_kind k) { return name_of(error_kind_names, k); }
std::string_view to_string(machine_status s) { return name_of(machine_status_names, s); }
std::string_view to_string(reservation_status s) { return name_of(reservation_status_names, s); }
std::optional<capability> parse_capability(std::string_view s) {
  return value_of(capability_names, s);
}
std::optional<operation> parse_operation(std::string_view s) {
  return value_of(operation_names, s);
}
std::optional<error_kind> parse_error_kind(std::string_view s) {
  return value_of(error_kind_names, s);
}
std::optional<machine_status> parse_machine_status(std::string_view s) {
  return value_of(machine_status_names, s);
}
std::optional<reservation_status> parse_reservation_status(std::string_view s) {
  return value_of(reservation_status_names, s);
}

capability needed_for(operation o) {
  switch (o) {
    case operation::create:
    case operation::get:
    case operation::destroy: return capability::instances;
    case operation::list: return capability::list;
    default: return capability::reservations;
  }
}

bool mutates(operation o) {
  return o == operation::create || o == operation::destroy || o == operation::reserve ||
         o == operation::release;
}

bool valid_driver_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  const auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (!first && (c == '-' || c == '_' || c == '.'));
  };
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!ok(name[i], i == 0)) return false;
  return true;
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > max_id_bytes) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool registration::has(capability c) const {
  return std::find(capabilities.begin(), capabilities.end(), c) != capabilities.end();
}

// ---- to JSON -----------------------------------------------------------------------------

json::object to_json(const registration& r) {
  json::array caps;
  for (const auto c : r.capabilities) caps.emplace_back(to_string(c));
  return {{"type", "register"},
          {"driver", r.driver},
          {"protocol_version", r.protocol_version},
          {"capabilities", std::move(caps)},
          {"max_in_flight", r.max_in_flight}};
}

json::object to_json(const acceptance& a) {
  json::array providers;
  for (const auto& p : a.providers) {
    json::array zones;
    for (const auto& z : p.zones) zones.emplace_back(z);
    providers.push_back(json::object{{"name", p.name},
                                     {"zones", std::move(zones)},
                                     {"config_version", p.config_version},
                                     {"secret_version", p.secret_version}});
  }
  return {{"type", "registered"},
          {"protocol_version", a.protocol_version},
          {"session", a.session},
          {"providers", std::move(providers)},
          {"heartbeat_interval_ms", a.heartbeat_interval.count()},
          {"heartbeat_timeout_ms", a.heartbeat_timeout.count()},
          {"max_message_bytes", a.max_message_bytes}};
}

json::object to_json(const refusal& r) {
  json::array versions{version};
  return {{"type", "refused"},
          {"reason", r.reason},
          {"message", r.message},
          {"supported_versions", std::move(versions)}};
}

json::object to_json(const machine_spec& s) {
  return {
      {"instance_id", s.instance_id},
      {"name", s.name},
      {"image", s.image},
      {"instance_type", s.instance_type},
      {"public_ssh_key",
       s.public_ssh_key.empty() ? json::value(nullptr) : json::value(s.public_ssh_key)},
      {"zone", s.zone},
      {"reservation", s.reservation.empty() ? json::value(nullptr) : json::value(s.reservation)},
      {"labels", labels_json(s.labels_)}};
}

json::object to_json(const machine& m) {
  return {{"name", m.name},
          {"upstream_id", m.upstream_id},
          {"zone", m.zone},
          {"status", to_string(m.status)},
          {"ip_address", m.ip_address ? json::value(*m.ip_address) : json::value(nullptr)},
          {"labels", labels_json(m.labels_)},
          {"created_at", time_json(m.created_at)}};
}

json::object to_json(const machine_ref& r) {
  return {{"name", r.name}, {"zone", r.zone}, {"upstream_id", r.upstream_id}};
}

json::object to_json(const reservation_spec& s) {
  return {{"reservation_id", s.reservation_id},
          {"name", s.name},
          {"instance_type", s.instance_type},
          {"count", s.count},
          {"zone", s.zone},
          {"ends_at", time_json(s.ends_at)},
          {"labels", labels_json(s.labels_)}};
}

json::object to_json(const reservation& r) {
  return {{"name", r.name},
          {"upstream_id", r.upstream_id},
          {"zone", r.zone},
          {"machine_type", r.machine_type},
          {"count", r.count},
          {"in_use", r.in_use},
          {"status", to_string(r.status)},
          {"labels", labels_json(r.labels_)},
          {"created_at", time_json(r.created_at)},
          {"ends_at", r.ends_at ? time_json(*r.ends_at) : json::value(nullptr)}};
}

json::object to_json(const reservation_ref& r) {
  return {{"name", r.name}, {"zone", r.zone}, {"upstream_id", r.upstream_id}};
}

json::object to_json(const failure& f) {
  json::object o{{"kind", to_string(f.kind)}, {"message", f.message}};
  if (f.kind == error_kind::throttled) o["retry_after_ms"] = f.retry_after.count();
  return o;
}

json::object to_json(const operation_request& r) {
  json::object o{{"type", to_string(r.op)},
                 {"id", r.id},
                 {"provider", r.provider},
                 {"deadline_ms", r.deadline.count()},
                 {"config_version", r.config_version},
                 {"secret_version", r.secret_version}};
  if (mutates(r.op)) o["idempotency_key"] = r.idempotency_key;
  std::visit(
      [&o](const auto& a) {
        using T = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<T, machine_spec> || std::is_same_v<T, reservation_spec>) {
          o["spec"] = to_json(a);
        } else if constexpr (std::is_same_v<T, page_request>) {
          o["deployment"] = a.deployment;
          o["page_token"] = a.page_token ? json::value(*a.page_token) : json::value(nullptr);
          o["page_size"] = a.page_size;
        } else {
          o["ref"] = to_json(a);
        }
      },
      r.args);
  return o;
}

// ---- from JSON ---------------------------------------------------------------------------

parsed<registration> registration_from(const json::object& m) {
  registration r;
  auto driver = string_field(m, "driver");
  if (!driver) return driver.error();
  if (!valid_driver_name(*driver)) {
    return bad("'driver' must be 1 to 63 characters of a-z, 0-9, '-', '_' and '.'");
  }
  r.driver = std::move(*driver);
  auto v = integer_field(m, "protocol_version", 0, 1'000'000);
  if (!v) return v.error();
  r.protocol_version = static_cast<int>(*v);
  const auto* caps = m.if_contains("capabilities");
  if (!caps || !caps->is_array()) return bad("'capabilities' must be an array");
  for (const auto& c : caps->as_array()) {
    const auto parsed_cap = c.is_string() ? parse_capability(c.as_string()) : std::nullopt;
    if (!parsed_cap) return bad("'capabilities' may hold only instances, reservations and list");
    if (!r.has(*parsed_cap)) r.capabilities.push_back(*parsed_cap);
  }
  auto n = integer_field(m, "max_in_flight", 1, max_in_flight_limit);
  if (!n) return n.error();
  r.max_in_flight = static_cast<int>(*n);
  return r;
}

parsed<acceptance> acceptance_from(const json::object& m) {
  acceptance a;
  auto v = integer_field(m, "protocol_version", 1, 1'000'000);
  if (!v) return v.error();
  a.protocol_version = static_cast<int>(*v);
  auto session = string_field(m, "session");
  if (!session) return session.error();
  a.session = std::move(*session);
  const auto* providers = m.if_contains("providers");
  if (!providers || !providers->is_array()) return bad("'providers' must be an array");
  for (const auto& p : providers->as_array()) {
    if (!p.is_object()) return bad("'providers' must hold objects");
    served_provider sp;
    const auto& o = p.as_object();
    for (auto [key, out] : {std::pair<std::string_view, std::string*>{"name", &sp.name},
                            {"config_version", &sp.config_version},
                            {"secret_version", &sp.secret_version}}) {
      auto s = string_field(o, key);
      if (!s) return s.error();
      *out = std::move(*s);
    }
    if (const auto* zones = o.if_contains("zones"); zones && zones->is_array()) {
      for (const auto& z : zones->as_array())
        if (z.is_string()) sp.zones.emplace_back(z.as_string());
    }
    a.providers.push_back(std::move(sp));
  }
  auto interval = integer_field(m, "heartbeat_interval_ms", 1, 3'600'000);
  if (!interval) return interval.error();
  a.heartbeat_interval = std::chrono::milliseconds(*interval);
  auto timeout = integer_field(m, "heartbeat_timeout_ms", 1, 3'600'000);
  if (!timeout) return timeout.error();
  a.heartbeat_timeout = std::chrono::milliseconds(*timeout);
  if (m.contains("max_message_bytes")) {
    auto max = integer_field(m, "max_message_bytes", 1024, std::int64_t{1} << 30);
    if (!max) return max.error();
    a.max_message_bytes = static_cast<std::size_t>(*max);
  }
  return a;
}

parsed<refusal> refusal_from(const json::object& m) {
  refusal r;
  auto reason = string_field(m, "reason");
  if (!reason) return reason.error();
  r.reason = std::move(*reason);
  auto message = string_field(m, "message");
  if (!message) return message.error();
  r.message = std::move(*message);
  return r;
}

parsed<operation_request> operation_from(const json::object& m) {
  operation_request r;
  auto type = string_field(m, "type");
  if (!type) return type.error();
  const auto op = parse_operation(*type);
  if (!op) return bad("the message's 'type' is not an operation");
  r.op = *op;
  auto id = string_field(m, "id");
  if (!id) return id.error();
  if (!valid_id(*id)) return bad("'id' must be 1 to 64 printable ASCII characters");
  r.id = std::move(*id);
  for (auto [key, out] : {std::pair<std::string_view, std::string*>{"provider", &r.provider},
                          {"config_version", &r.config_version},
                          {"secret_version", &r.secret_version}}) {
    auto s = string_field(m, key);
    if (!s) return s.error();
    *out = std::move(*s);
  }
  auto dl = integer_field(m, "deadline_ms", 0, 24 * 3'600'000);
  if (!dl) return dl.error();
  r.deadline = std::chrono::milliseconds(*dl);
  if (mutates(r.op)) {
    auto key = string_field(m, "idempotency_key");
    if (!key) return key.error();
    if (key->empty() || key->size() > 512) return bad("'idempotency_key' must be 1 to 512 bytes");
    r.idempotency_key = std::move(*key);
  }
  const auto object_of = [&m](std::string_view key) -> const json::object* {
    const auto* v = m.if_contains(key);
    return v && v->is_object() ? &v->as_object() : nullptr;
  };
  switch (r.op) {
    case operation::create: {
      const auto* spec = object_of("spec");
      if (!spec) return bad("'spec' must be an object");
      auto s = machine_spec_from(*spec);
      if (!s) return s.error();
      r.args = std::move(*s);
      break;
    }
    case operation::reserve: {
      const auto* spec = object_of("spec");
      if (!spec) return bad("'spec' must be an object");
      auto s = reservation_spec_from(*spec);
      if (!s) return s.error();
      r.args = std::move(*s);
      break;
    }
    case operation::get:
    case operation::destroy: {
      const auto* ref = object_of("ref");
      if (!ref) return bad("'ref' must be an object");
      auto s = ref_from<machine_ref>(*ref);
      if (!s) return s.error();
      r.args = std::move(*s);
      break;
    }
    case operation::get_reservation:
    case operation::release: {
      const auto* ref = object_of("ref");
      if (!ref) return bad("'ref' must be an object");
      auto s = ref_from<reservation_ref>(*ref);
      if (!s) return s.error();
      r.args = std::move(*s);
      break;
    }
    case operation::list:
    case operation::list_reservations: {
      auto p = page_request_from(m);
      if (!p) return p.error();
      r.args = std::move(*p);
      break;
    }
  }
  return r;
}

parsed<machine> machine_from(const json::value& v) {
  if (!v.is_object()) return bad("a machine must be an object");
  const auto& o = v.as_object();
  machine m;
  auto name = string_field(o, "name");
  if (!name) return name.error();
  if (name->empty()) return bad("a machine's 'name' must not be empty");
  m.name = std::move(*name);
  auto up = optional_string(o, "upstream_id");
  if (!up) return up.error();
  m.upstream_id = std::move(*up);
  auto zone = optional_string(o, "zone");
  if (!zone) return zone.error();
  m.zone = std::move(*zone);
  auto status = string_field(o, "status");
  if (!status) return status.error();
  const auto s = parse_machine_status(*status);
  if (!s) return bad("a machine's 'status' must be provisioning, running, stopping or terminated");
  m.status = *s;
  if (const auto* ip = o.if_contains("ip_address"); ip && !ip->is_null()) {
    if (!ip->is_string()) return bad("a machine's 'ip_address' must be a string or null");
    m.ip_address = std::string(ip->as_string());
  }
  auto l = labels_field(o, "labels");
  if (!l) return l.error();
  m.labels_ = std::move(*l);
  auto created = time_field(o, "created_at", false);
  if (!created) return created.error();
  m.created_at = *created;
  return m;
}

parsed<reservation> reservation_from(const json::value& v) {
  if (!v.is_object()) return bad("a reservation must be an object");
  const auto& o = v.as_object();
  reservation r;
  auto name = string_field(o, "name");
  if (!name) return name.error();
  if (name->empty()) return bad("a reservation's 'name' must not be empty");
  r.name = std::move(*name);
  for (auto [key, out] : {std::pair<std::string_view, std::string*>{"upstream_id", &r.upstream_id},
                          {"zone", &r.zone},
                          {"machine_type", &r.machine_type}}) {
    auto s = optional_string(o, key);
    if (!s) return s.error();
    *out = std::move(*s);
  }
  auto count = integer_field(o, "count", 0, 100000);
  if (!count) return count.error();
  r.count = static_cast<int>(*count);
  auto in_use = integer_field(o, "in_use", 0, 100000);
  if (!in_use) return in_use.error();
  r.in_use = static_cast<int>(*in_use);
  auto status = string_field(o, "status");
  if (!status) return status.error();
  const auto s = parse_reservation_status(*status);
  if (!s) return bad("a reservation's 'status' is not one the protocol knows");
  r.status = *s;
  auto l = labels_field(o, "labels");
  if (!l) return l.error();
  r.labels_ = std::move(*l);
  auto created = time_field(o, "created_at", false);
  if (!created) return created.error();
  r.created_at = *created;
  if (const auto* ends = o.if_contains("ends_at"); ends && !ends->is_null()) {
    auto t = time_field(o, "ends_at", true);
    if (!t) return t.error();
    r.ends_at = *t;
  }
  return r;
}

parsed<failure> failure_from(const json::value& v) {
  if (!v.is_object()) return bad("'error' must be an object");
  const auto& o = v.as_object();
  failure f;
  auto k = string_field(o, "kind");
  if (!k) return k.error();
  const auto kind_value = parse_error_kind(*k);
  if (!kind_value) {
    return bad(
        "'error.kind' must be capacity, quota, throttled, invalid, auth, not_found, "
        "already_exists or transient");
  }
  f.kind = *kind_value;
  auto message = optional_string(o, "message");
  if (!message) return message.error();
  f.message = std::move(*message);
  if (o.contains("retry_after_ms")) {
    auto ms = integer_field(o, "retry_after_ms", 0, 3'600'000);
    if (!ms) return ms.error();
    f.retry_after = std::chrono::milliseconds(*ms);
  }
  return f;
}

parsed<settings_answer> settings_answer_from(const json::object& m) {
  settings_answer a;
  auto type = string_field(m, "type");
  if (!type) return type.error();
  if (*type != "config" && *type != "secret") return bad("not a config or secret answer");
  for (auto [key, out] : {std::pair<std::string_view, std::string*>{"id", &a.id},
                          {"provider", &a.provider},
                          {"version", &a.version}}) {
    auto s = string_field(m, key);
    if (!s) return s.error();
    *out = std::move(*s);
  }
  const auto* values = m.if_contains(*type);
  if (!values || !values->is_object()) return bad("'" + *type + "' must be an object");
  a.values = values->as_object();
  return a;
}

// ---- answers -----------------------------------------------------------------------------

json::object result_message(std::string_view id, json::object payload) {
  json::object o{{"type", "result"}, {"id", id}};
  for (auto& [k, v] : payload) o[k] = std::move(v);
  return o;
}

json::object machine_result(std::string_view id, const machine& m) {
  return result_message(id, {{"machine", to_json(m)}});
}

json::object machines_result(std::string_view id, const page<machine>& p) {
  json::array items;
  for (const auto& m : p.items) items.push_back(to_json(m));
  return result_message(id, {{"machines", std::move(items)},
                             {"next_page_token", p.next_page_token ? json::value(*p.next_page_token)
                                                                   : json::value(nullptr)}});
}

json::object reservation_result(std::string_view id, const reservation& r) {
  return result_message(id, {{"reservation", to_json(r)}});
}

json::object reservations_result(std::string_view id, const page<reservation>& p) {
  json::array items;
  for (const auto& r : p.items) items.push_back(to_json(r));
  return result_message(id, {{"reservations", std::move(items)},
                             {"next_page_token", p.next_page_token ? json::value(*p.next_page_token)
                                                                   : json::value(nullptr)}});
}

json::object error_message(std::string_view id, const failure& f) {
  return {{"type", "error"}, {"id", id}, {"error", to_json(f)}};
}

parsed<machine> machine_answer(const json::object& result) {
  const auto* m = result.if_contains("machine");
  if (!m) return bad("a result for this operation must carry 'machine'");
  return machine_from(*m);
}

parsed<page<machine>> machines_answer(const json::object& result) {
  return page_from<machine>(result, "machines",
                            [](const json::value& v) { return machine_from(v); });
}

parsed<reservation> reservation_answer(const json::object& result) {
  const auto* r = result.if_contains("reservation");
  if (!r) return bad("a result for this operation must carry 'reservation'");
  return reservation_from(*r);
}

parsed<page<reservation>> reservations_answer(const json::object& result) {
  return page_from<reservation>(result, "reservations",
                                [](const json::value& v) { return reservation_from(v); });
}

json::object ping_message(std::string_view id) { return {{"type", "ping"}, {"id", id}}; }
json::object pong_message(std::string_view id) { return {{"type", "pong"}, {"id", id}}; }

json::object settings_request(std::string_view type, std::string_view id,
                              std::string_view provider) {
  return {{"type", type}, {"id", id}, {"provider", provider}};
}

json::object settings_message(std::string_view type, const settings_answer& a) {
  return {{"type", type},
          {"id", a.id},
          {"provider", a.provider},
          {"version", a.version},
          {type, a.values}};
}

json::object protocol_error_message(std::string_view reason) {
  return {{"type", "protocol_error"}, {"message", reason}};
}

// ---- the wire ----------------------------------------------------------------------------

parsed<message> parse_message(std::string_view text, sender from) {
  if (text.size() > max_message_bytes) return bad("the message is too big");
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec) return bad("the message is not JSON: " + ec.message());
  if (!doc.is_object()) return bad("a message must be a JSON object");
  auto& o = doc.as_object();
  const auto* type = o.if_contains("type");
  if (!type || !type->is_string()) return bad("a message needs a string 'type'");
  const std::string type_name(type->as_string());
  const auto& rules = rules_for(from);
  const auto rule = std::find_if(rules.begin(), rules.end(),
                                 [&](const type_rule& r) { return r.type == type_name; });
  if (rule == rules.end()) {
    return bad(from == sender::driver ? "unknown message type (a driver sends register, result, "
                                        "error, get_config, get_secret, ping and pong)"
                                      : "unknown message type");
  }
  for (const auto& f : rule->fields) {
    const auto* v = o.if_contains(f.name);
    if (!v) return bad("a " + type_name + " message needs '" + std::string(f.name) + "'");
    if (!has_kind(*v, f.k)) {
      return bad("'" + std::string(f.name) + "' of a " + type_name + " message must be " +
                 std::string(kind_name(f.k)));
    }
  }
  if (type_name == "result") {
    int payloads = 0;
    for (const auto* key : {"machine", "machines", "reservation", "reservations"})
      if (o.contains(key)) ++payloads;
    if (payloads > 1) return bad("a result carries at most one of machine, machines, ...");
  }
  return message{type_name, std::move(o)};
}

}  // namespace cloudbrain::driver_protocol
