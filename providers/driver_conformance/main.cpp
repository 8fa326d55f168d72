// cloudbrain-driver-conformance --driver-cmd "COMMAND" [OPTIONS]
//
// Plays cloudbrain's hub against an out-of-tree driver and checks that it speaks the driver
// protocol (docs/driver-protocol.md) and keeps its semantics: it registers with its token,
// fetches its configuration and secret and caches them by version, creates idempotently,
// lists what it made page by page, deletes what is not there, types its errors, answers
// within deadlines, keeps the heartbeat and reconnects. It prints one line per check and exits
// 0 when all of them passed, 1 when one failed, 2 when it could not run.
#include "core/uuid.hpp"
#include "providers/driver_conformance/stand_in_hub.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <set>
#include <sstream>

extern char** environ;

namespace cloudbrain::driver_conformance {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* usage =
    R"(Usage: cloudbrain-driver-conformance --driver-cmd "COMMAND" [OPTIONS]

Runs COMMAND (with /bin/sh -c) with "--url ws://127.0.0.1:PORT/drivers/connect --token-file FILE
--driver NAME" appended, plays cloudbrain's hub against it, and checks the driver protocol and
its semantics. One line per check; exit status 0 when every check passed, 1 when one failed.

    --driver-cmd COMMAND     the driver, without the three flags above (required)
    --driver-name NAME       the name it must register with (conformance)
    --zone ZONE              a zone with room for three machines (zone-a)
    --image IMAGE            an image the driver accepts (conformance-image)
    --config KEY=VALUE       a key of the provider's configuration (repeatable)
    --secret KEY=VALUE       a key of its secret (repeatable; without "secret." before it)
    --capacity N             the zone holds exactly N machines: check that machine N+1 is
                             refused with a capacity error
    --timeout DURATION       how long one answer may take (10s)
    --driver-log FILE        where the driver's output goes (a temporary file)
)";

struct kit_options {
  std::string driver_cmd;
  std::string driver_name = "conformance";
  std::string zone = "zone-a";
  std::string image = "conformance-image";
  json::object config;
  json::object secret;
  std::optional<int> capacity;
  std::chrono::milliseconds timeout = 10s;
  std::string driver_log;
};

