#include "actors/driver_hub.hpp"

#include "actors/api.hpp"
#include "core/log.hpp"
#include "core/token.hpp"
#include "core/uuid.hpp"

#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
namespace dp = driver_protocol;

namespace {

// The hub answers an operation by its deadline itself; ask() waits this much longer, so that
// the hub's answer (no driver connected, or no answer in time) is the one the caller gets.
constexpr auto answer_margin = std::chrono::seconds(2);
constexpr auto sweep_every = std::chrono::milliseconds(250);

unsigned bit(dp::capability c) { return 1u << static_cast<unsigned>(c); }

unsigned capability_bits(const std::vector<dp::capability>& caps) {
  unsigned out = 0;
  for (const auto c : caps) out |= bit(c);
  return out;
}

std::string capability_list(unsigned bits) {
  std::string out;
  for (const auto c :
       {dp::capability::instances, dp::capability::list, dp::capability::reservations}) {
    if (!(bits & bit(c))) continue;
    if (!out.empty()) out += ' ';
    out += dp::to_string(c);
  }
  return out;
}

std::string operation_id(std::uint64_t n) { return "op-" + std::to_string(n); }

std::optional<std::uint64_t> operation_number(std::string_view id) {
  if (!id.starts_with("op-")) return std::nullopt;
  id.remove_prefix(3);
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
  if (ec != std::errc{} || end != id.data() + id.size() || n == 0) return std::nullopt;
  return n;
}

std::string warning_key(const std::string& provider) { return "drivers." + provider; }

std::string type_of(const json::object& op) {
  const auto* t = op.if_contains("type");
  return t && t->is_string() ? std::string(t->as_string()) : std::string("operation");
}

}  // namespace

// ---- the port --------------------------------------------------------------------------

asio::awaitable<result<json::object>> driver_hub_port::call(json::object operation, deadline dl) {
  auto calling = hub_.call(provider_, std::move(operation), dl);
  co_return co_await std::move(calling);
}

bool driver_hub_port::declares(std::string_view capability) const {
  const auto c = dp::parse_capability(capability);
  return c && (capabilities_.load() & bit(*c)) != 0;
}

void driver_hub_port::on_capacity_change(std::function<void()> wake) {
  std::lock_guard lock(wake_mutex_);
  wake_ = std::move(wake);
}

void driver_hub_port::detach() { hub_.detach(provider_, this); }

void driver_hub_port::update(std::size_t capacity, std::size_t connections, unsigned capabilities) {
  capabilities_.store(capabilities);
  connections_.store(connections);
  if (capacity_.exchange(capacity) == capacity) return;
  std::function<void()> wake;
  {
    std::lock_guard lock(wake_mutex_);
    wake = wake_;
  }
  if (wake) wake();
}

// ---- the hub ---------------------------------------------------------------------------

driver_hub::driver_hub(asio::any_io_executor ex, authenticator& auth, health& status,
                       driver_hub_config cfg)
    : actor(std::move(ex), "driver_hub", 65536), auth_(auth), health_(status), cfg_(cfg) {
  // Versions are digests of the values under a salt of this process: equal values, equal
  // versions, and nothing learnt about a secret from its version.
  std::uint8_t salt[16];
  secure_random(salt, sizeof salt);
  version_salt_ = to_hex(salt, sizeof salt);
}

std::shared_ptr<providers::remote_port> driver_hub::attach(providers::remote_provider p) {
  auto port = std::make_shared<driver_hub_port>(*this, p.name);
  // Past the mailbox: attaching must not be refused because operations are busy.
  asio::post(strand(), [this, a = hub_attach{port, std::move(p)}]() mutable {
    try {
      on_attach(std::move(a));
    } catch (const std::exception& e) {
      log::error("attaching an external provider failed", {{"error", e.what()}});
    }
  });
  return port;
}

void driver_hub::detach(std::string provider, const driver_hub_port* port) {
  asio::post(strand(), [this, d = hub_detach{std::move(provider), port}] {
    try {
      on_detach(d);
    } catch (const std::exception& e) {
      log::error("detaching an external provider failed", {{"error", e.what()}});
    }
  });
}

