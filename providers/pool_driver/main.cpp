// cloudbrain-pool-driver: an out-of-tree cloudbrain driver, on the driver SDK, that hands out
// machines from a static pool listed in a file, for on-premises labs. A create leases a free
// machine of the zone (capacity when there is none), a delete gives it back, a reservation
// sets machines aside for instances that name it. Leases survive restarts in a state file,
// written before any answer, so a create retried under the same key after a crash gets the
// same machine. Optional hooks prepare a machine before it is handed out (power it on,
// reimage it) and wipe it when it comes back.
#include "core/log.hpp"
#include "core/time.hpp"
#include "providers/driver_sdk/driver_sdk.hpp"
#include "providers/pool_driver/hook.hpp"
#include "providers/pool_driver/pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

namespace cloudbrain::pool_driver {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace sdk = driver_sdk;
using steady_clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct settings {
  std::string pool_file;
  std::string state_file;
  std::string prepare;  // hook commands; empty: none
  std::string wipe;
  std::chrono::milliseconds hook_timeout{std::chrono::minutes(10)};
};

constexpr const char* own_usage = R"(    --pool FILE
        The machines: one "ADDRESS ZONE" a line ('#' starts a comment). Required.
    --state FILE
        Where leases and reservations are kept across restarts (written atomically before
        every answer that changes them). Required.
    --prepare COMMAND
        Run (/bin/sh -c) on a machine before it is handed out, e.g. to power it on or reimage
        it; the instance is `provisioning` until it succeeds.
    --wipe COMMAND
        Run on a machine before it goes back to the pool.
    --hook-timeout DURATION
        How long a hook may run at most (10m); a create or delete also stops waiting for it at
        its own deadline, and is answered again when retried.

    Hooks get CLOUDBRAIN_HOOK (prepare or wipe), CLOUDBRAIN_PROVIDER, CLOUDBRAIN_MACHINE_NAME,
    CLOUDBRAIN_MACHINE_ADDRESS, CLOUDBRAIN_MACHINE_ZONE, CLOUDBRAIN_IMAGE and
    CLOUDBRAIN_INSTANCE_TYPE in their environment, and on their standard input one JSON object:
    {"hook", "provider", "machine": {...}, "public_ssh_key", "config": {...}, "secret": {...}},
    the provider's configuration and secret as cloudbrain hands them to the driver.
)";

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Replaces `path` with `text` so that a crash leaves the old file or the new one, never half.
bool write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || std::rename(tmp.c_str(), path.c_str()) != 0) return false;
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

// Something several coroutines wait for, once.
struct preparation {
  explicit preparation(asio::any_io_executor ex) : timer(ex, steady_clock::time_point::max()) {}
  asio::steady_timer timer;
  bool finished = false;
  hook_outcome outcome;

  void finish(hook_outcome o) {
    outcome = std::move(o);
    finished = true;
    timer.cancel();
  }
  // True once finished; false at `dl`.
  asio::awaitable<bool> wait_until(steady_clock::time_point dl) {
    using namespace asio::experimental::awaitable_operators;
    while (!finished) {
      if (steady_clock::now() >= dl) co_return false;
      asio::steady_timer limit(co_await asio::this_coro::executor, dl);
      co_await (timer.async_wait(use_tuple) || limit.async_wait(use_tuple));
    }
    co_return true;
  }
};

class pool_cloud final : public sdk::driver {
 public:
  pool_cloud(asio::io_context& ioc, machine_pool pool, settings s)
      : ioc_(ioc), pool_(std::move(pool)), settings_(std::move(s)), writer_(1) {}
  ~pool_cloud() override { writer_.join(); }

  std::vector<sdk::capability> capabilities() const override {
    return {sdk::capability::instances, sdk::capability::list, sdk::capability::reservations};
  }

