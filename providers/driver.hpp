#pragma once

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/time.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain {
class blocking_pool;
}

namespace cloudbrain::providers {

class driver_link;

using labels = std::map<std::string, std::string>;

// Label keys that mark a VM as ours. Every driver writes them; the reconciler lists by them.
inline constexpr const char* label_deployment = "cloudbrain-deployment";
inline constexpr const char* label_instance = "cloudbrain-instance";
// The reservation id a cloud reservation was made for (where the cloud keeps it is the driver's
// business: GCE reservations have no labels).
inline constexpr const char* label_reservation = "cloudbrain-reservation";

// What to create. `name` is derived from the instance id, so that a retried create finds the VM
// it may already have made; `idempotency_key` goes to the cloud's own dedupe (requestId, ...).
struct instance_spec {
  std::string instance_id;
  std::string name;
  std::string image;
  std::string instance_type;  // standard | premium
  std::string public_ssh_key;
  std::string zone;                  // the zone to try now
  std::string reservation_upstream;  // the cloud's name/id of a reservation to launch into
  labels tags;
  std::string deployment;
  std::string idempotency_key;
};

enum class vm_status { provisioning, running, stopping, terminated };

[[nodiscard]] std::string_view to_string(vm_status s);

// A VM as the cloud reports it.
struct vm {
  std::string name;
  std::string upstream_id;
  std::string zone;
  vm_status status = vm_status::provisioning;
  std::optional<std::string> ip_address;
  labels labels_;
  system_clock::time_point created_at{};
};

// Enough to find a VM again: its name and zone, and the cloud's id where known.
struct vm_ref {
  std::string name;
  std::string zone;
  std::string upstream_id;
};

// A capacity reservation to make: `count` VMs of `instance_type` held in `zone`. `name` is
// derived from the reservation id (the same in every zone), so that a retried reserve finds
// what it may already have made. The cloud's own end date is set to `ends_at` wherever the
// cloud has one, as a backstop for the janitor.
struct reservation_spec {
  std::string reservation_id;
  std::string name;
  std::string instance_type;  // standard | premium
  int count = 0;
  std::string zone;
  system_clock::time_point ends_at{};
  labels tags;
  std::string deployment;
  std::string idempotency_key;
};

// invalid: the cloud holds it in a broken state (GCE's INVALID); it can only be deleted.
enum class reservation_status { creating, ready, deleting, updating, invalid };

[[nodiscard]] std::string_view to_string(reservation_status s);

// A reservation as the cloud reports it. `labels_` carries the deployment and reservation id
// markers however the cloud stores them (GCE has no labels on reservations; its driver keeps
// them in the description).
struct cloud_reservation {
  std::string name;
  std::string upstream_id;
  std::string zone;
  std::string machine_type;
  int count = 0;
  int in_use = 0;
  reservation_status status = reservation_status::creating;
  labels labels_;
  system_clock::time_point created_at{};
  std::optional<system_clock::time_point> ends_at;
};

struct reservation_ref {
  std::string name;
  std::string zone;
  std::string upstream_id;
};

// Awaited before every request a driver sends to its cloud: the provider's rate limit. A
// driver knows what one cloud call is (a create may be several requests), so it paces itself.
using call_pacer = std::function<boost::asio::awaitable<void>()>;

// One cloud. A driver is owned by one provider actor and only called on its strand, so it
// needs no locking; calls may interleave at their suspension points.
//
// Errors use the cloud_* codes: cloud_capacity (try another zone), cloud_quota,
// cloud_rate_limited (back off the whole provider), cloud_transient (retry), cloud_permanent,
// cloud_not_found, cloud_already_exists.
class driver {
 public:
  virtual ~driver() = default;

  [[nodiscard]] virtual std::string_view type() const = 0;
  [[nodiscard]] virtual const std::vector<std::string>& zones() const = 0;

