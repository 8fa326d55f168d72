#pragma once

#include "core/error.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace cloudbrain {

using steady_clock = std::chrono::steady_clock;
using system_clock = std::chrono::system_clock;
using deadline = steady_clock::time_point;

[[nodiscard]] inline deadline after(steady_clock::duration d) { return steady_clock::now() + d; }

// Suspends the calling coroutine for `d` on its own executor (a non-positive `d` returns at
// once). Cancellation ends the wait early.
boost::asio::awaitable<void> sleep_for(steady_clock::duration d);

// Parses "250ms", "30s", "10m", "2h", "7d" (and a bare number of seconds).
[[nodiscard]] result<std::chrono::milliseconds> parse_duration(std::string_view text);
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

// RFC 3339, UTC, with microseconds: 2026-11-23T19:35:10.123456Z.
[[nodiscard]] std::string format_rfc3339(system_clock::time_point t);
[[nodiscard]] result<system_clock::time_point> parse_rfc3339(std::string_view text);

}  // namespace cloudbrain
