#include "providers/aws/xml.hpp"

#include <algorithm>
#include <cstdint>

namespace cloudbrain::providers::aws {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool name_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || c >= 0x80;
}

bool name_char(unsigned char c) {
  return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool xml_char(std::uint32_t cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

using ns_scope = std::vector<std::pair<std::string, std::string>>;  // prefix → URI

class xml_reader {
 public:
  xml_reader(std::string_view doc, xml_limits limits) : s_(doc), limits_(limits) {}

  result<xml_element> document() {
    if (s_.size() > limits_.max_bytes) {
      return fail(errc::invalid_argument, "the XML document is larger than " +
                                              std::to_string(limits_.max_bytes) + " bytes");
    }
    if (starts("\xEF\xBB\xBF")) pos_ += 3;
    if (auto r = misc(); !r) return r.error();
    if (starts("<!DOCTYPE")) return bad("a DOCTYPE is not accepted");
    if (pos_ >= s_.size()) return bad(s_.empty() ? "empty document" : "no root element");
    if (s_[pos_] != '<') return bad("text before the root element");
    auto root = element(1);
    if (!root) return root.error();
    if (auto r = misc(); !r) return r.error();
    if (pos_ < s_.size()) return bad("content after the root element");
    return root;
  }

 private:
  bool starts(std::string_view p) const { return s_.substr(pos_).starts_with(p); }

  error bad(std::string why) const {
    std::size_t line = 1;
    std::size_t col = 1;
    for (std::size_t i = 0; i < std::min(pos_, s_.size()); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return fail(errc::invalid_argument, "malformed XML at line " + std::to_string(line) +
                                            ", column " + std::to_string(col) + ": " + why);
  }

  void skip_space() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }

  // Whitespace, comments and processing instructions (the XML declaration among them).
  result<void> misc() {
    for (;;) {
      skip_space();
      if (starts("<!--")) {
        if (auto r = comment(); !r) return r;
      } else if (starts("<?")) {
        if (auto r = processing_instruction(); !r) return r;
      } else {
        return {};
      }
    }
  }

  result<void> comment() {
    const auto end = s_.find("-->", pos_ + 4);
    if (end == std::string_view::npos) return bad("unterminated comment");
    pos_ = end + 3;
    return {};
  }

  result<void> processing_instruction() {
    const auto end = s_.find("?>", pos_ + 2);
    if (end == std::string_view::npos) return bad("unterminated processing instruction");
    pos_ = end + 2;
    return {};
  }

  result<std::string> name() {
    const auto start = pos_;
    if (pos_ >= s_.size() || !name_start(static_cast<unsigned char>(s_[pos_])))
      return bad("a name was expected");
    while (pos_ < s_.size() && name_char(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }

  // At '&': appends what the reference stands for.
  result<void> reference(std::string& out) {
    const auto semi = s_.find(';', pos_);
    if (semi == std::string_view::npos || semi - pos_ > 12) return bad("unterminated reference");
    const auto ref = s_.substr(pos_ + 1, semi - pos_ - 1);
    if (ref.starts_with('#')) {
      const bool hex = ref.size() > 1 && ref[1] == 'x';
      const auto digits = ref.substr(hex ? 2 : 1);
      if (digits.empty()) return bad("empty character reference");
      std::uint32_t cp = 0;
      for (char c : digits) {
        int d = -1;
        if (c >= '0' && c <= '9') d = c - '0';
        if (hex && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        if (hex && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        if (d < 0) return bad("bad character reference '&" + std::string(ref) + ";'");
        cp = cp * (hex ? 16 : 10) + static_cast<std::uint32_t>(d);
        if (cp > 0x10FFFF) return bad("character reference out of range");
      }
      if (!xml_char(cp)) return bad("character reference to a character XML does not allow");
      append_utf8(out, cp);
    } else if (ref == "lt") {
      out += '<';
    } else if (ref == "gt") {
      out += '>';
    } else if (ref == "amp") {
      out += '&';
    } else if (ref == "quot") {
      out += '"';
    } else if (ref == "apos") {
      out += '\'';
    } else {
      return bad("unknown entity '&" + std::string(ref) + ";'");
    }
    pos_ = semi + 1;
    return {};
  }

  result<std::string> attribute_value() {
    if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\''))
      return bad("an attribute value must be quoted");
    const char quote = s_[pos_++];
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) return bad("unterminated attribute value");
      const char c = s_[pos_];
      if (c == quote) {
        ++pos_;
        return out;
      }
      if (c == '<') return bad("'<' in an attribute value");
      if (c == '&') {
        if (auto r = reference(out); !r) return r.error();
        continue;
      }
      // Attribute values are normalised: whitespace characters become spaces.
      out += is_space(c) ? ' ' : c;
      ++pos_;
    }
  }

  result<std::string> resolve(std::string_view prefix) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      for (const auto& [p, uri] : *scope)
        if (p == prefix) return uri;
    }
    if (prefix.empty()) return std::string();
    if (prefix == "xml") return std::string("http://www.w3.org/XML/1998/namespace");
    return bad("namespace prefix '" + std::string(prefix) + "' is not declared");
  }

  result<xml_element> element(std::size_t depth) {
    if (depth > limits_.max_depth)
      return bad("elements nested deeper than " + std::to_string(limits_.max_depth));
    ++pos_;  // '<'
    auto qname = name();
    if (!qname) return qname.error();

    xml_element e;
    ns_scope scope;
    std::vector<std::pair<std::string, std::string>> raw_attributes;
    for (;;) {
      const auto before = pos_;
      skip_space();
      if (pos_ >= s_.size()) return bad("unterminated start tag <" + *qname + ">");
      if (s_[pos_] == '>' || starts("/>")) break;
      if (pos_ == before) return bad("whitespace expected before an attribute");
      auto attr = name();
      if (!attr) return attr.error();
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '=') return bad("'=' expected after " + *attr);
      ++pos_;
      skip_space();
      auto value = attribute_value();
      if (!value) return value.error();
      for (const auto& [n, v] : raw_attributes) {
        if (n == *attr) return bad("attribute " + *attr + " given twice");
      }
      if (*attr == "xmlns") {
        scope.emplace_back("", *value);
      } else if (attr->starts_with("xmlns:")) {
        if (value->empty()) return bad("namespace prefix " + attr->substr(6) + " bound to nothing");
        scope.emplace_back(attr->substr(6), *value);
      }
      raw_attributes.emplace_back(std::move(*attr), std::move(*value));
    }
    scopes_.push_back(std::move(scope));
    struct pop_scope {
      std::vector<ns_scope>& s;
      ~pop_scope() { s.pop_back(); }
    } popper{scopes_};

    const auto colon = qname->find(':');
    const std::string prefix = colon == std::string::npos ? std::string() : qname->substr(0, colon);
    e.name = colon == std::string::npos ? *qname : qname->substr(colon + 1);
    if (e.name.empty()) return bad("an element name ends with ':'");
    auto uri = resolve(prefix);
    if (!uri) return uri.error();
    e.namespace_uri = std::move(*uri);
    for (auto& [n, v] : raw_attributes) {
      if (n == "xmlns" || n.starts_with("xmlns:")) continue;
      const auto c = n.find(':');
      if (c != std::string::npos) {
        auto bound = resolve(n.substr(0, c));
        if (!bound) return bound.error();
      }
      e.attributes.emplace_back(c == std::string::npos ? n : n.substr(c + 1), std::move(v));
    }

    if (starts("/>")) {
      pos_ += 2;
      return e;
    }
    ++pos_;  // '>'
    for (;;) {
      if (pos_ >= s_.size()) return bad("<" + *qname + "> is never closed");
      if (starts("</")) break;
      if (starts("<!--")) {
        if (auto r = comment(); !r) return r.error();
      } else if (starts("<![CDATA[")) {
        const auto end = s_.find("]]>", pos_ + 9);
        if (end == std::string_view::npos) return bad("unterminated CDATA section");
        e.text.append(s_.substr(pos_ + 9, end - pos_ - 9));
        pos_ = end + 3;
      } else if (starts("<?")) {
        if (auto r = processing_instruction(); !r) return r.error();
      } else if (starts("<!")) {
        return bad("a declaration is not accepted inside an element");
      } else if (s_[pos_] == '<') {
        auto child = element(depth + 1);
        if (!child) return child.error();
        e.children.push_back(std::move(*child));
      } else if (s_[pos_] == '&') {
        if (auto r = reference(e.text); !r) return r.error();
      } else {
        const auto end = std::min(s_.find_first_of("<&", pos_), s_.size());
        e.text.append(s_.substr(pos_, end - pos_));
        pos_ = end;
      }
    }
    pos_ += 2;  // "</"
    auto closing = name();
    if (!closing) return closing.error();
    if (*closing != *qname) return bad("</" + *closing + "> closes <" + *qname + ">");
    skip_space();
    if (pos_ >= s_.size() || s_[pos_] != '>') return bad("'>' expected to end </" + *closing);
    ++pos_;
    return e;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  xml_limits limits_;
  std::vector<ns_scope> scopes_;
};

}  // namespace

const xml_element* xml_element::child(std::string_view local_name) const {
  for (const auto& c : children)
    if (c.name == local_name) return &c;
  return nullptr;
}

std::string_view xml_element::child_text(std::string_view local_name) const {
  const auto* c = child(local_name);
  return c ? std::string_view(c->text) : std::string_view();
}

const xml_element* xml_element::find(std::string_view path) const {
  const xml_element* at = this;
  while (at && !path.empty()) {
    const auto slash = path.find('/');
    at = at->child(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
  }
  return at;
}

std::string_view xml_element::find_text(std::string_view path) const {
  const auto* e = find(path);
  return e ? std::string_view(e->text) : std::string_view();
}

result<xml_element> parse_xml(std::string_view document, xml_limits limits) {
  return xml_reader(document, limits).document();
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace cloudbrain::providers::aws
