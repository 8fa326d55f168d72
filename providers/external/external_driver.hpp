#pragma once

#include "providers/driver.hpp"
#include "providers/driver_link.hpp"
#include "providers/driver_protocol/protocol.hpp"

#include <memory>
#include <string>

namespace cloudbrain::providers {

// What an [provider.NAME] section of type external says: the driver that serves it, its zones,
// and what the driver is handed: `config` (every other key) on get_config, `secret` (the keys
// starting with "secret.") on get_secret only. Values written `@/path` arrive already read (the
// configuration's loader reads them), and are taken as they are.
struct external_settings {
  std::string driver;
  std::vector<std::int64_t> tokens;  // driver-tokens: ids of the tokens that may serve it
  std::vector<std::string> zones;
  boost::json::object config;
  boost::json::object secret;

  [[nodiscard]] static result<external_settings> from_section(const provider_section& s);
};

// The driver of an external provider: every call becomes an operation of the driver protocol
// (docs/driver-protocol.md), carried by the process's driver hub to a connected out-of-tree
// driver that registered under `driver`. Answers and errors come back in the shape the in-tree
// drivers give, so zone fallback, backoff, the reconciler and the janitor work unchanged.
class external_driver final : public driver {
 public:
  external_driver(std::string provider, external_settings settings,
                  std::shared_ptr<remote_port> port);
  ~external_driver() override;
  external_driver(const external_driver&) = delete;
  external_driver& operator=(const external_driver&) = delete;

  [[nodiscard]] std::string_view type() const override { return "external"; }
  [[nodiscard]] const std::vector<std::string>& zones() const override { return zones_; }

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

  [[nodiscard]] boost::json::object details() const override;
  [[nodiscard]] std::optional<std::size_t> capacity() const override { return port_->capacity(); }
  void on_capacity_change(std::function<void()> wake) override {
    port_->on_capacity_change(std::move(wake));
  }

 private:
  // Sends one operation and returns the driver's result message, or its error as a cloud_*
  // error. `need` must be declared by a connected driver; `wait_for_driver`: with none
  // connected, wait for one (a job's call) rather than fail at once (a listing).
  boost::asio::awaitable<result<boost::json::object>> send(boost::json::object op,
                                                           driver_protocol::capability need,
                                                           bool wait_for_driver, deadline dl);

  std::string provider_;
  std::string driver_name_;
  std::vector<std::string> zones_;
  std::shared_ptr<remote_port> port_;
};

// The error a driver's failure stands for (capacity: cloud_capacity, throttled:
// cloud_rate_limited with its retry_after, ...). Exposed for tests.
[[nodiscard]] error error_from(const driver_protocol::failure& f, std::string_view driver);

}  // namespace cloudbrain::providers
