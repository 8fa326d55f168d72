#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <map>
#include <string>

namespace cloudbrain::pool_driver {

struct hook_outcome {
  bool ok = false;
  std::string detail;  // "exit status 3", "killed at its deadline", "cannot start: ..."
};

// Runs `command` with /bin/sh -c in a process group of its own, with `environment` added to the
// driver's and `input` on its standard input (where the secret goes: never in the environment or
// the arguments), and waits for it without blocking the event loop (a pidfd). At `deadline` the
// whole group is killed.
boost::asio::awaitable<hook_outcome> run_hook(const std::string& command,
                                              const std::map<std::string, std::string>& environment,
                                              std::string input,
                                              std::chrono::steady_clock::time_point deadline);

}  // namespace cloudbrain::pool_driver
