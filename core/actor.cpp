#include "core/actor.hpp"

#include <algorithm>

namespace cloudbrain {

actor_registry& actor_registry::instance() {
  static actor_registry registry;
  return registry;
}

void actor_registry::add(std::string name, const actor_counters* c, std::size_t capacity) {
  std::lock_guard lock(mutex_);
  entries_.push_back({std::move(name), c, capacity});
}

void actor_registry::remove(const actor_counters* c) {
  std::lock_guard lock(mutex_);
  std::erase_if(entries_, [c](const entry& e) { return e.counters == c; });
}

std::vector<actor_registry::entry> actor_registry::snapshot() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

}  // namespace cloudbrain
