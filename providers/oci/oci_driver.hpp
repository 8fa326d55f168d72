#pragma once

#include "core/blocking_pool.hpp"
#include "net/http_client.hpp"
#include "providers/cloud_call.hpp"
#include "providers/driver.hpp"
#include "providers/oci/settings.hpp"
#include "providers/oci/signer.hpp"
#include "providers/oci/wire.hpp"
#include "providers/single_flight.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <random>

namespace cloudbrain::providers::oci {

struct oci_driver_stats {
  std::uint64_t work_request_polls = 0;  // GetWorkRequest calls
  std::uint64_t state_polls = 0;         // reads while following a terminate or a delete
  std::uint64_t key_loads = 0;           // key-file reads (at the first call, after a 401)
  std::uint64_t signatures = 0;          // requests signed
};

// OCI's Core Services API 20160918: instances (LaunchInstance with an opc-retry-token derived
// from the job, so that a repeat never launches twice; the address through the primary VNIC;
// TerminateInstance followed to TERMINATED), compute capacity reservations, and the work requests
// both are followed by. Every request is signed afresh (draft-cavage, rsa-sha256) with the API
// key, which is read and used on the blocking pool.
class oci_driver final : public driver {
 public:
  oci_driver(oci_settings settings, const driver_context& ctx);

  [[nodiscard]] std::string_view type() const override { return "oci"; }
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
  [[nodiscard]] const oci_driver_stats& stats() const { return stats_; }

 private:
  // One Core API request through the shared request loop: paced, signed afresh for each try,
  // repeated after a transient failure (reads, or mutations with their opc-retry-token), and a
  // non-2xx answer returned as the error it stands for. A 401 reads the key file again once.
  boost::asio::awaitable<result<net::client_response>> call(net::http::verb method,
                                                            std::string path, std::string query,
                                                            std::string body,
                                                            std::string retry_token, deadline dl);
  // The API key, read from key-file on the blocking pool (once, shared by every caller waiting).
  boost::asio::awaitable<result<signing_key>> api_key(deadline dl);
  boost::asio::awaitable<result<signing_key>> load_key();
  // Every page of a list call, opc-next-page followed; a listing that fails part-way fails.
  boost::asio::awaitable<result<std::vector<std::string>>> all_pages(std::string path,
                                                                     std::string query,
                                                                     deadline dl);
  // A work request followed until it has finished; FAILED or CANCELED come back as the error
  // its errors stand for.
  boost::asio::awaitable<result<void>> follow_work_request(const std::string& id, deadline dl);

  // Sleeps before the next read of something still changing (the polls-th), unless that would
  // end past the deadline: false then.
  boost::asio::awaitable<bool> pause_before(deadline dl, unsigned polls);

  // The instances of a display name in an availability domain that are not TERMINATED.
  boost::asio::awaitable<result<std::vector<instance_info>>> instances_named(
      const std::string& name, const std::string& zone, deadline dl);
  // The instance a ref names (by OCID if it has one, else by name); TERMINATED is not found.
  boost::asio::awaitable<result<instance_info>> find_instance(const vm_ref& ref, deadline dl);
  // The VM with its address (the primary VNIC's), once it is running.
  boost::asio::awaitable<result<vm>> with_address(instance_info info, deadline dl);

  boost::asio::awaitable<result<std::vector<reservation_summary>>> reservations_named(
      const std::string& name, const std::string& zone, deadline dl);
  boost::asio::awaitable<result<cloud_reservation>> read_reservation(const std::string& id,
                                                                     deadline dl);

  oci_settings settings_;
  blocking_pool* blocking_;
  net::http_client http_;
  std::optional<signing_key> key_;
  single_flight<signing_key> key_flight_;
  std::mt19937_64 rng_{std::random_device{}()};
  cloud_request_stats calls_;
  oci_driver_stats stats_;
  // Addresses found by get(), for list() to report without a VNIC lookup per instance.
  std::map<std::string, std::string> addresses_;
};

}  // namespace cloudbrain::providers::oci
