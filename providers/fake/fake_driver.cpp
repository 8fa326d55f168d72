#include "providers/fake/fake_driver.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <cstdlib>
#include <sstream>

namespace cloudbrain::providers {
namespace asio = boost::asio;

namespace {
constexpr std::uint32_t address_count = 254;  // 203.0.113.1 - 203.0.113.254
}

result<fake_settings> fake_settings::from_section(const provider_section& s) {
  fake_settings f;
  if (!s.zones.empty()) f.zones = s.zones;
  const std::string where = "[provider." + s.name + "] ";
  for (const auto& setting : s.settings) {
    const std::string& key = setting.first;
    const std::string& value = setting.second;
    auto dur = [&](std::chrono::milliseconds& out) -> result<void> {
      auto d = parse_duration(value);
      if (!d) return fail(errc::bad_config, where + "'" + key + "': " + d.error().detail);
      out = *d;
      return {};
    };
    result<void> r;
    if (key == "boot-delay")
      r = dur(f.boot_delay);
    else if (key == "delete-delay")
      r = dur(f.delete_delay);
    else if (key == "api-latency")
      r = dur(f.api_latency);
    else if (key == "failure-rate") {
      char* end = nullptr;
      f.failure_rate = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || f.failure_rate < 0 ||
          f.failure_rate > 1) {
        return fail(errc::bad_config,
                    where + "'failure-rate' must be between 0 and 1, not '" + value + "'");
      }
    } else if (key == "zone-capacity") {
      // "zone-a:0 zone-b:10": these zones hold this many VMs instead of capacity-per-zone.
      std::istringstream words(value);
      for (std::string w; words >> w;) {
        const auto colon = w.rfind(':');
        std::size_t n = 0;
        bool ok = colon != std::string::npos && colon > 0;
        if (ok) {
          const std::string_view count = std::string_view(w).substr(colon + 1);
          const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), n);
          ok = !count.empty() && ec == std::errc{} && end == count.data() + count.size();
        }
        if (!ok) {
          return fail(errc::bad_config,
                      where + "'zone-capacity' takes ZONE:N pairs, not '" + w + "'");
        }
        f.zone_capacity[w.substr(0, colon)] = n;
      }
    } else if (key == "capacity-per-zone" || key == "seed") {
      std::uint64_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size()) {
        return fail(errc::bad_config,
                    where + "'" + key + "' must be a whole number, not '" + value + "'");
      }
      if (key == "seed")
        f.seed = n;
      else
        f.capacity_per_zone = n;
    } else {
      return fail(errc::bad_config, where + "unknown key '" + key +
                                        "' for type fake (known: zones, boot-delay, "
                                        "delete-delay, api-latency, failure-rate, "
                                        "capacity-per-zone, zone-capacity, seed, rate-limit, "
                                        "max-in-flight)");
    }
    if (!r) return r.error();
  }
  return f;
}

fake_driver::fake_driver(fake_settings settings)
    : settings_(std::move(settings)),
      address_use_(address_count, 0),
      rng_(settings_.seed ? settings_.seed : std::random_device{}()) {
  for (const auto& z : settings_.zones) capacity_[z] = settings_.capacity_per_zone;
  for (const auto& [z, n] : settings_.zone_capacity) capacity_[z] = n;
}

void fake_driver::set_capacity(const std::string& zone, std::size_t capacity) {
  capacity_[zone] = capacity;
}

std::uint32_t fake_driver::allocate_address() {
  // The least used address, starting after the last one handed out: distinct while there are
  // fewer than 254 VMs, shared evenly beyond that.
  std::uint32_t best = next_address_;
  for (std::uint32_t i = 0; i < address_count; ++i) {
    const std::uint32_t a = (next_address_ + i) % address_count;
    if (address_use_[a] == 0) {
      best = a;
      break;
    }
    if (address_use_[a] < address_use_[best]) best = a;
  }
  ++address_use_[best];
  next_address_ = (best + 1) % address_count;
  return best;
}

vm fake_driver::observe(const sim_vm& s) const {
  vm v = s.state;
  if (v.status == vm_status::provisioning && steady_clock::now() >= s.ready_at) {
    v.status = vm_status::running;
  }
  if (v.status == vm_status::running) {
    v.ip_address = "203.0.113." + std::to_string(s.address + 1);
  }
  return v;
}

