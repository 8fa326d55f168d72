#pragma once

// The out-of-tree driver protocol, version 1 (docs/driver-protocol.md): the messages a driver
// and the hub exchange over one WebSocket, as C++ values, and their JSON. Sans-io: nothing here
// reads or writes a socket, so the hub, the SDK and the conformance kit share one reading of
// every message, and it is tested on its own.

#include <boost/assert/source_location.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cloudbrain::driver_protocol {

inline constexpr int version = 1;
// What either side accepts in one message; a bigger one closes the connection (1009).
inline constexpr std::size_t max_message_bytes = std::size_t{1024} * 1024;
inline constexpr int max_in_flight_limit = 1024;
inline constexpr std::size_t max_id_bytes = 64;
// The most machines or reservations one page of a listing may hold.
inline constexpr std::size_t max_page_size = 1000;

using labels = std::map<std::string, std::string>;
using system_time = std::chrono::system_clock::time_point;

// What a message was wrong about, for a protocol_error or a refusal. Never repeats a value the
// message carried (it may be a secret).
struct violation {
  std::string reason;
};
[[noreturn]] void throw_exception_from_error(const violation& v, const boost::source_location&);

template <class T>
using parsed = boost::system::result<T, violation>;

// ---- vocabularies --------------------------------------------------------------------------

enum class capability { instances, reservations, list };
enum class operation {
  create,
  get,
  destroy,  // "delete" on the wire
  list,
  reserve,
  get_reservation,
  release,
  list_reservations,
};
enum class error_kind {
  capacity,        // the zone has no room: the hub tries the next zone
  quota,           // an account limit: the request fails
  throttled,       // slow down (retry_after_ms): the provider pauses, nothing fails
  invalid,         // the request cannot succeed as it is (bad image, unknown zone, ...)
  auth,            // the driver's credentials were refused
  not_found,       // no such machine or reservation
  already_exists,  // a machine or reservation of that name made under another key
  transient,       // anything worth retrying: timeouts, the cloud's 5xx, a deadline passed
};
enum class machine_status { provisioning, running, stopping, terminated };
enum class reservation_status { creating, ready, deleting, updating, invalid };

[[nodiscard]] std::string_view to_string(capability c);
[[nodiscard]] std::string_view to_string(operation o);
[[nodiscard]] std::string_view to_string(error_kind k);
[[nodiscard]] std::string_view to_string(machine_status s);
[[nodiscard]] std::string_view to_string(reservation_status s);
[[nodiscard]] std::optional<capability> parse_capability(std::string_view s);
[[nodiscard]] std::optional<operation> parse_operation(std::string_view s);
[[nodiscard]] std::optional<error_kind> parse_error_kind(std::string_view s);
[[nodiscard]] std::optional<machine_status> parse_machine_status(std::string_view s);
[[nodiscard]] std::optional<reservation_status> parse_reservation_status(std::string_view s);

// The capability a driver must declare to be sent `o`.
[[nodiscard]] capability needed_for(operation o);
// Whether `o` changes something, and so carries an idempotency key.
[[nodiscard]] bool mutates(operation o);

// A driver's name: 1 to 63 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit.
[[nodiscard]] bool valid_driver_name(std::string_view name);
// A message id: 1 to 64 printable ASCII characters.
[[nodiscard]] bool valid_id(std::string_view id);

// ---- what operations carry and answer --------------------------------------------------------

// A failed operation (or a refused get_config/get_secret).
struct failure {
  error_kind kind = error_kind::transient;
  std::string message;
  std::chrono::milliseconds retry_after{0};  // throttled only
};
[[noreturn]] void throw_exception_from_error(const failure& f, const boost::source_location&);

// What a driver answers an operation with.
template <class T>
using outcome = boost::system::result<T, failure>;

struct machine_spec {
  std::string instance_id;
  std::string name;  // deterministic: a retried create names the same machine
  std::string image;
  std::string instance_type;  // standard | premium
  std::string public_ssh_key;
  std::string zone;
  std::string reservation;  // the name of a reservation to launch into; empty: none
  labels labels_;           // the request's tags plus cloudbrain-deployment, cloudbrain-instance
};

struct machine {
  std::string name;
  std::string upstream_id;
  std::string zone;
  machine_status status = machine_status::provisioning;
  std::optional<std::string> ip_address;
  labels labels_;
  system_time created_at{};
};

struct machine_ref {
  std::string name;
  std::string zone;
  std::string upstream_id;  // may be empty
};

struct reservation_spec {
  std::string reservation_id;
  std::string name;
  std::string instance_type;
  int count = 0;
  std::string zone;
  system_time ends_at{};
  labels labels_;
};

struct reservation {
  std::string name;
  std::string upstream_id;
  std::string zone;
  std::string machine_type;
  int count = 0;
  int in_use = 0;
  reservation_status status = reservation_status::creating;
  labels labels_;
  system_time created_at{};
  std::optional<system_time> ends_at;
};

struct reservation_ref {
  std::string name;
  std::string zone;
  std::string upstream_id;
};

struct page_request {
  std::string deployment;
  std::optional<std::string> page_token;  // none: the first page
  std::size_t page_size = 100;
};

