#include "providers/aws/wire.hpp"

#include "providers/section_values.hpp"

#include "core/encoding.hpp"
#include "providers/aws/sigv4.hpp"

#include <algorithm>
#include <charconv>

namespace cloudbrain::providers::aws {
namespace {

constexpr std::string_view ec2_namespace_prefix = "http://ec2.amazonaws.com/doc/";

void add_filters(query_params& p, const std::vector<ec2_filter>& filters) {
  for (std::size_t i = 0; i < filters.size(); ++i) {
    const std::string f = "Filter." + std::to_string(i + 1);
    p.emplace_back(f + ".Name", filters[i].name);
    for (std::size_t j = 0; j < filters[i].values.size(); ++j)
      p.emplace_back(f + ".Value." + std::to_string(j + 1), filters[i].values[j]);
  }
}

void add_tag_specification(query_params& p, const std::string& prefix, std::string_view type,
                           const std::vector<std::pair<std::string, std::string>>& tags) {
  p.emplace_back(prefix + ".ResourceType", std::string(type));
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const std::string t = prefix + ".Tag." + std::to_string(i + 1);
    p.emplace_back(t + ".Key", tags[i].first);
    p.emplace_back(t + ".Value", tags[i].second);
  }
}

bool ours(std::string_view key) {
  return key == tag_name || key == label_deployment || key == label_instance ||
         key == label_reservation;
}

// A YAML double-quoted scalar (JSON's escaping is a subset YAML reads the same way).
std::string yaml_quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string iso8601(system_clock::time_point t) {
  // 2026-01-01T12:00:00Z: EC2's timestamps, whole seconds.
  const auto d = amz_date(t);
  return d.substr(0, 4) + "-" + d.substr(4, 2) + "-" + d.substr(6, 2) + "T" + d.substr(9, 2) + ":" +
         d.substr(11, 2) + ":" + d.substr(13, 2) + "Z";
}

// The document, if its root is `root` in one of EC2's namespaces.
result<xml_element> ec2_document(std::string_view body, std::string_view root) {
  auto doc = parse_xml(body);
  if (!doc) {
    return fail(errc::cloud_transient, "EC2 answered with XML that does not parse (" +
                                           doc.error().detail + "): " + body_snippet(body));
  }
  if (doc->name != root || !doc->namespace_uri.starts_with(ec2_namespace_prefix)) {
    return fail(errc::cloud_transient, "EC2 answered with something that is not a " +
                                           std::string(root) + ": " + body_snippet(body));
  }
  return doc;
}

std::vector<const xml_element*> items(const xml_element* set) {
  std::vector<const xml_element*> out;
  if (!set) return out;
  for (const auto& c : set->children)
    if (c.name == "item") out.push_back(&c);
  return out;
}

labels tags_of(const xml_element& e) {
  labels out;
  for (const auto* item : items(e.child("tagSet")))
    out[std::string(item->child_text("key"))] = std::string(item->child_text("value"));
  return out;
}

std::optional<int> int_of(std::string_view s) {
  int n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return n;
}

result<ec2_instance> instance_from(const xml_element& e, bool public_ip) {
  ec2_instance i;
  i.v.upstream_id = e.child_text("instanceId");
  if (i.v.upstream_id.empty()) return fail(errc::cloud_transient, "an instance without an id");
  i.v.labels_ = tags_of(e);
  if (const auto it = i.v.labels_.find(label_instance); it != i.v.labels_.end()) {
    i.v.name = vm_name_for(it->second);
  } else if (const auto n = i.v.labels_.find(tag_name); n != i.v.labels_.end()) {
    i.v.name = n->second;
  } else {
    i.v.name = i.v.upstream_id;
  }
  i.v.zone = e.find_text("placement/availabilityZone");
  i.state = e.find_text("instanceState/name");
  i.v.status = status_from_state(i.state);
  const auto ip = e.child_text(public_ip ? "ipAddress" : "privateIpAddress");
  if (!ip.empty()) i.v.ip_address = std::string(ip);
  if (const auto t = e.child_text("launchTime"); !t.empty()) {
    auto parsed = parse_rfc3339(t);
    if (!parsed) return fail(errc::cloud_transient, "bad launchTime '" + std::string(t) + "'");
    i.v.created_at = *parsed;
  }
  const auto reason_code = e.find_text("stateReason/code");
  const auto reason = e.find_text("stateReason/message");
  if (!reason.empty()) {
    i.state_reason = reason_code.empty() || reason.starts_with(reason_code)
                         ? std::string(reason)
                         : std::string(reason_code) + ": " + std::string(reason);
  }
  i.client_token = e.child_text("clientToken");
  i.capacity_reservation_id = e.child_text("capacityReservationId");
  i.instance_type = e.child_text("instanceType");
  i.image_id = e.child_text("imageId");
  return i;
}

result<ec2_reservation> reservation_from(const xml_element& e) {
  ec2_reservation out;
  auto& r = out.r;
  r.upstream_id = e.child_text("capacityReservationId");
  if (r.upstream_id.empty()) return fail(errc::cloud_transient, "a reservation without an id");
  r.labels_ = tags_of(e);
  if (const auto it = r.labels_.find(label_reservation); it != r.labels_.end()) {
    r.name = reservation_name_for(it->second);
  } else if (const auto n = r.labels_.find(tag_name); n != r.labels_.end()) {
    r.name = n->second;
  } else {
    r.name = r.upstream_id;
  }
  r.zone = e.child_text("availabilityZone");
  r.machine_type = e.child_text("instanceType");
  out.state = e.child_text("state");
  r.status = reservation_status_from_state(out.state);
  const auto total = int_of(e.child_text("totalInstanceCount"));
  const auto available = int_of(e.child_text("availableInstanceCount"));
  if (!total || *total < 0) {
    return fail(errc::cloud_transient, "reservation " + r.upstream_id + " has no usable count");
  }
  r.count = *total;
  r.in_use = available && *available >= 0 && *available <= *total ? *total - *available : 0;
  if (const auto t = e.child_text("createDate"); !t.empty()) {
    auto parsed = parse_rfc3339(t);
    if (!parsed) return fail(errc::cloud_transient, "bad createDate '" + std::string(t) + "'");
    r.created_at = *parsed;
  }
  if (const auto t = e.child_text("endDate"); !t.empty()) {
    auto parsed = parse_rfc3339(t);
    if (!parsed) return fail(errc::cloud_transient, "bad endDate '" + std::string(t) + "'");
    r.ends_at = *parsed;
  }
  return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace

// ---- requests ------------------------------------------------------------------------------

std::string form_body(const query_params& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out.append(uri_encode(k)).append("=").append(uri_encode(v));
  }
  return out;
}

result<query_params> parse_form(std::string_view body) {
  query_params out;
  auto decode = [](std::string_view s) -> std::optional<std::string> {
    std::string r;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        r += ' ';
      } else if (s[i] == '%') {
        if (i + 2 >= s.size()) return std::nullopt;
        unsigned v = 0;
        const auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
        if (ec != std::errc{} || end != s.data() + i + 3) return std::nullopt;
        r += static_cast<char>(v);
        i += 2;
      } else {
        r += s[i];
      }
    }
    return r;
  };
  for (std::size_t start = 0; start <= body.size();) {
    const auto amp = body.find('&', start);
    const auto end = amp == std::string_view::npos ? body.size() : amp;
    const auto part = body.substr(start, end - start);
    if (!part.empty()) {
      const auto eq = part.find('=');
      auto k = decode(part.substr(0, eq));
      auto v = decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
      if (!k || !v) return fail(errc::invalid_argument, "bad percent-encoding in a form");
      out.emplace_back(std::move(*k), std::move(*v));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return out;
}

std::string client_token_for(std::string_view idempotency_key) {
  return hex_sha256(idempotency_key);
}

result<std::string> user_data_for(std::string_view ssh_user, std::string_view public_ssh_key) {
  std::string_view key = public_ssh_key;
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' '))
    key.remove_suffix(1);
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  if (std::any_of(key.begin(), key.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return fail(errc::cloud_permanent, "public_ssh_key must be one line of printable text");
  }
  std::string doc = "#cloud-config\nusers:\n  - default\n  - name: " + std::string(ssh_user) +
                    "\n    shell: /bin/bash\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n"
                    "    ssh_authorized_keys:\n      - " +
                    yaml_quoted(key) + "\n";
  return doc;
}

