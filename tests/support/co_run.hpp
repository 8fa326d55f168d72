#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <utility>

namespace cloudbrain::testing {

// Runs one coroutine to completion on `ioc` (with whatever else it has to do) and returns its
// result; an exception it throws is rethrown here.
template <class T>
T co_run(boost::asio::io_context& ioc, boost::asio::awaitable<T> op) {
  auto f = boost::asio::co_spawn(ioc, std::move(op), boost::asio::use_future);
  ioc.restart();
  ioc.run();
  return f.get();
}

}  // namespace cloudbrain::testing
