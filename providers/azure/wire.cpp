#include "providers/azure/wire.hpp"

#include "providers/section_values.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>

namespace cloudbrain::providers::azure {
namespace json = boost::json;

namespace {

std::string_view str_or(const json::object& o, std::string_view key, std::string_view dflt = {}) {
  const auto* v = o.if_contains(key);
  if (v && v->is_string()) return v->get_string();
  return dflt;
}

const json::object* obj_of(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_object() ? &v->get_object() : nullptr;
}

const json::array* arr_of(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_array() ? &v->get_array() : nullptr;
}

std::optional<json::value> parse_json(std::string_view body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

bool icontains(std::string_view hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                     [](char x, char y) { return lower(x) == lower(y); }) != hay.end();
}

std::string last_segment(std::string_view id) {
  const auto slash = id.rfind('/');
  return std::string(slash == std::string_view::npos ? id : id.substr(slash + 1));
}

labels tags_of(const json::object& o) {
  labels out;
  if (const auto* tags = obj_of(o, "tags")) {
    for (const auto& [k, v] : *tags) {
      if (v.is_string()) out[std::string(k)] = std::string(v.get_string());
    }
  }
  return out;
}

std::optional<long long> int_of(const json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<long long>(v->get_uint64());
  if (v->is_double()) {
    // A whole number that fits; 1e300 (or NaN) is no count of anything.
    const double d = v->get_double();
    if (!(d >= -0x1p63 && d < 0x1p63) || d != std::trunc(d)) return std::nullopt;
    return static_cast<long long>(d);
  }
  if (v->is_string()) {
    const auto s = v->get_string();
    long long n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc{} && end == s.data() + s.size()) return n;
  }
  return std::nullopt;
}

arm_error error_from_object(const json::object& o) {
  arm_error e;
  e.code = str_or(o, "code");
  e.message = str_or(o, "message");
  e.target = str_or(o, "target");
  if (const auto* details = arr_of(o, "details")) {
    for (const auto& d : *details) {
      if (d.is_object()) e.details.push_back(error_from_object(d.get_object()));
    }
  }
  return e;
}

std::string tag_chars(std::string_view in, std::size_t limit) {
  std::string out;
  for (char c : in.substr(0, limit)) {
    const bool bad = c == '<' || c == '>' || c == '%' || c == '&' || c == '\\' || c == '?' ||
                     c == '/' || static_cast<unsigned char>(c) < 0x20;
    out += bad ? '_' : c;
  }
  return out;
}

}  // namespace

// ---- paths --------------------------------------------------------------------------------

std::string resource_group_path(const azure_settings& s) {
  return "/subscriptions/" + s.subscription + "/resourceGroups/" + s.resource_group;
}

std::string vms_path(const azure_settings& s) {
  return resource_group_path(s) + "/providers/Microsoft.Compute/virtualMachines";
}

std::string vm_path(const azure_settings& s, std::string_view name) {
  return vms_path(s) + "/" + std::string(name);
}

std::string group_path(const azure_settings& s) {
  return resource_group_path(s) + "/providers/Microsoft.Compute/capacityReservationGroups/" +
         s.capacity_reservation_group;
}

std::string reservations_path(const azure_settings& s) {
  return group_path(s) + "/capacityReservations";
}

std::string reservation_path(const azure_settings& s, std::string_view name) {
  return reservations_path(s) + "/" + std::string(name);
}

std::string arm_url(const azure_settings& s, std::string_view path, std::string_view api_version,
                    std::string_view query) {
  std::string url = s.endpoint;
  url.append(path).append("?api-version=").append(api_version);
  if (!query.empty()) url.append("&").append(query);
  return url;
}

