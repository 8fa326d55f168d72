#include "providers/cloud_call.hpp"
#include "providers/single_flight.hpp"

#include "net/problem.hpp"
#include "tests/support/co_run.hpp"
#include "tests/unit/net/live_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

namespace cloudbrain::providers {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using cloudbrain::testing::co_run;

net::client_response answer(unsigned status, std::vector<std::pair<std::string, std::string>> h) {
  net::client_response res;
  res.status = status;
  for (const auto& [k, v] : h) res.headers.set(k, v);
  return res;
}

TEST(RetryAfter, DeltaSecondsDatesAndGarbage) {
  const auto now = system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(retry_after_of(answer(429, {{"Retry-After", "2"}}), now), 2s);
  EXPECT_EQ(retry_after_of(answer(429, {{"Retry-After", " 7 "}}), now), 7s);
  EXPECT_EQ(retry_after_of(answer(429, {{"Retry-After", "Sun, 06 Nov 1994 08:49:47 GMT"}}), now),
            10s);
  // A date in the past, or no date at all: no hint.
  EXPECT_EQ(retry_after_of(answer(429, {{"Retry-After", "Sun, 06 Nov 1994 08:49:30 GMT"}}), now),
            0ms);
  EXPECT_EQ(retry_after_of(answer(429, {}), now), 0ms);
  for (const char* junk : {"soon", "-1", "1.5", "Sun, 06 Nov 1994 08:49:47 UTC",
                           "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:47 GMT", ""}) {
    EXPECT_EQ(retry_after_of(answer(429, {{"Retry-After", junk}}), now), 0ms) << junk;
  }
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), now);
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"));
  // Capped at an hour, however long the cloud asks for.
  EXPECT_EQ(retry_after_of(answer(503, {{"Retry-After", "86400"}}), now), 1h);
}

// A server whose /flaky answers with the statuses it is given, one per request, then 200.
class scripted_server {
 public:
  explicit scripted_server(std::vector<unsigned> statuses) : statuses_(std::move(statuses)) {
    auto routes = std::make_shared<net::router>();
    routes->add(
        net::http::verb::get, "/flaky",
        [this](net::request_context& ctx) -> asio::awaitable<net::response> {
          const auto n = seen_++;
          auth_.push_back(std::string(ctx.req[net::http::field::authorization]));
          const unsigned status = n < statuses_.size() ? statuses_[n] : 200;
          auto res = net::text_response(static_cast<net::http::status>(status), "text/plain",
                                        "answer " + std::to_string(n));
          if (status == 429 || status == 503) res.set(net::http::field::retry_after, "0");
          co_return res;
        },
        "flaky");
    server_ = std::make_unique<net::testing::live_server>(routes);
  }

  [[nodiscard]] std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->endpoint().port()) + "/flaky";
  }
  [[nodiscard]] std::size_t seen() const { return seen_; }
  [[nodiscard]] const std::vector<std::string>& auth() const { return auth_; }

 private:
  std::vector<unsigned> statuses_;
  std::atomic<std::size_t> seen_{0};
  std::vector<std::string> auth_;
  std::unique_ptr<net::testing::live_server> server_;
};

struct call_fixture : ::testing::Test {
  asio::io_context ioc;
  net::http_client http{ioc.get_executor(), net::client_config{}};
  cloud_request_stats stats;
  std::mt19937_64 rng{42};
  int credential = 1;  // the "token" the next request is made with
  int paced = 0;
  int renewals = 0;

  cloud_request_hooks hooks_for(const std::string& url) {
    cloud_request_hooks h;
    h.pace = [this]() -> asio::awaitable<void> {
      ++paced;
      co_return;
    };
    h.make = [this, url](deadline) -> asio::awaitable<result<net::client_request>> {
      net::client_request req;
      req.url = url;
      req.headers = {{"Authorization", "Bearer t" + std::to_string(credential)}};
      co_return req;
    };
    h.classify = [](const net::client_response& res) {
      if (res.status == 429) return error(errc::cloud_rate_limited, "slow down");
      if (res.status >= 500) return error(errc::cloud_transient, res.body);
      return error(errc::cloud_permanent, "refused: " + res.body);
    };
    h.on_unauthorized = [this] {
      ++credential;
      ++renewals;
    };
    return h;
  }

