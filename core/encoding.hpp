#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cloudbrain {

// RFC 4648 base64: the standard alphabet with padding, or the URL-safe one without.
[[nodiscard]] std::string base64_encode(std::string_view data, bool url = false);
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text, bool url = false);

}  // namespace cloudbrain