std::vector<std::pair<std::string, std::string>> instance_tags(const instance_spec& spec) {
  std::vector<std::pair<std::string, std::string>> tags;
  for (const auto& [k, v] : spec.tags)
    if (!ours(k)) tags.emplace_back(k, v);
  tags.emplace_back(tag_name, spec.name);
  tags.emplace_back(label_deployment, spec.deployment);
  tags.emplace_back(label_instance, spec.instance_id);
  return tags;
}

std::vector<std::pair<std::string, std::string>> reservation_tags(const reservation_spec& spec) {
  std::vector<std::pair<std::string, std::string>> tags;
  for (const auto& [k, v] : spec.tags)
    if (!ours(k)) tags.emplace_back(k, v);
  tags.emplace_back(tag_name, spec.name);
  tags.emplace_back(label_deployment, spec.deployment);
  tags.emplace_back(label_reservation, spec.reservation_id);
  return tags;
}

result<query_params> run_instances_params(const instance_spec& spec, const aws_settings& s,
                                          std::string_view image_id,
                                          std::string_view reservation_id) {
  auto type = s.instance_type_for(spec.instance_type);
  if (!type) return type.error();
  query_params p{{"Action", "RunInstances"},
                 {"Version", api_version},
                 {"ImageId", std::string(image_id)},
                 {"InstanceType", *type},
                 {"MinCount", "1"},
                 {"MaxCount", "1"},
                 {"ClientToken", client_token_for(spec.idempotency_key)},
                 // A VM that shuts itself down is gone, not a stopped instance that still costs.
                 {"InstanceInitiatedShutdownBehavior", "terminate"}};
  if (const auto subnet = s.subnets.find(spec.zone); subnet != s.subnets.end()) {
    // The subnet places the instance in its zone; groups and the public address then belong
    // to the network interface.
    p.emplace_back("NetworkInterface.1.DeviceIndex", "0");
    p.emplace_back("NetworkInterface.1.SubnetId", subnet->second);
    p.emplace_back("NetworkInterface.1.AssociatePublicIpAddress", s.public_ip ? "true" : "false");
    p.emplace_back("NetworkInterface.1.DeleteOnTermination", "true");
    for (std::size_t i = 0; i < s.security_groups.size(); ++i) {
      p.emplace_back("NetworkInterface.1.SecurityGroupId." + std::to_string(i + 1),
                     s.security_groups[i]);
    }
  } else {
    p.emplace_back("Placement.AvailabilityZone", spec.zone);
    for (std::size_t i = 0; i < s.security_groups.size(); ++i)
      p.emplace_back("SecurityGroupId." + std::to_string(i + 1), s.security_groups[i]);
  }
  if (!spec.public_ssh_key.empty()) {
    auto user_data = user_data_for(s.ssh_user, spec.public_ssh_key);
    if (!user_data) return user_data.error();
    p.emplace_back("UserData", base64_encode(*user_data));
  }
  const auto tags = instance_tags(spec);
  add_tag_specification(p, "TagSpecification.1", "instance", tags);
  add_tag_specification(p, "TagSpecification.2", "volume", tags);
  if (!reservation_id.empty()) {
    p.emplace_back(
        "CapacityReservationSpecification.CapacityReservationTarget."
        "CapacityReservationId",
        std::string(reservation_id));
  }
  return p;
}

