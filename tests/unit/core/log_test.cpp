#include "core/log.hpp"

#include "core/time.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace cloudbrain {
namespace {

namespace json = boost::json;

json::object parse_line(const std::string& line) {
  EXPECT_EQ(line.find('\n'), std::string::npos) << "a log line must be one line: " << line;
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  EXPECT_FALSE(ec) << ec.message() << " in: " << line;
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << line;
    return {};
  }
  return v.as_object();
}

TEST(log_format, has_timestamp_level_and_message) {
  const auto before = std::chrono::system_clock::now();
  const std::string line = log::format_line(log::level::warn, "disk almost full", {});
  const auto after = std::chrono::system_clock::now();
  const auto o = parse_line(line);
  ASSERT_EQ(o.size(), 3u) << line;
  EXPECT_EQ(o.at("level").as_string(), "warn");
  EXPECT_EQ(o.at("msg").as_string(), "disk almost full");
  const auto ts = parse_rfc3339(std::string(o.at("ts").as_string()));
  ASSERT_TRUE(ts) << line;
  EXPECT_GE(*ts, std::chrono::floor<std::chrono::microseconds>(before));
  EXPECT_LE(*ts, after);
  EXPECT_EQ(o.at("ts").as_string().back(), 'Z');
  // Fields come first in a stable order: ts, level, msg.
  EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u) << line;
}

// Several processes log for one deployment: each line names its node, right after the level.
TEST(log_format, names_the_node_once_set) {
  log::set_node("node-\"2\"");
  const std::string line = log::format_line(log::level::info, "hello", {{"k", 1}});
  log::set_node("");
  const auto o = parse_line(line);
  EXPECT_EQ(o.at("node").as_string(), "node-\"2\"") << line;
  EXPECT_NE(line.find("\"level\":\"info\",\"node\":"), std::string::npos) << line;
  EXPECT_EQ(parse_line(log::format_line(log::level::info, "hello", {})).size(), 3u);
}

TEST(log_format, every_level_name) {
  const std::pair<log::level, const char*> levels[] = {
      {log::level::trace, "trace"}, {log::level::debug, "debug"},
      {log::level::info, "info"},   {log::level::warn, "warn"},
      {log::level::error, "error"}, {log::level::critical, "critical"}};
  for (const auto& [l, name] : levels) {
    EXPECT_EQ(parse_line(log::format_line(l, "m", {})).at("level").as_string(), name);
  }
}

