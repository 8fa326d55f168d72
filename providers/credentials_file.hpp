#pragma once

#include "core/error.hpp"
#include "core/time.hpp"

#include <chrono>
#include <string>

// What every cloud's credential source shares: reading a key or credentials file, and when
// credentials that expire are renewed.
namespace cloudbrain::providers {

// The whole of a credentials or key file of at most 64 KiB. It blocks: call it on the blocking
// pool. Errors (errc::bad_config) name the file, never its content.
[[nodiscard]] result<std::string> read_credentials_file(const std::string& path);

// Credentials are renewed a quarter of their lifetime before they expire, but never more than
// five minutes early; ones this close to their end are not handed out any more, even while a
// renewal is failing.
[[nodiscard]] steady_clock::duration refresh_margin(steady_clock::duration lifetime);
inline constexpr auto credential_expiry_safety = std::chrono::seconds(10);

}  // namespace cloudbrain::providers
