#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

struct pg_result;  // libpq's PGresult

namespace cloudbrain::pg {

// What one statement returned: its rows (in text format) or its command status. A move-only
// owner of a libpq result; the views it hands out live as long as it does.
//
// Asking for a column or row that is not there, or reading NULL or "abc" through get_int64, is a
// bug in the caller (the SQL and the code disagree), so those throw instead of returning result<T>.
class rows {
 public:
  rows() noexcept = default;
  explicit rows(pg_result* native) noexcept : native_(native) {}
  rows(rows&& other) noexcept : native_(std::exchange(other.native_, nullptr)) {}
  rows& operator=(rows&& other) noexcept;
  rows(const rows&) = delete;
  rows& operator=(const rows&) = delete;
  ~rows();

  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] int columns() const noexcept;
  [[nodiscard]] std::string_view column_name(int col) const;
  // The index of the column called `name`; std::out_of_range if there is none.
  [[nodiscard]] int column(std::string_view name) const;

  [[nodiscard]] bool is_null(int row, int col) const;
  // The value as text; empty for NULL.
  [[nodiscard]] std::string_view text(int row, int col) const;
  [[nodiscard]] std::optional<std::string_view> opt_text(int row, int col) const;

  // Rows inserted, updated, deleted, selected... as the server reported it; 0 if it did not say.
  [[nodiscard]] std::int64_t affected() const;

  [[nodiscard]] std::int64_t get_int64(int row, std::string_view col) const;
  [[nodiscard]] std::optional<std::int64_t> get_opt_int64(int row, std::string_view col) const;
  [[nodiscard]] bool get_bool(int row, std::string_view col) const;
  [[nodiscard]] std::string get_text(int row, std::string_view col) const;
  [[nodiscard]] std::optional<std::string> get_opt_text(int row, std::string_view col) const;

  [[nodiscard]] pg_result* native() const noexcept { return native_; }

 private:
  void check_cell(int row, int col) const;

  pg_result* native_ = nullptr;
};

}  // namespace cloudbrain::pg
