#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace cloudbrain::log {

enum class level { trace, debug, info, warn, error, critical, off };

// One structured field of a log line. Values are copied into the line at once, so views into
// temporaries are fine. Never pass a secret: there is no later filter that could catch it.
struct field {
  using value_type = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;

  std::string_view key;
  value_type value;

  field(std::string_view k, std::string_view v) : key(k), value(v) {}
  field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  field(std::string_view k, bool v) : key(k), value(v) {}
  field(std::string_view k, double v) : key(k), value(v) {}
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool>) field(std::string_view k, I v)
      : key(k),
        value(std::is_signed_v<I> ? value_type(static_cast<std::int64_t>(v))
                                  : value_type(static_cast<std::uint64_t>(v))) {}
};

using fields = std::initializer_list<field>;

// Sets up the process-wide JSON-lines logger on stdout. `async` hands formatted lines to a
// background thread through a bounded queue that drops the oldest line rather than block.
void init(level min_level, bool async = true);
// Names this process in every line from now on ("node":"..."), for the logs of a deployment of
// several processes. Call once, before other threads log; empty: no such field.
void set_node(std::string_view name);
void set_level(level min_level);
[[nodiscard]] level parse_level(std::string_view name, bool* ok = nullptr);
[[nodiscard]] bool enabled(level l);
void flush();
void shutdown();

void write(level l, std::string_view message, fields f);

inline void trace(std::string_view m, fields f = {}) { write(level::trace, m, f); }
inline void debug(std::string_view m, fields f = {}) { write(level::debug, m, f); }
inline void info(std::string_view m, fields f = {}) { write(level::info, m, f); }
inline void warn(std::string_view m, fields f = {}) { write(level::warn, m, f); }
inline void error(std::string_view m, fields f = {}) { write(level::error, m, f); }
inline void critical(std::string_view m, fields f = {}) { write(level::critical, m, f); }

// Formats one line as a JSON object; exposed for tests.
[[nodiscard]] std::string format_line(level l, std::string_view message, fields f);

// Appends `s` to `out` as the inside of a JSON string (no quotes).
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace cloudbrain::log
