#include "providers/gce/wire.hpp"

#include "providers/section_values.hpp"

#include "core/uuid.hpp"

#include <openssl/evp.h>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <stdexcept>

namespace cloudbrain::providers::gce {
namespace json = boost::json;

namespace {

std::string last_segment(std::string_view url) {
  const auto slash = url.rfind('/');
  return std::string(slash == std::string_view::npos ? url : url.substr(slash + 1));
}

std::string_view str_or(const json::object& o, std::string_view key, std::string_view dflt = {}) {
  const auto* v = o.if_contains(key);
  if (v && v->is_string()) return v->get_string();
  return dflt;
}

// Google renders uint64/int64 as decimal strings; accept plain numbers too.
std::string id_string(const json::value* v) {
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  if (v->is_int64()) return std::to_string(v->get_int64());
  return {};
}

// Google's int64 fields come as decimal strings; plain numbers are taken too.
std::optional<long long> int_of(const json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<long long>(v->get_uint64());
  if (v->is_string()) {
    const auto s = v->get_string();
    long long n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc{} && end == s.data() + s.size()) return n;
  }
  return std::nullopt;
}

std::optional<json::value> parse_json(std::string_view body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

std::string image_source(std::string_view image, const gce_settings& s) {
  // Already a path or URL ("projects/P/global/images/X", "https://..."): as given.
  if (image.starts_with("projects/") || image.starts_with("https://") ||
      image.starts_with("http://") || image.starts_with("global/")) {
    return std::string(image);
  }
  return "projects/" + s.image_project + "/global/images/" + std::string(image);
}

std::string network_path(std::string_view n) {
  if (n.find('/') != std::string_view::npos) return std::string(n);
  return "global/networks/" + std::string(n);
}

std::string subnetwork_path(std::string_view n, std::string_view zone) {
  if (n.find('/') != std::string_view::npos) return std::string(n);
  return "regions/" + region_of(zone) + "/subnetworks/" + std::string(n);
}

std::string label_chars(std::string_view in) {
  std::string out;
  for (char c : in.substr(0, 63)) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out;
}

errc kind_of_operation_code(std::string_view code, unsigned http_status) {
  if (code.find("RESOURCE_POOL_EXHAUSTED") != std::string_view::npos) return errc::cloud_capacity;
  if (code == "RESERVATION_CAPACITY_EXCEEDED") return errc::cloud_capacity;
  if (code == "QUOTA_EXCEEDED") return errc::cloud_quota;
  if (code == "RESOURCE_NOT_FOUND") return errc::cloud_not_found;
  if (code == "RESOURCE_ALREADY_EXISTS") return errc::cloud_already_exists;
  if (code == "RESOURCE_OPERATION_RATE_EXCEEDED" || code == "RATE_LIMIT_EXCEEDED") {
    return errc::cloud_rate_limited;
  }
  if (code == "INTERNAL_ERROR" || code == "RESOURCE_NOT_READY" || code == "TIMEOUT") {
    return errc::cloud_transient;
  }
  if (http_status == 429) return errc::cloud_rate_limited;
  if (http_status >= 500 || http_status == 408) return errc::cloud_transient;
  return errc::cloud_permanent;
}

}  // namespace

// ---- paths --------------------------------------------------------------------------------

std::string instances_path(std::string_view project, std::string_view zone) {
  std::string p = "projects/";
  p.append(project).append("/zones/").append(zone).append("/instances");
  return p;
}

std::string instance_path(std::string_view project, std::string_view zone, std::string_view name) {
  return instances_path(project, zone) + "/" + std::string(name);
}

std::string operation_path(std::string_view project, std::string_view zone,
                           std::string_view operation) {
  std::string p = "projects/";
  p.append(project).append("/zones/").append(zone).append("/operations/").append(operation);
  return p;
}

std::string operation_wait_path(std::string_view project, std::string_view zone,
                                std::string_view operation) {
  return operation_path(project, zone, operation) + "/wait";
}

std::string reservations_path(std::string_view project, std::string_view zone) {
  std::string p = "projects/";
  p.append(project).append("/zones/").append(zone).append("/reservations");
  return p;
}

std::string reservation_path(std::string_view project, std::string_view zone,
                             std::string_view name) {
  return reservations_path(project, zone) + "/" + std::string(name);
}

std::string api_url(const gce_settings& s, std::string_view relative, std::string_view query) {
  std::string url = s.endpoint + "/compute/v1/";
  url.append(relative);
  if (!query.empty()) url.append("?").append(query);
  return url;
}

std::string region_of(std::string_view zone) {
  const auto dash = zone.rfind('-');
  return std::string(dash == std::string_view::npos ? zone : zone.substr(0, dash));
}

std::string label_key(std::string_view key) {
  std::string k = label_chars(key);
  if (k.empty() || k.front() < 'a' || k.front() > 'z') k = ("t-" + k).substr(0, 63);
  return k;
}

std::string label_value(std::string_view value) { return label_chars(value); }

// ---- insert -------------------------------------------------------------------------------

result<json::object> build_insert_body(const instance_spec& spec, const gce_settings& s) {
  auto machine_type = s.machine_type_for(spec.instance_type);
  if (!machine_type) return machine_type.error();
  const std::string& zone = spec.zone;

  json::object body;
  body["name"] = spec.name;
  body["machineType"] = "zones/" + zone + "/machineTypes/" + *machine_type;

  json::object init;
  init["sourceImage"] = image_source(spec.image, s);
  init["diskSizeGb"] = std::to_string(s.disk_size_gb);  // int64: a string on the wire
  init["diskType"] = "zones/" + zone + "/diskTypes/" + s.disk_type;
  json::object disk;
  disk["boot"] = true;
  disk["autoDelete"] = true;
  disk["initializeParams"] = std::move(init);
  body["disks"] = json::array{std::move(disk)};

  json::object nic;
  nic["network"] = network_path(s.network);
  if (!s.subnetwork.empty()) nic["subnetwork"] = subnetwork_path(s.subnetwork, zone);
  if (s.external_ip) {
    nic["accessConfigs"] =
        json::array{json::object{{"type", "ONE_TO_ONE_NAT"}, {"name", "External NAT"}}};
  }
  body["networkInterfaces"] = json::array{std::move(nic)};

  if (!spec.public_ssh_key.empty()) {
    std::string key = spec.public_ssh_key;
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' '))
      key.pop_back();
    body["metadata"] = json::object{
        {"items",
         json::array{json::object{{"key", "ssh-keys"}, {"value", s.ssh_user + ":" + key}}}}};
  }

  json::object labels;
  for (const auto& [k, v] : spec.tags) labels[label_key(k)] = label_value(v);
  labels[label_deployment] = label_value(spec.deployment);
  labels[label_instance] = label_value(spec.instance_id);
  body["labels"] = std::move(labels);

  // Spot and preemptible VMs cannot consume a reservation: a VM launched into one (already
  // paid for) is a standard VM.
  const bool into_reservation = !spec.reservation_upstream.empty();
  if (s.spot && !into_reservation) {
    body["scheduling"] =
        json::object{{"provisioningModel", "SPOT"}, {"instanceTerminationAction", "DELETE"}};
  } else if (s.preemptible && !into_reservation) {
    body["scheduling"] = json::object{
        {"preemptible", true}, {"automaticRestart", false}, {"onHostMaintenance", "TERMINATE"}};
  }

  if (into_reservation) {
    body["reservationAffinity"] =
        json::object{{"consumeReservationType", "SPECIFIC_RESERVATION"},
                     {"key", "compute.googleapis.com/reservation-name"},
                     {"values", json::array{json::string(spec.reservation_upstream)}}};
  }
  return body;
}