template <class T>
struct page {
  std::vector<T> items;
  std::optional<std::string> next_page_token;  // none: the last page
};

// An operation as the hub pushes it. `deadline` is relative to when the message was sent: the
// driver answers within it, or its answer is not waited for.
struct operation_request {
  std::string id;
  operation op = operation::get;
  std::string provider;
  std::string idempotency_key;  // create, delete, reserve, release
  std::chrono::milliseconds deadline{0};
  std::string config_version;
  std::string secret_version;
  std::variant<machine_spec, machine_ref, reservation_spec, reservation_ref, page_request> args;
};

// ---- session messages ------------------------------------------------------------------------

struct registration {
  std::string driver;
  int protocol_version = version;
  std::vector<capability> capabilities;
  int max_in_flight = 1;

  [[nodiscard]] bool has(capability c) const;
};

struct served_provider {
  std::string name;
  std::vector<std::string> zones;
  std::string config_version;
  std::string secret_version;
};

struct acceptance {
  int protocol_version = version;
  std::string session;
  std::vector<served_provider> providers;
  std::chrono::milliseconds heartbeat_interval{10'000};
  std::chrono::milliseconds heartbeat_timeout{30'000};
  std::size_t max_message_bytes = driver_protocol::max_message_bytes;
};

// Why a registration was refused: unknown_driver, unsupported_version, invalid_registration.
struct refusal {
  std::string reason;
  std::string message;
};

// The answer to get_config (type "config") or get_secret (type "secret").
struct settings_answer {
  std::string id;
  std::string provider;
  std::string version;
  boost::json::object values;
};

// ---- JSON ------------------------------------------------------------------------------------

[[nodiscard]] boost::json::object to_json(const registration& r);
[[nodiscard]] boost::json::object to_json(const acceptance& a);
[[nodiscard]] boost::json::object to_json(const refusal& r);
[[nodiscard]] boost::json::object to_json(const operation_request& r);
[[nodiscard]] boost::json::object to_json(const machine_spec& s);
[[nodiscard]] boost::json::object to_json(const machine& m);
[[nodiscard]] boost::json::object to_json(const machine_ref& r);
[[nodiscard]] boost::json::object to_json(const reservation_spec& s);
[[nodiscard]] boost::json::object to_json(const reservation& r);
[[nodiscard]] boost::json::object to_json(const reservation_ref& r);
[[nodiscard]] boost::json::object to_json(const failure& f);

[[nodiscard]] parsed<registration> registration_from(const boost::json::object& m);
[[nodiscard]] parsed<acceptance> acceptance_from(const boost::json::object& m);
[[nodiscard]] parsed<refusal> refusal_from(const boost::json::object& m);
[[nodiscard]] parsed<operation_request> operation_from(const boost::json::object& m);
[[nodiscard]] parsed<machine> machine_from(const boost::json::value& v);
[[nodiscard]] parsed<reservation> reservation_from(const boost::json::value& v);
[[nodiscard]] parsed<failure> failure_from(const boost::json::value& v);
[[nodiscard]] parsed<settings_answer> settings_answer_from(const boost::json::object& m);

// Answers to an operation: {"type":"result","id",...payload} and {"type":"error","id","error"}.
[[nodiscard]] boost::json::object result_message(std::string_view id, boost::json::object payload);
[[nodiscard]] boost::json::object machine_result(std::string_view id, const machine& m);
[[nodiscard]] boost::json::object machines_result(std::string_view id, const page<machine>& p);
[[nodiscard]] boost::json::object reservation_result(std::string_view id, const reservation& r);
[[nodiscard]] boost::json::object reservations_result(std::string_view id,
                                                      const page<reservation>& p);
[[nodiscard]] boost::json::object error_message(std::string_view id, const failure& f);

// The payload a result message must carry for `op`, read from it; a result of the wrong shape
// for its operation is a violation.
[[nodiscard]] parsed<machine> machine_answer(const boost::json::object& result);
[[nodiscard]] parsed<page<machine>> machines_answer(const boost::json::object& result);
[[nodiscard]] parsed<reservation> reservation_answer(const boost::json::object& result);
[[nodiscard]] parsed<page<reservation>> reservations_answer(const boost::json::object& result);

[[nodiscard]] boost::json::object ping_message(std::string_view id);
[[nodiscard]] boost::json::object pong_message(std::string_view id);
[[nodiscard]] boost::json::object settings_request(std::string_view type, std::string_view id,
                                                   std::string_view provider);
[[nodiscard]] boost::json::object settings_message(std::string_view type, const settings_answer& a);
[[nodiscard]] boost::json::object protocol_error_message(std::string_view reason);

// Who sent a message: what each side may send differs.
enum class sender { driver, hub };

// A message read off the wire: its type and its fields, checked against what `from` may send
// (a known type, the fields that type needs with the right JSON types, well-formed ids).
struct message {
  std::string type;
  boost::json::object fields;
};
[[nodiscard]] parsed<message> parse_message(std::string_view text, sender from);

}  // namespace cloudbrain::driver_protocol
