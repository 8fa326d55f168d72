#include "actors/health.hpp"

#include <algorithm>

namespace cloudbrain {

void health::set_problem(const std::string& key, const std::string& text) {
  std::lock_guard lock(mutex_);
  for (auto& [k, t] : problems_) {
    if (k == key) {
      t = text;
      return;
    }
  }
  problems_.emplace_back(key, text);
}

void health::clear_problem(const std::string& key) {
  std::lock_guard lock(mutex_);
  std::erase_if(problems_, [&](const auto& p) { return p.first == key; });
}

std::vector<std::string> health::problems() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [k, t] : problems_) out.push_back(t);
  return out;
}

}  // namespace cloudbrain
