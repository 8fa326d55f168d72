#pragma once

#include "core/error.hpp"
#include "core/time.hpp"
#include "providers/aws/settings.hpp"
#include "providers/aws/xml.hpp"
#include "providers/driver.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// EC2's Query API (Version 2016-11-15), free of I/O: the form parameters of every call
// cloudbrain makes, and the parsing of EC2's XML answers and errors, sorted into the kinds the
// scheduler acts on. Names and list layouts follow botocore's model of the API.
namespace cloudbrain::providers::aws {

inline constexpr const char* api_version = "2016-11-15";
// The tag every EC2 console shows as the resource's name.
inline constexpr const char* tag_name = "Name";

using query_params = std::vector<std::pair<std::string, std::string>>;

// application/x-www-form-urlencoded, in the order given, with SigV4's percent-encoding.
[[nodiscard]] std::string form_body(const query_params& params);
// The inverse, for tests and the emulator's twin: strict, '+' is a space as forms have it.
[[nodiscard]] result<query_params> parse_form(std::string_view body);

struct ec2_filter {
  std::string name;  // tag:KEY, availability-zone, instance-state-name, ...
  std::vector<std::string> values;
};

// Up to 64 ASCII characters, derived from the job's idempotency key (hex SHA-256), so that the
// retry of a call whose answer was lost is the same call to EC2.
[[nodiscard]] std::string client_token_for(std::string_view idempotency_key);

// The cloud-init user data that gives `ssh_user` the key (a #cloud-config document); fails on a
// key that is not one line.
[[nodiscard]] result<std::string> user_data_for(std::string_view ssh_user,
                                                std::string_view public_ssh_key);

// The tags of an instance, its volumes or a reservation: the request's own, then ours (Name and
// the markers), which a request's tag of the same key never replaces.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> instance_tags(
    const instance_spec& spec);
[[nodiscard]] std::vector<std::pair<std::string, std::string>> reservation_tags(
    const reservation_spec& spec);

// RunInstances of one instance of `image_id` in spec.zone: through the zone's subnet when the
// settings name one (the security groups then on its network interface), else through
// Placement.AvailabilityZone; into the capacity reservation `reservation_id` when not empty.
// Fails (cloud_permanent) on an unknown instance_type or an SSH key that is not one line.
[[nodiscard]] result<query_params> run_instances_params(const instance_spec& spec,
                                                        const aws_settings& s,
                                                        std::string_view image_id,
                                                        std::string_view reservation_id);
// DescribeInstances by id (without paging: EC2 refuses MaxResults with ids) or by filters.
[[nodiscard]] query_params describe_instances_params(const std::vector<std::string>& ids,
                                                     const std::vector<ec2_filter>& filters,
                                                     std::string_view next_token = {},
                                                     unsigned max_results = 1000);
[[nodiscard]] query_params terminate_instances_params(const std::vector<std::string>& ids);
// The available images named `name` (DescribeImages' wildcards allowed) of these owners.
[[nodiscard]] query_params describe_images_params(std::string_view name,
                                                  const std::vector<std::string>& owners,
                                                  std::string_view next_token = {});
// A targeted Linux/UNIX reservation of spec.count instances in spec.zone that EC2 itself ends
// at spec.ends_at (EndDateType limited), tagged with the markers and the request's tags.
[[nodiscard]] result<query_params> create_capacity_reservation_params(const reservation_spec& spec,
                                                                      const aws_settings& s);
[[nodiscard]] query_params describe_capacity_reservations_params(
    const std::vector<std::string>& ids, const std::vector<ec2_filter>& filters,
    std::string_view next_token = {}, unsigned max_results = 1000);
[[nodiscard]] query_params cancel_capacity_reservation_params(std::string_view id);

// ---- answers -------------------------------------------------------------------------------

// An instance as EC2 describes it: the driver's view, and what EC2 adds.
struct ec2_instance {
  vm v;
  std::string state;         // pending, running, shutting-down, terminated, stopping, stopped
  std::string state_reason;  // why it is stopped or terminated ("Server.InternalError: ...")
  std::string client_token;
  std::string capacity_reservation_id;
  std::string instance_type;
  std::string image_id;
};

struct instance_page {
  std::vector<ec2_instance> instances;
  std::string next_token;  // empty on the last page
};

[[nodiscard]] vm_status status_from_state(std::string_view ec2_state);

// `public_ip`: whether the VM's address is its public one (ipAddress) or its private one.
[[nodiscard]] result<ec2_instance> parse_run_instances(std::string_view body, bool public_ip);
[[nodiscard]] result<instance_page> parse_describe_instances(std::string_view body, bool public_ip);

struct state_change {
  std::string instance_id;
  std::string current_state;
  std::string previous_state;
};
[[nodiscard]] result<std::vector<state_change>> parse_terminate_instances(std::string_view body);

struct ec2_image {
  std::string image_id;
  std::string name;
  std::string state;
  std::string owner_id;
  std::string creation_date;  // ISO 8601, as EC2 gives it
};
struct image_page {
  std::vector<ec2_image> images;
  std::string next_token;
};
[[nodiscard]] result<image_page> parse_describe_images(std::string_view body);
// The newest available image among `images` (by creation date, then id); nullptr if none.
[[nodiscard]] const ec2_image* newest_image(const std::vector<ec2_image>& images);

// A capacity reservation as EC2 describes it.
struct ec2_reservation {
  cloud_reservation r;
  std::string state;  // active, pending, cancelled, expired, failed, ...
};
struct reservation_page {
  std::vector<ec2_reservation> reservations;
  std::string next_token;
};

// active → ready; pending, assessing, scheduled, delayed, payment-pending → creating;
// failed, unsupported, payment-failed → invalid; cancelled, expired → deleting (gone soon).
[[nodiscard]] reservation_status reservation_status_from_state(std::string_view ec2_state);
// Whether EC2 no longer holds the capacity (cancelled or expired).
[[nodiscard]] bool reservation_over(std::string_view ec2_state);
[[nodiscard]] result<ec2_reservation> parse_create_capacity_reservation(std::string_view body);
[[nodiscard]] result<reservation_page> parse_describe_capacity_reservations(std::string_view body);
[[nodiscard]] result<bool> parse_cancel_capacity_reservation(std::string_view body);

// ---- errors --------------------------------------------------------------------------------

struct ec2_error {
  std::string code;  // InsufficientInstanceCapacity, RequestLimitExceeded, ...
  std::string message;
  std::string request_id;
};

// The first error of <Response><Errors><Error>... (or another AWS error document); none when
// the body is no such document.
[[nodiscard]] std::optional<ec2_error> parse_error_body(std::string_view body);

// The error a non-2xx answer stands for. `server_time` (the answer's Date header), when given,
// lets a refused signature that is too old or too new be reported as the clock skew it is.
[[nodiscard]] error error_from_response(unsigned http_status, std::string_view body,
                                        std::optional<system_clock::time_point> server_time = {},
                                        system_clock::time_point now = system_clock::now());
// Whether `e`, made by error_from_response, is EC2's error `code`.
[[nodiscard]] bool has_code(const error& e, std::string_view code);

// The kind an EC2 error code (and its HTTP status) stands for.
[[nodiscard]] errc kind_of_code(std::string_view code, unsigned http_status);

}  // namespace cloudbrain::providers::aws
