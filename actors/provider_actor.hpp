#pragma once

#include "actors/instance_store.hpp"
#include "core/actor.hpp"
#include "core/backoff.hpp"
#include "core/config.hpp"
#include "providers/driver.hpp"

#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <random>
#include <variant>

namespace cloudbrain {

struct provider_status {
  std::string name;
  std::string type;
  std::vector<std::string> zones;
  std::string state;  // ok | degraded | open
  std::size_t jobs_in_flight = 0;
  double rate_limit = 0;
  std::size_t max_in_flight = 0;
  std::string last_error;
  std::uint64_t calls = 0;
  std::uint64_t rate_limit_waits = 0;
  boost::json::object details;  // the driver's own figures (the fake's VM count, ...)
};

struct run_job {
  job j;
};
struct provider_status_query {
  reply_to<provider_status> reply;
};
using provider_message = std::variant<run_job, provider_status_query>;

// One per configured provider: owns the driver and runs jobs against it, at most
// `max-in-flight` at once (the scheduler never hands it more) and no more than `rate-limit`
// cloud calls per second, whatever the burst of API requests.
class provider_actor : public actor<provider_actor, provider_message> {
 public:
  using completion = std::function<void(job, job_outcome)>;

  provider_actor(boost::asio::any_io_executor ex, provider_section section,
                 std::unique_ptr<providers::driver> driver, instance_store& store,
                 std::string deployment, completion done);

  void handle(provider_message&& m);
  void on_restart() {}

  [[nodiscard]] const provider_section& section() const { return section_; }
  [[nodiscard]] providers::driver& driver() { return *driver_; }
  boost::asio::awaitable<result<provider_status>> status(deadline dl);

 private:
  boost::asio::awaitable<void> run(job j);
  boost::asio::awaitable<job_outcome> create_instance(job& j);
  boost::asio::awaitable<job_outcome> delete_instance(job& j);
  boost::asio::awaitable<job_outcome> wait_until_running(job& j, providers::vm v);

  // Waits for the rate limit; every cloud call goes through here.
  boost::asio::awaitable<void> pace();
  // Turns a failed step into what the scheduler should do with the job.
  job_outcome outcome_of(const error& e, const job& j);
  void note_success();
  void note_failure(const error& e);
  [[nodiscard]] std::vector<std::string> zones_to_try(const job& j) const;
  [[nodiscard]] static std::string avoidance_key(const std::string& zone,
                                                 const std::string& instance_type);
  [[nodiscard]] providers::instance_spec spec_for(const job& j, const std::string& zone) const;

  provider_section section_;
  std::unique_ptr<providers::driver> driver_;
  instance_store& store_;
  std::string deployment_;
  completion done_;
  token_bucket bucket_;
  backoff_policy retry_policy_{std::chrono::milliseconds(500), std::chrono::milliseconds(30'000)};
  std::mt19937_64 rng_{std::random_device{}()};
  // Zone and instance type pairs that ran out of capacity, tried last until then.
  std::map<std::string, steady_clock::time_point> avoid_until_;
  std::size_t jobs_in_flight_ = 0;
  unsigned consecutive_failures_ = 0;
  steady_clock::time_point open_until_{};
  std::string last_error_;
  std::uint64_t calls_ = 0;
  std::uint64_t rate_limit_waits_ = 0;
  static constexpr std::chrono::minutes zone_avoidance{3};
  static constexpr std::chrono::seconds call_timeout{120};
  static constexpr std::chrono::minutes boot_timeout{10};
};

}  // namespace cloudbrain