// The driver's process, in a process group of its own.
class driver_process {
 public:
  bool start(const std::string& command, const std::string& log_path) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    std::string shell = "/bin/sh";
    std::string dash_c = "-c";
    std::string script = "exec " + command;
    char* argv[] = {shell.data(), dash_c.data(), script.data(), nullptr};
    const int r = ::posix_spawn(&pid_, "/bin/sh", &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return r == 0;
  }
  // True while it runs.
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  void stop() {
    if (!running()) return;
    ::kill(-pid_, SIGTERM);
    for (int i = 0; i < 50 && running(); ++i) ::usleep(100'000);
    if (running()) ::kill(-pid_, SIGKILL);
    int status = 0;
    if (pid_ > 0) ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  ~driver_process() { stop(); }

 private:
  pid_t pid_ = -1;
};

struct report {
  int passed = 0;
  int failed = 0;
  void line(const std::string& check, const std::optional<std::string>& problem) {
    if (problem) {
      ++failed;
      std::cout << "FAIL " << check << ": " << *problem << std::endl;
    } else {
      ++passed;
      std::cout << "ok   " << check << std::endl;
    }
  }
};

std::string new_id() { return uuid::generate_v7().str(); }

std::string kind_of(const json::object& answer) {
  if (answer.at("type") != "error") return "result";
  const auto f = dp::failure_from(answer.at("error"));
  return f ? std::string(dp::to_string(f->kind)) : "malformed error";
}

std::string shown(const std::optional<json::object>& answer) {
  if (!answer) return "no answer in time";
  std::string text = json::serialize(*answer);
  if (text.size() > 300) text = text.substr(0, 300) + "...";
  return text;
}

class conformance {
 public:
  conformance(asio::io_context& ioc, kit_options o, std::string token)
      : ioc_(ioc), opts_(std::move(o)), hub_(ioc, std::move(token), settings_for(opts_)) {
    deployment_ = "conformance-" + new_id().substr(24);
  }

  asio::awaitable<int> run(const std::string& token_file) {
    hub_.listen();
    const std::string command =
        opts_.driver_cmd + " --url ws://127.0.0.1:" + std::to_string(hub_.port()) +
        "/drivers/connect --token-file " + token_file + " --driver " + opts_.driver_name;
    if (!driver_.start(command, opts_.driver_log)) {
      std::cerr << "cloudbrain-driver-conformance: cannot start the driver\n";
      co_return 2;
    }
    const bool connected = co_await connects_and_registers("");
    if (connected) {
      co_await settings_checks();
      co_await create_checks();
      co_await list_checks();
      co_await concurrency_and_unknown_checks();
      co_await version_checks();
      co_await heartbeat_checks();
      if (caps_.has(dp::capability::reservations)) {
        co_await reservation_checks();
      } else {
        std::cout << "note reservations: not declared by the driver, not checked" << std::endl;
      }
      if (opts_.capacity) co_await capacity_checks();
      co_await delete_checks();
      co_await reconnect_checks();
    }
    report_.line("every message it sent followed the protocol", missteps());
    report_.line("it answered every operation within its deadline", lateness());
    driver_.stop();
    std::cout << report_.passed << " passed, " << report_.failed << " failed" << std::endl;
    if (report_.failed > 0) std::cout << "the driver's output: " << opts_.driver_log << std::endl;
    co_return report_.failed == 0 ? 0 : 1;
  }

 private:
  static provider_settings settings_for(const kit_options& o) {
    provider_settings s;
    s.zones = {o.zone};
    s.config = o.config;
    s.config["zones"] = json::array{json::value(o.zone)};
    s.secret = o.secret;
    return s;
  }

  json::object labels(const std::string& instance_id) const {
    return {{"cloudbrain-deployment", deployment_},
            {"cloudbrain-instance", instance_id},
            {"suite", "conformance"}};
  }

  json::object create_op(const std::string& id, const std::string& key,
                         const std::string& reservation = "") const {
    return {{"type", "create"},
            {"idempotency_key", key},
            {"spec",
             {{"instance_id", id},
              {"name", "cb-" + id},
              {"image", opts_.image},
              {"instance_type", "standard"},
              {"public_ssh_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA conformance"},
              {"zone", opts_.zone},
              {"reservation", reservation.empty() ? json::value() : json::value(reservation)},
              {"labels", labels(id)}}}};
  }

  json::object ref_op(std::string_view type, const std::string& name,
                      const std::string& key = "") const {
    json::object op{{"type", type},
                    {"ref", {{"name", name}, {"zone", opts_.zone}, {"upstream_id", ""}}}};
    if (!key.empty()) op["idempotency_key"] = key;
    return op;
  }

  json::object list_op(std::string_view type, const std::string& deployment, std::size_t size,
                       const std::optional<std::string>& token) const {
    return {{"type", type},
            {"deployment", deployment},
            {"page_size", size},
            {"page_token", token ? json::value(*token) : json::value()}};
  }

  asio::awaitable<std::optional<json::object>> call(json::object op) {
    co_return co_await hub_.call(std::move(op), opts_.timeout, opts_.timeout + 2s);
  }

  // A machine that is running with an address, polling get while it is provisioning.
  asio::awaitable<std::optional<std::string>> until_running(const std::string& name,
                                                            dp::machine& out) {
    const auto until = steady_clock::now() + opts_.timeout * 3;
    for (;;) {
      auto got = co_await call(ref_op("get", name));
      if (!got || kind_of(*got) != "result") co_return "get " + name + ": " + shown(got);
      auto m = dp::machine_answer(*got);
      if (!m) co_return "get " + name + " answered a malformed machine: " + m.error().reason;
      out = *m;
      if (m->status == dp::machine_status::running && m->ip_address) co_return std::nullopt;
      if (m->status != dp::machine_status::provisioning) {
        co_return "machine " + name + " is " + std::string(dp::to_string(m->status));
      }
      if (steady_clock::now() > until) co_return "machine " + name + " is still provisioning";
      asio::steady_timer pause(ioc_, 200ms);
      co_await pause.async_wait(asio::use_awaitable);
    }
  }

  // ---- the checks --------------------------------------------------------------------------

  asio::awaitable<bool> connects_and_registers(const std::string& again) {
    stand_in_hub::accepted got;
    // A second at a time, to notice a driver that exits instead of connecting.
    for (int waited = 0; waited < 30 && !got.ok && got.error.empty(); ++waited) {
      if (!driver_.running()) {
        got.error = "the driver exited before it connected (see its output)";
        break;
      }
      got = co_await hub_.accept(1s);
    }
    if (!got.ok) {
      report_.line("it dials in with its token" + again,
                   got.error.empty() ? "no connection within 30 s" : got.error);
      co_return false;
    }
    report_.line("it dials in with its token" + again, std::nullopt);
    auto reg = co_await hub_.registration(10s, opts_.driver_name);
    if (!reg) {
      report_.line("it registers first, with its name, protocol version 1 and limits" + again,
                   reg.error().reason);
      co_return false;
    }
    caps_ = *reg;
    report_.line("it registers first, with its name, protocol version 1 and limits" + again,
                 std::nullopt);
    if (again.empty()) {
      report_.line("it declares the instances capability",
                   caps_.has(dp::capability::instances)
                       ? std::nullopt
                       : std::optional<std::string>("instances is not among its capabilities"));
    }
    co_return true;
  }

  asio::awaitable<void> settings_checks() {
    const std::string missing = "cb-" + new_id();
    auto got = co_await call(ref_op("get", missing));
    report_.line(
        "it fetches its config and secret before acting on them",
        hub_.config_fetches() >= 1 && hub_.secret_fetches() >= 1
            ? std::nullopt
            : std::optional<std::string>("get_config " + std::to_string(hub_.config_fetches()) +
                                         " times, get_secret " +
                                         std::to_string(hub_.secret_fetches()) + " times"));
    report_.line("get of an unknown machine answers not_found",
                 got && kind_of(*got) == "not_found" ? std::nullopt
                                                     : std::optional<std::string>(shown(got)));
    fetches_at_start_ = hub_.config_fetches() + hub_.secret_fetches();
  }

  asio::awaitable<void> create_checks() {
    first_ = new_id();
    const std::string name = "cb-" + first_;
    auto created = co_await call(create_op(first_, "key-" + first_));
    std::optional<std::string> problem;
    dp::machine m;
    if (!created || kind_of(*created) != "result") {
      problem = "create: " + shown(created);
    } else if (auto parsed = dp::machine_answer(*created); !parsed) {
      problem = "create answered a malformed machine: " + parsed.error().reason;
    } else if (parsed->name != name) {
      problem = "create answered machine '" + parsed->name + "', not '" + name + "'";
    } else if (parsed->zone != opts_.zone) {
      problem = "the machine is in zone '" + parsed->zone + "', not '" + opts_.zone + "'";
    } else if (parsed->labels_.count("cloudbrain-deployment") == 0 ||
               parsed->labels_.at("cloudbrain-deployment") != deployment_ ||
               parsed->labels_.count("cloudbrain-instance") == 0) {
      problem = "the machine does not carry the labels it was created with";
    } else {
      problem = co_await until_running(name, m);
    }
    report_.line("create answers the machine, which comes to run with an address", problem);
    first_upstream_ = m.upstream_id;

    auto again = co_await call(create_op(first_, "key-" + first_));
    std::optional<std::string> same;
    if (!again || kind_of(*again) != "result") {
      same = "the second create: " + shown(again);
    } else if (auto parsed = dp::machine_answer(*again);
               !parsed || parsed->name != name || parsed->upstream_id != first_upstream_) {
      same = "the second create answered another machine: " + shown(again);
    }
    report_.line("create with the same idempotency key returns the same machine", same);

    auto other = co_await call(create_op(first_, "another-key-" + first_));
    report_.line("create of the same name under another key answers already_exists",
                 other && kind_of(*other) == "already_exists"
                     ? std::nullopt
                     : std::optional<std::string>(shown(other)));

    const std::string late = new_id();
    const std::string id = hub_.send_operation(create_op(late, "key-" + late), 0ms);
    auto refused = co_await hub_.answer(id, 2s);
    std::optional<std::string> expired;
    if (!refused) {
      expired = "no answer within 2 s to a create whose deadline had passed";
    } else if (kind_of(*refused) == "result") {
      expired = "it created a machine for an operation whose deadline had passed";
    } else if (auto after = co_await call(ref_op("get", "cb-" + late));
               !after || kind_of(*after) != "not_found") {
      expired = "after it, get answers " + shown(after);
    }
    report_.line("an operation whose deadline has passed is refused, not carried out", expired);
  }

  asio::awaitable<std::optional<std::set<std::string>>> list_all(const std::string& deployment,
                                                                 std::string& problem) {
    std::set<std::string> names;
    std::optional<std::string> token;
    for (int pages = 0; pages < 100; ++pages) {
      auto got = co_await call(list_op("list", deployment, 1, token));
      if (!got || kind_of(*got) != "result") {
        problem = "list: " + shown(got);
        co_return std::nullopt;
      }
      auto page = dp::machines_answer(*got);
      if (!page) {
        problem = "list answered a malformed page: " + page.error().reason;
        co_return std::nullopt;
      }
      if (page->items.size() > 1) {
        problem = "a page of size 1 holds " + std::to_string(page->items.size()) + " machines";
        co_return std::nullopt;
      }
      for (const auto& m : page->items) {
        if (!names.insert(m.name).second) {
          problem = "machine " + m.name + " is listed twice";
          co_return std::nullopt;
        }
        const auto d = m.labels_.find("cloudbrain-deployment");
        if (d == m.labels_.end() || d->second != deployment) {
          problem = "machine " + m.name + " of another deployment is listed";
          co_return std::nullopt;
        }
      }
      if (!page->next_page_token) co_return names;
      token = page->next_page_token;
    }
    problem = "more than 100 pages";
    co_return std::nullopt;
  }

  asio::awaitable<void> list_checks() {
    second_ = new_id();
    auto made = co_await call(create_op(second_, "key-" + second_));
    std::string problem;
    auto names = co_await list_all(deployment_, problem);
    std::optional<std::string> listed;
    if (!made || kind_of(*made) != "result") {
      listed = "creating a second machine: " + shown(made);
    } else if (!names) {
      listed = problem;
    } else if (*names != std::set<std::string>{"cb-" + first_, "cb-" + second_}) {
      std::string got;
      for (const auto& n : *names) got += " " + n;
      listed = "it lists" + (got.empty() ? std::string(" nothing") : got) + " where cb-" + first_ +
               " and cb-" + second_ + " were made, once each";
    }
    report_.line("list shows what was created, once each, page by page", listed);
    auto others = co_await list_all(deployment_ + "-other", problem);
    report_.line("list shows only the deployment it is asked for",
                 others && others->empty()
                     ? std::nullopt
                     : std::optional<std::string>(others ? "it lists machines of another "
                                                           "deployment"
                                                         : problem));
  }

  asio::awaitable<void> concurrency_and_unknown_checks() {
    const int n = std::min(caps_.max_in_flight, 32);
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i)
      ids.push_back(hub_.send_operation(ref_op("get", "cb-" + first_), opts_.timeout));
    int answered = 0;
    for (const auto& id : ids) {
      auto got = co_await hub_.answer(id, opts_.timeout + 2s);
      if (got && kind_of(*got) == "result") ++answered;
    }
    report_.line("it answers " + std::to_string(n) + " operations sent at once (max_in_flight " +
                     std::to_string(caps_.max_in_flight) + ")",
                 answered == n ? std::nullopt
                               : std::optional<std::string>(std::to_string(answered) + " of " +
                                                            std::to_string(n) + " answered"));
    auto unknown = co_await call(json::object{{"type", "teleport"}, {"idempotency_key", "x"}});
    report_.line("an operation it does not know is answered with an invalid error",
                 unknown && kind_of(*unknown) == "invalid"
                     ? std::nullopt
                     : std::optional<std::string>(shown(unknown)));
  }

  asio::awaitable<void> version_checks() {
    const auto fetched = hub_.config_fetches() + hub_.secret_fetches();
    report_.line("it does not fetch its config or secret again while their versions hold",
                 fetched == fetches_at_start_
                     ? std::nullopt
                     : std::optional<std::string>(std::to_string(fetched - fetches_at_start_) +
                                                  " more fetches with unchanged versions"));
    const auto config_before = hub_.config_fetches();
    const auto secret_before = hub_.secret_fetches();
    hub_.settings().config_version = "c2";
    hub_.settings().config["conformance-round"] = "2";
    auto got = co_await call(ref_op("get", "cb-" + first_));
    report_.line(
        "a new config version is fetched again, the secret's unchanged one is not",
        got && kind_of(*got) == "result" && hub_.config_fetches() == config_before + 1 &&
                hub_.secret_fetches() == secret_before
            ? std::nullopt
            : std::optional<std::string>(
                  "get_config " + std::to_string(hub_.config_fetches() - config_before) +
                  " times, get_secret " + std::to_string(hub_.secret_fetches() - secret_before) +
                  " times; answer " + shown(got)));
    hub_.settings().secret_version = "s2";
    got = co_await call(ref_op("get", "cb-" + first_));
    report_.line("a new secret version is fetched again",
                 got && kind_of(*got) == "result" && hub_.secret_fetches() == secret_before + 1
                     ? std::nullopt
                     : std::optional<std::string>(
                           "get_secret " + std::to_string(hub_.secret_fetches() - secret_before) +
                           " times; answer " + shown(got)));
  }

  asio::awaitable<void> heartbeat_checks() {
    const bool ponged = co_await hub_.ping(3s);
    report_.line("it answers the hub's ping with a pong",
                 ponged ? std::nullopt : std::optional<std::string>("no pong within 3 s"));
    asio::steady_timer pause(ioc_, 2500ms);
    co_await pause.async_wait(asio::use_awaitable);
    report_.line("it pings the hub every heartbeat interval",
                 hub_.pings_received() >= 2
                     ? std::nullopt
                     : std::optional<std::string>(std::to_string(hub_.pings_received()) +
                                                  " pings since it registered; the interval is "
                                                  "1 s"));
  }

  asio::awaitable<void> reservation_checks() {
    const std::string rid = new_id();
    const std::string name = "cbr-" + rid;
    const auto spec = json::object{
        {"reservation_id", rid},
        {"name", name},
        {"instance_type", "standard"},
        {"count", 1},
        {"zone", opts_.zone},
        {"ends_at", "2099-01-01T00:00:00Z"},
        {"labels", {{"cloudbrain-deployment", deployment_}, {"cloudbrain-reservation", rid}}}};
    json::object reserve{{"type", "reserve"}, {"idempotency_key", "key-" + rid}, {"spec", spec}};
    auto made = co_await call(reserve);
    std::optional<std::string> problem;
    std::string upstream;
    if (!made || kind_of(*made) != "result") {
      problem = "reserve: " + shown(made);
    } else if (auto r = dp::reservation_answer(*made); !r || r->name != name || r->count != 1) {
      problem = "reserve answered " + shown(made);
    } else {
      upstream = r->upstream_id;
    }
    report_.line("reserve answers the reservation", problem);
    auto again = co_await call(reserve);
    const auto same = again && kind_of(*again) == "result"
                          ? dp::reservation_answer(*again)
                          : dp::parsed<dp::reservation>(dp::violation{"no result"});
    report_.line("reserve with the same idempotency key returns the same reservation",
                 same && same->upstream_id == upstream ? std::nullopt
                                                       : std::optional<std::string>(shown(again)));
    auto listed =
        co_await call(list_op("list_reservations", deployment_, dp::max_page_size, std::nullopt));
    bool seen = false;
    if (listed && kind_of(*listed) == "result") {
      if (auto page = dp::reservations_answer(*listed)) {
        for (const auto& r : page->items) seen = seen || r.name == name;
      }
    }
    report_.line("list_reservations shows it",
                 seen ? std::nullopt : std::optional<std::string>(shown(listed)));
    const std::string inside = new_id();
    auto launched = co_await call(create_op(inside, "key-" + inside, name));
    auto held = co_await call(ref_op("get_reservation", name));
    const auto in_use = held && kind_of(*held) == "result"
                            ? dp::reservation_answer(*held)
                            : dp::parsed<dp::reservation>(dp::violation{"no result"});
    report_.line("an instance launches into it, and counts as in use",
                 launched && kind_of(*launched) == "result" && in_use && in_use->in_use == 1
                     ? std::nullopt
                     : std::optional<std::string>("create: " + shown(launched) +
                                                  "; get_reservation: " + shown(held)));
    (void)co_await call(ref_op("delete", "cb-" + inside, "delete-" + inside));
    auto released = co_await call(ref_op("release", name, "release-" + rid));
    auto twice = co_await call(ref_op("release", name, "release-" + rid));
    auto gone = co_await call(ref_op("get_reservation", name));
    report_.line("release frees it, and releasing it again succeeds",
                 released && kind_of(*released) == "result" && twice &&
                         kind_of(*twice) == "result" && gone && kind_of(*gone) == "not_found"
                     ? std::nullopt
                     : std::optional<std::string>("release: " + shown(released) +
                                                  "; again: " + shown(twice) +
                                                  "; then get_reservation: " + shown(gone)));
  }

  asio::awaitable<void> capacity_checks() {
    // Two machines of the kit are leased: fill the zone, then one more.
    std::vector<std::string> made;
    std::optional<std::string> problem;
    for (int i = 2; i < *opts_.capacity; ++i) {
      const std::string id = new_id();
      auto got = co_await call(create_op(id, "key-" + id));
      if (!got || kind_of(*got) != "result") {
        problem = "machine " + std::to_string(i + 1) + " of " + std::to_string(*opts_.capacity) +
                  " was refused: " + shown(got);
        break;
      }
      made.push_back(id);
    }
    if (!problem) {
      const std::string id = new_id();
      auto got = co_await call(create_op(id, "key-" + id));
      if (!got || kind_of(*got) != "capacity") {
        problem = "machine " + std::to_string(*opts_.capacity + 1) + " answered " + shown(got);
      }
      if (got && kind_of(*got) == "result") made.push_back(id);
    }
    report_.line("a zone without room answers capacity", problem);
    for (const auto& id : made) (void)co_await call(ref_op("delete", "cb-" + id, "del-" + id));
  }

  asio::awaitable<void> delete_checks() {
    const std::string name = "cb-" + first_;
    auto deleted = co_await call(ref_op("delete", name, "delete-" + first_));
    auto after = co_await call(ref_op("get", name));
    report_.line("delete removes the machine",
                 deleted && kind_of(*deleted) == "result" && after && kind_of(*after) == "not_found"
                     ? std::nullopt
                     : std::optional<std::string>("delete: " + shown(deleted) +
                                                  "; then get: " + shown(after)));
    auto again = co_await call(ref_op("delete", name, "delete-" + first_));
    auto unknown = co_await call(ref_op("delete", "cb-" + new_id(), "delete-unknown"));
    report_.line("delete of a machine that is not there succeeds",
                 again && kind_of(*again) == "result" && unknown && kind_of(*unknown) == "result"
                     ? std::nullopt
                     : std::optional<std::string>("again: " + shown(again) +
                                                  "; unknown: " + shown(unknown)));
    (void)co_await call(ref_op("delete", "cb-" + second_, "delete-" + second_));
  }

  asio::awaitable<void> reconnect_checks() {
    hub_.fall_silent();
    const bool dropped = co_await hub_.closed_within(8s);
    report_.line("it drops a hub that stays silent past the heartbeat timeout",
                 dropped ? std::nullopt
                         : std::optional<std::string>(
                               "still connected 8 s after the hub fell silent (timeout 3 s)"));
    if (!co_await connects_and_registers(" again after a drop")) co_return;

    // A create in flight when the connection breaks is sent again on the next one.
    const std::string id = new_id();
    const std::string name = "cb-" + id;
    (void)hub_.send_operation(create_op(id, "key-" + id), opts_.timeout);
    asio::steady_timer pause(ioc_, 50ms);
    co_await pause.async_wait(asio::use_awaitable);
    hub_.drop();
    if (!co_await connects_and_registers(" again after the hub went away")) co_return;
    auto resent = co_await call(create_op(id, "key-" + id));
    std::string problem;
    auto names = co_await list_all(deployment_, problem);
    report_.line(
        "a create sent again after a reconnect makes one machine, not two",
        resent && kind_of(*resent) == "result" && names && *names == std::set<std::string>{name}
            ? std::nullopt
            : std::optional<std::string>(
                  "create: " + shown(resent) +
                  "; listing: " + (names ? std::to_string(names->size()) + " machines" : problem)));
    (void)co_await call(ref_op("delete", name, "delete-" + id));
    names = co_await list_all(deployment_, problem);
    report_.line("nothing the kit made is left",
                 names && names->empty()
                     ? std::nullopt
                     : std::optional<std::string>(names ? "machines are left" : problem));
  }

  std::optional<std::string> missteps() const {
    if (hub_.missteps().empty()) return std::nullopt;
    std::string out;
    for (const auto& m : hub_.missteps()) out += (out.empty() ? "" : "; ") + m.what;
    return out;
  }

  std::optional<std::string> lateness() const {
    if (hub_.late().empty()) return std::nullopt;
    std::string out;
    for (const auto& l : hub_.late()) out += (out.empty() ? "" : "; ") + l;
    return out;
  }

  asio::io_context& ioc_;
  kit_options opts_;
  stand_in_hub hub_;
  driver_process driver_;
  report report_;
  dp::registration caps_;
  std::string deployment_;
  std::string first_;
  std::string second_;
  std::string first_upstream_;
  std::size_t fetches_at_start_ = 0;
};

std::optional<std::pair<std::string, std::string>> key_value(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) return std::nullopt;
  return std::pair{text.substr(0, eq), text.substr(eq + 1)};
}