void driver_hub::start() { spawn(sweep_loop(), "sweep_loop"); }

void driver_hub::close_connections() {
  asio::post(strand(), [this] {
    closing_ = true;
    for (auto& [id, s] : sessions_) {
      if (!s.outbox->try_send(boost::system::error_code{},
                              driver_outgoing{{},
                                              boost::beast::websocket::close_reason(
                                                  boost::beast::websocket::close_code::going_away,
                                                  "the service is shutting down")})) {
        s.outbox->close();
      }
    }
    for (auto& [name, p] : providers_) {
      for (const auto id : p.queue) {
        if (auto it = operations_.find(id); it != operations_.end()) {
          it->second.reply(fail(errc::cloud_unavailable, "the service is shutting down"));
          operations_.erase(it);
        }
      }
      p.queue.clear();
    }
  });
}

asio::awaitable<result<json::object>> driver_hub::call(std::string provider, json::object op,
                                                       deadline dl) {
  auto asking = ask<json::object>(
      *this,
      [&](reply_to<json::object> r) {
        return hub_message{hub_call{std::move(provider), std::move(op), dl, std::move(r)}};
      },
      dl + answer_margin);
  co_return co_await std::move(asking);
}

void driver_hub::handle(hub_message&& m) {
  std::visit(
      [this](auto&& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, hub_attach>) {
          on_attach(std::move(msg));
        } else if constexpr (std::is_same_v<T, hub_detach>) {
          on_detach(msg);
        } else if constexpr (std::is_same_v<T, hub_call>) {
          on_call(std::move(msg));
        } else if constexpr (std::is_same_v<T, hub_register>) {
          on_register(std::move(msg));
        } else if constexpr (std::is_same_v<T, hub_incoming>) {
          on_incoming(std::move(msg));
        } else {
          on_closed(msg);
        }
      },
      std::move(m));
}

void driver_hub::on_attach(hub_attach&& a) {
  const std::string name = a.provider.name;
  const auto version_of = [this](const json::object& values) {
    const std::string text = version_salt_ + json::serialize(values);
    const auto digest = sha256(text.data(), text.size());
    return to_hex(digest.data(), 8);
  };
  provider_entry entry;
  entry.config_version = version_of(a.provider.config);
  entry.secret_version = version_of(a.provider.secret);
  entry.info = std::move(a.provider);
  entry.port = std::move(a.port);
  log::info("external provider attached", {{"provider", name}, {"driver", entry.info.driver}});
  auto [it, fresh] = providers_.insert_or_assign(name, std::move(entry));
  refresh_provider(it->second);
  dispatch(name);
}

void driver_hub::on_detach(const hub_detach& d) {
  auto it = providers_.find(d.provider);
  if (it == providers_.end() || it->second.port.get() != d.port) return;
  for (auto op = operations_.begin(); op != operations_.end();) {
    if (op->second.provider != d.provider) {
      ++op;
      continue;
    }
    if (auto s = sessions_.find(op->second.session); s != sessions_.end()) {
      s->second.in_flight.erase(op->first);
    }
    op->second.reply(fail(errc::cloud_unavailable, "provider " + d.provider + " is not served"));
    op = operations_.erase(op);
  }
  health_.clear_warning(warning_key(d.provider));
  providers_.erase(it);
  log::info("external provider detached", {{"provider", d.provider}});
}

void driver_hub::on_call(hub_call&& c) {
  auto it = providers_.find(c.provider);
  if (it == providers_.end()) {
    c.reply(fail(errc::cloud_unavailable, "provider " + c.provider + " is not attached"));
    return;
  }
  if (closing_) {
    c.reply(fail(errc::cloud_unavailable, "the service is shutting down"));
    return;
  }
  const auto op = dp::parse_operation(type_of(c.operation));
  if (!op) {
    c.reply(fail(errc::internal, "not an operation of the driver protocol"));
    return;
  }
  provider_entry& p = it->second;
  if (p.queue.size() >= cfg_.max_queued) {
    c.reply(fail(errc::overloaded, "too many operations wait for driver " + p.info.driver));
    return;
  }
  const auto id = next_operation_++;
  operations_.emplace(id, pending_operation{c.provider, std::move(c.operation), dp::needed_for(*op),
                                            c.dl, std::move(c.reply), 0, 0});
  p.queue.push_back(id);
  dispatch(c.provider);
}

