#include "providers/metered_driver.hpp"

namespace cloudbrain::providers {

namespace asio = boost::asio;

std::string_view outcome_label(const error& e) {
  static constexpr std::pair<errc, std::string_view> kinds[] = {
      {errc::cloud_capacity, "capacity"},
      {errc::cloud_quota, "quota"},
      {errc::cloud_rate_limited, "rate_limited"},
      {errc::cloud_transient, "transient"},
      {errc::cloud_permanent, "permanent"},
      {errc::cloud_not_found, "not_found"},
      {errc::cloud_already_exists, "already_exists"},
      {errc::cloud_auth, "auth"},
      {errc::cloud_unavailable, "unavailable"},
      {errc::timeout, "timeout"},
      {errc::cancelled, "cancelled"},
      {errc::shutting_down, "cancelled"},
  };
  for (const auto& [code, name] : kinds) {
    if (e.is(code)) return name;
  }
  return "other";
}

metered_driver::metered_driver(std::unique_ptr<driver> inner, std::string provider,
                               cloud_call_metrics m)
    : inner_(std::move(inner)), provider_(std::move(provider)), metrics_(m) {}

template <class T>
asio::awaitable<result<T>> metered_driver::timed(std::string_view op,
                                                 asio::awaitable<result<T>> call) {
  // An awaitable starts when awaited: the clock covers the inner call and nothing else.
  const auto started = steady_clock::now();
  auto r = co_await std::move(call);
  const double seconds = std::chrono::duration<double>(steady_clock::now() - started).count();
  const std::string_view outcome = r ? std::string_view("ok") : outcome_label(r.error());
  metrics_.calls.with({provider_, op, outcome}).inc();
  metrics_.durations.with({provider_, op}).observe(seconds);
  co_return r;
}

asio::awaitable<result<vm>> metered_driver::create(const instance_spec& spec, deadline dl) {
  return timed("create", inner_->create(spec, dl));
}

asio::awaitable<result<vm>> metered_driver::get(const vm_ref& ref, deadline dl) {
  return timed("get", inner_->get(ref, dl));
}

asio::awaitable<result<void>> metered_driver::destroy(const vm_ref& ref,
                                                      const std::string& idempotency_key,
                                                      deadline dl) {
  return timed("delete", inner_->destroy(ref, idempotency_key, dl));
}

asio::awaitable<result<std::vector<vm>>> metered_driver::list(const std::string& deployment,
                                                              deadline dl) {
  return timed("list", inner_->list(deployment, dl));
}

asio::awaitable<result<cloud_reservation>> metered_driver::reserve(const reservation_spec& spec,
                                                                   deadline dl) {
  return timed("reserve", inner_->reserve(spec, dl));
}

asio::awaitable<result<cloud_reservation>> metered_driver::get_reservation(
    const reservation_ref& ref, deadline dl) {
  return timed("get_reservation", inner_->get_reservation(ref, dl));
}

asio::awaitable<result<void>> metered_driver::release(const reservation_ref& ref,
                                                      const std::string& idempotency_key,
                                                      deadline dl) {
  return timed("release_reservation", inner_->release(ref, idempotency_key, dl));
}

asio::awaitable<result<std::vector<cloud_reservation>>> metered_driver::list_reservations(
    const std::string& deployment, deadline dl) {
  return timed("list_reservations", inner_->list_reservations(deployment, dl));
}

}  // namespace cloudbrain::providers
