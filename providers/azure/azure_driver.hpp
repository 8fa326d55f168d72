#pragma once

#include "net/http_client.hpp"
#include "providers/azure/settings.hpp"
#include "providers/azure/token_source.hpp"
#include "providers/azure/wire.hpp"
#include "providers/cloud_call.hpp"
#include "providers/driver.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <random>

namespace cloudbrain::providers::azure {

struct azure_driver_stats {
  std::uint64_t requests = 0;               // requests sent to ARM
  std::uint64_t retried = 0;                // of those, repeats after a transient failure
  std::uint64_t throttled = 0;              // 429s
  std::uint64_t operation_polls = 0;        // long-running operation status reads
  std::uint64_t auth_retries = 0;           // 401s answered by fetching a new token
  std::uint64_t failed_vms_deleted = 0;     // VMs left Failed by an allocation, deleted
  std::optional<long> ratelimit_remaining;  // the last x-ms-ratelimit-remaining-* low point
};

// Microsoft.Compute on Azure Resource Manager: virtual machines made with their NIC, public IP
// and OS disk (all deleted with them), capacity reservation groups and reservations, every
// long-running operation followed to its end. Names are deterministic, so a repeated PUT is
// the same resource.
class azure_driver final : public driver {
 public:
  azure_driver(azure_settings settings, const driver_context& ctx);

  [[nodiscard]] std::string_view type() const override { return "azure"; }
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

 private:
  // One ARM request on the shared request loop (providers/cloud_call.hpp): paced, authorised
  // (a 401 fetches a new token once), repeated after a transient failure (every request is a
  // read or an idempotent PUT/PATCH/DELETE of a named resource). A non-2xx answer is the error
  // it stands for, with Retry-After; x-ms-ratelimit-remaining-* is noted on the way.
  boost::asio::awaitable<result<net::client_response>> call(net::http::verb method, std::string url,
                                                            std::string body, deadline dl);
  // Follows the long-running operation a PUT, PATCH or DELETE answered with: its
  // Azure-AsyncOperation, else its Location, honouring Retry-After, to Succeeded, Failed or
  // Canceled. A poll that fails is repeated, never taken for the operation's outcome.
  boost::asio::awaitable<result<void>> follow(const net::client_response& started, std::string what,
                                              deadline dl);
  boost::asio::awaitable<result<void>> mutate(net::http::verb method, std::string url,
                                              std::string body, std::string what, deadline dl);
  // DELETE followed to the end; what is gone already counts as deleted.
  boost::asio::awaitable<result<void>> remove(std::string url, std::string what, deadline dl);
  boost::asio::awaitable<result<arm_vm>> read_vm(std::string name, deadline dl);
  // The capacity reservation group, made the first time it is needed.
  boost::asio::awaitable<result<void>> ensure_group(deadline dl);
  // A VM asked for without a key still needs one (Azure makes no Linux VM without a way in and
  // password login stays off): an Ed25519 key whose private half this process never keeps.
  [[nodiscard]] std::string locked_key_for(std::string_view instance_id) const;

  azure_settings settings_;
  std::string deployment_;
  net::http_client http_;
  token_source tokens_;
  std::mt19937_64 rng_{std::random_device{}()};
  cloud_request_stats calls_;
  std::array<unsigned char, 32> key_secret_{};
  bool group_ready_ = false;
  azure_driver_stats stats_;
};

}  // namespace cloudbrain::providers::azure