query_params describe_instances_params(const std::vector<std::string>& ids,
                                       const std::vector<ec2_filter>& filters,
                                       std::string_view next_token, unsigned max_results) {
  query_params p{{"Action", "DescribeInstances"}, {"Version", api_version}};
  for (std::size_t i = 0; i < ids.size(); ++i)
    p.emplace_back("InstanceId." + std::to_string(i + 1), ids[i]);
  add_filters(p, filters);
  if (ids.empty()) {
    p.emplace_back("MaxResults", std::to_string(std::clamp(max_results, 5u, 1000u)));
    if (!next_token.empty()) p.emplace_back("NextToken", std::string(next_token));
  }
  return p;
}

query_params terminate_instances_params(const std::vector<std::string>& ids) {
  query_params p{{"Action", "TerminateInstances"}, {"Version", api_version}};
  for (std::size_t i = 0; i < ids.size(); ++i)
    p.emplace_back("InstanceId." + std::to_string(i + 1), ids[i]);
  return p;
}

query_params describe_images_params(std::string_view name, const std::vector<std::string>& owners,
                                    std::string_view next_token) {
  query_params p{{"Action", "DescribeImages"}, {"Version", api_version}};
  for (std::size_t i = 0; i < owners.size(); ++i)
    p.emplace_back("Owner." + std::to_string(i + 1), owners[i]);
  add_filters(p, {{"name", {std::string(name)}}, {"state", {"available"}}});
  p.emplace_back("MaxResults", "1000");
  if (!next_token.empty()) p.emplace_back("NextToken", std::string(next_token));
  return p;
}

