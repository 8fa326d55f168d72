#pragma once

#include "providers/driver.hpp"

#include <chrono>
#include <map>
#include <random>
#include <unordered_map>

namespace cloudbrain::providers {

// A simulated cloud, in memory: zones with a capacity, a boot delay, a failure rate and
// addresses from TEST-NET-3 (203.0.113.0/24). Its VMs live as long as the process.
struct fake_settings {
  std::vector<std::string> zones{"fake-zone-a"};
  std::chrono::milliseconds boot_delay{50};
  std::chrono::milliseconds delete_delay{10};
  std::chrono::milliseconds api_latency{0};
  double failure_rate = 0.0;  // share of creates that fail with a transient error
  std::size_t capacity_per_zone = 1000;
  std::map<std::string, std::size_t> zone_capacity;  // per-zone overrides ("zone:N ...")
  std::uint64_t seed = 0;                            // 0: random

  [[nodiscard]] static result<fake_settings> from_section(const provider_section& s);
};

struct fake_stats {
  std::size_t vms = 0;  // VMs that exist now
  std::uint64_t creates = 0;
  std::uint64_t create_failures = 0;
  std::uint64_t deletes = 0;
  std::size_t reservations = 0;  // reservations held now
  std::uint64_t reserves = 0;
  std::uint64_t reserve_failures = 0;
  std::uint64_t releases = 0;
};

class fake_driver final : public driver {
 public:
  explicit fake_driver(fake_settings settings);

  [[nodiscard]] std::string_view type() const override { return "fake"; }
  [[nodiscard]] const std::vector<std::string>& zones() const override { return settings_.zones; }

  boost::asio::awaitable<result<vm>> create(const instance_spec& spec, deadline dl) override;
  boost::asio::awaitable<result<vm>> get(const vm_ref& ref, deadline dl) override;
  boost::asio::awaitable<result<void>> destroy(const vm_ref& ref, const std::string& key,
                                               deadline dl) override;
  boost::asio::awaitable<result<std::vector<vm>>> list(const std::string& deployment,
                                                       deadline dl) override;

  boost::asio::awaitable<result<cloud_reservation>> reserve(const reservation_spec& spec,
                                                            deadline dl) override;
  boost::asio::awaitable<result<cloud_reservation>> get_reservation(const reservation_ref& ref,
                                                                    deadline dl) override;
  boost::asio::awaitable<result<void>> release(const reservation_ref& ref, const std::string& key,
                                               deadline dl) override;
  boost::asio::awaitable<result<std::vector<cloud_reservation>>> list_reservations(
      const std::string& deployment, deadline dl) override;
  [[nodiscard]] std::string machine_type_for(std::string_view instance_type) const override;

  [[nodiscard]] boost::json::object details() const override;
  [[nodiscard]] const fake_stats& stats() const { return stats_; }
  // Takes away or gives back a zone's room (tests).
  void set_capacity(const std::string& zone, std::size_t capacity);

 private:
  struct sim_vm {
    vm state;
    steady_clock::time_point ready_at;
    std::uint32_t address;    // index into 203.0.113.1..254
    std::string reservation;  // the reservation key it runs in; empty: none
  };
  // Capacity held in a zone: `count` units of the zone's capacity, `in_use` of them by VMs.
  struct sim_reservation {
    cloud_reservation state;
  };
  [[nodiscard]] static std::string reservation_key(const std::string& zone,
                                                   const std::string& name) {
    return zone + "/" + name;
  }
  // Reservations past their cloud-side end date go, as at a real cloud.
  void expire_reservations();

  [[nodiscard]] vm observe(const sim_vm& s) const;
  [[nodiscard]] std::uint32_t allocate_address();

  fake_settings settings_;
  std::unordered_map<std::string, sim_vm> vms_;          // by name
  std::unordered_map<std::string, std::size_t> used_;    // capacity units taken per zone
  std::map<std::string, sim_reservation> reservations_;  // by zone/name
  std::unordered_map<std::string, std::size_t> capacity_;
  std::vector<std::uint32_t> address_use_;  // VMs holding each address
  std::uint32_t next_address_ = 0;
  std::uint64_t next_id_ = 1000;
  std::mt19937_64 rng_;
  fake_stats stats_;
};

}  // namespace cloudbrain::providers
