#include "core/pg/result.hpp"

#include "core/pg/text.hpp"

#include <libpq-fe.h>

#include <stdexcept>

namespace cloudbrain::pg {

rows& rows::operator=(rows&& other) noexcept {
  if (this != &other) {
    if (native_ != nullptr) PQclear(native_);
    native_ = std::exchange(other.native_, nullptr);
  }
  return *this;
}

rows::~rows() {
  if (native_ != nullptr) PQclear(native_);
}

std::size_t rows::size() const noexcept {
  return native_ == nullptr ? 0 : static_cast<std::size_t>(PQntuples(native_));
}

int rows::columns() const noexcept { return native_ == nullptr ? 0 : PQnfields(native_); }

std::string_view rows::column_name(int col) const {
  if (col < 0 || col >= columns())
    throw std::out_of_range("pg::rows: no column " + std::to_string(col));
  return PQfname(native_, col);
}

int rows::column(std::string_view name) const {
  // PQfnumber would case-fold and unquote the name; an exact match is what the code means.
  for (int col = 0, n = columns(); col < n; ++col) {
    if (name == PQfname(native_, col)) return col;
  }
  throw std::out_of_range("pg::rows: no column named \"" + std::string(name) + '"');
}

void rows::check_cell(int row, int col) const {
  if (row < 0 || static_cast<std::size_t>(row) >= size()) {
    throw std::out_of_range("pg::rows: no row " + std::to_string(row));
  }
  if (col < 0 || col >= columns())
    throw std::out_of_range("pg::rows: no column " + std::to_string(col));
}

bool rows::is_null(int row, int col) const {
  check_cell(row, col);
  return PQgetisnull(native_, row, col) != 0;
}

std::string_view rows::text(int row, int col) const {
  check_cell(row, col);
  return {PQgetvalue(native_, row, col), static_cast<std::size_t>(PQgetlength(native_, row, col))};
}

std::optional<std::string_view> rows::opt_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return text(row, col);
}

std::int64_t rows::affected() const {
  if (native_ == nullptr) return 0;
  return parse_int64(PQcmdTuples(native_)).value_or(0);
}

std::optional<std::int64_t> rows::get_opt_int64(int row, std::string_view col) const {
  const int c = column(col);
  if (is_null(row, c)) return std::nullopt;
  const auto v = parse_int64(text(row, c));
  if (!v)
    throw std::invalid_argument("pg::rows: column \"" + std::string(col) + "\" is not an integer");
  return v;
}

std::int64_t rows::get_int64(int row, std::string_view col) const {
  const auto v = get_opt_int64(row, col);
  if (!v) throw std::invalid_argument("pg::rows: column \"" + std::string(col) + "\" is NULL");
  return *v;
}

bool rows::get_bool(int row, std::string_view col) const {
  const int c = column(col);
  if (is_null(row, c))
    throw std::invalid_argument("pg::rows: column \"" + std::string(col) + "\" is NULL");
  const auto v = parse_bool(text(row, c));
  if (!v)
    throw std::invalid_argument("pg::rows: column \"" + std::string(col) + "\" is not a boolean");
  return *v;
}

std::string rows::get_text(int row, std::string_view col) const {
  const int c = column(col);
  if (is_null(row, c))
    throw std::invalid_argument("pg::rows: column \"" + std::string(col) + "\" is NULL");
  return std::string(text(row, c));
}

std::optional<std::string> rows::get_opt_text(int row, std::string_view col) const {
  const auto v = opt_text(row, column(col));
  if (!v) return std::nullopt;
  return std::string(*v);
}

}  // namespace cloudbrain::pg
