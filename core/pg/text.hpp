#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// PostgreSQL's text format, which this client uses for every parameter and every value: the
// server parses `$1` the same way it would parse a literal of the parameter's type.
namespace cloudbrain::pg {

// One query parameter; std::nullopt is SQL NULL.
using param = std::optional<std::string>;

[[nodiscard]] inline param to_param(std::string_view v) { return std::string(v); }
[[nodiscard]] inline param to_param(const char* v) { return std::string(v); }
[[nodiscard]] inline param to_param(std::string v) { return v; }
[[nodiscard]] inline param to_param(bool v) { return v ? "true" : "false"; }
[[nodiscard]] param to_param(std::int64_t v);
[[nodiscard]] inline param to_param(int v) { return to_param(static_cast<std::int64_t>(v)); }
template <class T>
[[nodiscard]] param to_param(const std::optional<T>& v) {
  return v ? to_param(*v) : std::nullopt;
}

// A one-dimensional array literal, e.g. for `WHERE id = ANY($1::text[])`. Elements are always
// quoted, so "NULL", "" and values with commas, quotes or braces survive; nullopt is a NULL
// element.
[[nodiscard]] std::string text_array(std::span<const std::optional<std::string>> elements);
[[nodiscard]] std::string text_array(std::span<const std::string> elements);
[[nodiscard]] std::string text_array(std::span<const std::string_view> elements);

// The values array libpq wants: one pointer per parameter, nullptr for NULL. The pointers point
// into `params`, which must outlive the result.
[[nodiscard]] std::vector<const char*> param_values(std::span<const param> params);

// Whether a parameter holds a NUL character, which libpq's C strings would silently cut off
// (and PostgreSQL's text cannot store): such a query is refused before anything is sent.
[[nodiscard]] bool has_nul(std::span<const param> params) noexcept;

// Decoders for what the server sends back in text format.
[[nodiscard]] std::optional<std::int64_t> parse_int64(std::string_view text) noexcept;
[[nodiscard]] std::optional<bool> parse_bool(std::string_view text) noexcept;

}  // namespace cloudbrain::pg
