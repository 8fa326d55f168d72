#pragma once

#include "core/error.hpp"
#include "core/time.hpp"
#include "net/http.hpp"
#include "providers/azure/settings.hpp"
#include "providers/driver.hpp"

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

// Azure Resource Manager's wire format for Microsoft.Compute, free of I/O: resource paths, the
// bodies of PUTs, the parsing of what ARM answers (resources, lists, long-running operation
// status, errors sorted into the kinds the scheduler acts on) and Entra ID's token exchange.
namespace cloudbrain::providers::azure {

// One api-version per resource provider, so that every body has one shape.
inline constexpr const char* compute_api_version = "2024-07-01";
inline constexpr const char* network_api_version = "2024-05-01";
// The Microsoft.Network version Compute uses to make the NIC of networkInterfaceConfigurations.
inline constexpr const char* vm_network_api_version = "2020-11-01";
inline constexpr const char* imds_api_version = "2018-02-01";

// ---- paths and URLs ----

// /subscriptions/S/resourceGroups/G
[[nodiscard]] std::string resource_group_path(const azure_settings& s);
// .../providers/Microsoft.Compute/virtualMachines[/NAME]
[[nodiscard]] std::string vms_path(const azure_settings& s);
[[nodiscard]] std::string vm_path(const azure_settings& s, std::string_view name);
// .../providers/Microsoft.Compute/capacityReservationGroups/GROUP[/capacityReservations[/NAME]]
[[nodiscard]] std::string group_path(const azure_settings& s);
[[nodiscard]] std::string reservations_path(const azure_settings& s);
[[nodiscard]] std::string reservation_path(const azure_settings& s, std::string_view name);

// "<endpoint><path>?api-version=V[&query]"; query's values must be percent-encoded already.
[[nodiscard]] std::string arm_url(const azure_settings& s, std::string_view path,
                                  std::string_view api_version, std::string_view query = {});
// A URL ARM handed us (an operation's status, a nextLink): only followed when it points at the
// configured endpoint's scheme, host and port, so that the token is never sent elsewhere.
[[nodiscard]] bool same_origin(std::string_view url, std::string_view endpoint);

// RFC 3986 percent-encoding of everything but unreserved characters.
[[nodiscard]] std::string percent_encode(std::string_view s);

// ---- requests ----

// `image` as `az vm create --image` takes it: publisher:offer:sku:version, or the resource id
// of an image or gallery image version. Anything else is cloud_permanent with what to write.
[[nodiscard]] result<boost::json::object> image_reference_for(std::string_view image);

// ARM tag rules: a key is at most 512 characters without < > % & \ ? /, a value at most 256.
// Tags are mapped onto them (forbidden characters become '_'), the same way on create and list.
[[nodiscard]] std::string tag_key(std::string_view key);
[[nodiscard]] std::string tag_value(std::string_view value);

// The body of PUT virtualMachines/{spec.name}: size, image, zone, ssh keys (password login
// off), tags with the deployment and instance markers, one NIC (and a public IP if configured)
// made with the VM on settings.subnet, NIC, public IP and OS disk deleted with it. With a
// reservation the VM joins `group_id`. Fails (cloud_permanent) on an unknown instance_type or
// an image in no form ARM takes.
[[nodiscard]] result<boost::json::object> build_vm_body(const instance_spec& spec,
                                                        const azure_settings& s,
                                                        std::string_view group_id = {});

// The body of PUT capacityReservationGroups/{group}: covering every configured zone.
[[nodiscard]] boost::json::object build_group_body(const azure_settings& s,
                                                   std::string_view deployment);
// The body of PUT capacityReservations/{spec.name}: spec.count VMs of the size, in spec.zone.
[[nodiscard]] result<boost::json::object> build_reservation_body(const reservation_spec& spec,
                                                                 const azure_settings& s);
// PATCH bodies: a reservation's quantity, and a VM leaving its capacity reservation group.
[[nodiscard]] boost::json::object build_capacity_patch(int capacity);
[[nodiscard]] boost::json::object build_leave_group_patch();

// ---- responses ----

struct arm_error {
  std::string code;  // ZonalAllocationFailed, SkuNotAvailable, OperationNotAllowed, ...
  std::string message;
  std::string target;
  std::vector<arm_error> details;
};

// {"error":{"code","message","target","details":[...]}} (also ARM's older bare {"code",
// "message"} and Entra ID's {"error":"invalid_client","error_description"}); none: nullopt.
[[nodiscard]] std::optional<arm_error> parse_arm_error(std::string_view body);
// The kind an ARM error code stands for, given the HTTP status it came with (0: it came in an
// operation's status body).
[[nodiscard]] error error_from_arm(const arm_error& e, unsigned http_status);
// The error a non-2xx response stands for; the body may be anything, JSON or not.
[[nodiscard]] error error_from_response(unsigned http_status, std::string_view body);

// A Microsoft.Compute/virtualMachines resource.
struct arm_vm {
  std::string name;
  std::string id;     // the ARM resource id
  std::string vm_id;  // properties.vmId, the cloud's own id
  std::string zone;
  std::string location;
  std::string provisioning_state;    // Creating, Updating, Succeeded, Failed, Deleting
  std::string power_state;           // from the instance view: running, stopped, ...; may be empty
  std::optional<arm_error> failure;  // the instance view's error status, if any
  std::vector<std::string> nic_ids;  // primary first
  std::string capacity_reservation_group;  // its id, if it is in one
  labels tags;
  system_clock::time_point created_at{};
};

[[nodiscard]] result<arm_vm> parse_vm(std::string_view body);
[[nodiscard]] vm_status status_of(const arm_vm& v);
// The driver's view of it (without an address: that is on the NIC).
[[nodiscard]] vm to_vm(const arm_vm& v);

struct vm_page {
  std::vector<arm_vm> items;
  std::string next_link;  // empty on the last page
};
[[nodiscard]] result<vm_page> parse_vm_list(std::string_view body);

// The primary IP configuration's public address (read with
// $expand=ipConfigurations/publicIPAddress) or, when `public_ip` is false, its private one.
// nullopt: not assigned yet.
[[nodiscard]] result<std::optional<std::string>> parse_nic_address(std::string_view body,
                                                                   bool public_ip);

// An Azure-AsyncOperation status body: {"status": InProgress | Succeeded | Failed | Canceled,
// "error": {...}}. Any other status is still in progress (ARM may add some).
enum class lro_status { in_progress, succeeded, failed, canceled };
struct lro_state {
  lro_status status = lro_status::in_progress;
  std::optional<arm_error> error;
};
[[nodiscard]] result<lro_state> parse_async_operation(std::string_view body);
// The provisioningState of a resource body (a Location poll's 200): its lro_status.
[[nodiscard]] lro_status lro_status_of_state(std::string_view provisioning_state);

// The smallest of the x-ms-ratelimit-remaining-* counts ARM sends (nullopt: none sent).
[[nodiscard]] std::optional<long> ratelimit_remaining_of(const net::http::fields& headers);

// ---- capacity reservations ----

struct arm_reservation {
  cloud_reservation reservation;
  std::vector<std::string> associated_vms;  // resource ids of the VMs in it
  std::optional<arm_error> failure;
};
[[nodiscard]] result<arm_reservation> parse_reservation(std::string_view body);
[[nodiscard]] reservation_status reservation_status_of(std::string_view provisioning_state);

struct reservation_page {
  std::vector<arm_reservation> items;
  std::string next_link;
};
[[nodiscard]] result<reservation_page> parse_reservation_list(std::string_view body);

// ---- tokens ----

struct access_token {
  std::string token;
  system_clock::time_point expires_at{};
};

// Entra ID v2 client credentials: POST {login}/{tenant}/oauth2/v2.0/token with this form body.
[[nodiscard]] std::string token_url(const azure_settings& s);
[[nodiscard]] std::string client_credentials_body(std::string_view client_id,
                                                  std::string_view client_secret,
                                                  std::string_view scope);
// The scope for ARM: "{endpoint}/.default"; IMDS's resource: "{endpoint}/".
[[nodiscard]] std::string arm_scope(const azure_settings& s);
// GET {imds}/metadata/identity/oauth2/token?api-version=...&resource=...[&client_id=...]
[[nodiscard]] std::string imds_token_url(const azure_settings& s);
// Entra ID's answer (expires_in a number) or IMDS's (expires_in and expires_on as strings).
[[nodiscard]] result<access_token> parse_token_response(std::string_view body,
                                                        system_clock::time_point now);

}  // namespace cloudbrain::providers::azure