asio::awaitable<result<vm>> fake_driver::create(const instance_spec& spec, deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  if (const auto it = vms_.find(spec.name); it != vms_.end()) {
    co_return fail(errc::cloud_already_exists, "a VM named " + spec.name + " already exists");
  }
  if (std::find(settings_.zones.begin(), settings_.zones.end(), spec.zone) ==
      settings_.zones.end()) {
    co_return fail(errc::cloud_permanent, "unknown zone '" + spec.zone + "'");
  }
  expire_reservations();
  sim_reservation* held = nullptr;
  if (!spec.reservation_upstream.empty()) {
    const auto r = reservations_.find(reservation_key(spec.zone, spec.reservation_upstream));
    if (r == reservations_.end()) {
      co_return fail(errc::cloud_permanent,
                     "no reservation " + spec.reservation_upstream + " in zone " + spec.zone);
    }
    if (r->second.state.machine_type != machine_type_for(spec.instance_type)) {
      co_return fail(errc::cloud_permanent,
                     "reservation " + spec.reservation_upstream + " holds another machine type");
    }
    if (r->second.state.in_use >= r->second.state.count) {
      ++stats_.create_failures;
      co_return fail(errc::cloud_capacity,
                     "reservation " + spec.reservation_upstream + " is fully used");
    }
    held = &r->second;
  } else if (used_[spec.zone] >= capacity_[spec.zone]) {
    ++stats_.create_failures;
    co_return fail(errc::cloud_capacity, "zone " + spec.zone + " has no capacity left");
  }
  if (settings_.failure_rate > 0 &&
      std::uniform_real_distribution<double>(0, 1)(rng_) < settings_.failure_rate) {
    ++stats_.create_failures;
    co_return fail(errc::cloud_transient, "simulated failure");
  }
  sim_vm s;
  s.state.name = spec.name;
  s.state.upstream_id = std::to_string(next_id_++);
  s.state.zone = spec.zone;
  s.state.status = vm_status::provisioning;
  s.state.labels_ = spec.tags;
  s.state.labels_[label_deployment] = spec.deployment;
  s.state.labels_[label_instance] = spec.instance_id;
  s.state.created_at = system_clock::now();
  s.ready_at = steady_clock::now() + settings_.boot_delay;
  s.address = allocate_address();
  if (held) {
    ++held->state.in_use;  // the reservation's capacity, already counted in the zone's
    s.reservation = reservation_key(spec.zone, spec.reservation_upstream);
  } else {
    ++used_[spec.zone];
  }
  ++stats_.creates;
  auto [it, inserted] = vms_.emplace(spec.name, std::move(s));
  stats_.vms = vms_.size();
  co_return observe(it->second);
}

asio::awaitable<result<vm>> fake_driver::get(const vm_ref& ref, deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  const auto it = vms_.find(ref.name);
  if (it == vms_.end()) co_return fail(errc::cloud_not_found, "no VM named " + ref.name);
  co_return observe(it->second);
}

asio::awaitable<result<void>> fake_driver::destroy(const vm_ref& ref, const std::string&,
                                                   deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  auto it = vms_.find(ref.name);
  if (it == vms_.end()) co_return result<void>{};
  it->second.state.status = vm_status::stopping;
  co_await sleep_for(settings_.delete_delay);
  it = vms_.find(ref.name);  // another call may have removed it meanwhile
  if (it == vms_.end()) co_return result<void>{};
  if (const auto r = reservations_.find(it->second.reservation); r != reservations_.end()) {
    --r->second.state.in_use;
  } else {
    --used_[it->second.state.zone];
  }
  --address_use_[it->second.address];
  vms_.erase(it);
  ++stats_.deletes;
  stats_.vms = vms_.size();
  co_return result<void>{};
}

boost::json::object fake_driver::details() const {
  return {{"vms", stats_.vms},
          {"creates", stats_.creates},
          {"create_failures", stats_.create_failures},
          {"deletes", stats_.deletes},
          {"reservations", reservations_.size()},
          {"reserves", stats_.reserves},
          {"reserve_failures", stats_.reserve_failures},
          {"releases", stats_.releases}};
}

std::string fake_driver::machine_type_for(std::string_view instance_type) const {
  return instance_type == "premium" ? "fake-large" : "fake-small";
}