bool same_origin(std::string_view url, std::string_view endpoint) {
  auto a = boost::urls::parse_absolute_uri(url);
  auto b = boost::urls::parse_absolute_uri(endpoint);
  if (!a || !b) return false;
  auto port_of = [](const boost::urls::url_view& u) {
    if (u.has_port()) return std::string(u.port());
    return std::string(u.scheme() == "https" ? "443" : "80");
  };
  return iequals(a->scheme(), b->scheme()) && iequals(a->encoded_host(), b->encoded_host()) &&
         port_of(*a) == port_of(*b);
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

// ---- requests -----------------------------------------------------------------------------

result<json::object> image_reference_for(std::string_view image) {
  if (image.starts_with("/subscriptions/") || image.starts_with("/SUBSCRIPTIONS/")) {
    if (image.find_first_of(" \"?#") != std::string_view::npos) {
      return fail(errc::cloud_permanent,
                  "image '" + std::string(image) + "' is not a valid resource id");
    }
    return json::object{{"id", image}};
  }
  std::vector<std::string_view> parts;
  std::string_view rest = image;
  for (;;) {
    const auto colon = rest.find(':');
    parts.push_back(rest.substr(0, colon));
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  const bool ok =
      parts.size() == 4 && std::all_of(parts.begin(), parts.end(), [](auto p) {
        return !p.empty() && p.size() <= 128 && std::none_of(p.begin(), p.end(), [](char c) {
          return c <= ' ' || c == '"' || c == '/' || c == '?' || c == '#';
        });
      });
  if (!ok) {
    return fail(errc::cloud_permanent,
                "image '" + std::string(image) +
                    "' is neither publisher:offer:sku:version (as `az vm create --image` takes "
                    "it, e.g. Canonical:ubuntu-24_04-lts:server:latest) nor an image resource id");
  }
  return json::object{
      {"publisher", parts[0]}, {"offer", parts[1]}, {"sku", parts[2]}, {"version", parts[3]}};
}

std::string tag_key(std::string_view key) {
  std::string k = tag_chars(key, 512);
  return k.empty() ? "_" : k;
}

std::string tag_value(std::string_view value) { return tag_chars(value, 256); }

result<json::object> build_vm_body(const instance_spec& spec, const azure_settings& s,
                                   std::string_view group_id) {
  auto size = s.vm_size_for(spec.instance_type);
  if (!size) return size.error();
  auto image = image_reference_for(spec.image);
  if (!image) return image.error();
  if (spec.public_ssh_key.empty()) {
    return fail(errc::internal, "an Azure Linux VM needs an ssh key (the driver makes one)");
  }

  json::object os_disk{{"name", spec.name + "-osdisk"},
                       {"createOption", "FromImage"},
                       {"deleteOption", "Delete"},
                       {"caching", "ReadWrite"},
                       {"managedDisk", json::object{{"storageAccountType", s.os_disk_type}}}};
  if (s.os_disk_size_gb > 0) os_disk["diskSizeGB"] = s.os_disk_size_gb;

  std::string key = spec.public_ssh_key;
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' '))
    key.pop_back();
  json::object linux_config{
      {"disablePasswordAuthentication", true},
      {"provisionVMAgent", true},
      {"ssh",
       json::object{{"publicKeys", json::array{json::object{
                                       {"path", "/home/" + s.ssh_user + "/.ssh/authorized_keys"},
                                       {"keyData", key}}}}}}};

  json::object ip_props{{"primary", true},
                        {"privateIPAddressVersion", "IPv4"},
                        {"subnet", json::object{{"id", s.subnet}}}};
  if (s.public_ip) {
    ip_props["publicIPAddressConfiguration"] =
        json::object{{"name", spec.name + "-ip"},
                     {"sku", json::object{{"name", "Standard"}, {"tier", "Regional"}}},
                     {"properties", json::object{{"deleteOption", "Delete"},
                                                 {"publicIPAllocationMethod", "Static"},
                                                 {"publicIPAddressVersion", "IPv4"}}}};
  }
  json::object nic{
      {"name", spec.name + "-nic"},
      {"properties",
       json::object{
           {"primary", true},
           {"deleteOption", "Delete"},
           {"ipConfigurations", json::array{json::object{{"name", "ipconfig1"},
                                                         {"properties", std::move(ip_props)}}}}}}};

  json::object props{
      {"hardwareProfile", json::object{{"vmSize", *size}}},
      {"storageProfile",
       json::object{{"imageReference", std::move(*image)}, {"osDisk", std::move(os_disk)}}},
      {"osProfile", json::object{{"computerName", spec.name},
                                 {"adminUsername", s.ssh_user},
                                 {"linuxConfiguration", std::move(linux_config)}}},
      {"networkProfile",
       json::object{{"networkApiVersion", vm_network_api_version},
                    {"networkInterfaceConfigurations", json::array{std::move(nic)}}}}};
  if (!group_id.empty()) {
    props["capacityReservation"] =
        json::object{{"capacityReservationGroup", json::object{{"id", group_id}}}};
  }

  json::object tags;
  for (const auto& [k, v] : spec.tags) tags[tag_key(k)] = tag_value(v);
  tags[label_deployment] = tag_value(spec.deployment);
  tags[label_instance] = tag_value(spec.instance_id);

  json::object body{
      {"location", s.location}, {"tags", std::move(tags)}, {"properties", std::move(props)}};
  if (!spec.zone.empty()) body["zones"] = json::array{json::string(spec.zone)};
  return body;
}

