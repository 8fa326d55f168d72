#include "providers/external/external_driver.hpp"

#include <boost/json/array.hpp>

#include <charconv>

namespace cloudbrain::providers {
namespace asio = boost::asio;
namespace json = boost::json;
namespace dp = driver_protocol;

namespace {

// A listing walks at most this many pages, each at most page_size long.
constexpr std::size_t max_pages = 10'000;
constexpr std::size_t page_size = 500;
labels with_markers(const labels& tags, const std::string& deployment, const char* key,
                    const std::string& id) {
  labels out = tags;
  out[label_deployment] = deployment;
  out[key] = id;
  return out;
}

vm vm_from(dp::machine m) {
  vm v;
  v.name = std::move(m.name);
  v.upstream_id = std::move(m.upstream_id);
  v.zone = std::move(m.zone);
  switch (m.status) {
    case dp::machine_status::provisioning: v.status = vm_status::provisioning; break;
    case dp::machine_status::running: v.status = vm_status::running; break;
    case dp::machine_status::stopping: v.status = vm_status::stopping; break;
    case dp::machine_status::terminated: v.status = vm_status::terminated; break;
  }
  v.ip_address = std::move(m.ip_address);
  v.labels_ = std::move(m.labels_);
  v.created_at = m.created_at;
  return v;
}

cloud_reservation reservation_from(dp::reservation r) {
  cloud_reservation c;
  c.name = std::move(r.name);
  c.upstream_id = std::move(r.upstream_id);
  c.zone = std::move(r.zone);
  c.machine_type = std::move(r.machine_type);
  c.count = r.count;
  c.in_use = r.in_use;
  switch (r.status) {
    case dp::reservation_status::creating: c.status = reservation_status::creating; break;
    case dp::reservation_status::ready: c.status = reservation_status::ready; break;
    case dp::reservation_status::deleting: c.status = reservation_status::deleting; break;
    case dp::reservation_status::updating: c.status = reservation_status::updating; break;
    case dp::reservation_status::invalid: c.status = reservation_status::invalid; break;
  }
  c.labels_ = std::move(r.labels_);
  c.created_at = r.created_at;
  c.ends_at = r.ends_at;
  return c;
}

json::object ref_json(const std::string& name, const std::string& zone,
                      const std::string& upstream_id) {
  return {{"name", name}, {"zone", zone}, {"upstream_id", upstream_id}};
}

error malformed(std::string_view driver, std::string_view op, const dp::violation& v) {
  return error(errc::cloud_transient, "driver " + std::string(driver) + " answered " +
                                          std::string(op) +
                                          " with a malformed result: " + v.reason);
}

}  // namespace

result<external_settings> external_settings::from_section(const provider_section& s) {
  const std::string where = "[provider." + s.name + "] ";
  external_settings out;
  out.zones = s.zones;
  if (out.zones.empty()) {
    return fail(errc::bad_config, where + "needs 'zones': the zones its driver offers");
  }
  json::array zones;
  for (const auto& z : out.zones) zones.emplace_back(z);
  out.config["zones"] = std::move(zones);
  if (!s.endpoint.empty()) out.config["endpoint"] = s.endpoint;
  for (const auto& [key, raw] : s.settings) {
    if (key == "driver") {
      if (!dp::valid_driver_name(raw)) {
        return fail(errc::bad_config,
                    where +
                        "'driver' must be 1 to 63 characters of a-z, 0-9, '-', '_' and '.', "
                        "starting with a letter or digit");
      }
      out.driver = raw;
      continue;
    }
    if (key == "driver-tokens") {
      // Token ids, as `cloudbrain token create --role driver` prints them (the part before the
      // dash), separated by spaces or commas.
      std::string_view rest = raw;
      while (!rest.empty()) {
        const auto start = rest.find_first_not_of(" ,\t");
        if (start == std::string_view::npos) break;
        rest.remove_prefix(start);
        const auto word = rest.substr(0, rest.find_first_of(" ,\t"));
        rest.remove_prefix(word.size());
        std::int64_t id = 0;
        const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
        if (ec != std::errc{} || end != word.data() + word.size() || id < 1) {
          return fail(errc::bad_config, where + "'driver-tokens' must be token ids (whole " +
                                            "numbers, as `cloudbrain token list` shows them), " +
                                            "not '" + std::string(word) + "'");
        }
        out.tokens.push_back(id);
      }
      if (out.tokens.empty()) {
        return fail(errc::bad_config, where + "'driver-tokens' names no token id");
      }
      continue;
    }
    // A value written @/path was read by the configuration's loader: this is the file's
    // content, taken as it is (it is not read again if it starts with @/ itself).
    if (key.rfind("secret.", 0) == 0) {
      if (key.size() == 7) return fail(errc::bad_config, where + "'secret.' names no key");
      out.secret[key] = raw;
    } else {
      out.config[key] = raw;
    }
  }
  if (out.driver.empty()) {
    return fail(errc::bad_config, where +
                                      "needs 'driver': the name its out-of-tree driver "
                                      "registers with");
  }
  return out;
}

error error_from(const dp::failure& f, std::string_view driver) {
  const std::string detail =
      f.message.empty() ? "driver " + std::string(driver) + ": " + std::string(to_string(f.kind))
                        : f.message;
  errc code = errc::cloud_transient;
  switch (f.kind) {
    case dp::error_kind::capacity: code = errc::cloud_capacity; break;
    case dp::error_kind::quota: code = errc::cloud_quota; break;
    case dp::error_kind::throttled: code = errc::cloud_rate_limited; break;
    case dp::error_kind::invalid: code = errc::cloud_permanent; break;
    case dp::error_kind::auth: code = errc::cloud_auth; break;
    case dp::error_kind::not_found: code = errc::cloud_not_found; break;
    case dp::error_kind::already_exists: code = errc::cloud_already_exists; break;
    case dp::error_kind::transient: code = errc::cloud_transient; break;
  }
  error e(code, detail);
  e.retry_after = f.retry_after;
  return e;
}

external_driver::external_driver(std::string provider, external_settings settings,
                                 std::shared_ptr<remote_port> port)
    : provider_(std::move(provider)),
      driver_name_(std::move(settings.driver)),
      zones_(std::move(settings.zones)),
      port_(std::move(port)) {}

external_driver::~external_driver() { port_->detach(); }

json::object external_driver::details() const {
  return {{"driver", driver_name_},
          {"connections", port_->connections()},
          {"capacity", port_->capacity()}};
}

asio::awaitable<result<json::object>> external_driver::send(json::object op, dp::capability need,
                                                            bool wait_for_driver, deadline dl) {
  const auto capability = dp::to_string(need);
  if (port_->connections() == 0 && !wait_for_driver) {
    co_return fail(errc::cloud_unavailable, "no driver " + driver_name_ + " is connected");
  }
  if (port_->connections() > 0 && !port_->declares(capability)) {
    co_return fail(errc::cloud_permanent, "driver " + driver_name_ + " does not declare " +
                                              std::string(capability) + " (provider " + provider_ +
                                              ")");
  }
  co_await pace();
  auto calling = port_->call(std::move(op), dl);
  auto answer = co_await std::move(calling);
  if (!answer) co_return answer.error();
  if (answer->at("type") == "error") {
    auto f = dp::failure_from(answer->at("error"));
    if (!f) co_return malformed(driver_name_, "an operation", f.error());
    co_return error_from(*f, driver_name_);
  }
  co_return std::move(*answer);
}

asio::awaitable<result<vm>> external_driver::create(const instance_spec& spec, deadline dl) {
  dp::machine_spec m;
  m.instance_id = spec.instance_id;
  m.name = spec.name;
  m.image = spec.image;
  m.instance_type = spec.instance_type.empty() ? "standard" : spec.instance_type;
  m.public_ssh_key = spec.public_ssh_key;
  m.zone = spec.zone;
  m.reservation = spec.reservation_upstream;
  m.labels_ = with_markers(spec.tags, spec.deployment, label_instance, spec.instance_id);
  json::object op{{"type", "create"},
                  {"provider", provider_},
                  {"idempotency_key", spec.idempotency_key},
                  {"spec", dp::to_json(m)}};
  auto sending = send(std::move(op), dp::capability::instances, true, dl);
  auto answer = co_await std::move(sending);
  if (!answer) co_return answer.error();
  auto machine = dp::machine_answer(*answer);
  if (!machine) co_return malformed(driver_name_, "create", machine.error());
  co_return vm_from(std::move(*machine));
}

asio::awaitable<result<vm>> external_driver::get(const vm_ref& ref, deadline dl) {
  json::object op{{"type", "get"},
                  {"provider", provider_},
                  {"ref", ref_json(ref.name, ref.zone, ref.upstream_id)}};
  auto sending = send(std::move(op), dp::capability::instances, true, dl);
  auto answer = co_await std::move(sending);
  if (!answer) co_return answer.error();
  auto machine = dp::machine_answer(*answer);
  if (!machine) co_return malformed(driver_name_, "get", machine.error());
  co_return vm_from(std::move(*machine));
}

asio::awaitable<result<void>> external_driver::destroy(const vm_ref& ref, const std::string& key,
                                                       deadline dl) {
  json::object op{{"type", "delete"},
                  {"provider", provider_},
                  {"idempotency_key", key},
                  {"ref", ref_json(ref.name, ref.zone, ref.upstream_id)}};
  auto sending = send(std::move(op), dp::capability::instances, true, dl);
  auto answer = co_await std::move(sending);
  if (!answer) {
    if (answer.error().is(errc::cloud_not_found)) co_return result<void>{};  // gone: done
    co_return answer.error();
  }
  co_return result<void>{};
}

asio::awaitable<result<std::vector<vm>>> external_driver::list(const std::string& deployment,
                                                               deadline dl) {
  std::vector<vm> out;
  std::optional<std::string> token;
  for (std::size_t pages = 0; pages < max_pages; ++pages) {
    json::object op{{"type", "list"},
                    {"provider", provider_},
                    {"deployment", deployment},
                    {"page_token", token ? json::value(*token) : json::value(nullptr)},
                    {"page_size", page_size}};
    auto sending = send(std::move(op), dp::capability::list, false, dl);
    auto answer = co_await std::move(sending);
    if (!answer) co_return answer.error();
    auto page = dp::machines_answer(*answer);
    if (!page) co_return malformed(driver_name_, "list", page.error());
    for (auto& m : page->items) out.push_back(vm_from(std::move(m)));
    if (!page->next_page_token) co_return out;
    if (token == page->next_page_token) {
      co_return fail(errc::cloud_transient,
                     "driver " + driver_name_ + " answered list with the same page token twice");
    }
    token = std::move(page->next_page_token);
  }
  co_return fail(errc::cloud_transient, "driver " + driver_name_ + "'s listing has more than " +
                                            std::to_string(max_pages) + " pages");
}

asio::awaitable<result<cloud_reservation>> external_driver::reserve(const reservation_spec& spec,
                                                                    deadline dl) {
  dp::reservation_spec r;
  r.reservation_id = spec.reservation_id;
  r.name = spec.name;
  r.instance_type = spec.instance_type.empty() ? "standard" : spec.instance_type;
  r.count = spec.count;
  r.zone = spec.zone;
  r.ends_at = spec.ends_at;
  r.labels_ = with_markers(spec.tags, spec.deployment, label_reservation, spec.reservation_id);
  json::object op{{"type", "reserve"},
                  {"provider", provider_},
                  {"idempotency_key", spec.idempotency_key},
                  {"spec", dp::to_json(r)}};
  auto sending = send(std::move(op), dp::capability::reservations, true, dl);
  auto answer = co_await std::move(sending);
  if (!answer) co_return answer.error();
  auto held = dp::reservation_answer(*answer);
  if (!held) co_return malformed(driver_name_, "reserve", held.error());
  co_return reservation_from(std::move(*held));
}

asio::awaitable<result<cloud_reservation>> external_driver::get_reservation(
    const reservation_ref& ref, deadline dl) {
  json::object op{{"type", "get_reservation"},
                  {"provider", provider_},
                  {"ref", ref_json(ref.name, ref.zone, ref.upstream_id)}};
  auto sending = send(std::move(op), dp::capability::reservations, true, dl);
  auto answer = co_await std::move(sending);
  if (!answer) co_return answer.error();
  auto held = dp::reservation_answer(*answer);
  if (!held) co_return malformed(driver_name_, "get_reservation", held.error());
  co_return reservation_from(std::move(*held));
}

asio::awaitable<result<void>> external_driver::release(const reservation_ref& ref,
                                                       const std::string& key, deadline dl) {
  json::object op{{"type", "release"},
                  {"provider", provider_},
                  {"idempotency_key", key},
                  {"ref", ref_json(ref.name, ref.zone, ref.upstream_id)}};
  auto sending = send(std::move(op), dp::capability::reservations, true, dl);
  auto answer = co_await std::move(sending);
  if (!answer) {
    if (answer.error().is(errc::cloud_not_found)) co_return result<void>{};
    co_return answer.error();
  }
  co_return result<void>{};
}

asio::awaitable<result<std::vector<cloud_reservation>>> external_driver::list_reservations(
    const std::string& deployment, deadline dl) {
  std::vector<cloud_reservation> out;
  std::optional<std::string> token;
  for (std::size_t pages = 0; pages < max_pages; ++pages) {
    json::object op{{"type", "list_reservations"},
                    {"provider", provider_},
                    {"deployment", deployment},
                    {"page_token", token ? json::value(*token) : json::value(nullptr)},
                    {"page_size", page_size}};
    auto sending = send(std::move(op), dp::capability::reservations, false, dl);
    auto answer = co_await std::move(sending);
    if (!answer) co_return answer.error();
    auto page = dp::reservations_answer(*answer);
    if (!page) co_return malformed(driver_name_, "list_reservations", page.error());
    for (auto& r : page->items) out.push_back(reservation_from(std::move(r)));
    if (!page->next_page_token) co_return out;
    if (token == page->next_page_token) {
      co_return fail(errc::cloud_transient, "driver " + driver_name_ +
                                                " answered list_reservations with the same page "
                                                "token twice");
    }
    token = std::move(page->next_page_token);
  }
  co_return fail(errc::cloud_transient, "driver " + driver_name_ +
                                            "'s reservation listing has "
                                            "more than " +
                                            std::to_string(max_pages) + " pages");
}

}  // namespace cloudbrain::providers
