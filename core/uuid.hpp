#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cloudbrain {

// A UUID in its canonical lowercase text form. Version 7 (time-ordered) for new ids, so that
// newer rows sort later in their primary-key index too.
class uuid {
 public:
  uuid() = default;
  [[nodiscard]] static uuid generate_v7();
  [[nodiscard]] static std::optional<uuid> parse(std::string_view text);

  [[nodiscard]] std::string str() const;
  [[nodiscard]] const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
  [[nodiscard]] bool is_nil() const;
  friend bool operator==(const uuid&, const uuid&) = default;
  friend auto operator<=>(const uuid&, const uuid&) = default;

 private:
  std::array<std::uint8_t, 16> bytes_{};
};

// Cryptographically secure random bytes (OpenSSL's RAND_bytes); aborts on failure, since
// there is no safe way to go on without randomness.
void secure_random(std::uint8_t* out, std::size_t n);

[[nodiscard]] std::string to_hex(const std::uint8_t* data, std::size_t n);
[[nodiscard]] std::optional<std::string> from_hex(std::string_view hex);

}  // namespace cloudbrain