result<query_params> create_capacity_reservation_params(const reservation_spec& spec,
                                                        const aws_settings& s) {
  auto type = s.instance_type_for(spec.instance_type);
  if (!type) return type.error();
  if (spec.count <= 0) return fail(errc::cloud_permanent, "a reservation needs a count above 0");
  query_params p{{"Action", "CreateCapacityReservation"},
                 {"Version", api_version},
                 {"ClientToken", client_token_for(spec.idempotency_key)},
                 {"InstanceType", *type},
                 {"InstancePlatform", "Linux/UNIX"},
                 {"AvailabilityZone", spec.zone},
                 {"InstanceCount", std::to_string(spec.count)},
                 {"InstanceMatchCriteria", "targeted"}};
  if (spec.ends_at != system_clock::time_point{}) {
    p.emplace_back("EndDateType", "limited");
    p.emplace_back("EndDate", iso8601(spec.ends_at));
  } else {
    p.emplace_back("EndDateType", "unlimited");
  }
  add_tag_specification(p, "TagSpecifications.1", "capacity-reservation", reservation_tags(spec));
  return p;
}

query_params describe_capacity_reservations_params(const std::vector<std::string>& ids,
                                                   const std::vector<ec2_filter>& filters,
                                                   std::string_view next_token,
                                                   unsigned max_results) {
  query_params p{{"Action", "DescribeCapacityReservations"}, {"Version", api_version}};
  for (std::size_t i = 0; i < ids.size(); ++i)
    p.emplace_back("CapacityReservationId." + std::to_string(i + 1), ids[i]);
  add_filters(p, filters);
  if (ids.empty()) {
    p.emplace_back("MaxResults", std::to_string(std::clamp(max_results, 1u, 1000u)));
    if (!next_token.empty()) p.emplace_back("NextToken", std::string(next_token));
  }
  return p;
}

query_params cancel_capacity_reservation_params(std::string_view id) {
  return {{"Action", "CancelCapacityReservation"},
          {"Version", api_version},
          {"CapacityReservationId", std::string(id)}};
}

// ---- answers -------------------------------------------------------------------------------

vm_status status_from_state(std::string_view s) {
  if (s == "running") return vm_status::running;
  if (s == "shutting-down" || s == "stopping") return vm_status::stopping;
  if (s == "terminated" || s == "stopped") return vm_status::terminated;
  return vm_status::provisioning;  // pending, and any state added later
}

result<ec2_instance> parse_run_instances(std::string_view body, bool public_ip) {
  auto doc = ec2_document(body, "RunInstancesResponse");
  if (!doc) return doc.error();
  const auto found = items(doc->child("instancesSet"));
  if (found.size() != 1) {
    return fail(errc::cloud_transient,
                "RunInstances answered with " + std::to_string(found.size()) + " instances, not 1");
  }
  return instance_from(*found.front(), public_ip);
}

result<instance_page> parse_describe_instances(std::string_view body, bool public_ip) {
  auto doc = ec2_document(body, "DescribeInstancesResponse");
  if (!doc) return doc.error();
  instance_page page;
  page.next_token = doc->child_text("nextToken");
  for (const auto* reservation : items(doc->child("reservationSet"))) {
    for (const auto* item : items(reservation->child("instancesSet"))) {
      auto i = instance_from(*item, public_ip);
      if (!i) return i.error();
      page.instances.push_back(std::move(*i));
    }
  }
  return page;
}