  result<net::client_response> send(const cloud_request_hooks& hooks,
                                    deadline dl = steady_clock::now() + 10s) {
    const cloud_request_policy policy{3, backoff_policy{10ms, 50ms, 1ms}};
    return co_run(ioc, send_cloud_request(http, hooks, policy, dl, stats, rng));
  }
};

TEST_F(call_fixture, TransientFailuresAreRetriedThenSucceed) {
  scripted_server server({503, 500});
  const auto hooks = hooks_for(server.url());
  auto res = send(hooks);
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_EQ(res->body, "answer 2");
  EXPECT_EQ(server.seen(), 3u);
  EXPECT_EQ(paced, 3) << "every try is paced";
  EXPECT_EQ(stats.requests, 3u);
  EXPECT_EQ(stats.retried, 2u);
}

TEST_F(call_fixture, TriesAreBoundedAndTheLastErrorReturned) {
  scripted_server server({503, 503, 503, 503});
  const auto hooks = hooks_for(server.url());
  auto res = send(hooks);
  ASSERT_FALSE(res);
  EXPECT_TRUE(res.error().is(errc::cloud_transient));
  EXPECT_EQ(res.error().detail, "answer 2");
  EXPECT_EQ(server.seen(), 3u);
}

TEST_F(call_fixture, ThrottlingAndPermanentErrorsAreNotRetriedHere) {
  scripted_server server({429, 400});
  const auto hooks = hooks_for(server.url());
  auto throttled = send(hooks);
  ASSERT_FALSE(throttled);
  EXPECT_TRUE(throttled.error().is(errc::cloud_rate_limited));
  auto refused = send(hooks);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_permanent));
  EXPECT_EQ(refused.error().detail, "refused: answer 1");
  EXPECT_EQ(server.seen(), 2u);
}

TEST_F(call_fixture, A401RenewsTheCredentialsOnceOnly) {
  scripted_server server({401, 200});
  const auto hooks = hooks_for(server.url());
  auto res = send(hooks);
  ASSERT_TRUE(res);
  EXPECT_EQ(renewals, 1);
  EXPECT_EQ(stats.auth_retries, 1u);
  ASSERT_EQ(server.auth().size(), 2u);
  EXPECT_EQ(server.auth()[0], "Bearer t1");
  EXPECT_EQ(server.auth()[1], "Bearer t2") << "the retry is made afresh with new credentials";

  scripted_server refusing({401, 401, 401});
  auto again = send(hooks_for(refusing.url()));
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(errc::cloud_permanent));
  EXPECT_EQ(refusing.seen(), 2u) << "a second 401 is the answer";
}

TEST_F(call_fixture, AnAnswerTheDriverKnowsForStaleCredentialsRenewsThemToo) {
  // EC2 says 400 RequestExpired to an expired session token: renewed once like a 401.
  scripted_server server({400, 200});
  auto hooks = hooks_for(server.url());
  hooks.stale_credentials = [](const net::client_response& res) { return res.status == 400; };
  auto res = send(hooks);
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_EQ(renewals, 1);
  ASSERT_EQ(server.auth().size(), 2u);
  EXPECT_EQ(server.auth()[1], "Bearer t2");

  scripted_server refusing({400, 400, 400});
  auto again = send([&] {
    auto h = hooks_for(refusing.url());
    h.stale_credentials = hooks.stale_credentials;
    return h;
  }());
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(errc::cloud_permanent));
  EXPECT_EQ(again.error().detail, "refused: answer 1") << "renewed once, then the answer";
  EXPECT_EQ(refusing.seen(), 2u);

  // Without the hook a 400 is only classified.
  scripted_server plain({400});
  auto once = send(hooks_for(plain.url()));
  ASSERT_FALSE(once);
  EXPECT_EQ(plain.seen(), 1u);
}

