#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace cloudbrain {

// Threads for work that would block the event loop: scrypt, RSA signing, file reads, DNS.
// `run` moves a callable there and resumes the awaiting coroutine on its own executor (strand)
// with the result, so callers never see another thread.
class blocking_pool {
 public:
  explicit blocking_pool(std::size_t threads) : pool_(threads) {}
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;
  ~blocking_pool() { stop(); }

  void stop() {
    pool_.stop();
    pool_.join();
  }

  template <class F, class R = std::invoke_result_t<F&>>
  requires(std::is_default_constructible_v<R> &&
           !std::is_void_v<R>) boost::asio::awaitable<R> run(F f) {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>,
                                       void(std::exception_ptr, R)>(
        [this](auto handler, F fn) {
          auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
          boost::asio::post(pool_, [handler = std::move(handler), fn = std::move(fn),
                                    work = std::move(work)]() mutable {
            std::exception_ptr failure;
            R value{};
            try {
              value = fn();
            } catch (...) {
              failure = std::current_exception();
            }
            auto ex = work.get_executor();
            boost::asio::post(
                ex, [handler = std::move(handler), failure, value = std::move(value)]() mutable {
                  std::move(handler)(failure, std::move(value));
                });
            work.reset();
          });
        },
        boost::asio::use_awaitable, std::move(f));
  }

 private:
  boost::asio::thread_pool pool_;
};

}  // namespace cloudbrain
