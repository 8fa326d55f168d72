#pragma once

// The bookkeeping of cloudbrain-pool-driver, without I/O: a static pool of machines (from the
// pool file), which of them are leased to which instance and held by which reservation, and
// that state as the JSON the driver keeps in its state file. Every change is a function that
// either changes the state and says what it did, or refuses with a typed failure.

#include "providers/driver_protocol/protocol.hpp"

#include <boost/json/object.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain::pool_driver {

namespace dp = driver_protocol;

// A machine of the pool file: "ADDRESS ZONE" a line.
struct pool_machine {
  std::string address;
  std::string zone;
};

// Reads a pool file's text. Blank lines and lines starting with '#' are skipped; an address
// listed twice, or a line without a zone, is an error naming its line.
[[nodiscard]] dp::parsed<std::vector<pool_machine>> parse_pool(std::string_view text);

struct lease {
  std::string name;  // the instance's machine name (cb-<instance id>)
  std::string key;   // the idempotency key of the create that made it
  std::string zone;
  std::string image;
  std::string instance_type;
  std::string reservation;  // the reservation it was taken from; empty: none
  dp::labels labels_;
  dp::system_time created_at{};
  bool ready = false;  // prepared (or nothing to prepare): its address is handed out
};

struct held_reservation {
  std::string name;
  std::string key;
  std::string zone;
  std::string instance_type;
  std::vector<std::string> machines;  // the addresses it holds
  dp::labels labels_;
  dp::system_time created_at{};
  dp::system_time ends_at{};
};

class machine_pool {
 public:
  explicit machine_pool(std::vector<pool_machine> machines);

  // The state file: restores leases and reservations (of machines still in the pool, or not:
  // a machine removed from the pool file stays leased until deleted).
  [[nodiscard]] dp::parsed<void> restore(const boost::json::object& state);
  [[nodiscard]] boost::json::object snapshot() const;

  // What create should do: an existing lease under the same key (replayed), or a new lease of
  // a free machine of the zone (or of the reservation), or a failure.
  struct leased {
    std::string address;
    bool replayed = false;
  };
  [[nodiscard]] dp::outcome<leased> lease_for(const dp::machine_spec& spec, const std::string& key,
                                              bool ready, dp::system_time now);
  // The machine leased under `name`, if any.
  [[nodiscard]] std::optional<std::string> address_of(const std::string& name) const;
  [[nodiscard]] const lease* lease_at(const std::string& address) const;
  void mark_ready(const std::string& address);
  // Gives the machine back to the pool (or to its reservation, while that holds it).
  void give_back(const std::string& address);
  [[nodiscard]] std::vector<std::string> unprepared() const;

  [[nodiscard]] dp::machine machine_at(const std::string& address) const;
  [[nodiscard]] dp::page<dp::machine> list(const dp::page_request& p) const;

  [[nodiscard]] dp::outcome<dp::reservation> reserve(const dp::reservation_spec& spec,
                                                     const std::string& key, dp::system_time now);
  [[nodiscard]] dp::outcome<dp::reservation> reservation_named(const std::string& name) const;
  // Frees what the reservation holds; its machines in use stay leased. False: there was none.
  bool release(const std::string& name);
  [[nodiscard]] dp::page<dp::reservation> list_reservations(const dp::page_request& p) const;

  [[nodiscard]] std::size_t size() const { return machines_.size(); }
  [[nodiscard]] std::size_t leased_count() const { return leases_.size(); }

 private:
  [[nodiscard]] bool zone_known(const std::string& zone) const;
  [[nodiscard]] bool held(const std::string& address) const;
  [[nodiscard]] dp::reservation view(const held_reservation& r) const;

  std::vector<pool_machine> machines_;
  std::map<std::string, lease> leases_;               // by address
  std::map<std::string, held_reservation> reserved_;  // by reservation name
};

}  // namespace cloudbrain::pool_driver