json::object build_group_body(const azure_settings& s, std::string_view deployment) {
  json::array zones;
  for (const auto& z : s.zones) zones.emplace_back(z);
  return json::object{{"location", s.location},
                      {"zones", std::move(zones)},
                      {"tags", json::object{{label_deployment, tag_value(deployment)}}}};
}

result<json::object> build_reservation_body(const reservation_spec& spec, const azure_settings& s) {
  auto size = s.vm_size_for(spec.instance_type);
  if (!size) return size.error();
  if (spec.count <= 0) return fail(errc::cloud_permanent, "a reservation needs a count above 0");
  json::object tags;
  for (const auto& [k, v] : spec.tags) tags[tag_key(k)] = tag_value(v);
  tags[label_deployment] = tag_value(spec.deployment);
  tags[label_reservation] = tag_value(spec.reservation_id);
  // Azure keeps no end date on a capacity reservation: the janitor alone ends it.
  return json::object{{"location", s.location},
                      {"sku", json::object{{"name", *size}, {"capacity", spec.count}}},
                      {"zones", json::array{json::string(spec.zone)}},
                      {"tags", std::move(tags)}};
}

json::object build_capacity_patch(int capacity) {
  return json::object{{"sku", json::object{{"capacity", capacity}}}};
}

json::object build_leave_group_patch() {
  return json::object{
      {"properties",
       json::object{{"capacityReservation",
                     json::object{{"capacityReservationGroup", json::object{{"id", nullptr}}}}}}}};
}

// ---- errors -------------------------------------------------------------------------------

std::optional<arm_error> parse_arm_error(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) return std::nullopt;
  const auto& o = v->get_object();
  const auto* err = o.if_contains("error");
  if (err && err->is_object()) return error_from_object(err->get_object());
  if (err && err->is_string()) {
    // Entra ID: {"error":"invalid_client","error_description":"AADSTS7000215: ..."}
    arm_error e;
    e.code = err->get_string();
    e.message = str_or(o, "error_description");
    return e;
  }
  if (o.contains("code") && o.contains("message")) return error_from_object(o);
  return std::nullopt;
}

namespace {

bool any_of_codes(std::string_view code, std::initializer_list<std::string_view> codes) {
  return std::any_of(codes.begin(), codes.end(), [&](auto c) { return iequals(code, c); });
}

// The kind of one error, from its code (and message where ARM's code says too little).
std::optional<errc> kind_of_code(const arm_error& e) {
  const std::string_view code = e.code;
  if (any_of_codes(code,
                   {"ZonalAllocationFailed", "AllocationFailed", "OverconstrainedAllocationRequest",
                    "OverconstrainedZonalAllocationRequest", "SkuNotAvailable"})) {
    return errc::cloud_capacity;
  }
  if (iequals(code, "QuotaExceeded") ||
      (iequals(code, "OperationNotAllowed") && icontains(e.message, "quota"))) {
    return errc::cloud_quota;
  }
  if (any_of_codes(code, {"TooManyRequests", "OperationThrottled", "SubscriptionRequestsThrottled",
                          "ResourceRequestsThrottled", "RequestThrottled"})) {
    return errc::cloud_rate_limited;
  }
  if (any_of_codes(code, {"AuthenticationFailed", "InvalidAuthenticationToken",
                          "InvalidAuthenticationTokenTenant", "ExpiredAuthenticationToken",
                          "AuthorizationFailed", "LinkedAuthorizationFailed", "invalid_client",
                          "unauthorized_client", "invalid_grant", "invalid_scope",
                          "InvalidSubscriptionId", "SubscriptionNotRegistered"})) {
    return errc::cloud_auth;
  }
  if (any_of_codes(code, {"InternalServerError", "InternalExecutionError", "RetryableError",
                          "AnotherOperationInProgress", "OperationPreempted", "GatewayTimeout",
                          "ServiceUnavailable", "InternalOperationError", "temporarily_unavailable",
                          "OperationTimedOut"})) {
    return errc::cloud_transient;
  }
  // A name ARM cannot find that the request refers to (not the resource itself): permanent.
  if (any_of_codes(code, {"ResourceGroupNotFound", "SubscriptionNotFound", "ImageNotFound",
                          "PlatformImageNotFound", "InvalidResourceReference", "NotFound.Subnet",
                          "GalleryImageNotFound", "ParentResourceNotFound"})) {
    return iequals(code, "ParentResourceNotFound") ? errc::cloud_not_found : errc::cloud_permanent;
  }
  if (any_of_codes(code, {"ResourceNotFound", "NotFound"})) return errc::cloud_not_found;
  // The resource is there with other settings that cannot change (its zone, its image, ...).
  if (iequals(code, "PropertyChangeNotAllowed")) return errc::cloud_already_exists;
  return std::nullopt;
}

std::string describe(const arm_error& e, unsigned http_status) {
  std::string d = e.message.empty() ? std::string("no message") : e.message;
  // A generic outer error: ARM puts the reason in its details.
  for (const auto& inner : e.details) {
    if (!inner.message.empty() && inner.message != e.message) {
      d += " " + inner.message;
      if (!inner.code.empty()) d += " (" + inner.code + ")";
      break;
    }
  }
  if (d.size() > 600) d = d.substr(0, 600) + "...";
  d += " (";
  d += e.code.empty() ? std::string("no code") : e.code;
  if (http_status != 0) d += ", HTTP " + std::to_string(http_status);
  d += ")";
  return d;
}

}  // namespace

