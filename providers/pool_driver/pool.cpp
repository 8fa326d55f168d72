#include "providers/pool_driver/pool.hpp"

#include "core/time.hpp"

#include <boost/json/array.hpp>

#include <algorithm>
#include <set>
#include <sstream>

namespace cloudbrain::pool_driver {
namespace json = boost::json;

namespace {

dp::violation bad(std::string reason) { return dp::violation{std::move(reason)}; }

json::object labels_json(const dp::labels& l) {
  json::object o;
  for (const auto& [k, v] : l) o[k] = v;
  return o;
}

dp::labels labels_from(const json::value* v) {
  dp::labels out;
  if (!v || !v->is_object()) return out;
  for (const auto& [k, val] : v->as_object())
    if (val.is_string()) out.emplace(std::string(k), std::string(val.as_string()));
  return out;
}

std::string text_of(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

dp::system_time time_of(const json::object& o, std::string_view key) {
  auto t = parse_rfc3339(text_of(o, key));
  return t ? *t : dp::system_time{};
}

bool deployment_of(const dp::labels& l, const std::string& deployment) {
  const auto it = l.find("cloudbrain-deployment");
  return it != l.end() && it->second == deployment;
}

// A page of `items` (sorted by name) after the token's name.
template <class T>
dp::page<T> page_of(std::vector<T> items, const dp::page_request& p) {
  std::sort(items.begin(), items.end(), [](const T& a, const T& b) { return a.name < b.name; });
  dp::page<T> out;
  auto it = items.begin();
  if (p.page_token) {
    const std::string& token = *p.page_token;
    const std::string after = token.starts_with("after:") ? token.substr(6) : token;
    it = std::upper_bound(items.begin(), items.end(), after,
                          [](const std::string& name, const T& m) { return name < m.name; });
  }
  for (; it != items.end() && out.items.size() < p.page_size; ++it) out.items.push_back(*it);
  if (it != items.end() && !out.items.empty())
    out.next_page_token = "after:" + out.items.back().name;
  return out;
}

}  // namespace

dp::parsed<std::vector<pool_machine>> parse_pool(std::string_view text) {
  std::vector<pool_machine> out;
  std::set<std::string> seen;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    if (w.empty()) continue;
    if (w.size() != 2) {
      return bad("line " + std::to_string(number) + ": expected ADDRESS ZONE");
    }
    if (!seen.insert(w[0]).second) {
      return bad("line " + std::to_string(number) + ": " + w[0] + " is listed twice");
    }
    out.push_back(pool_machine{w[0], w[1]});
  }
  if (out.empty()) return bad("the pool lists no machine");
  return out;
}

machine_pool::machine_pool(std::vector<pool_machine> machines) : machines_(std::move(machines)) {}

bool machine_pool::zone_known(const std::string& zone) const {
  return std::any_of(machines_.begin(), machines_.end(),
                     [&](const pool_machine& m) { return m.zone == zone; });
}

bool machine_pool::held(const std::string& address) const {
  for (const auto& [name, r] : reserved_)
    if (std::find(r.machines.begin(), r.machines.end(), address) != r.machines.end()) return true;
  return false;
}

dp::parsed<void> machine_pool::restore(const json::object& state) {
  const auto* leases = state.if_contains("leases");
  if (leases && !leases->is_object()) return bad("'leases' must be an object");
  if (leases) {
    for (const auto& [address, v] : leases->as_object()) {
      if (!v.is_object()) return bad("a lease must be an object");
      const auto& o = v.as_object();
      lease l;
      l.name = text_of(o, "name");
      l.key = text_of(o, "key");
      l.zone = text_of(o, "zone");
      l.image = text_of(o, "image");
      l.instance_type = text_of(o, "instance_type");
      l.reservation = text_of(o, "reservation");
      l.labels_ = labels_from(o.if_contains("labels"));
      l.created_at = time_of(o, "created_at");
      const auto* ready = o.if_contains("ready");
      l.ready = ready && ready->is_bool() && ready->as_bool();
      if (l.name.empty()) return bad("a lease has no name");
      leases_.emplace(std::string(address), std::move(l));
    }
  }
  const auto* reservations = state.if_contains("reservations");
  if (reservations && !reservations->is_object()) return bad("'reservations' must be an object");
  if (reservations) {
    for (const auto& [name, v] : reservations->as_object()) {
      if (!v.is_object()) return bad("a reservation must be an object");
      const auto& o = v.as_object();
      held_reservation r;
      r.name = std::string(name);
      r.key = text_of(o, "key");
      r.zone = text_of(o, "zone");
      r.instance_type = text_of(o, "instance_type");
      r.labels_ = labels_from(o.if_contains("labels"));
      r.created_at = time_of(o, "created_at");
      r.ends_at = time_of(o, "ends_at");
      if (const auto* m = o.if_contains("machines"); m && m->is_array()) {
        for (const auto& a : m->as_array())
          if (a.is_string()) r.machines.emplace_back(a.as_string());
      }
      reserved_.emplace(r.name, std::move(r));
    }
  }
  return {};
}

json::object machine_pool::snapshot() const {
  json::object leases;
  for (const auto& [address, l] : leases_) {
    leases[address] = json::object{{"name", l.name},
                                   {"key", l.key},
                                   {"zone", l.zone},
                                   {"image", l.image},
                                   {"instance_type", l.instance_type},
                                   {"reservation", l.reservation},
                                   {"labels", labels_json(l.labels_)},
                                   {"created_at", format_rfc3339(l.created_at)},
                                   {"ready", l.ready}};
  }
  json::object reservations;
  for (const auto& [name, r] : reserved_) {
    json::array machines;
    for (const auto& m : r.machines) machines.emplace_back(m);
    reservations[name] = json::object{{"key", r.key},
                                      {"zone", r.zone},
                                      {"instance_type", r.instance_type},
                                      {"machines", std::move(machines)},
                                      {"labels", labels_json(r.labels_)},
                                      {"created_at", format_rfc3339(r.created_at)},
                                      {"ends_at", format_rfc3339(r.ends_at)}};
  }
  return {{"version", 1}, {"leases", std::move(leases)}, {"reservations", std::move(reservations)}};
}

std::optional<std::string> machine_pool::address_of(const std::string& name) const {
  for (const auto& [address, l] : leases_)
    if (l.name == name) return address;
  return std::nullopt;
}

const lease* machine_pool::lease_at(const std::string& address) const {
  const auto it = leases_.find(address);
  return it == leases_.end() ? nullptr : &it->second;
}

dp::outcome<machine_pool::leased> machine_pool::lease_for(const dp::machine_spec& spec,
                                                          const std::string& key, bool ready,
                                                          dp::system_time now) {
  if (auto address = address_of(spec.name)) {
    if (leases_.at(*address).key != key) {
      return dp::failure{dp::error_kind::already_exists,
                         "machine " + spec.name + " was leased by another request",
                         {}};
    }
    return leased{*address, true};
  }
  if (!zone_known(spec.zone)) {
    return dp::failure{dp::error_kind::invalid, "the pool has no zone " + spec.zone, {}};
  }
  std::optional<std::string> free;
  if (!spec.reservation.empty()) {
    const auto r = reserved_.find(spec.reservation);
    if (r == reserved_.end()) {
      return dp::failure{dp::error_kind::invalid, "no reservation " + spec.reservation, {}};
    }
    if (r->second.zone != spec.zone) {
      return dp::failure{dp::error_kind::invalid,
                         "reservation " + spec.reservation + " is in zone " + r->second.zone,
                         {}};
    }
    for (const auto& a : r->second.machines) {
      if (!leases_.contains(a)) {
        free = a;
        break;
      }
    }
    if (!free) {
      return dp::failure{dp::error_kind::capacity,
                         "every machine of reservation " + spec.reservation + " is in use",
                         {}};
    }
  } else {
    for (const auto& m : machines_) {
      if (m.zone == spec.zone && !leases_.contains(m.address) && !held(m.address)) {
        free = m.address;
        break;
      }
    }
    if (!free) {
      return dp::failure{dp::error_kind::capacity, "no free machine in zone " + spec.zone, {}};
    }
  }
  lease l;
  l.name = spec.name;
  l.key = key;
  l.zone = spec.zone;
  l.image = spec.image;
  l.instance_type = spec.instance_type;
  l.reservation = spec.reservation;
  l.labels_ = spec.labels_;
  l.created_at = now;
  l.ready = ready;
  leases_.emplace(*free, std::move(l));
  return leased{*free, false};
}

void machine_pool::mark_ready(const std::string& address) {
  if (auto it = leases_.find(address); it != leases_.end()) it->second.ready = true;
}

void machine_pool::give_back(const std::string& address) { leases_.erase(address); }

std::vector<std::string> machine_pool::unprepared() const {
  std::vector<std::string> out;
  for (const auto& [address, l] : leases_)
    if (!l.ready) out.push_back(address);
  return out;
}

dp::machine machine_pool::machine_at(const std::string& address) const {
  const lease& l = leases_.at(address);
  dp::machine m;
  m.name = l.name;
  m.upstream_id = address;
  m.zone = l.zone;
  m.status = l.ready ? dp::machine_status::running : dp::machine_status::provisioning;
  if (l.ready) m.ip_address = address;
  m.labels_ = l.labels_;
  m.created_at = l.created_at;
  return m;
}

dp::page<dp::machine> machine_pool::list(const dp::page_request& p) const {
  std::vector<dp::machine> mine;
  for (const auto& [address, l] : leases_)
    if (deployment_of(l.labels_, p.deployment)) mine.push_back(machine_at(address));
  return page_of(std::move(mine), p);
}

dp::reservation machine_pool::view(const held_reservation& r) const {
  dp::reservation v;
  v.name = r.name;
  v.upstream_id = r.name;
  v.zone = r.zone;
  v.machine_type = r.instance_type;
  v.count = static_cast<int>(r.machines.size());
  v.in_use = static_cast<int>(std::count_if(r.machines.begin(), r.machines.end(),
                                            [this](const auto& a) { return leases_.contains(a); }));
  v.status = dp::reservation_status::ready;
  v.labels_ = r.labels_;
  v.created_at = r.created_at;
  if (r.ends_at != dp::system_time{}) v.ends_at = r.ends_at;
  return v;
}

dp::outcome<dp::reservation> machine_pool::reserve(const dp::reservation_spec& spec,
                                                   const std::string& key, dp::system_time now) {
  if (const auto it = reserved_.find(spec.name); it != reserved_.end()) {
    if (it->second.key != key) {
      return dp::failure{dp::error_kind::already_exists,
                         "reservation " + spec.name + " was made by another request",
                         {}};
    }
    return view(it->second);
  }
  if (!zone_known(spec.zone)) {
    return dp::failure{dp::error_kind::invalid, "the pool has no zone " + spec.zone, {}};
  }
  held_reservation r;
  r.name = spec.name;
  r.key = key;
  r.zone = spec.zone;
  r.instance_type = spec.instance_type;
  r.labels_ = spec.labels_;
  r.created_at = now;
  r.ends_at = spec.ends_at;
  for (const auto& m : machines_) {
    if (static_cast<int>(r.machines.size()) == spec.count) break;
    if (m.zone == spec.zone && !leases_.contains(m.address) && !held(m.address)) {
      r.machines.push_back(m.address);
    }
  }
  if (static_cast<int>(r.machines.size()) < spec.count) {
    return dp::failure{dp::error_kind::capacity,
                       "zone " + spec.zone + " has " + std::to_string(r.machines.size()) +
                           " free machines, not " + std::to_string(spec.count),
                       {}};
  }
  auto [it, fresh] = reserved_.emplace(r.name, std::move(r));
  return view(it->second);
}

dp::outcome<dp::reservation> machine_pool::reservation_named(const std::string& name) const {
  const auto it = reserved_.find(name);
  if (it == reserved_.end()) {
    return dp::failure{dp::error_kind::not_found, "no reservation " + name, {}};
  }
  return view(it->second);
}

bool machine_pool::release(const std::string& name) { return reserved_.erase(name) > 0; }

dp::page<dp::reservation> machine_pool::list_reservations(const dp::page_request& p) const {
  std::vector<dp::reservation> mine;
  for (const auto& [name, r] : reserved_)
    if (deployment_of(r.labels_, p.deployment)) mine.push_back(view(r));
  return page_of(std::move(mine), p);
}

}  // namespace cloudbrain::pool_driver
