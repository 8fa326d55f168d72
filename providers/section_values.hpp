#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

// Small things every cloud's room needs alike: reading a switch of its section, and quoting a
// piece of an answer in a message.
namespace cloudbrain::providers {

// true, yes, on, 1 / false, no, off, 0; anything else is none.
[[nodiscard]] std::optional<bool> parse_switch(std::string_view v);

// At most n bytes of a body for a message, on one line ("..." when cut).
[[nodiscard]] std::string body_snippet(std::string_view body, std::size_t n = 200);

}  // namespace cloudbrain::providers
