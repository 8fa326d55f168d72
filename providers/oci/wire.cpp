#include "providers/oci/wire.hpp"

#include "core/encoding.hpp"
#include "core/token.hpp"
#include "core/uuid.hpp"
#include "providers/oci/signer.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>

namespace cloudbrain::providers::oci {
namespace json = boost::json;

namespace {

std::string_view str_or(const json::object& o, std::string_view key, std::string_view dflt = {}) {
  const auto* v = o.if_contains(key);
  if (v && v->is_string()) return v->get_string();
  return dflt;
}

std::optional<long long> int_of(const json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<long long>(v->get_uint64());
  if (v->is_double() && std::isfinite(v->get_double()) &&
      std::floor(v->get_double()) == v->get_double() && std::abs(v->get_double()) < 1e15)
    return static_cast<long long>(v->get_double());
  return std::nullopt;
}

std::optional<json::value> parse_json(std::string_view body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

// At most n bytes of a body for a message, on one line.
std::string snippet(std::string_view body, std::size_t n = 200) {
  std::string out;
  for (char c : body.substr(0, n)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (body.size() > n) out += "...";
  return out;
}

// A whole number as a JSON integer (1, not 1E0), anything else as a double.
json::value number(double d) {
  if (std::floor(d) == d && std::abs(d) < 1e15) return static_cast<std::int64_t>(d);
  return d;
}

json::object shape_config_of(const shape_choice& c) {
  json::object cfg;
  if (c.ocpus) cfg["ocpus"] = number(*c.ocpus);
  if (c.memory_gb) cfg["memoryInGBs"] = number(*c.memory_gb);
  return cfg;
}

labels labels_of(const json::object& o) {
  labels out;
  if (const auto* tags = o.if_contains("freeformTags"); tags && tags->is_object()) {
    for (const auto& [k, v] : tags->get_object()) {
      if (v.is_string()) out[std::string(k)] = std::string(v.get_string());
    }
  }
  return out;
}

result<system_clock::time_point> time_of(const json::object& o, std::string_view key,
                                         std::string_view what) {
  const auto ts = str_or(o, key);
  if (ts.empty()) return system_clock::time_point{};
  auto t = parse_rfc3339(ts);
  if (!t) {
    return fail(errc::cloud_transient, std::string(what) + " has a bad " + std::string(key) + " '" +
                                           std::string(ts) + "'");
  }
  return *t;
}

json::object freeform_tags(const labels& tags,
                           std::initializer_list<std::pair<const char*, std::string>> markers) {
  json::object out;
  for (const auto& [k, v] : tags) {
    const std::string key = tag_key(k);
    bool ours = false;
    for (const auto& m : markers) ours = ours || key == m.first;
    if (!ours && !key.empty()) out[key] = tag_value(v);
  }
  for (const auto& [k, v] : markers) out[k] = tag_value(v);
  return out;
}

bool contains_ci(std::string_view hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         }) != hay.end();
}

errc kind_of(unsigned status, std::string_view code, std::string_view message) {
  // OCI answers "Out of host capacity." as a 500 InternalError: a capacity error, not a fault.
  if (contains_ci(message, "out of host capacity")) return errc::cloud_capacity;
  if (code == "LimitExceeded" || code == "QuotaExceeded") return errc::cloud_quota;
  if (status == 429 || code == "TooManyRequests") return errc::cloud_rate_limited;
  if (code == "IncorrectState" || code == "ExternalServerIncorrectState")
    return errc::cloud_transient;
  if (status == 401 || status == 403) return errc::cloud_auth;
  if (status == 404) return errc::cloud_not_found;
  if (code == "NotAuthorizedOrResourceAlreadyExists") return errc::cloud_already_exists;
  if (status >= 500 || status == 408) return errc::cloud_transient;
  return errc::cloud_permanent;
}

}  // namespace

// ---- requests ---------------------------------------------------------------------------------

std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string query_string(
    std::initializer_list<std::pair<std::string_view, std::string_view>> params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    if (!q.empty()) q += '&';
    q.append(k).append("=").append(percent_encode(v));
  }
  return q;
}