result<std::vector<state_change>> parse_terminate_instances(std::string_view body) {
  auto doc = ec2_document(body, "TerminateInstancesResponse");
  if (!doc) return doc.error();
  std::vector<state_change> out;
  for (const auto* item : items(doc->child("instancesSet"))) {
    state_change c{std::string(item->child_text("instanceId")),
                   std::string(item->find_text("currentState/name")),
                   std::string(item->find_text("previousState/name"))};
    if (c.instance_id.empty()) return fail(errc::cloud_transient, "a state change without an id");
    out.push_back(std::move(c));
  }
  return out;
}

result<image_page> parse_describe_images(std::string_view body) {
  auto doc = ec2_document(body, "DescribeImagesResponse");
  if (!doc) return doc.error();
  image_page page;
  page.next_token = doc->child_text("nextToken");
  for (const auto* item : items(doc->child("imagesSet"))) {
    ec2_image i{std::string(item->child_text("imageId")), std::string(item->child_text("name")),
                std::string(item->child_text("imageState")),
                std::string(item->child_text("imageOwnerId")),
                std::string(item->child_text("creationDate"))};
    if (i.image_id.empty()) return fail(errc::cloud_transient, "an image without an id");
    page.images.push_back(std::move(i));
  }
  return page;
}

const ec2_image* newest_image(const std::vector<ec2_image>& images) {
  const ec2_image* best = nullptr;
  for (const auto& i : images) {
    if (i.state != "available") continue;
    if (!best ||
        std::tie(i.creation_date, i.image_id) > std::tie(best->creation_date, best->image_id))
      best = &i;
  }
  return best;
}

reservation_status reservation_status_from_state(std::string_view s) {
  if (s == "active") return reservation_status::ready;
  if (s == "cancelled" || s == "expired") return reservation_status::deleting;
  if (s == "failed" || s == "unsupported" || s == "payment-failed")
    return reservation_status::invalid;
  return reservation_status::creating;  // pending, assessing, scheduled, delayed, ...
}

bool reservation_over(std::string_view s) { return s == "cancelled" || s == "expired"; }

result<ec2_reservation> parse_create_capacity_reservation(std::string_view body) {
  auto doc = ec2_document(body, "CreateCapacityReservationResponse");
  if (!doc) return doc.error();
  const auto* r = doc->child("capacityReservation");
  if (!r) return fail(errc::cloud_transient, "CreateCapacityReservation answered no reservation");
  return reservation_from(*r);
}

result<reservation_page> parse_describe_capacity_reservations(std::string_view body) {
  auto doc = ec2_document(body, "DescribeCapacityReservationsResponse");
  if (!doc) return doc.error();
  reservation_page page;
  page.next_token = doc->child_text("nextToken");
  for (const auto* item : items(doc->child("capacityReservationSet"))) {
    auto r = reservation_from(*item);
    if (!r) return r.error();
    page.reservations.push_back(std::move(*r));
  }
  return page;
}

result<bool> parse_cancel_capacity_reservation(std::string_view body) {
  auto doc = ec2_document(body, "CancelCapacityReservationResponse");
  if (!doc) return doc.error();
  const auto v = doc->child_text("return");
  if (v != "true" && v != "false") {
    return fail(errc::cloud_transient,
                "CancelCapacityReservation answered neither true nor false: " + body_snippet(body));
  }
  return v == "true";
}

// ---- errors --------------------------------------------------------------------------------

std::optional<ec2_error> parse_error_body(std::string_view body) {
  auto doc = parse_xml(body);
  if (!doc) return std::nullopt;
  const xml_element* err = nullptr;
  if (doc->name == "Response") {
    err = doc->find("Errors/Error");
  } else if (doc->name == "ErrorResponse") {
    err = doc->child("Error");
  }
  if (!err) return std::nullopt;
  ec2_error e{std::string(err->child_text("Code")), std::string(err->child_text("Message")), {}};
  for (auto name : {"RequestID", "RequestId", "requestId"}) {
    if (const auto id = doc->child_text(name); !id.empty()) e.request_id = id;
  }
  if (e.code.empty()) return std::nullopt;
  return e;
}