void fake_driver::expire_reservations() {
  const auto now = system_clock::now();
  for (auto it = reservations_.begin(); it != reservations_.end();) {
    const auto& r = it->second.state;
    if (r.ends_at && *r.ends_at <= now) {
      used_[r.zone] -= static_cast<std::size_t>(r.count - r.in_use);
      for (auto& [name, v] : vms_)
        if (v.reservation == it->first) v.reservation.clear();  // now plain capacity
      it = reservations_.erase(it);
      ++stats_.releases;
    } else {
      ++it;
    }
  }
  stats_.reservations = reservations_.size();
}

asio::awaitable<result<cloud_reservation>> fake_driver::reserve(const reservation_spec& spec,
                                                                deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  expire_reservations();
  if (std::find(settings_.zones.begin(), settings_.zones.end(), spec.zone) ==
      settings_.zones.end()) {
    co_return fail(errc::cloud_permanent, "unknown zone '" + spec.zone + "'");
  }
  const auto key = reservation_key(spec.zone, spec.name);
  if (reservations_.contains(key)) {
    co_return fail(errc::cloud_already_exists,
                   "a reservation named " + spec.name + " already exists in " + spec.zone);
  }
  if (spec.count <= 0 ||
      used_[spec.zone] + static_cast<std::size_t>(spec.count) > capacity_[spec.zone]) {
    ++stats_.reserve_failures;
    co_return fail(errc::cloud_capacity, "zone " + spec.zone + " has no room for " +
                                             std::to_string(spec.count) + " reserved VMs");
  }
  sim_reservation r;
  r.state.name = spec.name;
  r.state.upstream_id = std::to_string(next_id_++);
  r.state.zone = spec.zone;
  r.state.machine_type = machine_type_for(spec.instance_type);
  r.state.count = spec.count;
  r.state.status = reservation_status::ready;
  r.state.labels_ = spec.tags;
  r.state.labels_[label_deployment] = spec.deployment;
  r.state.labels_[label_reservation] = spec.reservation_id;
  r.state.created_at = system_clock::now();
  if (spec.ends_at != system_clock::time_point{}) r.state.ends_at = spec.ends_at;
  used_[spec.zone] += static_cast<std::size_t>(spec.count);
  ++stats_.reserves;
  auto [it, inserted] = reservations_.emplace(key, std::move(r));
  stats_.reservations = reservations_.size();
  co_return it->second.state;
}

asio::awaitable<result<cloud_reservation>> fake_driver::get_reservation(const reservation_ref& ref,
                                                                        deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  expire_reservations();
  const auto it = reservations_.find(reservation_key(ref.zone, ref.name));
  if (it == reservations_.end()) {
    co_return fail(errc::cloud_not_found, "no reservation " + ref.name + " in " + ref.zone);
  }
  co_return it->second.state;
}

asio::awaitable<result<void>> fake_driver::release(const reservation_ref& ref, const std::string&,
                                                   deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  const auto it = reservations_.find(reservation_key(ref.zone, ref.name));
  if (it == reservations_.end()) co_return result<void>{};
  const auto& r = it->second.state;
  // VMs still running in it keep their place as ordinary capacity, as at a real cloud.
  used_[r.zone] -= static_cast<std::size_t>(r.count - r.in_use);
  for (auto& [name, v] : vms_)
    if (v.reservation == it->first) v.reservation.clear();
  reservations_.erase(it);
  ++stats_.releases;
  stats_.reservations = reservations_.size();
  co_return result<void>{};
}

asio::awaitable<result<std::vector<cloud_reservation>>> fake_driver::list_reservations(
    const std::string& deployment, deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  expire_reservations();
  std::vector<cloud_reservation> out;
  for (const auto& [key, r] : reservations_) {
    const auto it = r.state.labels_.find(label_deployment);
    if (it != r.state.labels_.end() && it->second == deployment) out.push_back(r.state);
  }
  co_return out;
}

asio::awaitable<result<std::vector<vm>>> fake_driver::list(const std::string& deployment,
                                                           deadline) {
  co_await pace();
  co_await sleep_for(settings_.api_latency);
  std::vector<vm> out;
  for (const auto& [name, s] : vms_) {
    const auto it = s.state.labels_.find(label_deployment);
    if (it != s.state.labels_.end() && it->second == deployment) out.push_back(observe(s));
  }
  co_return out;
}

}  // namespace cloudbrain::providers