std::string api_url(const oci_settings& s, std::string_view path, std::string_view query) {
  std::string url = s.endpoint;
  url.append(api_version).append(path);
  if (!query.empty()) url.append("?").append(query);
  return url;
}

std::string retry_token_for(std::string_view idempotency_key) {
  const auto h = sha256(idempotency_key.data(), idempotency_key.size());
  return to_hex(h.data(), h.size());
}

std::string tag_key(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 100)) {
    out += (c == '.' || std::isspace(static_cast<unsigned char>(c))) ? '_' : c;
  }
  return out;
}

std::string tag_value(std::string_view value) { return std::string(value.substr(0, 256)); }

result<json::object> build_launch_body(const instance_spec& spec, const oci_settings& s,
                                       std::string_view reservation_id) {
  auto shape = s.shape_for(spec.instance_type);
  if (!shape) return shape.error();
  if (!valid_ocid(spec.image, "image")) {
    return fail(errc::cloud_permanent,
                "the image must be an image OCID (ocid1.image.oc1..), not '" + spec.image + "'");
  }
  json::object body;
  body["compartmentId"] = s.compartment;
  body["availabilityDomain"] = spec.zone;
  body["displayName"] = spec.name;
  body["shape"] = (*shape)->shape;
  if ((*shape)->flex()) body["shapeConfig"] = shape_config_of(**shape);

  json::object source{{"sourceType", "image"}, {"imageId", spec.image}};
  if (s.boot_volume_size_gb > 0)
    source["bootVolumeSizeInGBs"] = static_cast<std::int64_t>(s.boot_volume_size_gb);
  body["sourceDetails"] = std::move(source);

  body["createVnicDetails"] =
      json::object{{"subnetId", s.subnet}, {"assignPublicIp", s.assign_public_ip}};

  if (!spec.public_ssh_key.empty()) {
    std::string key = spec.public_ssh_key;
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' '))
      key.pop_back();
    json::object metadata{{"ssh_authorized_keys", key}};
    // The key goes to the image's own user (opc on Oracle Linux). Another user is made by
    // cloud-init, with the same key.
    if (s.ssh_user != "opc") {
      const std::string cloud_config =
          "#cloud-config\nusers:\n  - default\n  - name: " + s.ssh_user +
          "\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/bash\n"
          "    ssh_authorized_keys:\n      - " +
          key + "\n";
      metadata["user_data"] = base64_encode(cloud_config);
    }
    body["metadata"] = std::move(metadata);
  }

  body["freeformTags"] = freeform_tags(
      spec.tags, {{label_deployment, spec.deployment}, {label_instance, spec.instance_id}});
  if (!reservation_id.empty()) body["capacityReservationId"] = reservation_id;
  return body;
}

result<json::object> build_reservation_body(const reservation_spec& spec, const oci_settings& s) {
  auto shape = s.shape_for(spec.instance_type);
  if (!shape) return shape.error();
  if (spec.count <= 0) return fail(errc::cloud_permanent, "a reservation needs a count above 0");
  json::object config{{"instanceShape", (*shape)->shape}, {"reservedCount", spec.count}};
  if ((*shape)->flex()) config["instanceShapeConfig"] = shape_config_of(**shape);
  json::object body;
  body["compartmentId"] = s.compartment;
  body["availabilityDomain"] = spec.zone;
  body["displayName"] = spec.name;
  body["isDefaultReservation"] = false;
  body["instanceReservationConfigs"] = json::array{std::move(config)};
  body["freeformTags"] = freeform_tags(
      spec.tags, {{label_deployment, spec.deployment}, {label_reservation, spec.reservation_id}});
  return body;
}

// ---- instances --------------------------------------------------------------------------------