TEST(log_format, fields_are_typed_right) {
  const std::string owned = "owned string";
  const std::string line =
      log::format_line(log::level::info, "request done",
                       {{"path", "/instances"},
                        {"owned", owned},
                        {"view", std::string_view("a view")},
                        {"status", 201},
                        {"negative", -42},
                        {"big_signed", std::numeric_limits<std::int64_t>::min()},
                        {"big_unsigned", std::numeric_limits<std::uint64_t>::max()},
                        {"size", std::size_t{12345}},
                        {"short", static_cast<short>(-7)},
                        {"ratio", 0.25},
                        {"tiny", 1e-300},
                        {"huge", 1.5e300},
                        {"nan", std::nan("")},
                        {"inf", std::numeric_limits<double>::infinity()},
                        {"ok", true},
                        {"failed", false}});
  const auto o = parse_line(line);
  EXPECT_EQ(o.at("path").as_string(), "/instances");
  EXPECT_EQ(o.at("owned").as_string(), "owned string");
  EXPECT_EQ(o.at("view").as_string(), "a view");
  ASSERT_TRUE(o.at("status").is_int64()) << line;
  EXPECT_EQ(o.at("status").as_int64(), 201);
  EXPECT_EQ(o.at("negative").as_int64(), -42);
  EXPECT_EQ(o.at("big_signed").as_int64(), std::numeric_limits<std::int64_t>::min());
  ASSERT_TRUE(o.at("big_unsigned").is_uint64()) << line;
  EXPECT_EQ(o.at("big_unsigned").as_uint64(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(json::value_to<std::uint64_t>(o.at("size")), 12345u);
  EXPECT_EQ(o.at("short").as_int64(), -7);
  ASSERT_TRUE(o.at("ratio").is_double()) << line;
  EXPECT_EQ(o.at("ratio").as_double(), 0.25);
  EXPECT_EQ(o.at("tiny").as_double(), 1e-300);
  EXPECT_EQ(o.at("huge").as_double(), 1.5e300);
  EXPECT_TRUE(o.at("nan").is_null()) << line;
  EXPECT_TRUE(o.at("inf").is_null()) << line;
  ASSERT_TRUE(o.at("ok").is_bool()) << line;
  EXPECT_TRUE(o.at("ok").as_bool());
  EXPECT_FALSE(o.at("failed").as_bool());
}

TEST(log_format, doubles_round_trip_exactly) {
  for (const double d : {0.1, 1.0 / 3.0, -2.5, 123456789.123, 5e-324, 0.0, -0.0}) {
    const auto o = parse_line(log::format_line(log::level::info, "x", {{"d", d}}));
    const auto& v = o.at("d");
    // Whole doubles may print without a point and parse back as integers: either is fine as
    // long as the number is the same.
    const double back = v.is_double() ? v.as_double() : static_cast<double>(v.as_int64());
    EXPECT_EQ(back, d);
  }
}

TEST(log_format, escapes_quotes_newlines_and_control_characters) {
  std::string nasty = "he said \"hi\"\nthen\\left\r\ttab";
  for (int c = 0; c < 0x20; ++c) nasty += static_cast<char>(c);
  nasty += '\x7f';
  nasty += "end";
  const std::string key = "k\"ey\n";
  const std::string line =
      log::format_line(log::level::error, nasty, {{key, nasty}, {"plain", "ok"}});
  // No raw control character may be in the line.
  for (char ch : line) {
    EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << line;
    EXPECT_NE(ch, '\x7f');
  }
  const auto o = parse_line(line);
  EXPECT_EQ(o.at("msg").as_string(), nasty);
  EXPECT_EQ(o.at(key).as_string(), nasty);
  EXPECT_EQ(o.at("plain").as_string(), "ok");
  EXPECT_NE(line.find("\\\"hi\\\""), std::string::npos);
  EXPECT_NE(line.find("\\n"), std::string::npos);
  EXPECT_NE(line.find("\\u0000"), std::string::npos);
  EXPECT_NE(line.find("\\u001f"), std::string::npos);
}

TEST(log_format, keeps_valid_utf8) {
  const std::string text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80";  // café € 🚀
  const auto o = parse_line(log::format_line(log::level::info, text, {{"v", text}}));
  EXPECT_EQ(o.at("msg").as_string(), text);
  EXPECT_EQ(o.at("v").as_string(), text);
}

TEST(log_format, invalid_utf8_still_gives_valid_json) {
  // Bytes from a cloud's error body or a client header need not be UTF-8; the line must still
  // parse, with the bad bytes replaced.
  for (const std::string& bad :
       {std::string("\xff"), std::string("abc\xc3"), std::string("\xc3(x"), std::string("\xe2\x82"),
        std::string("\xed\xa0\x80"),      // a UTF-16 surrogate
        std::string("\xc0\xaf"),          // overlong '/'
        std::string("\xf4\x90\x80\x80"),  // beyond U+10FFFF
        std::string("ok\x80ok")}) {
    const auto o = parse_line(log::format_line(log::level::info, bad, {{"f", bad}}));
    ASSERT_TRUE(o.contains("msg"));
    const std::string msg(o.at("msg").as_string());
    EXPECT_NE(msg.find("\xef\xbf\xbd"), std::string::npos) << "no U+FFFD for bad input";
  }
  const auto o = parse_line(log::format_line(log::level::info, "ok\x80ok", {}));
  EXPECT_EQ(o.at("msg").as_string(), "ok\xef\xbf\xbdok");
}

TEST(log_format, append_json_escaped) {
  std::string out = "x";
  log::append_json_escaped(out, "a\"b\\c\n\x01");
  EXPECT_EQ(out, "xa\\\"b\\\\c\\n\\u0001");
}

TEST(log_level, parse_level) {
  bool ok = false;
  EXPECT_EQ(log::parse_level("trace", &ok), log::level::trace);
  EXPECT_TRUE(ok);
  EXPECT_EQ(log::parse_level("debug", &ok), log::level::debug);
  EXPECT_EQ(log::parse_level("info", &ok), log::level::info);
  EXPECT_EQ(log::parse_level("warn", &ok), log::level::warn);
  EXPECT_EQ(log::parse_level("warning", &ok), log::level::warn);
  EXPECT_TRUE(ok);
  EXPECT_EQ(log::parse_level("error", &ok), log::level::error);
  EXPECT_EQ(log::parse_level("critical", &ok), log::level::critical);
  EXPECT_EQ(log::parse_level("off", &ok), log::level::off);
  EXPECT_TRUE(ok);
  EXPECT_EQ(log::parse_level("loud", &ok), log::level::info);
  EXPECT_FALSE(ok);
  EXPECT_EQ(log::parse_level("INFO", &ok), log::level::info);
  EXPECT_FALSE(ok);
  EXPECT_EQ(log::parse_level("", &ok), log::level::info);
  EXPECT_FALSE(ok);
  EXPECT_EQ(log::parse_level("debug"), log::level::debug);  // ok pointer is optional
}

TEST(log_level, set_level_controls_enabled) {
  log::init(log::level::warn, /*async=*/false);
  EXPECT_FALSE(log::enabled(log::level::info));
  EXPECT_TRUE(log::enabled(log::level::warn));
  EXPECT_TRUE(log::enabled(log::level::error));
  log::set_level(log::level::debug);
  EXPECT_TRUE(log::enabled(log::level::debug));
  EXPECT_FALSE(log::enabled(log::level::trace));
  log::set_level(log::level::off);
  EXPECT_FALSE(log::enabled(log::level::critical));
  log::info("not shown", {{"k", 1}});  // must not crash with everything off
  log::set_level(log::level::info);
  log::flush();
}

}  // namespace
}  // namespace cloudbrain
