#pragma once

#include "core/error.hpp"
#include "core/time.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cloudbrain::providers {

// One fetch (of a token, of credentials) shared by every caller that wants it while it runs:
// the first caller runs it, the others wait for its outcome until their own deadline. Used from
// one strand only, like the driver that owns it.
template <class T>
class single_flight {
 public:
  // Runs `fetch()` (an awaitable of result<T>) unless a fetch is under way, in which case it
  // waits for that one. `what` names the thing fetched, for the timeout's message.
  template <class Fetch>
  boost::asio::awaitable<result<T>> run(Fetch fetch, deadline dl, std::string_view what) {
    if (flight_) {
      auto f = flight_;
      auto timer = std::make_shared<boost::asio::steady_timer>(
          co_await boost::asio::this_coro::executor, dl);
      f->waiters.push_back(timer);
      co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (!f->outcome) co_return fail(errc::timeout, "no " + std::string(what) + " in time");
      co_return *f->outcome;
    }
    auto f = std::make_shared<flight>();
    flight_ = f;
    auto fetching = fetch();
    result<T> outcome = co_await std::move(fetching);
    f->outcome = outcome;
    flight_.reset();
    for (const auto& t : f->waiters) t->cancel();
    co_return outcome;
  }

  [[nodiscard]] bool in_flight() const { return flight_ != nullptr; }

 private:
  struct flight {
    std::optional<result<T>> outcome;
    std::vector<std::shared_ptr<boost::asio::steady_timer>> waiters;
  };
  std::shared_ptr<flight> flight_;
};

}  // namespace cloudbrain::providers
