#pragma once

// The C++ SDK for out-of-tree cloudbrain drivers. A driver implements `driver_sdk::driver` (the
// shape of the service's own driver interface: create, get, destroy, list, and optionally the
// reservation calls) and hands it to run(). The SDK dials the hub, registers, keeps the
// connection alive with heartbeats, reconnects with backoff, fetches each provider's
// configuration and secret when an operation names versions it does not hold (and keeps them
// until the versions change), bounds every operation by its deadline, and answers in the
// protocol's terms (docs/driver-protocol.md).

#include "providers/driver_protocol/protocol.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace cloudbrain::driver_sdk {

using driver_protocol::capability;
using driver_protocol::error_kind;
using driver_protocol::failure;
using driver_protocol::machine;
using driver_protocol::machine_ref;
using driver_protocol::machine_spec;
using driver_protocol::machine_status;
using driver_protocol::outcome;
using driver_protocol::page;
using driver_protocol::page_request;
using driver_protocol::reservation;
using driver_protocol::reservation_ref;
using driver_protocol::reservation_spec;
using driver_protocol::reservation_status;

// What one operation knows besides its arguments.
struct call_context {
  std::string provider;               // the [provider.NAME] section it is for
  const boost::json::object& config;  // that section's configuration (zones, endpoint, ...)
  const boost::json::object& secret;  // its secret.* keys
  std::string idempotency_key;        // create, destroy, reserve, release: the same on a retry
  std::chrono::steady_clock::time_point deadline;
};

// A failure, for `co_return fail(...)` in a driver.
[[nodiscard]] inline failure fail(error_kind kind, std::string message,
                                  std::chrono::milliseconds retry_after = {}) {
  return failure{kind, std::move(message), retry_after};
}

// One cloud, out of tree. Called on the SDK's event loop; calls interleave at their suspension
// points (up to max_in_flight at once) and must not block it.
//
// The semantics the hub relies on (the conformance kit checks them):
//   - create with an idempotency key it has seen answers the machine it made then; a machine
//     of that name made under another key is already_exists;
//   - destroy of a machine that is not there succeeds;
//   - list shows every machine carrying the deployment's label (labels_ of the spec), paged;
//   - errors are typed: capacity (the next zone is tried), quota, throttled (with
//     retry_after), invalid, auth, not_found, already_exists, transient.
class driver {
 public:
  virtual ~driver() = default;

  // What it declares at registration; the hub sends nothing else.
  [[nodiscard]] virtual std::vector<capability> capabilities() const = 0;

  virtual boost::asio::awaitable<outcome<machine>> create(const call_context& c,
                                                          const machine_spec& spec) = 0;
  virtual boost::asio::awaitable<outcome<machine>> get(const call_context& c,
                                                       const machine_ref& ref) = 0;
  virtual boost::asio::awaitable<outcome<void>> destroy(const call_context& c,
                                                        const machine_ref& ref) = 0;
  virtual boost::asio::awaitable<outcome<page<machine>>> list(const call_context& c,
                                                              const page_request& p) = 0;

  // Capacity reservations, for a driver that declares them. By default: invalid.
  virtual boost::asio::awaitable<outcome<reservation>> reserve(const call_context& c,
                                                               const reservation_spec& spec);
  virtual boost::asio::awaitable<outcome<reservation>> get_reservation(const call_context& c,
                                                                       const reservation_ref& ref);
  virtual boost::asio::awaitable<outcome<void>> release(const call_context& c,
                                                        const reservation_ref& ref);
  virtual boost::asio::awaitable<outcome<page<reservation>>> list_reservations(
      const call_context& c, const page_request& p);
};

struct options {
  std::string url;    // ws://HOST:PORT/drivers/connect
  std::string token;  // a token of the driver role
  std::string driver;
  int max_in_flight = 16;
  std::chrono::milliseconds connect_timeout{10'000};
  // Reconnection: full jitter between base and cap, doubling after each failed attempt.
  std::chrono::milliseconds backoff_base{250};
  std::chrono::milliseconds backoff_cap{30'000};
};

// The command line every driver built on the SDK shares:
//   --url URL --token-file FILE --driver NAME [--max-in-flight N] [--log-level LEVEL]
// and the driver's own flags, left in `rest` in their order. `error` says what is wrong, if
// anything (the token file is read here: a missing or empty one is an error).
struct command_line {
  options opts;
  std::string log_level = "info";
  std::vector<std::string> rest;
  std::string error;
  bool help = false;
};
[[nodiscard]] command_line parse_command_line(int argc, char** argv);
// The SDK's part of a driver's --help.
[[nodiscard]] std::string usage();

// Serves `d` until the io_context stops: connects, registers, answers, reconnects.
boost::asio::awaitable<void> serve(driver& d, options opts);

// Runs serve() on `ioc` until SIGTERM or SIGINT; returns the process's exit status.
int run(boost::asio::io_context& ioc, driver& d, options opts);

}  // namespace cloudbrain::driver_sdk