error error_from_arm(const arm_error& e, unsigned http_status) {
  std::optional<errc> kind = kind_of_code(e);
  if (!kind || *kind == errc::cloud_permanent) {
    // ARM wraps the reason ("Conflict", "DeploymentFailed") around the details that say it.
    for (const auto& inner : e.details) {
      if (auto k = kind_of_code(inner); k && *k != errc::cloud_not_found) {
        kind = k;
        break;
      }
    }
  }
  if (!kind) {
    if (http_status == 429)
      kind = errc::cloud_rate_limited;
    else if (http_status >= 500 || http_status == 408)
      kind = errc::cloud_transient;
    else if (http_status == 401 || http_status == 403)
      kind = errc::cloud_auth;
    else if (http_status == 404)
      kind = errc::cloud_not_found;
    else
      kind = errc::cloud_permanent;
  }
  // 429 is always "slow down", whatever code came with it.
  if (http_status == 429) kind = errc::cloud_rate_limited;
  return fail(*kind, describe(e, http_status));
}

error error_from_response(unsigned http_status, std::string_view body) {
  if (auto e = parse_arm_error(body)) return error_from_arm(*e, http_status);
  arm_error e;
  e.message = body.empty() ? std::string("empty body") : body_snippet(body);
  return error_from_arm(e, http_status);
}

// ---- virtual machines ---------------------------------------------------------------------

namespace {

result<arm_vm> vm_from(const json::object& o) {
  arm_vm v;
  v.name = str_or(o, "name");
  if (v.name.empty()) return fail(errc::cloud_transient, "a virtual machine without a name");
  v.id = str_or(o, "id");
  v.location = str_or(o, "location");
  if (const auto* zones = arr_of(o, "zones"); zones && !zones->empty() && (*zones)[0].is_string())
    v.zone = (*zones)[0].get_string();
  v.tags = tags_of(o);
  const auto* props = obj_of(o, "properties");
  if (!props) return v;
  v.vm_id = str_or(*props, "vmId");
  v.provisioning_state = str_or(*props, "provisioningState");
  if (const auto ts = str_or(*props, "timeCreated"); !ts.empty()) {
    auto t = parse_rfc3339(ts);
    if (!t) return fail(errc::cloud_transient, "bad timeCreated '" + std::string(ts) + "'");
    v.created_at = *t;
  }
  if (const auto* net = obj_of(*props, "networkProfile")) {
    if (const auto* nics = arr_of(*net, "networkInterfaces")) {
      for (const auto& n : *nics) {
        if (!n.is_object()) continue;
        const auto id = str_or(n.get_object(), "id");
        if (id.empty()) continue;
        const auto* np = obj_of(n.get_object(), "properties");
        const bool primary = np && np->if_contains("primary") && np->at("primary").is_bool() &&
                             np->at("primary").get_bool();
        if (primary)
          v.nic_ids.insert(v.nic_ids.begin(), std::string(id));
        else
          v.nic_ids.emplace_back(id);
      }
    }
  }
  if (const auto* cr = obj_of(*props, "capacityReservation")) {
    if (const auto* g = obj_of(*cr, "capacityReservationGroup"))
      v.capacity_reservation_group = str_or(*g, "id");
  }
  if (const auto* view = obj_of(*props, "instanceView")) {
    if (const auto* statuses = arr_of(*view, "statuses")) {
      for (const auto& st : *statuses) {
        if (!st.is_object()) continue;
        const auto code = str_or(st.get_object(), "code");
        if (code.starts_with("PowerState/")) {
          v.power_state = code.substr(std::string_view("PowerState/").size());
        } else if (code.starts_with("ProvisioningState/") &&
                   iequals(str_or(st.get_object(), "level"), "Error")) {
          // "ProvisioningState/failed/ZonalAllocationFailed": the code after the state.
          arm_error e;
          const auto rest = code.substr(std::string_view("ProvisioningState/").size());
          const auto slash = rest.find('/');
          e.code =
              slash == std::string_view::npos ? std::string() : std::string(rest.substr(slash + 1));
          e.message = str_or(st.get_object(), "message");
          if (e.message.empty()) e.message = str_or(st.get_object(), "displayStatus");
          v.failure = std::move(e);
        }
      }
    }
  }
  return v;
}

}  // namespace