TEST_F(call_fixture, NoRetryThatWouldNotFitBeforeTheDeadline) {
  scripted_server server({503, 503});
  auto hooks = hooks_for(server.url());
  // A backoff far longer than the time left: the first failure is returned at once.
  const cloud_request_policy slow{3, backoff_policy{5s, 5s, 5s}};
  const auto started = steady_clock::now();
  auto res = co_run(ioc, send_cloud_request(http, hooks, slow, started + 1s, stats, rng));
  ASSERT_FALSE(res);
  EXPECT_EQ(server.seen(), 1u);
  EXPECT_LT(steady_clock::now() - started, 900ms);
}

TEST_F(call_fixture, AFailedMakeEndsTheCallWithoutSending) {
  scripted_server server({});
  auto hooks = hooks_for(server.url());
  hooks.make = [](deadline) -> asio::awaitable<result<net::client_request>> {
    co_return fail(errc::cloud_auth, "no credentials");
  };
  auto res = send(hooks);
  ASSERT_FALSE(res);
  EXPECT_TRUE(res.error().is(errc::cloud_auth));
  EXPECT_EQ(server.seen(), 0u);
}

TEST_F(call_fixture, ARefusedConnectionIsTransientAndRetried) {
  // A port nothing listens on (bound and closed again).
  std::uint16_t port = 0;
  {
    asio::ip::tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  auto hooks = hooks_for("http://127.0.0.1:" + std::to_string(port) + "/flaky");
  auto res = send(hooks);
  ASSERT_FALSE(res);
  EXPECT_TRUE(res.error().is(errc::cloud_transient)) << res.error().message();
  EXPECT_EQ(stats.requests, 3u);
}

// ---- single_flight ----------------------------------------------------------------------

TEST(SingleFlight, ConcurrentCallersShareOneFetch) {
  asio::io_context ioc;
  single_flight<int> flights;
  int fetches = 0;
  std::vector<result<int>> outcomes;
  auto fetch = [&]() -> asio::awaitable<result<int>> {
    ++fetches;
    co_await sleep_for(30ms);
    co_return 7;
  };
  for (int i = 0; i < 5; ++i) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          auto r = co_await flights.run(fetch, steady_clock::now() + 5s, "number");
          outcomes.push_back(r);
        },
        asio::detached);
  }
  ioc.run();
  EXPECT_EQ(fetches, 1);
  ASSERT_EQ(outcomes.size(), 5u);
  for (const auto& o : outcomes) {
    ASSERT_TRUE(o);
    EXPECT_EQ(*o, 7);
  }
  EXPECT_FALSE(flights.in_flight());

  // Once it is over, the next caller fetches again; a failure reaches the waiters too.
  outcomes.clear();
  auto failing = [&]() -> asio::awaitable<result<int>> {
    ++fetches;
    co_await sleep_for(20ms);
    co_return fail(errc::cloud_auth, "refused");
  };
  for (int i = 0; i < 3; ++i) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          outcomes.push_back(co_await flights.run(failing, steady_clock::now() + 5s, "number"));
        },
        asio::detached);
  }
  ioc.restart();
  ioc.run();
  EXPECT_EQ(fetches, 2);
  ASSERT_EQ(outcomes.size(), 3u);
  for (const auto& o : outcomes) EXPECT_TRUE(!o && o.error().is(errc::cloud_auth));
}

TEST(SingleFlight, AWaiterStopsAtItsOwnDeadline) {
  asio::io_context ioc;
  single_flight<int> flights;
  std::optional<result<int>> slow_caller, hurried_caller;
  auto fetch = [&]() -> asio::awaitable<result<int>> {
    co_await sleep_for(200ms);
    co_return 1;
  };
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        slow_caller = co_await flights.run(fetch, steady_clock::now() + 5s, "number");
      },
      asio::detached);
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        hurried_caller = co_await flights.run(fetch, steady_clock::now() + 20ms, "number");
      },
      asio::detached);
  ioc.run();
  ASSERT_TRUE(hurried_caller && !*hurried_caller);
  EXPECT_TRUE(hurried_caller->error().is(errc::timeout));
  EXPECT_NE(hurried_caller->error().detail.find("number"), std::string::npos);
  ASSERT_TRUE(slow_caller && *slow_caller);
  EXPECT_EQ(**slow_caller, 1);
}

}  // namespace
}  // namespace cloudbrain::providers