bool driver_hub::send_to(session_entry& s, std::string text) {
  return s.outbox->try_send(boost::system::error_code{}, driver_outgoing{std::move(text), {}});
}

void driver_hub::dispatch(const std::string& provider) {
  auto pit = providers_.find(provider);
  if (pit == providers_.end()) return;
  provider_entry& p = pit->second;
  std::vector<std::uint64_t> broken;  // connections whose outgoing queue is full
  const auto now = steady_clock::now();
  for (auto qit = p.queue.begin(); qit != p.queue.end();) {
    auto oit = operations_.find(*qit);
    if (oit == operations_.end()) {
      qit = p.queue.erase(qit);
      continue;
    }
    pending_operation& op = oit->second;
    if (op.dl <= now) {
      ++qit;  // the sweep answers it
      continue;
    }
    // The connection of the provider's driver with the most room that declared what it needs.
    session_entry* best = nullptr;
    std::size_t best_room = 0;
    for (auto& [sid, s] : sessions_) {
      if (!may_serve(s.driver, s.token_id, p) || !(s.capabilities & bit(op.needs))) continue;
      if (std::find(broken.begin(), broken.end(), sid) != broken.end()) continue;
      const auto limit = static_cast<std::size_t>(s.max_in_flight);
      const std::size_t room = limit > s.in_flight.size() ? limit - s.in_flight.size() : 0;
      if (room > best_room) {
        best = &s;
        best_room = room;
      }
    }
    if (best == nullptr) {
      ++qit;  // another operation may need what another connection offers
      continue;
    }
    // The driver's deadline leaves room for its answer to travel back.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(op.dl - now);
    const auto margin = std::min(std::chrono::milliseconds(1000), left / 10);
    json::object message = op.operation;
    message["id"] = operation_id(oit->first);
    message["deadline_ms"] = (left - margin).count();
    message["config_version"] = p.config_version;
    message["secret_version"] = p.secret_version;
    if (!send_to(*best, json::serialize(message))) {
      broken.push_back(best->id);
      continue;  // the same operation, another connection
    }
    best->in_flight.insert(oit->first);
    ++best->sent;
    op.session = best->id;
    ++op.sends;
    if (op.sends > 1) {
      log::info("operation sent again after its connection dropped",
                {{"provider", provider},
                 {"operation", type_of(op.operation)},
                 {"id", operation_id(oit->first)},
                 {"session", best->id}});
    }
    qit = p.queue.erase(qit);
  }
  for (const auto sid : broken)
    drop(sid, "its outgoing queue is full (the driver reads too slowly)");
}

void driver_hub::dispatch_all() {
  std::vector<std::string> names;
  for (const auto& [name, p] : providers_)
    if (!p.queue.empty()) names.push_back(name);
  for (const auto& name : names) dispatch(name);
}

// A connection serves a provider when it registered under the provider's driver name with a
// token the provider's driver-tokens allows (any driver token when it names none).
bool driver_hub::may_serve(const std::string& driver, std::int64_t token_id,
                           const provider_entry& p) {
  if (driver != p.info.driver) return false;
  const auto& allowed = p.info.tokens;
  return allowed.empty() || std::find(allowed.begin(), allowed.end(), token_id) != allowed.end();
}