  asio::awaitable<sdk::outcome<sdk::machine>> create(const sdk::call_context& c,
                                                     const sdk::machine_spec& spec) override {
    auto leased = pool_.lease_for(spec, c.idempotency_key, settings_.prepare.empty(),
                                  std::chrono::system_clock::now());
    if (!leased) co_return leased.error();
    const std::string address = leased->address;
    if (!leased->replayed) {
      ssh_keys_[address] = spec.public_ssh_key;
      log::info("machine leased", {{"provider", c.provider},
                                   {"machine", spec.name},
                                   {"address", address},
                                   {"zone", spec.zone}});
      if (!co_await persist()) {
        pool_.give_back(address);
        co_return sdk::fail(sdk::error_kind::transient, "cannot save the pool's state");
      }
    }
    if (!pool_.lease_at(address)->ready) {
      auto p = prepare(address, c);
      if (!co_await p->wait_until(c.deadline)) {
        co_return sdk::fail(sdk::error_kind::transient,
                            "machine " + spec.name + " is still being prepared");
      }
      if (!p->outcome.ok) {
        co_return sdk::fail(sdk::error_kind::transient,
                            "preparing " + address + " failed: " + p->outcome.detail);
      }
    }
    if (!pool_.lease_at(address)) {
      co_return sdk::fail(sdk::error_kind::transient, "machine " + spec.name + " was deleted");
    }
    co_return pool_.machine_at(address);
  }

  asio::awaitable<sdk::outcome<sdk::machine>> get(const sdk::call_context& c,
                                                  const sdk::machine_ref& ref) override {
    const auto address = pool_.address_of(ref.name);
    if (!address) co_return sdk::fail(sdk::error_kind::not_found, "no machine " + ref.name);
    // Left unprepared by a restart: prepare it now, with this provider's settings.
    if (!pool_.lease_at(*address)->ready) (void)prepare(*address, c);
    co_return pool_.machine_at(*address);
  }

  asio::awaitable<sdk::outcome<void>> destroy(const sdk::call_context& c,
                                              const sdk::machine_ref& ref) override {
    const auto address = pool_.address_of(ref.name);
    if (!address) co_return sdk::outcome<void>{};  // not there: done
    if (auto it = preparing_.find(*address); it != preparing_.end()) {
      auto p = it->second;
      if (!co_await p->wait_until(c.deadline)) {
        co_return sdk::fail(sdk::error_kind::transient,
                            "machine " + ref.name + " is still being prepared");
      }
    }
    if (!settings_.wipe.empty()) {
      auto wiping = run_hook(settings_.wipe, environment("wipe", *address, c),
                             input("wipe", *address, c), c.deadline);
      const auto wiped = co_await std::move(wiping);
      if (!wiped.ok) {
        co_return sdk::fail(sdk::error_kind::transient,
                            "wiping " + *address + " failed: " + wiped.detail);
      }
    }
    if (!pool_.lease_at(*address)) co_return sdk::outcome<void>{};  // deleted meanwhile
    const lease before = *pool_.lease_at(*address);
    pool_.give_back(*address);
    ssh_keys_.erase(*address);
    if (!co_await persist()) {
      co_return sdk::fail(sdk::error_kind::transient, "cannot save the pool's state");
    }
    log::info("machine returned",
              {{"provider", c.provider}, {"machine", before.name}, {"address", *address}});
    co_return sdk::outcome<void>{};
  }

  asio::awaitable<sdk::outcome<sdk::page<sdk::machine>>> list(const sdk::call_context&,
                                                              const sdk::page_request& p) override {
    co_return pool_.list(p);
  }

  asio::awaitable<sdk::outcome<sdk::reservation>> reserve(
      const sdk::call_context& c, const sdk::reservation_spec& spec) override {
    auto held = pool_.reserve(spec, c.idempotency_key, std::chrono::system_clock::now());
    if (!held) co_return held.error();
    if (!co_await persist()) {
      (void)pool_.release(spec.name);
      co_return sdk::fail(sdk::error_kind::transient, "cannot save the pool's state");
    }
    log::info("machines reserved",
              {{"provider", c.provider}, {"reservation", spec.name}, {"count", spec.count}});
    co_return std::move(*held);
  }

