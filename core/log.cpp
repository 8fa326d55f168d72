#include "core/log.hpp"

#include "core/time.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace cloudbrain::log {
namespace {

constexpr std::array<std::string_view, 7> level_names{"trace", "debug",    "info", "warn",
                                                      "error", "critical", "off"};

spdlog::level::level_enum to_spdlog(level l) {
  return static_cast<spdlog::level::level_enum>(static_cast<int>(l));
}

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance;
  return instance;
}

// Set once at start, before the threads that log; read by every line.
std::string& node_name() {
  static std::string name;
  return name;
}

std::shared_ptr<spdlog::logger> make_sync_logger() {
  auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  auto l = std::make_shared<spdlog::logger>("cloudbrain", sink);
  l->set_pattern("%v");
  return l;
}

template <class N>
void append_number(std::string& out, N v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// Length of the well-formed UTF-8 sequence at the start of `s` (Unicode table 3-7), or 0.
std::size_t utf8_sequence_length(std::string_view s) {
  const auto byte = [&s](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(0);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // UTF-16 surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(k) < 0x80 || byte(k) > 0xbf) return 0;
  }
  return n;
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto plain = [](unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; };
  for (std::size_t i = 0; i < s.size(); ++i) {
    // Runs of characters that need nothing go in whole (most of a value, usually all of it).
    std::size_t run = i;
    while (run < s.size() && plain(static_cast<unsigned char>(s[run]))) ++run;
    if (run > i) {
      out.append(s.substr(i, run - i));
      i = run;
      if (i == s.size()) break;
    }
    const char ch = s[i];
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      // A JSON text must be UTF-8: keep valid sequences, replace each bad byte with U+FFFD.
      if (const auto n = utf8_sequence_length(s.substr(i)); n > 0) {
        out.append(s.substr(i, n));
        i += n - 1;
      } else {
        out += "\xef\xbf\xbd";
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += ch;
        }
    }
  }
}

std::string format_line(level l, std::string_view message, fields f) {
  std::string out;
  out.reserve(128 + message.size());
  out += "{\"ts\":\"";
  out += format_rfc3339(system_clock::now());
  out += "\",\"level\":\"";
  out += level_names[static_cast<std::size_t>(l)];
  if (const std::string& node = node_name(); !node.empty()) {
    out += "\",\"node\":\"";
    append_json_escaped(out, node);
  }
  out += "\",\"msg\":\"";
  append_json_escaped(out, message);
  out += '"';
  for (const auto& fld : f) {
    out += ",\"";
    append_json_escaped(out, fld.key);
    out += "\":";
    std::visit(
        [&out](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::string_view>) {
            out += '"';
            append_json_escaped(out, v);
            out += '"';
          } else if constexpr (std::is_same_v<V, bool>) {
            out += v ? "true" : "false";
          } else if constexpr (std::is_same_v<V, double>) {
            if (std::isfinite(v)) {
              append_number(out, v);
            } else {
              out += "null";
            }
          } else {
            append_number(out, v);
          }
        },
        fld.value);
  }
  out += '}';
  return out;
}

void init(level min_level, bool async) {
  if (async) {
    spdlog::init_thread_pool(8192, 1);
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    logger() = std::make_shared<spdlog::async_logger>(
        "cloudbrain", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
    logger()->set_pattern("%v");
  } else {
    logger() = make_sync_logger();
  }
  logger()->set_level(to_spdlog(min_level));
  logger()->flush_on(spdlog::level::warn);
}

void set_node(std::string_view name) { node_name() = std::string(name); }

void set_level(level min_level) {
  if (logger()) logger()->set_level(to_spdlog(min_level));
}

level parse_level(std::string_view name, bool* ok) {
  for (std::size_t i = 0; i < level_names.size(); ++i) {
    if (name == level_names[i]) {
      if (ok) *ok = true;
      return static_cast<level>(i);
    }
  }
  if (name == "warning") {
    if (ok) *ok = true;
    return level::warn;
  }
  if (ok) *ok = false;
  return level::info;
}

bool enabled(level l) {
  auto& lg = logger();
  return lg ? lg->should_log(to_spdlog(l)) : l >= level::info;
}

void write(level l, std::string_view message, fields f) {
  auto& lg = logger();
  if (!lg) lg = make_sync_logger();
  if (!lg->should_log(to_spdlog(l))) return;
  const std::string line = format_line(l, message, f);
  lg->log(to_spdlog(l), spdlog::string_view_t(line.data(), line.size()));
}

void flush() {
  if (logger()) logger()->flush();
}

void shutdown() {
  flush();
  logger().reset();
  spdlog::shutdown();
}

}  // namespace cloudbrain::log
