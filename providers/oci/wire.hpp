#pragma once

#include "core/error.hpp"
#include "core/time.hpp"
#include "providers/driver.hpp"
#include "providers/oci/settings.hpp"

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

// OCI Core Services API 20160918's wire format, free of I/O: request paths, queries and
// bodies, and the parsing of what OCI answers, errors sorted into the kinds the scheduler acts on.
namespace cloudbrain::providers::oci {

inline constexpr std::string_view api_version = "/20160918";

// "<endpoint>/20160918<path>[?query]"; `path` starts with '/'.
[[nodiscard]] std::string api_url(const oci_settings& s, std::string_view path,
                                  std::string_view query = {});

// A query string from name/value pairs, values percent-encoded, empty values left out.
[[nodiscard]] std::string query_string(
    std::initializer_list<std::pair<std::string_view, std::string_view>> params);

// RFC 3986 percent-encoding of everything but unreserved characters.
[[nodiscard]] std::string percent_encode(std::string_view s);

// opc-retry-token for an idempotency key: 64 hex characters of its SHA-256 (OCI takes at most
// 64), so that a repeat of the same job's request is the same request to OCI.
[[nodiscard]] std::string retry_token_for(std::string_view idempotency_key);

// OCI's freeform tag rules: keys at most 100 characters without '.' or whitespace, values at
// most 256. Tags are mapped onto them ('.' and whitespace become '_'), the same way everywhere.
[[nodiscard]] std::string tag_key(std::string_view key);
[[nodiscard]] std::string tag_value(std::string_view value);

// ---- requests --------------------------------------------------------------------------------

// LaunchInstanceDetails for spec.zone (an availability domain). `reservation_id` is the OCID
// of the capacity reservation to launch into, or empty. Fails (cloud_permanent) on an unknown
// instance_type or an image that is not an image OCID.
[[nodiscard]] result<boost::json::object> build_launch_body(const instance_spec& spec,
                                                            const oci_settings& s,
                                                            std::string_view reservation_id = {});

// CreateComputeCapacityReservationDetails: spec.count instances of the instance type's shape
// (and Flex configuration) in spec.zone, the markers and tags as freeform tags.
[[nodiscard]] result<boost::json::object> build_reservation_body(const reservation_spec& spec,
                                                                 const oci_settings& s);

// ---- responses ------------------------------------------------------------------------------

// An instance as OCI reports it, with what vm has no room for.
struct instance_info {
  vm v;                         // name = displayName, upstream_id = id, zone = availabilityDomain
  std::string lifecycle_state;  // PROVISIONING, RUNNING, ..., TERMINATED
  std::string shape;
  std::string capacity_reservation_id;
};

[[nodiscard]] vm_status status_from_lifecycle(std::string_view state);

// An Instance (GetInstance, LaunchInstance). Anything else is cloud_transient (a garbled answer).
[[nodiscard]] result<instance_info> parse_instance(std::string_view body);
// A page of ListInstances (a JSON array).
[[nodiscard]] result<std::vector<instance_info>> parse_instance_list(std::string_view body);

struct vnic_attachment {
  std::string id;
  std::string vnic_id;
  std::string lifecycle_state;  // ATTACHING, ATTACHED, DETACHING, DETACHED
  int nic_index = 0;
};
[[nodiscard]] result<std::vector<vnic_attachment>> parse_vnic_attachments(std::string_view body);

struct vnic_info {
  std::string id;
  std::string private_ip;
  std::string public_ip;
  bool is_primary = false;
  std::string lifecycle_state;  // PROVISIONING, AVAILABLE, TERMINATING, TERMINATED
};
[[nodiscard]] result<vnic_info> parse_vnic(std::string_view body);

// The primary VNIC's attachment among an instance's (nicIndex 0 and ATTACHED), if any.
[[nodiscard]] const vnic_attachment* primary_attachment(const std::vector<vnic_attachment>& list);

[[nodiscard]] reservation_status reservation_status_from_lifecycle(std::string_view state);

// A ComputeCapacityReservation (Get, Create) or a ComputeCapacityReservationSummary (List):
// name = displayName, upstream_id = id, zone = availabilityDomain, count = reservedInstanceCount,
// in_use = usedInstanceCount, labels_ = freeformTags, machine_type = the first config's shape.
// `lifecycle_state` gets the raw state (DELETED is not a reservation_status).
[[nodiscard]] result<cloud_reservation> parse_reservation(std::string_view body,
                                                          std::string* lifecycle_state = nullptr);
struct reservation_summary {
  cloud_reservation r;
  std::string lifecycle_state;
};
[[nodiscard]] result<std::vector<reservation_summary>> parse_reservation_list(
    std::string_view body);

enum class work_request_status { accepted, in_progress, succeeded, failed, canceling, canceled };

struct work_request {
  std::string id;
  std::string operation_type;
  work_request_status status = work_request_status::accepted;
  int percent_complete = 0;

  [[nodiscard]] bool finished() const {
    return status == work_request_status::succeeded || status == work_request_status::failed ||
           status == work_request_status::canceled;
  }
};
[[nodiscard]] result<work_request> parse_work_request(std::string_view body);

struct work_request_error {
  std::string code;
  std::string message;
};
// ListWorkRequestErrors: a JSON array of {code, message, timestamp}.
[[nodiscard]] result<std::vector<work_request_error>> parse_work_request_errors(
    std::string_view body);

// ---- errors ---------------------------------------------------------------------------------

// What an error answer carried besides its status and body.
struct response_context {
  std::string_view opc_request_id;  // opc-request-id: what Oracle support asks for
  std::string_view date;            // the answer's Date header, to tell clock skew
  system_clock::time_point now{};   // our clock when the answer came
};

// The error an answer other than 2xx stands for. The detail is OCI's code and message and the
// opc-request-id; a 401 says whether this host's clock is off. The body may be anything.
//   500 "Out of host capacity."           → cloud_capacity (try the next availability domain)
//   400 LimitExceeded / QuotaExceeded     → cloud_quota
//   429 TooManyRequests                   → cloud_rate_limited
//   409 IncorrectState, 5xx, 408          → cloud_transient
//   401 NotAuthenticated, 403             → cloud_auth
//   404 NotAuthorizedOrNotFound           → cloud_not_found (what it means depends on the call)
//   409 NotAuthorizedOrResourceAlreadyExists → cloud_already_exists
//   anything else                         → cloud_permanent
[[nodiscard]] error error_from_response(unsigned http_status, std::string_view body,
                                        const response_context& ctx = {});

// The error a FAILED work request stands for, from its errors (capacity, quota or permanent).
[[nodiscard]] error error_from_work_request(const work_request& wr,
                                            const std::vector<work_request_error>& errors);

}  // namespace cloudbrain::providers::oci
