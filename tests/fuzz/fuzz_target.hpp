#pragma once

// A fuzz target is one function of the bytes it is given. The fuzz build (CLOUDBRAIN_FUZZ)
// makes each one a libFuzzer binary; the regular build links them all into
// fuzz_regression_tests, which replays the seed corpus and every crash ever found.

#include <cstddef>
#include <cstdint>
#include <string_view>

#ifdef CLOUDBRAIN_FUZZ_ENTRY
#define CLOUDBRAIN_FUZZ_ENTRY_POINT(name)                                             \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    return cloudbrain_fuzz_##name(data, size);                                        \
  }
#else
#define CLOUDBRAIN_FUZZ_ENTRY_POINT(name)
#endif

#define CLOUDBRAIN_FUZZ_TARGET(name)                                      \
  int cloudbrain_fuzz_##name(const std::uint8_t* data, std::size_t size); \
  CLOUDBRAIN_FUZZ_ENTRY_POINT(name)                                       \
  int cloudbrain_fuzz_##name(const std::uint8_t* data, std::size_t size)

// For targets that read an error answer: its HTTP status (400 to 599) from the body's first byte,
// which is then taken off the body.
inline unsigned error_status(std::string_view& body) {
  if (body.empty()) return 400;
  const unsigned status = 400 + static_cast<unsigned char>(body.front()) % 200;
  body.remove_prefix(1);
  return status;
}
