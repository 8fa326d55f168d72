#pragma once

#include "core/metrics.hpp"
#include "providers/driver.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace cloudbrain::providers {

// The families every cloud call is counted in: calls by provider, operation and outcome, and
// their latency by provider and operation.
struct cloud_call_metrics {
  metrics::family<metrics::counter>& calls;        // provider, operation, outcome
  metrics::family<metrics::histogram>& durations;  // provider, operation
};

// The metric outcome of a driver call: "ok", or the kind of cloud error ("capacity",
// "rate_limited", "transient", "timeout", ...); a bounded set.
[[nodiscard]] std::string_view outcome_label(const error& e);

// Wraps a driver and counts and times each of its calls (one driver call may be several HTTP
// requests: a GCE create is an insert, operation waits and a read). Every caller of a driver
// goes through the provider actor, which owns the driver, so this is the one place that sees
// them all.
class metered_driver final : public driver {
 public:
  metered_driver(std::unique_ptr<driver> inner, std::string provider, cloud_call_metrics m);

  [[nodiscard]] std::string_view type() const override { return inner_->type(); }
  [[nodiscard]] const std::vector<std::string>& zones() const override { return inner_->zones(); }

  boost::asio::awaitable<result<vm>> create(const instance_spec& spec, deadline dl) override;
  boost::asio::awaitable<result<vm>> get(const vm_ref& ref, deadline dl) override;
  boost::asio::awaitable<result<void>> destroy(const vm_ref& ref,
                                               const std::string& idempotency_key,
                                               deadline dl) override;
  boost::asio::awaitable<result<std::vector<vm>>> list(const std::string& deployment,
                                                       deadline dl) override;
  boost::asio::awaitable<result<cloud_reservation>> reserve(const reservation_spec& spec,
                                                            deadline dl) override;
  boost::asio::awaitable<result<cloud_reservation>> get_reservation(const reservation_ref& ref,
                                                                    deadline dl) override;
  boost::asio::awaitable<result<void>> release(const reservation_ref& ref,
                                               const std::string& idempotency_key,
                                               deadline dl) override;
  boost::asio::awaitable<result<std::vector<cloud_reservation>>> list_reservations(
      const std::string& deployment, deadline dl) override;

  [[nodiscard]] std::string machine_type_for(std::string_view instance_type) const override {
    return inner_->machine_type_for(instance_type);
  }
  [[nodiscard]] boost::json::object details() const override { return inner_->details(); }
  void set_pacer(call_pacer pacer) override { inner_->set_pacer(std::move(pacer)); }
  [[nodiscard]] std::optional<std::size_t> capacity() const override { return inner_->capacity(); }
  void on_capacity_change(std::function<void()> wake) override {
    inner_->on_capacity_change(std::move(wake));
  }

  [[nodiscard]] driver& inner() noexcept { return *inner_; }

 private:
  // Awaits `call` and counts it as `op`: its outcome and how long it took.
  template <class T>
  boost::asio::awaitable<result<T>> timed(std::string_view op,
                                          boost::asio::awaitable<result<T>> call);

  std::unique_ptr<driver> inner_;
  std::string provider_;
  cloud_call_metrics metrics_;
};

}  // namespace cloudbrain::providers
