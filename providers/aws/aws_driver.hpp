#pragma once

#include "net/http_client.hpp"
#include "providers/aws/credential_source.hpp"
#include "providers/aws/settings.hpp"
#include "providers/aws/wire.hpp"
#include "providers/cloud_call.hpp"
#include "providers/driver.hpp"
#include "providers/single_flight.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <random>

namespace cloudbrain::providers::aws {

// EC2 over its Query API, signed with SigV4: RunInstances with a ClientToken derived from the
// job (a retry after a crash or a lost answer is the same launch to EC2), DescribeInstances,
// TerminateInstances followed until the instance is terminated, DescribeImages for images given
// by name, and targeted capacity reservations (Create/Describe/CancelCapacityReservation).
//
// EC2 is eventually consistent: an instance or reservation this driver made a moment ago may
// be unknown to the next call. Such a "not found" is waited out (with backoff, within the
// call's deadline), never taken for a vanished resource.
class aws_driver final : public driver {
 public:
  aws_driver(aws_settings settings, const driver_context& ctx,
             std::optional<credentials> environment);

  [[nodiscard]] std::string_view type() const override { return "aws"; }
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
  // One Query API call: paced, signed afresh for each try, repeated after a transient failure
  // (every call is a read, carries a ClientToken, or is idempotent by nature: terminating or
  // cancelling twice ends the same way). The body of the 2xx answer, or the error it stands for.
  boost::asio::awaitable<result<std::string>> call(query_params params, deadline dl);
  [[nodiscard]] error classify(const net::client_response& res, const credentials* used) const;

  // Every page of a Describe* call.
  // (Coroutines: arguments by value, so that a temporary outlives the first suspension.)
  boost::asio::awaitable<result<std::vector<ec2_instance>>> describe_instances(
      std::vector<ec2_filter> filters, deadline dl);
  boost::asio::awaitable<result<std::vector<ec2_reservation>>> describe_reservations(
      std::vector<ec2_filter> filters, deadline dl);
  // By id, waiting out EC2's delay for ids made moments ago.
  boost::asio::awaitable<result<ec2_instance>> instance_by_id(std::string id, deadline dl);
  boost::asio::awaitable<result<ec2_reservation>> reservation_by_id(std::string id, deadline dl);
  // The live (not terminated) instances, or the held (not cancelled or expired) reservations,
  // of this name in this zone.
  boost::asio::awaitable<result<std::vector<ec2_instance>>> instances_named(std::string name,
                                                                            std::string zone,
                                                                            deadline dl);
  boost::asio::awaitable<result<std::vector<ec2_reservation>>> reservations_named(std::string name,
                                                                                  std::string zone,
                                                                                  deadline dl);
  // The AMI id for `image`: itself if it is one, else the newest available image of that name
  // among image-owners (cached for a while, so that retries launch the same image).
  boost::asio::awaitable<result<std::string>> image_id_for(std::string image, deadline dl);
  boost::asio::awaitable<result<std::string>> look_up_image(std::string image, deadline dl);
  // The id of the active reservation named `name` in `zone`.
  boost::asio::awaitable<result<std::string>> reservation_id_for(std::string name, std::string zone,
                                                                 deadline dl);

  // Whether this driver made `id` recently enough that EC2 may not know it everywhere yet.
  [[nodiscard]] bool made_recently(const std::string& id) const;
  void remember_made(const std::string& id);
  // Waits a little before asking again about something EC2 does not know yet; false when the
  // deadline leaves no room for it.
  boost::asio::awaitable<bool> wait_for_consistency(unsigned attempt, deadline dl);

  aws_settings settings_;
  std::string deployment_;
  net::http_client http_;
  credential_source credentials_;
  std::string url_;   // the endpoint with "/"
  std::string host_;  // the Host header the client sends, as signed
  std::mt19937_64 rng_{std::random_device{}()};
  cloud_request_stats calls_;
  std::uint64_t consistency_waits_ = 0;
  std::uint64_t images_resolved_ = 0;
  std::uint64_t terminate_waits_ = 0;
  std::map<std::string, steady_clock::time_point> made_;  // id → when this driver made it
  struct cached_id {
    std::string id;
    steady_clock::time_point until;
  };
  std::map<std::string, cached_id> images_;  // image name → AMI id
  // One DescribeImages per name for every create waiting for it.
  std::map<std::string, single_flight<std::string>> image_lookups_;
  std::map<std::string, std::string> reservation_ids_;  // name + "/" + zone → id
};

}  // namespace cloudbrain::providers::aws
