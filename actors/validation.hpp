#pragma once

#include <string>
#include <vector>

namespace cloudbrain {

// What a request said, or every way in which it was wrong.
struct validation {
  std::vector<std::string> errors;
  std::string code = "invalid_request";
  [[nodiscard]] bool ok() const { return errors.empty(); }
};

}  // namespace cloudbrain