  asio::awaitable<sdk::outcome<sdk::reservation>> get_reservation(
      const sdk::call_context&, const sdk::reservation_ref& ref) override {
    co_return pool_.reservation_named(ref.name);
  }

  asio::awaitable<sdk::outcome<void>> release(const sdk::call_context& c,
                                              const sdk::reservation_ref& ref) override {
    if (!pool_.release(ref.name)) co_return sdk::outcome<void>{};
    if (!co_await persist()) {
      co_return sdk::fail(sdk::error_kind::transient, "cannot save the pool's state");
    }
    log::info("reservation released", {{"provider", c.provider}, {"reservation", ref.name}});
    co_return sdk::outcome<void>{};
  }

  asio::awaitable<sdk::outcome<sdk::page<sdk::reservation>>> list_reservations(
      const sdk::call_context&, const sdk::page_request& p) override {
    co_return pool_.list_reservations(p);
  }

 private:
  std::map<std::string, std::string> environment(std::string_view hook, const std::string& address,
                                                 const sdk::call_context& c) const {
    const lease* l = pool_.lease_at(address);
    return {{"CLOUDBRAIN_HOOK", std::string(hook)},
            {"CLOUDBRAIN_PROVIDER", c.provider},
            {"CLOUDBRAIN_MACHINE_NAME", l ? l->name : ""},
            {"CLOUDBRAIN_MACHINE_ADDRESS", address},
            {"CLOUDBRAIN_MACHINE_ZONE", l ? l->zone : ""},
            {"CLOUDBRAIN_IMAGE", l ? l->image : ""},
            {"CLOUDBRAIN_INSTANCE_TYPE", l ? l->instance_type : ""}};
  }

  std::string input(std::string_view hook, const std::string& address,
                    const sdk::call_context& c) const {
    const lease* l = pool_.lease_at(address);
    const auto key = ssh_keys_.find(address);
    json::object machine{{"address", address}};
    if (l) {
      machine["name"] = l->name;
      machine["zone"] = l->zone;
      machine["image"] = l->image;
      machine["instance_type"] = l->instance_type;
    }
    return json::serialize(json::object{
        {"hook", hook},
        {"provider", c.provider},
        {"machine", std::move(machine)},
        {"public_ssh_key", key != ssh_keys_.end() ? json::value(key->second) : json::value()},
        {"config", c.config},
        {"secret", c.secret}});
  }

  // The preparation of `address`: the one running, or a new one. It runs on its own, bounded by
  // --hook-timeout, whoever stops waiting for it.
  std::shared_ptr<preparation> prepare(const std::string& address, const sdk::call_context& c) {
    if (auto it = preparing_.find(address); it != preparing_.end()) return it->second;
    auto p = std::make_shared<preparation>(ioc_.get_executor());
    preparing_[address] = p;
    asio::co_spawn(
        ioc_,
        [this, p, address, env = environment("prepare", address, c),
         in = input("prepare", address, c)]() -> asio::awaitable<void> {
          auto running =
              run_hook(settings_.prepare, env, in, steady_clock::now() + settings_.hook_timeout);
          auto outcome = co_await std::move(running);
          if (outcome.ok && pool_.lease_at(address)) {
            pool_.mark_ready(address);
            if (!co_await persist()) outcome = hook_outcome{false, "cannot save the pool's state"};
          }
          if (outcome.ok) {
            log::info("machine prepared", {{"address", address}});
          } else {
            // Not handed out: the lease stays, unprepared, and the next get or create of it
            // tries again.
            log::warn("preparing a machine failed",
                      {{"address", address}, {"error", outcome.detail}});
          }
          preparing_.erase(address);
          p->finish(std::move(outcome));
        },
        asio::detached);
    return p;
  }

  // Writes the pool's state on the writer thread; true once it is on disk.
  asio::awaitable<bool> persist() {
    const std::string text = json::serialize(pool_.snapshot());
    auto home = co_await asio::this_coro::executor;
    co_await asio::post(writer_strand_, asio::use_awaitable);
    const bool ok = write_atomically(settings_.state_file, text);
    co_await asio::post(home, asio::use_awaitable);
    if (!ok) log::error("cannot write the state file", {{"path", settings_.state_file}});
    co_return ok;
  }