vm_status status_from_lifecycle(std::string_view s) {
  if (s == "RUNNING") return vm_status::running;
  if (s == "STOPPING" || s == "TERMINATING") return vm_status::stopping;
  if (s == "STOPPED" || s == "TERMINATED") return vm_status::terminated;
  // PROVISIONING, STARTING, MOVING, CREATING_IMAGE, and any state added later: not ready yet,
  // not going away.
  return vm_status::provisioning;
}

namespace {

result<instance_info> instance_from(const json::object& o) {
  instance_info i;
  i.v.upstream_id = str_or(o, "id");
  if (i.v.upstream_id.empty()) return fail(errc::cloud_transient, "an instance without an id");
  i.v.name = str_or(o, "displayName");
  i.v.zone = str_or(o, "availabilityDomain");
  i.lifecycle_state = str_or(o, "lifecycleState");
  if (i.lifecycle_state.empty()) {
    return fail(errc::cloud_transient, "instance " + i.v.upstream_id + " has no lifecycleState");
  }
  i.v.status = status_from_lifecycle(i.lifecycle_state);
  i.v.labels_ = labels_of(o);
  i.shape = str_or(o, "shape");
  i.capacity_reservation_id = str_or(o, "capacityReservationId");
  auto created = time_of(o, "timeCreated", "instance " + i.v.upstream_id);
  if (!created) return created.error();
  i.v.created_at = *created;
  return i;
}

}  // namespace

result<instance_info> parse_instance(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "OCI answered with something that is not an instance: " + snippet(body));
  }
  return instance_from(v->get_object());
}

result<std::vector<instance_info>> parse_instance_list(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_array()) {
    return fail(errc::cloud_transient,
                "OCI answered with something that is not a list of instances: " + snippet(body));
  }
  std::vector<instance_info> out;
  for (const auto& item : v->get_array()) {
    if (!item.is_object()) return fail(errc::cloud_transient, "an instance that is not an object");
    auto i = instance_from(item.get_object());
    if (!i) return i.error();
    out.push_back(std::move(*i));
  }
  return out;
}

result<std::vector<vnic_attachment>> parse_vnic_attachments(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_array()) {
    return fail(
        errc::cloud_transient,
        "OCI answered with something that is not a list of VNIC attachments: " + snippet(body));
  }
  std::vector<vnic_attachment> out;
  for (const auto& item : v->get_array()) {
    if (!item.is_object())
      return fail(errc::cloud_transient, "a VNIC attachment that is not an object");
    const auto& o = item.get_object();
    vnic_attachment a;
    a.id = str_or(o, "id");
    a.vnic_id = str_or(o, "vnicId");  // absent while ATTACHING
    a.lifecycle_state = str_or(o, "lifecycleState");
    a.nic_index = static_cast<int>(int_of(o.if_contains("nicIndex")).value_or(0));
    if (a.id.empty()) return fail(errc::cloud_transient, "a VNIC attachment without an id");
    out.push_back(std::move(a));
  }
  return out;
}

const vnic_attachment* primary_attachment(const std::vector<vnic_attachment>& list) {
  for (const auto& a : list) {
    if (a.nic_index == 0 && a.lifecycle_state == "ATTACHED" && !a.vnic_id.empty()) return &a;
  }
  return nullptr;
}

result<vnic_info> parse_vnic(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "OCI answered with something that is not a VNIC: " + snippet(body));
  }
  const auto& o = v->get_object();
  vnic_info n;
  n.id = str_or(o, "id");
  if (n.id.empty()) return fail(errc::cloud_transient, "a VNIC without an id");
  n.private_ip = str_or(o, "privateIp");
  n.public_ip = str_or(o, "publicIp");
  n.lifecycle_state = str_or(o, "lifecycleState");
  if (const auto* p = o.if_contains("isPrimary"); p && p->is_bool()) n.is_primary = p->get_bool();
  return n;
}

