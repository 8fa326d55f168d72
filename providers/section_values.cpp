#include "providers/section_values.hpp"

namespace cloudbrain::providers {

std::optional<bool> parse_switch(std::string_view v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

std::string body_snippet(std::string_view body, std::size_t n) {
  std::string out;
  for (char c : body.substr(0, n)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (body.size() > n) out += "...";
  return out;
}

}  // namespace cloudbrain::providers