errc kind_of_code(std::string_view code, unsigned http_status) {
  if (code == "InsufficientInstanceCapacity" || code == "InsufficientCapacity" ||
      code == "InsufficientHostCapacity" || code == "InsufficientReservedInstanceCapacity" ||
      code == "InsufficientCapacityOnOutpost" || code == "InsufficientFreeAddressesInSubnet" ||
      code == "ReservationCapacityExceeded" ||
      // The instance type is not offered in this zone: another zone may have it.
      code == "Unsupported") {
    return errc::cloud_capacity;
  }
  if (code == "InstanceLimitExceeded" || code == "VcpuLimitExceeded" ||
      code == "MaxSpotInstanceCountExceeded" || code == "VolumeLimitExceeded" ||
      code == "ReservationLimitExceeded" || code == "ResourceLimitExceeded") {
    return errc::cloud_quota;
  }
  if (code == "RequestLimitExceeded" || code == "Throttling" || code == "ThrottlingException" ||
      http_status == 429) {
    return errc::cloud_rate_limited;
  }
  if (code == "InternalError" || code == "InternalFailure" || code == "ServiceUnavailable" ||
      code == "Unavailable" || http_status >= 500 || http_status == 408) {
    return errc::cloud_transient;
  }
  if (code == "AuthFailure" || code == "UnauthorizedOperation" || code == "SignatureDoesNotMatch" ||
      code == "IncompleteSignature" || code == "InvalidClientTokenId" ||
      code == "MissingAuthenticationToken" || code == "RequestExpired" || code == "ExpiredToken" ||
      code == "OptInRequired" || code == "Blocked" || code == "PendingVerification" ||
      http_status == 401 || http_status == 403) {
    return errc::cloud_auth;
  }
  if (code == "InvalidInstanceID.NotFound" || code == "InvalidCapacityReservationId.NotFound")
    return errc::cloud_not_found;
  return errc::cloud_permanent;
}

bool has_code(const error& e, std::string_view code) {
  // error_from_response ends every detail with "(CODE, HTTP n[, request ID])".
  const std::string mark = "(" + std::string(code) + ", HTTP ";
  const auto at = e.detail.rfind(mark);
  return at != std::string::npos && e.detail.find('(', at + 1) == std::string::npos;
}

error error_from_response(unsigned http_status, std::string_view body,
                          std::optional<system_clock::time_point> server_time,
                          system_clock::time_point now) {
  const auto parsed = parse_error_body(body);
  const std::string code = parsed ? parsed->code : std::string();
  std::string detail = parsed && !parsed->message.empty() ? parsed->message
                       : body.empty()                     ? std::string("empty body")
                                                          : body_snippet(body);

  const bool signature_time =
      code == "RequestExpired" ||
      (code == "SignatureDoesNotMatch" &&
       (contains(detail, "expired") || contains(detail, "not yet current")));
  if (signature_time) {
    // EC2 refuses the request's time both to a clock that is off and to an expired session
    // token; the answer's Date tells which.
    if (!server_time) {
      detail = "clock skew or expired credentials: EC2 refused the request's time; " + detail;
    } else {
      const auto off = std::chrono::duration_cast<std::chrono::seconds>(now - *server_time).count();
      if (off >= 60 || off <= -60) {
        detail = "clock skew: this host's clock is " + std::to_string(off < 0 ? -off : off) +
                 " s " + (off < 0 ? "behind" : "ahead of") + " EC2's; " + detail;
      } else {
        detail = "expired credentials (this host's clock agrees with EC2's): " + detail;
      }
    }
  }

  detail += " (";
  if (!code.empty()) detail += code + ", ";
  detail += "HTTP " + std::to_string(http_status);
  if (parsed && !parsed->request_id.empty()) detail += ", request " + parsed->request_id;
  detail += ")";
  return fail(kind_of_code(code, http_status), std::move(detail));
}

}  // namespace cloudbrain::providers::aws
