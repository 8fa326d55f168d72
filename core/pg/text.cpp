#include "core/pg/text.hpp"

#include <charconv>

namespace cloudbrain::pg {
namespace {

void append_element(std::string& out, std::string_view v) {
  out += '"';
  for (const char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

template <class Strings>
std::string plain_text_array(const Strings& elements) {
  std::string out = "{";
  for (const auto& e : elements) {
    if (out.size() > 1) out += ',';
    append_element(out, e);
  }
  out += '}';
  return out;
}

}  // namespace

param to_param(std::int64_t v) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string text_array(std::span<const std::optional<std::string>> elements) {
  std::string out = "{";
  for (const auto& e : elements) {
    if (out.size() > 1) out += ',';
    if (e) {
      append_element(out, *e);
    } else {
      out += "NULL";
    }
  }
  out += '}';
  return out;
}

std::string text_array(std::span<const std::string> elements) { return plain_text_array(elements); }

std::string text_array(std::span<const std::string_view> elements) {
  return plain_text_array(elements);
}

std::vector<const char*> param_values(std::span<const param> params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return values;
}

bool has_nul(std::span<const param> params) noexcept {
  for (const auto& p : params) {
    if (p && p->find('\0') != std::string::npos) return true;
  }
  return false;
}

std::optional<std::int64_t> parse_int64(std::string_view text) noexcept {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string_view text) noexcept {
  // The server prints booleans as t/f; the rest are what it accepts as input.
  if (text == "t" || text == "true" || text == "on" || text == "1") return true;
  if (text == "f" || text == "false" || text == "off" || text == "0") return false;
  return std::nullopt;
}

}  // namespace cloudbrain::pg