void driver_hub::on_register(hub_register&& r) {
  const auto refuse = [&r](std::string reason, std::string message) {
    r.reply(driver_registration{dp::refusal{std::move(reason), std::move(message)}});
  };
  if (closing_) return refuse("shutting_down", "the service is shutting down");
  if (r.registration.protocol_version != dp::version) {
    return refuse("unsupported_version", "this hub speaks protocol version " +
                                             std::to_string(dp::version) + ", not " +
                                             std::to_string(r.registration.protocol_version));
  }
  dp::acceptance accepted;
  for (const auto& [name, p] : providers_) {
    if (!may_serve(r.registration.driver, r.token_id, p)) continue;
    accepted.providers.push_back(
        dp::served_provider{name, p.info.zones, p.config_version, p.secret_version});
  }
  if (accepted.providers.empty()) {
    // The same answer whether no section names the driver or none lets this token serve it.
    return refuse("unknown_driver", "no provider section names driver '" + r.registration.driver +
                                        "' for this token");
  }
  if (sessions_.size() >= cfg_.max_connections) {
    return refuse("too_many_connections", "the hub serves " + std::to_string(cfg_.max_connections) +
                                              " driver connections already");
  }
  const auto id = next_session_++;
  session_entry s;
  s.id = id;
  s.driver = r.registration.driver;
  s.max_in_flight = r.registration.max_in_flight;
  s.capabilities = capability_bits(r.registration.capabilities);
  s.outbox = std::move(r.outbox);
  s.remote = r.remote;
  s.token_id = r.token_id;
  accepted.session = "s-" + std::to_string(id);
  accepted.heartbeat_interval = cfg_.heartbeat_interval;
  accepted.heartbeat_timeout = cfg_.heartbeat_interval * 3;
  accepted.max_message_bytes = cfg_.max_message_bytes;
  log::info("driver registered", {{"driver", s.driver},
                                  {"session", id},
                                  {"remote", s.remote},
                                  {"token_id", s.token_id},
                                  {"max_in_flight", s.max_in_flight},
                                  {"capabilities", capability_list(s.capabilities)}});
  const std::string driver = s.driver;
  sessions_.emplace(id, std::move(s));
  sessions_count_.store(sessions_.size());
  r.reply(driver_registration{std::move(accepted)});
  refresh(driver);
  dispatch_all();
}

void driver_hub::on_incoming(hub_incoming&& in) {
  auto sit = sessions_.find(in.session);
  if (sit == sessions_.end()) return;  // dropped meanwhile: its operations went elsewhere
  session_entry& s = sit->second;
  const auto& m = in.message;
  if (m.type == "get_config" || m.type == "get_secret") {
    answer_settings(s, m);
    return;
  }
  // A result or an error: the answer to an operation sent on this connection.
  const std::string id(m.fields.at("id").as_string());
  const auto number = operation_number(id);
  if (!number || *number >= next_operation_) {
    const std::string reason = "an answer to an operation that was never sent";
    log::warn("driver protocol error",
              {{"session", s.id}, {"driver", s.driver}, {"error", reason}});
    (void)s.outbox->try_send(
        boost::system::error_code{},
        driver_outgoing{
            json::serialize(dp::protocol_error_message(reason)),
            boost::beast::websocket::close_reason(
                boost::beast::websocket::close_code::protocol_error, "protocol error")});
    return;
  }
  auto oit = operations_.find(*number);
  if (oit == operations_.end() || oit->second.session != s.id) {
    // Answered after its deadline, or after its connection was given up: nobody waits for it.
    log::debug("late answer ignored", {{"session", s.id}, {"id", id}});
    return;
  }
  s.in_flight.erase(*number);
  const std::string provider = oit->second.provider;
  oit->second.reply(std::move(in.message.fields));
  operations_.erase(oit);
  dispatch(provider);
}

void driver_hub::answer_settings(session_entry& s, const dp::message& m) {
  const bool secret = m.type == "get_secret";
  const std::string id(m.fields.at("id").as_string());
  const std::string provider(m.fields.at("provider").as_string());
  const auto it = providers_.find(provider);
  if (it == providers_.end() || !may_serve(s.driver, s.token_id, it->second)) {
    // The same answer whether the provider exists or belongs to another driver.
    log::warn("a driver asked for a provider it does not serve",
              {{"session", s.id}, {"driver", s.driver}, {"provider", provider.substr(0, 64)}});
    (void)send_to(s, json::serialize(dp::error_message(
                         id, dp::failure{dp::error_kind::not_found,
                                         "driver " + s.driver + " serves no such provider",
                                         {}})));
    return;
  }
  const provider_entry& p = it->second;
  const dp::settings_answer answer{id, provider, secret ? p.secret_version : p.config_version,
                                   secret ? p.info.secret : p.info.config};
  log::info(secret ? "driver fetched a provider's secret" : "driver fetched a provider's config",
            {{"session", s.id}, {"driver", s.driver}, {"provider", provider}});
  if (!send_to(s, json::serialize(dp::settings_message(secret ? "secret" : "config", answer)))) {
    drop(s.id, "its outgoing queue is full (the driver reads too slowly)");
  }
}