int main_with(int argc, char** argv) {
  kit_options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "cloudbrain-driver-conformance: " << arg << " needs a value\n" << usage;
      return 2;
    }
    const std::string value = argv[++i];
    if (arg == "--driver-cmd") {
      o.driver_cmd = value;
    } else if (arg == "--driver-name") {
      o.driver_name = value;
    } else if (arg == "--zone") {
      o.zone = value;
    } else if (arg == "--image") {
      o.image = value;
    } else if (arg == "--driver-log") {
      o.driver_log = value;
    } else if (arg == "--config" || arg == "--secret") {
      auto kv = key_value(value);
      if (!kv) {
        std::cerr << "cloudbrain-driver-conformance: " << arg << " takes KEY=VALUE\n";
        return 2;
      }
      if (arg == "--config") {
        o.config[kv->first] = kv->second;
      } else {
        o.secret["secret." + kv->first] = kv->second;
      }
    } else if (arg == "--capacity") {
      const int n = std::atoi(value.c_str());
      if (n < 3 || n > 1000) {
        std::cerr << "cloudbrain-driver-conformance: --capacity must be from 3 to 1000\n";
        return 2;
      }
      o.capacity = n;
    } else if (arg == "--timeout") {
      const long ms = std::strtol(value.c_str(), nullptr, 10);
      const bool seconds = !value.empty() && value.back() == 's' && !value.ends_with("ms");
      o.timeout = std::chrono::milliseconds(seconds ? ms * 1000 : ms);
      if (o.timeout < 100ms) {
        std::cerr << "cloudbrain-driver-conformance: --timeout must be 100ms or more\n";
        return 2;
      }
    } else {
      std::cerr << "cloudbrain-driver-conformance: unknown option " << arg << "\n" << usage;
      return 2;
    }
  }
  if (o.driver_cmd.empty()) {
    std::cerr << "cloudbrain-driver-conformance: --driver-cmd is required\n" << usage;
    return 2;
  }
  if (!dp::valid_driver_name(o.driver_name)) {
    std::cerr << "cloudbrain-driver-conformance: --driver-name is not a valid driver name\n";
    return 2;
  }
  char dir_template[] = "/tmp/cloudbrain-conformance-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  if (!dir) {
    std::cerr << "cloudbrain-driver-conformance: cannot make a temporary directory\n";
    return 2;
  }
  const std::string token_file = std::string(dir) + "/token";
  if (o.driver_log.empty()) o.driver_log = std::string(dir) + "/driver.log";
  const std::string token = "0-" + new_id().substr(0, 8) + new_id().substr(24);
  {
    const int fd = ::open(token_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, token.data(), token.size()) != static_cast<ssize_t>(token.size())) {
      std::cerr << "cloudbrain-driver-conformance: cannot write the token file\n";
      return 2;
    }
    ::close(fd);
  }
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context ioc(1);
  conformance kit(ioc, o, token);
  int code = 2;
  asio::co_spawn(ioc, kit.run(token_file), [&code](std::exception_ptr e, int result) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::cerr << "cloudbrain-driver-conformance: " << ex.what() << "\n";
      }
      return;
    }
    code = result;
  });
  ioc.run();
  ::unlink(token_file.c_str());
  return code;
}

}  // namespace
}  // namespace cloudbrain::driver_conformance

int main(int argc, char** argv) { return cloudbrain::driver_conformance::main_with(argc, argv); }