  // Creates the VM and returns it as soon as the cloud has accepted it (it may still be
  // provisioning). A VM of that name already there: cloud_already_exists.
  virtual boost::asio::awaitable<result<vm>> create(const instance_spec& spec, deadline dl) = 0;
  virtual boost::asio::awaitable<result<vm>> get(const vm_ref& ref, deadline dl) = 0;
  // Deletes the VM and returns once the cloud says it is gone. Not there: success.
  virtual boost::asio::awaitable<result<void>> destroy(const vm_ref& ref,
                                                       const std::string& idempotency_key,
                                                       deadline dl) = 0;
  // Every VM that carries `deployment`'s label, across all zones and pages. A listing that
  // fails part-way is an error, never a shorter list.
  virtual boost::asio::awaitable<result<std::vector<vm>>> list(const std::string& deployment,
                                                               deadline dl) = 0;

  // Capacity reservations. A driver that has none answers every call with cloud_permanent.
  // reserve returns once the cloud holds the capacity (or refused it: cloud_capacity moves the
  // caller to the next zone); a reservation of that name already there: cloud_already_exists.
  virtual boost::asio::awaitable<result<cloud_reservation>> reserve(const reservation_spec& spec,
                                                                    deadline dl);
  virtual boost::asio::awaitable<result<cloud_reservation>> get_reservation(
      const reservation_ref& ref, deadline dl);
  // Deletes the reservation and returns once the cloud says it is gone. Not there: success.
  virtual boost::asio::awaitable<result<void>> release(const reservation_ref& ref,
                                                       const std::string& idempotency_key,
                                                       deadline dl);
  // Every reservation that carries `deployment`'s marker, across all zones and pages. A listing
  // that fails part-way is an error, never a shorter list.
  virtual boost::asio::awaitable<result<std::vector<cloud_reservation>>> list_reservations(
      const std::string& deployment, deadline dl);
  // The cloud's machine type for standard | premium (shown on the reservation).
  [[nodiscard]] virtual std::string machine_type_for(std::string_view instance_type) const {
    return std::string(instance_type);
  }

  // The driver's own figures for GET /providers (VMs simulated, tokens fetched, ...).
  [[nodiscard]] virtual boost::json::object details() const { return {}; }

  // How many calls the driver can carry at once right now, when it has a limit of its own
  // (the section's max-in-flight applies anyway). In-tree drivers have none; a driver that
  // reaches its cloud through a connection that comes and goes (type external) says 0 while
  // it is away, and jobs wait rather than fail. Read from any thread.
  [[nodiscard]] virtual std::optional<std::size_t> capacity() const { return std::nullopt; }
  // `wake` is called, from any thread, whenever capacity() may have changed. Installed once,
  // before the first call.
  virtual void on_capacity_change(std::function<void()> wake) {}

  // Installed by the provider actor before the first call. Virtual so that a driver wrapping
  // another (metered_driver) hands it on.
  virtual void set_pacer(call_pacer pacer) { pacer_ = std::move(pacer); }

 protected:
  // Every request to the cloud awaits this first.
  boost::asio::awaitable<void> pace() const;

 private:
  call_pacer pacer_;
};

// Everything a driver factory may need from the process.
struct driver_context {
  boost::asio::any_io_executor executor;
  std::string deployment;
  blocking_pool* blocking = nullptr;  // for key files and signatures; required by gce
  driver_link* drivers = nullptr;     // where out-of-tree drivers connect; required by external
};

// Builds the driver for a [provider.NAME] section, checking the keys of its type; an unknown
// type or key is an error that names it.
[[nodiscard]] result<std::unique_ptr<driver>> make_driver(const provider_section& section,
                                                          const driver_context& ctx);

// The cloud name for an instance: deterministic, lowercase, ≤ 63 characters, RFC 1035.
[[nodiscard]] std::string vm_name_for(std::string_view instance_id);
// The same for a reservation ("cbr-" + the id), one name in whichever zone it lands.
[[nodiscard]] std::string reservation_name_for(std::string_view reservation_id);

}  // namespace cloudbrain::providers