std::string request_id_for(std::string_view idempotency_key) {
  // A fixed namespace keeps these ids apart from any other name-based UUIDs.
  static constexpr std::string_view ns = "cloudbrain/gce/requestId/";
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, ns.data(), ns.size()) == 1 &&
                  EVP_DigestUpdate(ctx, idempotency_key.data(), idempotency_key.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, md.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("SHA-256 failed");        // a broken OpenSSL is a bug
  md[6] = static_cast<unsigned char>((md[6] & 0x0f) | 0x50);  // version 5 layout
  md[8] = static_cast<unsigned char>((md[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string hex = to_hex(md.data(), 16);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

std::string request_id_query(std::string_view idempotency_key) {
  return "requestId=" + request_id_for(idempotency_key);
}

// ---- operations and errors ----------------------------------------------------------------

result<operation> parse_operation(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "GCE answered with something that is not JSON: " + body_snippet(body));
  }
  const auto& o = v->get_object();
  const auto kind = str_or(o, "kind");
  const auto name = str_or(o, "name");
  const auto status = str_or(o, "status");
  if ((!kind.empty() && kind != "compute#operation") || name.empty() || status.empty()) {
    return fail(errc::cloud_transient,
                "GCE answered with something that is not an operation: " + body_snippet(body));
  }
  operation op;
  op.name = name;
  if (status == "PENDING")
    op.status = operation_status::pending;
  else if (status == "RUNNING")
    op.status = operation_status::running;
  else if (status == "DONE")
    op.status = operation_status::done;
  else
    return fail(errc::cloud_transient, "unknown operation status '" + std::string(status) + "'");
  op.operation_type = str_or(o, "operationType");
  op.target_link = str_or(o, "targetLink");
  op.target_id = id_string(o.if_contains("targetId"));
  op.zone = last_segment(str_or(o, "zone"));
  // An HTTP status is a small whole number; anything else (a fraction, a negative, 1e300) is
  // ignored rather than trusted.
  if (const auto* code = o.if_contains("httpErrorStatusCode"); code && code->is_number()) {
    if (const auto n = int_of(code); n && *n >= 0 && *n <= 999)
      op.http_error_status_code = static_cast<unsigned>(*n);
  }
  op.http_error_message = str_or(o, "httpErrorMessage");
  if (const auto* err = o.if_contains("error"); err && err->is_object()) {
    if (const auto* errs = err->get_object().if_contains("errors"); errs && errs->is_array()) {
      for (const auto& e : errs->get_array()) {
        if (!e.is_object()) continue;
        operation_error oe;
        oe.code = str_or(e.get_object(), "code");
        oe.message = str_or(e.get_object(), "message");
        if (const auto* details = e.get_object().if_contains("errorDetails");
            details && details->is_array()) {
          for (const auto& d : details->get_array()) {
            const auto* info = d.is_object() ? d.get_object().if_contains("errorInfo") : nullptr;
            const auto* meta =
                info && info->is_object() ? info->get_object().if_contains("metadatas") : nullptr;
            if (!meta || !meta->is_object()) continue;
            std::string_view zones = str_or(meta->get_object(), "zonesAvailable");
            while (!zones.empty()) {
              const auto comma = zones.find(',');
              if (comma != 0) oe.zones_available.emplace_back(zones.substr(0, comma));
              if (comma == std::string_view::npos) break;
              zones.remove_prefix(comma + 1);
            }
          }
        }
        op.errors.push_back(std::move(oe));
      }
    }
  }
  if (op.done() && op.errors.empty() && op.http_error_status_code >= 400) {
    op.errors.push_back({"", op.http_error_message, {}});  // failed without a list
  }
  return op;
}

error error_from_operation(const operation& op) {
  if (op.errors.empty()) return fail(errc::internal, "operation " + op.name + " did not fail");
  // The first error decides the kind; the detail keeps all of Google's messages.
  const errc kind = kind_of_operation_code(op.errors.front().code, op.http_error_status_code);
  std::string detail;
  for (const auto& e : op.errors) {
    if (!detail.empty()) detail += "; ";
    detail += e.message.empty() ? op.http_error_message : e.message;
    if (!e.code.empty()) detail += " (" + e.code + ")";
  }
  return fail(kind, std::move(detail));
}

error error_from_response(unsigned http_status, std::string_view body) {
  std::string message;
  std::string reason;
  std::string rpc_status;
  std::vector<std::string> reasons;
  if (auto v = parse_json(body); v && v->is_object()) {
    const auto* err = v->get_object().if_contains("error");
    if (err && err->is_object()) {
      const auto& eo = err->get_object();
      message = str_or(eo, "message");
      rpc_status = str_or(eo, "status");
      if (const auto* errs = eo.if_contains("errors"); errs && errs->is_array()) {
        for (const auto& e : errs->get_array()) {
          if (e.is_object()) reasons.emplace_back(str_or(e.get_object(), "reason"));
        }
      }
      if (const auto* details = eo.if_contains("details"); details && details->is_array()) {
        for (const auto& d : details->get_array()) {
          if (d.is_object()) reasons.emplace_back(str_or(d.get_object(), "reason"));
        }
      }
    } else if (err && err->is_string()) {
      // OAuth2's token endpoint: {"error":"invalid_grant","error_description":"..."}
      reasons.emplace_back(err->get_string());
      message = str_or(v->get_object(), "error_description");
    }
  }
  if (!reasons.empty()) reason = reasons.front();
  if (message.empty()) message = body.empty() ? "empty body" : body_snippet(body);
  auto has = [&](std::string_view r) {
    return std::find(reasons.begin(), reasons.end(), r) != reasons.end();
  };

  errc kind = errc::cloud_permanent;
  if (has("quotaExceeded") || has("QUOTA_EXCEEDED"))
    kind = errc::cloud_quota;
  else if (http_status == 429 || has("rateLimitExceeded") || has("userRateLimitExceeded") ||
           has("RATE_LIMIT_EXCEEDED"))
    kind = errc::cloud_rate_limited;
  else if (http_status >= 500 || http_status == 408)
    kind = errc::cloud_transient;
  else if (http_status == 404 || has("notFound"))
    kind = errc::cloud_not_found;
  else if (http_status == 409 || has("alreadyExists"))
    kind = errc::cloud_already_exists;
  else if (http_status == 401 || has("authError") || has("insufficientPermissions") ||
           has("forbidden") || has("invalid_grant"))
    kind = errc::cloud_auth;

  std::string detail = message + " (HTTP " + std::to_string(http_status);
  if (!reason.empty()) detail += ", " + reason;
  detail += ")";
  return fail(kind, std::move(detail));
}

// ---- instances ----------------------------------------------------------------------------

vm_status status_from_string(std::string_view s) {
  if (s == "RUNNING") return vm_status::running;
  if (s == "STOPPING" || s == "SUSPENDING" || s == "DEPROVISIONING") return vm_status::stopping;
  if (s == "TERMINATED" || s == "STOPPED" || s == "SUSPENDED") return vm_status::terminated;
  // PROVISIONING, STAGING; REPAIRING (Google brings it back to RUNNING); and any status added
  // later: not ready yet, not going away.
  return vm_status::provisioning;
}

namespace {

result<vm> instance_from(const json::object& o, bool external_ip) {
  vm v;
  v.name = str_or(o, "name");
  if (v.name.empty()) return fail(errc::cloud_transient, "an instance without a name");
  v.upstream_id = id_string(o.if_contains("id"));
  v.zone = last_segment(str_or(o, "zone"));
  v.status = status_from_string(str_or(o, "status"));
  if (const auto* nics = o.if_contains("networkInterfaces");
      nics && nics->is_array() && !nics->get_array().empty() && nics->get_array()[0].is_object()) {
    const auto& nic = nics->get_array()[0].get_object();
    if (external_ip) {
      const auto* acs = nic.if_contains("accessConfigs");
      if (acs && acs->is_array() && !acs->get_array().empty() && acs->get_array()[0].is_object()) {
        const auto nat = str_or(acs->get_array()[0].get_object(), "natIP");
        if (!nat.empty()) v.ip_address = std::string(nat);
      }
    } else if (const auto ip = str_or(nic, "networkIP"); !ip.empty()) {
      v.ip_address = std::string(ip);
    }
  }
  if (const auto* labels = o.if_contains("labels"); labels && labels->is_object()) {
    for (const auto& [k, val] : labels->get_object()) {
      if (val.is_string()) v.labels_[std::string(k)] = std::string(val.get_string());
    }
  }
  if (const auto ts = str_or(o, "creationTimestamp"); !ts.empty()) {
    auto t = parse_rfc3339(ts);
    if (!t) return fail(errc::cloud_transient, "bad creationTimestamp '" + std::string(ts) + "'");
    v.created_at = *t;
  }
  return v;
}

}  // namespace

result<vm> parse_instance(std::string_view body, bool external_ip) {
  auto v = parse_json(body);
  if (!v || !v->is_object() ||
      str_or(v->get_object(), "kind", "compute#instance") != "compute#instance") {
    return fail(errc::cloud_transient,
                "GCE answered with something that is not an instance: " + body_snippet(body));
  }
  return instance_from(v->get_object(), external_ip);
}

result<instance_list_page> parse_instance_list(std::string_view body, bool external_ip) {
  auto v = parse_json(body);
  if (!v || !v->is_object() ||
      str_or(v->get_object(), "kind", "compute#instanceList") != "compute#instanceList") {
    return fail(errc::cloud_transient,
                "GCE answered with something that is not an instance list: " + body_snippet(body));
  }
  const auto& o = v->get_object();
  instance_list_page page;
  page.next_page_token = str_or(o, "nextPageToken");
  if (const auto* items = o.if_contains("items")) {
    if (!items->is_array())
      return fail(errc::cloud_transient, "instance list 'items' is not a list");
    for (const auto& item : items->get_array()) {
      if (!item.is_object())
        return fail(errc::cloud_transient, "an instance that is not an object");
      auto vm = instance_from(item.get_object(), external_ip);
      if (!vm) return vm.error();
      page.items.push_back(std::move(*vm));
    }
  }
  return page;
}

std::string list_filter_for_deployment(std::string_view deployment) {
  return std::string("labels.") + label_deployment + " = \"" + label_value(deployment) + "\"";
}

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

std::string list_query(std::string_view filter, std::string_view page_token, unsigned max_results) {
  std::string q;
  auto add = [&](std::string_view k, std::string_view v) {
    if (!q.empty()) q += '&';
    q.append(k).append("=").append(percent_encode(v));
  };
  if (!filter.empty()) add("filter", filter);
  if (max_results > 0) add("maxResults", std::to_string(max_results));
  if (!page_token.empty()) add("pageToken", page_token);
  return q;
}

}  // namespace cloudbrain::providers::gce

// ---- reservations -------------------------------------------------------------------------

namespace cloudbrain::providers::gce {

namespace {

constexpr std::string_view description_prefix = "cloudbrain reservation:";
constexpr std::size_t description_limit = 2048;

bool is_label_text(std::string_view s) {
  return !s.empty() && s.size() <= 63 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

result<cloud_reservation> reservation_from(const json::object& o) {
  cloud_reservation r;
  r.name = str_or(o, "name");
  if (r.name.empty()) return fail(errc::cloud_transient, "a reservation without a name");
  r.upstream_id = id_string(o.if_contains("id"));
  r.zone = last_segment(str_or(o, "zone"));
  r.status = reservation_status_from_string(str_or(o, "status"));
  r.labels_ = labels_from_description(str_or(o, "description"));
  // Someone's reservation of another kind (an aggregate one, say) may share the zone: it has
  // no count of VMs, and no markers of ours either.
  const auto* sr = o.if_contains("specificReservation");
  if (!sr || !sr->is_object()) return r;
  const auto& spec = sr->get_object();
  const auto count = int_of(spec.if_contains("count"));
  if (!count || *count < 0 || *count > INT32_MAX) {
    return fail(errc::cloud_transient, "reservation " + r.name + " has no usable count");
  }
  r.count = static_cast<int>(*count);
  const auto in_use = int_of(spec.if_contains("inUseCount"));
  r.in_use = in_use && *in_use >= 0 && *in_use <= INT32_MAX ? static_cast<int>(*in_use) : 0;
  if (const auto* props = spec.if_contains("instanceProperties"); props && props->is_object()) {
    r.machine_type = last_segment(str_or(props->get_object(), "machineType"));
  }
  if (const auto ts = str_or(o, "creationTimestamp"); !ts.empty()) {
    auto t = parse_rfc3339(ts);
    if (!t) return fail(errc::cloud_transient, "bad creationTimestamp '" + std::string(ts) + "'");
    r.created_at = *t;
  }
  if (const auto ts = str_or(o, "deleteAtTime"); !ts.empty()) {
    auto t = parse_rfc3339(ts);
    if (!t) return fail(errc::cloud_transient, "bad deleteAtTime '" + std::string(ts) + "'");
    r.ends_at = *t;
  }
  return r;
}

}  // namespace

std::string reservation_description(const reservation_spec& spec) {
  std::string d(description_prefix);
  d.append(" ").append(label_deployment).append("=").append(label_value(spec.deployment));
  d.append(" ").append(label_reservation).append("=").append(label_value(spec.reservation_id));
  for (const auto& [k, v] : spec.tags) {
    const std::string key = label_key(k);
    if (key == label_deployment || key == label_reservation) continue;  // ours, never a tag's
    std::string part = " " + key + "=" + label_value(v);
    if (d.size() + part.size() > description_limit) continue;
    d += part;
  }
  return d;
}

labels labels_from_description(std::string_view description) {
  labels out;
  if (!description.starts_with(description_prefix)) return out;
  std::string_view rest = description.substr(description_prefix.size());
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const auto end = std::min(rest.find(' '), rest.size());
    const std::string_view token = rest.substr(0, end);
    rest.remove_prefix(end);
    const auto eq = token.find('=');
    if (eq == std::string_view::npos) return {};
    const auto key = token.substr(0, eq);
    const auto value = token.substr(eq + 1);
    // Values may be empty (a tag's), keys may not; anything else was not written by us.
    if (!is_label_text(key) || (!value.empty() && !is_label_text(value))) return {};
    out.emplace(std::string(key), std::string(value));
  }
  if (!out.contains(label_deployment) || !out.contains(label_reservation)) return {};
  return out;
}

result<json::object> build_reservation_body(const reservation_spec& spec, const gce_settings& s) {
  auto machine_type = s.machine_type_for(spec.instance_type);
  if (!machine_type) return machine_type.error();
  if (spec.count <= 0) return fail(errc::cloud_permanent, "a reservation needs a count above 0");
  json::object body;
  body["name"] = spec.name;
  body["description"] = reservation_description(spec);
  body["specificReservation"] =
      json::object{{"count", std::to_string(spec.count)},  // int64: a string on the wire
                   {"instanceProperties", json::object{{"machineType", *machine_type}}}};
  body["specificReservationRequired"] = true;
  if (spec.ends_at != system_clock::time_point{})
    body["deleteAtTime"] = format_rfc3339(spec.ends_at);
  return body;
}

reservation_status reservation_status_from_string(std::string_view s) {
  if (s == "READY") return reservation_status::ready;
  if (s == "DELETING") return reservation_status::deleting;
  if (s == "UPDATING") return reservation_status::updating;
  if (s == "INVALID") return reservation_status::invalid;
  return reservation_status::creating;  // CREATING, and any status added later: not ready yet
}

result<cloud_reservation> parse_reservation(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object() ||
      str_or(v->get_object(), "kind", "compute#reservation") != "compute#reservation") {
    return fail(errc::cloud_transient,
                "GCE answered with something that is not a reservation: " + body_snippet(body));
  }
  return reservation_from(v->get_object());
}

result<reservation_list_page> parse_reservation_list(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object() ||
      str_or(v->get_object(), "kind", "compute#reservationList") != "compute#reservationList") {
    return fail(
        errc::cloud_transient,
        "GCE answered with something that is not a reservation list: " + body_snippet(body));
  }
  const auto& o = v->get_object();
  reservation_list_page page;
  page.next_page_token = str_or(o, "nextPageToken");
  if (const auto* items = o.if_contains("items")) {
    if (!items->is_array())
      return fail(errc::cloud_transient, "reservation list 'items' is not a list");
    for (const auto& item : items->get_array()) {
      if (!item.is_object())
        return fail(errc::cloud_transient, "a reservation that is not an object");
      auto r = reservation_from(item.get_object());
      if (!r) return r.error();
      page.items.push_back(std::move(*r));
    }
  }
  return page;
}

}  // namespace cloudbrain::providers::gce
