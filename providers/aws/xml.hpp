#pragma once

#include "core/error.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

// A small XML reader for the answers of AWS's Query APIs, free of I/O: elements with their
// namespace resolved, attributes, character data (entities, character references and CDATA
// decoded), comments and processing instructions skipped. A DOCTYPE is refused, so no entity
// can be defined, expanded or fetched. Anything malformed is an error naming where.
namespace cloudbrain::providers::aws {

struct xml_element {
  std::string name;  // the local name, without its prefix
  std::string namespace_uri;
  std::vector<std::pair<std::string, std::string>> attributes;  // local names; xmlns ones left out
  std::string text;  // the character data directly inside, concatenated
  std::vector<xml_element> children;

  // The first child element of that local name, or nullptr.
  [[nodiscard]] const xml_element* child(std::string_view local_name) const;
  // Its text, or empty when there is no such child.
  [[nodiscard]] std::string_view child_text(std::string_view local_name) const;
  // Follows a path of child names ("instanceState/name"); nullptr where it breaks off.
  [[nodiscard]] const xml_element* find(std::string_view path) const;
  [[nodiscard]] std::string_view find_text(std::string_view path) const;
};

struct xml_limits {
  std::size_t max_depth = 64;
  std::size_t max_bytes = 64 * 1024 * 1024;
};

// The document's root element; errc::invalid_argument with "line L, column C: why" otherwise.
[[nodiscard]] result<xml_element> parse_xml(std::string_view document, xml_limits limits = {});

// Escapes text for an element or a double-quoted attribute.
[[nodiscard]] std::string xml_escape(std::string_view text);

}  // namespace cloudbrain::providers::aws
