#pragma once

#include "core/error.hpp"

#include <cstddef>
#include <string>

namespace cloudbrain {

// The whole of a small file (a key, a secret, a configuration), read at once: blocking, so off
// the event loop. More than `max_bytes` is an error, and so is a file that cannot be read; the
// detail says why in the system's words ("No such file or directory", "larger than 64 KiB"),
// never with any of the content. errc::bad_config.
[[nodiscard]] result<std::string> read_whole_file(const std::string& path, std::size_t max_bytes);

}  // namespace cloudbrain