result<arm_vm> parse_vm(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "ARM answered with something that is not a virtual machine: " + body_snippet(body));
  }
  const auto type = str_or(v->get_object(), "type", "Microsoft.Compute/virtualMachines");
  if (!iequals(type, "Microsoft.Compute/virtualMachines")) {
    return fail(errc::cloud_transient, "ARM answered with a " + std::string(type) +
                                           " where a virtual machine was expected");
  }
  return vm_from(v->get_object());
}

vm_status status_of(const arm_vm& v) {
  const std::string_view p = v.provisioning_state;
  if (iequals(p, "Deleting")) return vm_status::stopping;
  const std::string_view power = v.power_state;
  if (iequals(power, "stopping") || iequals(power, "deallocating")) return vm_status::stopping;
  if (iequals(power, "stopped") || iequals(power, "deallocated")) return vm_status::terminated;
  if (iequals(p, "Succeeded") && (power.empty() || iequals(power, "running"))) {
    return vm_status::running;
  }
  // Creating, Updating, Migrating, a Failed allocation (the driver deals with it), starting:
  // not ready yet, not going away.
  return vm_status::provisioning;
}

vm to_vm(const arm_vm& v) {
  vm out;
  out.name = v.name;
  out.upstream_id = v.vm_id.empty() ? v.id : v.vm_id;
  out.zone = v.zone;
  out.status = status_of(v);
  out.labels_ = v.tags;
  out.created_at = v.created_at;
  return out;
}

result<vm_page> parse_vm_list(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object() || !v->get_object().contains("value")) {
    return fail(errc::cloud_transient,
                "ARM answered with something that is not a list: " + body_snippet(body));
  }
  const auto& o = v->get_object();
  const auto* items = arr_of(o, "value");
  if (!items) return fail(errc::cloud_transient, "a virtual machine list whose 'value' is no list");
  vm_page page;
  page.next_link = str_or(o, "nextLink");
  for (const auto& item : *items) {
    if (!item.is_object()) return fail(errc::cloud_transient, "a list item that is not an object");
    auto vm = vm_from(item.get_object());
    if (!vm) return vm.error();
    page.items.push_back(std::move(*vm));
  }
  return page;
}

result<std::optional<std::string>> parse_nic_address(std::string_view body, bool public_ip) {
  auto v = parse_json(body);
  const json::object* props = v && v->is_object() ? obj_of(v->get_object(), "properties") : nullptr;
  const json::array* configs = props ? arr_of(*props, "ipConfigurations") : nullptr;
  if (!configs) {
    return fail(
        errc::cloud_transient,
        "ARM answered with something that is not a network interface: " + body_snippet(body));
  }
  const json::object* chosen = nullptr;
  for (const auto& c : *configs) {
    const auto* cp = c.is_object() ? obj_of(c.get_object(), "properties") : nullptr;
    if (!cp) continue;
    const auto* primary = cp->if_contains("primary");
    if (!chosen || (primary && primary->is_bool() && primary->get_bool())) chosen = cp;
  }
  if (!chosen) return std::optional<std::string>{};
  if (!public_ip) {
    const auto ip = str_or(*chosen, "privateIPAddress");
    return ip.empty() ? std::optional<std::string>{} : std::optional<std::string>(ip);
  }
  const auto* pip = obj_of(*chosen, "publicIPAddress");
  const auto* pp = pip ? obj_of(*pip, "properties") : nullptr;
  const auto ip = pp ? str_or(*pp, "ipAddress") : std::string_view{};
  return ip.empty() ? std::optional<std::string>{} : std::optional<std::string>(ip);
}