// ---- capacity reservations --------------------------------------------------------------------

reservation_status reservation_status_from_lifecycle(std::string_view s) {
  if (s == "ACTIVE") return reservation_status::ready;
  if (s == "DELETING" || s == "DELETED") return reservation_status::deleting;
  if (s == "UPDATING" || s == "MOVING") return reservation_status::updating;
  return reservation_status::creating;  // CREATING, and any state added later: not ready yet
}

namespace {

result<cloud_reservation> reservation_from(const json::object& o, std::string* state) {
  cloud_reservation r;
  r.upstream_id = str_or(o, "id");
  if (r.upstream_id.empty()) return fail(errc::cloud_transient, "a reservation without an id");
  r.name = str_or(o, "displayName");
  r.zone = str_or(o, "availabilityDomain");
  const std::string lifecycle(str_or(o, "lifecycleState"));
  if (lifecycle.empty()) {
    return fail(errc::cloud_transient, "reservation " + r.upstream_id + " has no lifecycleState");
  }
  r.status = reservation_status_from_lifecycle(lifecycle);
  if (state) *state = lifecycle;
  r.labels_ = labels_of(o);
  const auto count = int_of(o.if_contains("reservedInstanceCount"));
  const auto used = int_of(o.if_contains("usedInstanceCount"));
  if ((count && (*count < 0 || *count > INT32_MAX)) || (used && (*used < 0 || *used > INT32_MAX))) {
    return fail(errc::cloud_transient, "reservation " + r.upstream_id + " has impossible counts");
  }
  r.count = static_cast<int>(count.value_or(0));
  r.in_use = static_cast<int>(used.value_or(0));
  if (const auto* configs = o.if_contains("instanceReservationConfigs");
      configs && configs->is_array() && !configs->get_array().empty() &&
      configs->get_array()[0].is_object()) {
    const auto& c = configs->get_array()[0].get_object();
    shape_choice shape{std::string(str_or(c, "instanceShape")), std::nullopt, std::nullopt};
    if (const auto* sc = c.if_contains("instanceShapeConfig"); sc && sc->is_object()) {
      const auto& cfg = sc->get_object();
      if (const auto* n = cfg.if_contains("ocpus"); n && n->is_number())
        shape.ocpus = n->to_number<double>();
      if (const auto* n = cfg.if_contains("memoryInGBs"); n && n->is_number())
        shape.memory_gb = n->to_number<double>();
    }
    r.machine_type = shape.describe();
  }
  auto created = time_of(o, "timeCreated", "reservation " + r.upstream_id);
  if (!created) return created.error();
  r.created_at = *created;
  return r;
}

}  // namespace

result<cloud_reservation> parse_reservation(std::string_view body, std::string* lifecycle_state) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "OCI answered with something that is not a capacity reservation: " + snippet(body));
  }
  return reservation_from(v->get_object(), lifecycle_state);
}

result<std::vector<reservation_summary>> parse_reservation_list(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_array()) {
    return fail(errc::cloud_transient,
                "OCI answered with something that is not a list of capacity reservations: " +
                    snippet(body));
  }
  std::vector<reservation_summary> out;
  for (const auto& item : v->get_array()) {
    if (!item.is_object())
      return fail(errc::cloud_transient, "a capacity reservation that is not an object");
    reservation_summary s;
    auto r = reservation_from(item.get_object(), &s.lifecycle_state);
    if (!r) return r.error();
    s.r = std::move(*r);
    out.push_back(std::move(s));
  }
  return out;
}

// ---- work requests ----------------------------------------------------------------------------

