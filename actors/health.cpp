#include "actors/health.hpp"

#include <algorithm>

namespace cloudbrain {

namespace {

using entries = std::vector<std::pair<std::string, std::string>>;

void set_entry(entries& list, const std::string& key, const std::string& text) {
  for (auto& [k, t] : list) {
    if (k == key) {
      t = text;
      return;
    }
  }
  list.emplace_back(key, text);
}

std::vector<std::string> texts(const entries& list) {
  std::vector<std::string> out;
  for (const auto& [k, t] : list) out.push_back(t);
  return out;
}

}  // namespace

void health::set_problem(const std::string& key, const std::string& text) {
  std::lock_guard lock(mutex_);
  set_entry(problems_, key, text);
}

void health::clear_problem(const std::string& key) {
  std::lock_guard lock(mutex_);
  std::erase_if(problems_, [&](const auto& p) { return p.first == key; });
}

std::vector<std::string> health::problems() const {
  std::lock_guard lock(mutex_);
  return texts(problems_);
}

void health::set_warning(const std::string& key, const std::string& text) {
  std::lock_guard lock(mutex_);
  set_entry(warnings_, key, text);
}

void health::clear_warning(const std::string& key) {
  std::lock_guard lock(mutex_);
  std::erase_if(warnings_, [&](const auto& p) { return p.first == key; });
}

std::vector<std::string> health::warnings() const {
  std::lock_guard lock(mutex_);
  return texts(warnings_);
}

}  // namespace cloudbrain
