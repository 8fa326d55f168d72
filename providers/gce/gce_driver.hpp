#pragma once

#include "net/http_client.hpp"
#include "providers/cloud_call.hpp"
#include "providers/driver.hpp"
#include "providers/gce/settings.hpp"
#include "providers/gce/token_source.hpp"
#include "providers/gce/wire.hpp"

#include <cstdint>
#include <random>

namespace cloudbrain::providers::gce {

// Compute Engine v1 over REST: instances.insert/get/delete/list, zone operations followed to
// DONE, requestId on every mutation so that a repeated call never does the work twice.
class gce_driver final : public driver {
 public:
  gce_driver(gce_settings settings, const driver_context& ctx);

  [[nodiscard]] std::string_view type() const override { return "gce"; }
  [[nodiscard]] const std::vector<std::string>& zones() const override { return settings_.zones; }

  boost::asio::awaitable<result<vm>> create(const instance_spec& spec, deadline dl) override;
  boost::asio::awaitable<result<vm>> get(const vm_ref& ref, deadline dl) override;
  boost::asio::awaitable<result<void>> destroy(const vm_ref& ref, const std::string& key,
                                               deadline dl) override;
  boost::asio::awaitable<result<std::vector<vm>>> list(const std::string& deployment,
                                                       deadline dl) override;

  // Specific reservations (specificReservationRequired), with Google's deleteAtTime set to the
  // reservation's end as a backstop; the markers live in the description.
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
  // One compute API call: paced, authorised (a 401 fetches a new token once), repeated with
  // backoff after a transient failure (every call is idempotent: reads, or mutations with a
  // requestId). A non-2xx answer is returned as the error it stands for.
  boost::asio::awaitable<result<net::client_response>> call(net::http::verb method, std::string url,
                                                            std::string body, deadline dl);
  // Follows a zone operation until DONE (or the deadline).
  boost::asio::awaitable<result<operation>> wait_for(operation op, const std::string& zone,
                                                     deadline dl);
  // insert with its requestId, the zone operation followed to DONE: the operation, or the
  // error it ended with (a 404 on the call is permanent: it names what the body refers to).
  boost::asio::awaitable<result<operation>> insert(std::string path,
                                                   const boost::json::object& body,
                                                   const std::string& key, const std::string& zone,
                                                   deadline dl);
  // delete with its requestId, the zone operation followed to DONE; what is gone already
  // (a 404 on the call or in the operation) counts as deleted.
  boost::asio::awaitable<result<void>> remove(std::string path, const std::string& key,
                                              const std::string& zone, deadline dl);

  gce_settings settings_;
  net::http_client http_;
  token_source tokens_;
  std::mt19937_64 rng_{std::random_device{}()};
  cloud_request_stats calls_;
  std::uint64_t operation_waits_ = 0;  // operations/{op}/wait calls
};

}  // namespace cloudbrain::providers::gce
