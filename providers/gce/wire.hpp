#pragma once

#include "core/error.hpp"
#include "providers/driver.hpp"
#include "providers/gce/settings.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// Compute Engine v1's wire format, free of I/O: request paths and bodies, and the parsing of
// what Google answers, errors sorted into the kinds the scheduler acts on.
namespace cloudbrain::providers::gce {

// Paths relative to "<endpoint>/compute/v1/".
[[nodiscard]] std::string instances_path(std::string_view project, std::string_view zone);
[[nodiscard]] std::string instance_path(std::string_view project, std::string_view zone,
                                        std::string_view name);
[[nodiscard]] std::string operation_path(std::string_view project, std::string_view zone,
                                         std::string_view operation);
[[nodiscard]] std::string operation_wait_path(std::string_view project, std::string_view zone,
                                              std::string_view operation);
[[nodiscard]] std::string reservations_path(std::string_view project, std::string_view zone);
[[nodiscard]] std::string reservation_path(std::string_view project, std::string_view zone,
                                           std::string_view name);

// "<endpoint>/compute/v1/<relative>[?query]".
[[nodiscard]] std::string api_url(const gce_settings& s, std::string_view relative,
                                  std::string_view query = {});

// The region of a zone: "us-central1-a" → "us-central1".
[[nodiscard]] std::string region_of(std::string_view zone);

// The body of instances.insert for spec.zone. Fails (cloud_permanent) only on an unknown
// instance_type.
[[nodiscard]] result<boost::json::object> build_insert_body(const instance_spec& spec,
                                                            const gce_settings& s);

// Google wants requestId to be a UUID: a name-based one (SHA-256, version-5 layout), so that a
// retried call with the same idempotency key is deduplicated by Google.
[[nodiscard]] std::string request_id_for(std::string_view idempotency_key);

// "requestId=<uuid>" for insert/delete.
[[nodiscard]] std::string request_id_query(std::string_view idempotency_key);

struct operation_error {
  std::string code;  // ZONE_RESOURCE_POOL_EXHAUSTED, QUOTA_EXCEEDED, ...
  std::string message;
  std::vector<std::string> zones_available;  // from errorInfo of *_WITH_DETAILS, if any
};

enum class operation_status { pending, running, done };

struct operation {
  std::string name;
  operation_status status = operation_status::pending;
  std::string operation_type;  // insert, delete, ...
  std::string target_link;
  std::string target_id;
  std::string zone;  // the last segment of the zone URL
  std::vector<operation_error> errors;
  unsigned http_error_status_code = 0;
  std::string http_error_message;

  [[nodiscard]] bool done() const noexcept { return status == operation_status::done; }
  [[nodiscard]] bool failed() const noexcept { return done() && !errors.empty(); }
};

// A compute#operation. Anything that is not one is errc::cloud_transient (a garbled answer).
[[nodiscard]] result<operation> parse_operation(std::string_view body);

// The error a failed operation stands for (call only when op.failed()).
[[nodiscard]] error error_from_operation(const operation& op);

// The error a non-2xx response stands for; the body may be anything, JSON or not.
[[nodiscard]] error error_from_response(unsigned http_status, std::string_view body);

// A compute#instance. `external_ip` says whether the VM was asked for an external address:
// if so only natIP counts as its address, else networkIP.
[[nodiscard]] result<vm> parse_instance(std::string_view body, bool external_ip = true);
[[nodiscard]] vm_status status_from_string(std::string_view gce_status);

struct instance_list_page {
  std::vector<vm> items;
  std::string next_page_token;  // empty on the last page
};

[[nodiscard]] result<instance_list_page> parse_instance_list(std::string_view body,
                                                             bool external_ip = true);

// ---- reservations ----

// The body of reservations.insert: a specific reservation of spec.count VMs of the instance
// type's machine type that only VMs naming it may use (specificReservationRequired), deleted by
// Google itself at spec.ends_at, the janitor's backstop. Reservations have no labels, so the
// deployment and reservation markers (and the tags) go into the description. Fails
// (cloud_permanent) only on an unknown instance_type.
[[nodiscard]] result<boost::json::object> build_reservation_body(const reservation_spec& spec,
                                                                 const gce_settings& s);

// "cloudbrain reservation: cloudbrain-deployment=D cloudbrain-reservation=ID k=v ...", every
// key and value in Google's label characters, at most 2048 characters (tags that do not fit are
// left out, the two markers never).
[[nodiscard]] std::string reservation_description(const reservation_spec& spec);
// The markers and tags of a description written by reservation_description; anything else
// (a reservation someone made by hand) yields none.
[[nodiscard]] labels labels_from_description(std::string_view description);

// A compute#reservation.
[[nodiscard]] result<cloud_reservation> parse_reservation(std::string_view body);
[[nodiscard]] reservation_status reservation_status_from_string(std::string_view gce_status);

struct reservation_list_page {
  std::vector<cloud_reservation> items;
  std::string next_page_token;  // empty on the last page
};

[[nodiscard]] result<reservation_list_page> parse_reservation_list(std::string_view body);

// Google's label rules: keys start with a lowercase letter, keys and values hold only
// [a-z0-9_-] and are at most 63 characters. Tags are mapped onto them (uppercase lowered,
// anything else '_'), the same way on create and in list filters.
[[nodiscard]] std::string label_key(std::string_view key);
[[nodiscard]] std::string label_value(std::string_view value);

// labels.cloudbrain-deployment = "D"
[[nodiscard]] std::string list_filter_for_deployment(std::string_view deployment);

// "filter=...&maxResults=N&pageToken=..." with every value percent-encoded; empty parts left out.
[[nodiscard]] std::string list_query(std::string_view filter, std::string_view page_token,
                                     unsigned max_results = 500);

// RFC 3986 percent-encoding of everything but unreserved characters.
[[nodiscard]] std::string percent_encode(std::string_view s);

}  // namespace cloudbrain::providers::gce