void driver_hub::on_closed(const hub_closed& c) { drop(c.session, c.why); }

void driver_hub::drop(std::uint64_t session, const std::string& why) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  session_entry s = std::move(it->second);
  sessions_.erase(it);
  sessions_count_.store(sessions_.size());
  s.outbox->close();  // ends the connection if it has not ended already
  // Back to the front of their queues, oldest first: sent again on the next connection.
  std::size_t requeued = 0;
  for (auto id = s.in_flight.rbegin(); id != s.in_flight.rend(); ++id) {
    auto oit = operations_.find(*id);
    if (oit == operations_.end()) continue;
    oit->second.session = 0;
    if (auto p = providers_.find(oit->second.provider); p != providers_.end()) {
      p->second.queue.push_front(*id);
      ++requeued;
    }
  }
  log::warn("driver connection closed", {{"driver", s.driver},
                                         {"session", s.id},
                                         {"remote", s.remote},
                                         {"reason", why},
                                         {"operations_requeued", requeued}});
  refresh(s.driver);
  dispatch_all();
}

void driver_hub::refresh(const std::string& driver) {
  for (auto& [name, p] : providers_)
    if (p.info.driver == driver) refresh_provider(p);
}

void driver_hub::refresh_provider(provider_entry& p) {
  std::size_t capacity = 0;
  std::size_t connections = 0;
  unsigned capabilities = 0;
  for (const auto& [id, s] : sessions_) {
    if (!may_serve(s.driver, s.token_id, p)) continue;
    capacity += static_cast<std::size_t>(s.max_in_flight);
    ++connections;
    capabilities |= s.capabilities;
  }
  const bool was_connected = p.port->connections() > 0;
  p.port->update(capacity, connections, capabilities);
  if (connections == 0) {
    health_.set_warning(warning_key(p.info.name), "provider " + p.info.name + ": no driver '" +
                                                      p.info.driver +
                                                      "' is connected; its jobs wait for one");
    if (was_connected) {
      log::warn("no driver serves the provider now; its jobs wait",
                {{"provider", p.info.name}, {"driver", p.info.driver}});
    }
  } else {
    health_.clear_warning(warning_key(p.info.name));
  }
}

asio::awaitable<void> driver_hub::sweep_loop() {
  while (!closed()) {
    co_await sleep_for(sweep_every);
    sweep();
  }
}

void driver_hub::sweep() {
  const auto now = steady_clock::now();
  bool freed = false;
  for (auto oit = operations_.begin(); oit != operations_.end();) {
    pending_operation& op = oit->second;
    if (op.dl > now) {
      ++oit;
      continue;
    }
    const auto pit = providers_.find(op.provider);
    const std::string driver = pit != providers_.end() ? pit->second.info.driver : "";
    const std::string what = type_of(op.operation);
    if (auto s = sessions_.find(op.session); s != sessions_.end()) {
      s->second.in_flight.erase(oit->first);
      freed = true;
      op.reply(fail(errc::timeout,
                    "driver " + driver + " did not answer " + what + " within its deadline"));
    } else {
      if (pit != providers_.end()) std::erase(pit->second.queue, oit->first);
      const bool connected = pit != providers_.end() && pit->second.port->connections() > 0;
      op.reply(connected
                   ? fail(errc::timeout, "every connection of driver " + driver +
                                             " was busy until the deadline of " + what)
                   : fail(errc::cloud_unavailable,
                          "no driver " + driver + " connected before the deadline of " + what));
    }
    oit = operations_.erase(oit);
  }
  if (freed) dispatch_all();
}

}  // namespace cloudbrain