// ---- long-running operations --------------------------------------------------------------

lro_status lro_status_of_state(std::string_view s) {
  if (iequals(s, "Succeeded")) return lro_status::succeeded;
  if (iequals(s, "Failed")) return lro_status::failed;
  if (iequals(s, "Canceled") || iequals(s, "Cancelled")) return lro_status::canceled;
  return lro_status::in_progress;
}

result<lro_state> parse_async_operation(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(
        errc::cloud_transient,
        "ARM answered an operation poll with something that is not JSON: " + body_snippet(body));
  }
  const auto& o = v->get_object();
  const auto status = str_or(o, "status");
  if (status.empty()) {
    return fail(errc::cloud_transient,
                "ARM answered an operation poll without a status: " + body_snippet(body));
  }
  lro_state st;
  st.status = lro_status_of_state(status);
  if (const auto* err = obj_of(o, "error")) st.error = error_from_object(*err);
  return st;
}

std::optional<long> ratelimit_remaining_of(const net::http::fields& headers) {
  std::optional<long> lowest;
  auto note = [&](long n) { lowest = lowest ? std::min(*lowest, n) : n; };
  for (const auto& f : headers) {
    const std::string_view name = f.name_string();
    constexpr std::string_view prefix = "x-ms-ratelimit-remaining-";
    if (name.size() <= prefix.size() || !iequals(name.substr(0, prefix.size()), prefix)) continue;
    const std::string_view value = f.value();
    if (iequals(name, "x-ms-ratelimit-remaining-resource")) {
      // "Microsoft.Compute/PutVM3Min;239,Microsoft.Compute/PutVM30Min;1199"
      std::string_view rest = value;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const auto item = rest.substr(0, comma);
        if (const auto semi = item.rfind(';'); semi != std::string_view::npos) {
          long n = 0;
          const auto num = item.substr(semi + 1);
          const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
          if (ec == std::errc{} && end == num.data() + num.size()) note(n);
        }
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      continue;
    }
    long n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc{} && end == value.data() + value.size()) note(n);
  }
  return lowest;
}

// ---- capacity reservations ----------------------------------------------------------------

reservation_status reservation_status_of(std::string_view s) {
  if (iequals(s, "Succeeded")) return reservation_status::ready;
  if (iequals(s, "Deleting")) return reservation_status::deleting;
  if (iequals(s, "Updating")) return reservation_status::updating;
  if (iequals(s, "Failed") || iequals(s, "Canceled")) return reservation_status::invalid;
  return reservation_status::creating;
}

namespace {

result<arm_reservation> reservation_from(const json::object& o) {
  arm_reservation a;
  auto& r = a.reservation;
  r.name = str_or(o, "name");
  if (r.name.empty()) return fail(errc::cloud_transient, "a capacity reservation without a name");
  if (const auto* zones = arr_of(o, "zones"); zones && !zones->empty() && (*zones)[0].is_string())
    r.zone = (*zones)[0].get_string();
  r.labels_ = tags_of(o);
  if (const auto* sku = obj_of(o, "sku")) {
    r.machine_type = str_or(*sku, "name");
    const auto cap = int_of(sku->if_contains("capacity"));
    if (!cap || *cap < 0 || *cap > INT32_MAX)
      return fail(errc::cloud_transient, "capacity reservation " + r.name + " has no capacity");
    r.count = static_cast<int>(*cap);
  }
  const auto* props = obj_of(o, "properties");
  if (!props) return a;
  r.upstream_id = str_or(*props, "reservationId");
  if (r.upstream_id.empty()) r.upstream_id = str_or(o, "id");
  r.status = reservation_status_of(str_or(*props, "provisioningState"));
  if (const auto ts = str_or(*props, "timeCreated"); !ts.empty()) {
    auto t = parse_rfc3339(ts);
    if (!t) return fail(errc::cloud_transient, "bad timeCreated '" + std::string(ts) + "'");
    r.created_at = *t;
  }
  if (const auto* vms = arr_of(*props, "virtualMachinesAssociated")) {
    for (const auto& vmref : *vms) {
      if (vmref.is_object()) {
        const auto id = str_or(vmref.get_object(), "id");
        if (!id.empty()) a.associated_vms.emplace_back(id);
      }
    }
  }
  r.in_use = static_cast<int>(a.associated_vms.size());
  if (const auto* view = obj_of(*props, "instanceView")) {
    if (const auto* statuses = arr_of(*view, "statuses")) {
      for (const auto& st : *statuses) {
        if (st.is_object() && iequals(str_or(st.get_object(), "level"), "Error")) {
          arm_error e;
          e.code = last_segment(str_or(st.get_object(), "code"));
          e.message = str_or(st.get_object(), "message");
          a.failure = std::move(e);
        }
      }
    }
  }
  return a;
}

}  // namespace