  asio::io_context& ioc_;
  machine_pool pool_;
  settings settings_;
  asio::thread_pool writer_;
  asio::strand<asio::thread_pool::executor_type> writer_strand_{writer_.get_executor()};
  std::map<std::string, std::shared_ptr<preparation>> preparing_;
  std::map<std::string, std::string> ssh_keys_;  // by address, while leased by this process
};

int main_with(int argc, char** argv) {
  auto cl = sdk::parse_command_line(argc, argv);
  if (cl.help) {
    std::cout << "Usage: cloudbrain-pool-driver --url URL --token-file FILE --driver NAME "
                 "--pool FILE --state FILE [OPTIONS]\n\n"
                 "Serves cloudbrain's external providers of driver NAME from a static pool of "
                 "machines.\n\n"
              << sdk::usage() << own_usage;
    return 0;
  }
  settings s;
  std::string error = cl.error;
  for (std::size_t i = 0; error.empty() && i < cl.rest.size(); ++i) {
    const std::string& arg = cl.rest[i];
    const auto value = [&](std::string_view flag, std::string& out) {
      if (arg != flag) return false;
      if (i + 1 >= cl.rest.size()) {
        error = std::string(flag) + " needs a value";
      } else {
        out = cl.rest[++i];
      }
      return true;
    };
    std::string duration;
    if (value("--pool", s.pool_file) || value("--state", s.state_file) ||
        value("--prepare", s.prepare) || value("--wipe", s.wipe)) {
      continue;
    }
    if (value("--hook-timeout", duration)) {
      auto d = parse_duration(duration);
      if (!d || d->count() <= 0) {
        error = "--hook-timeout must be a duration such as 90s or 10m";
      } else {
        s.hook_timeout = *d;
      }
      continue;
    }
    error = "unknown argument '" + arg + "' (try --help)";
  }
  if (error.empty() && s.pool_file.empty()) error = "--pool is required";
  if (error.empty() && s.state_file.empty()) error = "--state is required";
  if (!error.empty()) {
    std::cerr << "cloudbrain-pool-driver: " << error << "\n";
    return 2;
  }
  const auto pool_text = read_file(s.pool_file);
  if (!pool_text) {
    std::cerr << "cloudbrain-pool-driver: cannot read the pool file " << s.pool_file << "\n";
    return 2;
  }
  auto machines = parse_pool(*pool_text);
  if (!machines) {
    std::cerr << "cloudbrain-pool-driver: " << s.pool_file << ": " << machines.error().reason
              << "\n";
    return 2;
  }
  machine_pool pool(std::move(*machines));
  if (const auto state = read_file(s.state_file)) {
    boost::system::error_code ec;
    const auto doc = json::parse(*state, ec);
    if (ec || !doc.is_object()) {
      std::cerr << "cloudbrain-pool-driver: the state file " << s.state_file
                << " is not JSON; move it away to start empty\n";
      return 2;
    }
    if (auto restored = pool.restore(doc.as_object()); !restored) {
      std::cerr << "cloudbrain-pool-driver: " << s.state_file << ": " << restored.error().reason
                << "\n";
      return 2;
    }
  }
  bool level_ok = false;
  log::init(log::parse_level(cl.log_level, &level_ok), false);
  // A hook that exits before reading its input must not take the driver down with it.
  std::signal(SIGPIPE, SIG_IGN);
  log::info(
      "pool loaded",
      {{"machines", pool.size()}, {"leased", pool.leased_count()}, {"driver", cl.opts.driver}});
  asio::io_context ioc(1);
  pool_cloud cloud(ioc, std::move(pool), std::move(s));
  const int code = sdk::run(ioc, cloud, std::move(cl.opts));
  log::shutdown();
  return code;
}

}  // namespace
}  // namespace cloudbrain::pool_driver

int main(int argc, char** argv) {
  try {
    return cloudbrain::pool_driver::main_with(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "cloudbrain-pool-driver: " << e.what() << "\n";
    return 1;
  }
}
