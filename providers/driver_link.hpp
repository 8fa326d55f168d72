#pragma once

#include "core/error.hpp"
#include "core/time.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cloudbrain::providers {

// A provider whose driver runs outside the process and dials in (type external): what the
// process that connects drivers needs to know of it. `secret` holds the section's `secret.*`
// keys, handed only to a driver that asks for them; `config` every other key it passes on.
struct remote_provider {
  std::string name;
  std::string driver;  // the name the driver registers with
  // The driver tokens whose connections may serve it (driver-tokens); empty: any driver token.
  std::vector<std::int64_t> tokens;
  std::vector<std::string> zones;
  boost::json::object config;
  boost::json::object secret;
};

// One attached remote provider, as its in-process driver sees the connections serving it.
// Thread-safe: call() from any executor, the rest from any thread.
class remote_port {
 public:
  virtual ~remote_port() = default;

  // Sends `operation` (a protocol message without its id and deadline) to a connected driver
  // that serves the provider and awaits the answer, a "result" or "error" message, until `dl`.
  // With no driver connected it waits for one; an operation whose connection drops before it
  // is answered is sent again, with the same idempotency key, on the next. Errors:
  // cloud_unavailable (no driver came before `dl`), timeout (a driver had it and did not
  // answer in time), overloaded.
  virtual boost::asio::awaitable<result<boost::json::object>> call(boost::json::object operation,
                                                                   deadline dl) = 0;

  // The operations connected drivers take at once (the sum of their max_in_flight); 0: none
  // is connected.
  [[nodiscard]] virtual std::size_t capacity() const = 0;
  [[nodiscard]] virtual std::size_t connections() const = 0;
  // Whether a connected driver declared the capability (instances, reservations, list).
  [[nodiscard]] virtual bool declares(std::string_view capability) const = 0;
  // Called, from any thread, whenever capacity() changes. Replaces the previous one.
  virtual void on_capacity_change(std::function<void()> wake) = 0;
  // The provider is not served after all (a reload that was refused): drop it.
  virtual void detach() = 0;
};

// Where external providers attach: the part of the service that accepts driver connections.
class driver_link {
 public:
  virtual ~driver_link() = default;
  // Safe from any thread, also before the service runs.
  [[nodiscard]] virtual std::shared_ptr<remote_port> attach(remote_provider p) = 0;
};

}  // namespace cloudbrain::providers