result<work_request> parse_work_request(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "OCI answered with something that is not a work request: " + snippet(body));
  }
  const auto& o = v->get_object();
  work_request w;
  w.id = str_or(o, "id");
  w.operation_type = str_or(o, "operationType");
  const auto status = str_or(o, "status");
  if (w.id.empty() || status.empty())
    return fail(errc::cloud_transient, "a work request without an id or status");
  if (status == "ACCEPTED")
    w.status = work_request_status::accepted;
  else if (status == "IN_PROGRESS")
    w.status = work_request_status::in_progress;
  else if (status == "SUCCEEDED")
    w.status = work_request_status::succeeded;
  else if (status == "FAILED")
    w.status = work_request_status::failed;
  else if (status == "CANCELING")
    w.status = work_request_status::canceling;
  else if (status == "CANCELED")
    w.status = work_request_status::canceled;
  else
    w.status = work_request_status::in_progress;  // a state added later: not finished
  w.percent_complete = static_cast<int>(int_of(o.if_contains("percentComplete")).value_or(0));
  return w;
}

result<std::vector<work_request_error>> parse_work_request_errors(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_array()) {
    return fail(
        errc::cloud_transient,
        "OCI answered with something that is not a list of work request errors: " + snippet(body));
  }
  std::vector<work_request_error> out;
  for (const auto& item : v->get_array()) {
    if (!item.is_object()) continue;
    const auto& o = item.get_object();
    out.push_back({std::string(str_or(o, "code")), std::string(str_or(o, "message"))});
  }
  return out;
}

// ---- errors -----------------------------------------------------------------------------------

error error_from_response(unsigned http_status, std::string_view body,
                          const response_context& ctx) {
  std::string code;
  std::string message;
  if (auto v = parse_json(body); v && v->is_object()) {
    code = str_or(v->get_object(), "code");
    message = str_or(v->get_object(), "message");
  }
  if (message.empty()) message = body.empty() ? "empty body" : snippet(body);
  const errc kind = kind_of(http_status, code, message);

  std::string detail = message + " (HTTP " + std::to_string(http_status);
  if (!code.empty()) detail += " " + code;
  if (!ctx.opc_request_id.empty()) detail += ", opc-request-id " + std::string(ctx.opc_request_id);
  detail += ")";
  if (http_status == 401) {
    // OCI accepts a Date within five minutes of its own clock; a signature refused for any
    // other reason is a key, fingerprint or OCID that does not match.
    std::string why = "OCI refused the request signature";
    if (auto theirs = parse_http_date(ctx.date); theirs && ctx.now != system_clock::time_point{}) {
      const auto skew = std::chrono::round<std::chrono::seconds>(ctx.now - *theirs);
      if (skew > std::chrono::minutes(5) || skew < -std::chrono::minutes(5)) {
        why = "OCI refused the request signature: this host's clock is " +
              std::to_string(std::abs(skew.count())) + " s " +
              (skew.count() > 0 ? "ahead of" : "behind") +
              " OCI's (at most 5 minutes are accepted); fix the clock";
        return fail(kind, why + ": " + detail);
      }
    }
    return fail(kind, why + " (check tenancy, user, fingerprint and key-file): " + detail);
  }
  return fail(kind, std::move(detail));
}

error error_from_work_request(const work_request& wr,
                              const std::vector<work_request_error>& errors) {
  if (errors.empty()) {
    return fail(errc::cloud_permanent,
                "OCI work request " + wr.id + " (" + wr.operation_type + ") " +
                    (wr.status == work_request_status::canceled ? "was canceled" : "failed") +
                    " without saying why");
  }
  errc kind = errc::cloud_permanent;
  std::string detail;
  for (const auto& e : errors) {
    const errc k = kind_of(500, e.code, e.message);
    // Capacity and quota decide over whatever else went wrong alongside.
    if (k == errc::cloud_capacity || (k == errc::cloud_quota && kind != errc::cloud_capacity))
      kind = k;
    if (!detail.empty()) detail += "; ";
    detail += e.message.empty() ? e.code : e.message;
    if (!e.code.empty() && !e.message.empty()) detail += " (" + e.code + ")";
  }
  return fail(kind, detail + " (work request " + wr.id + ")");
}

}  // namespace cloudbrain::providers::oci