result<arm_reservation> parse_reservation(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(
        errc::cloud_transient,
        "ARM answered with something that is not a capacity reservation: " + body_snippet(body));
  }
  return reservation_from(v->get_object());
}

result<reservation_page> parse_reservation_list(std::string_view body) {
  auto v = parse_json(body);
  if (!v || !v->is_object() || !v->get_object().contains("value")) {
    return fail(errc::cloud_transient,
                "ARM answered with something that is not a list: " + body_snippet(body));
  }
  const auto& o = v->get_object();
  const auto* items = arr_of(o, "value");
  if (!items) return fail(errc::cloud_transient, "a reservation list whose 'value' is no list");
  reservation_page page;
  page.next_link = str_or(o, "nextLink");
  for (const auto& item : *items) {
    if (!item.is_object()) return fail(errc::cloud_transient, "a list item that is not an object");
    auto r = reservation_from(item.get_object());
    if (!r) return r.error();
    page.items.push_back(std::move(*r));
  }
  return page;
}

// ---- tokens -------------------------------------------------------------------------------

std::string token_url(const azure_settings& s) {
  return s.login_endpoint + "/" + s.tenant + "/oauth2/v2.0/token";
}

std::string client_credentials_body(std::string_view client_id, std::string_view client_secret,
                                    std::string_view scope) {
  return "grant_type=client_credentials&client_id=" + percent_encode(client_id) +
         "&client_secret=" + percent_encode(client_secret) + "&scope=" + percent_encode(scope);
}

std::string arm_scope(const azure_settings& s) { return s.endpoint + "/.default"; }

std::string imds_token_url(const azure_settings& s) {
  std::string url = s.imds_endpoint +
                    "/metadata/identity/oauth2/token?api-version=" + imds_api_version +
                    "&resource=" + percent_encode(s.endpoint + "/");
  if (!s.client_id.empty()) url += "&client_id=" + percent_encode(s.client_id);
  return url;
}

result<access_token> parse_token_response(std::string_view body, system_clock::time_point now) {
  auto v = parse_json(body);
  if (!v || !v->is_object()) {
    return fail(errc::cloud_transient,
                "the token endpoint answered with something that is not "
                "JSON");  // never the body: it may hold a token
  }
  const auto& o = v->get_object();
  const auto token = str_or(o, "access_token");
  if (token.empty()) return fail(errc::cloud_transient, "the token endpoint sent no access_token");
  const auto type = str_or(o, "token_type", "Bearer");
  if (!iequals(type, "Bearer")) {
    return fail(errc::cloud_transient, "the token endpoint sent a '" + body_snippet(type, 40) +
                                           "' token, not a Bearer token");
  }
  access_token t;
  t.token = token;
  // A token lives minutes to hours; a lifetime past a week (or an expires_on past what the
  // clock can hold) is a broken answer, not a token to keep.
  constexpr std::int64_t longest = 7 * 86400;
  const std::int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (const auto in = int_of(o.if_contains("expires_in")); in && *in > 0 && *in <= longest) {
    t.expires_at = now + std::chrono::seconds(*in);
  } else if (const auto on = int_of(o.if_contains("expires_on"));
             on && *on > now_s && *on - now_s <= longest) {
    t.expires_at = now + std::chrono::seconds(*on - now_s);
  } else {
    return fail(errc::cloud_transient, "the token endpoint did not say when the token expires");
  }
  return t;
}

}  // namespace cloudbrain::providers::azure
