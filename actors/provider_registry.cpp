#include "actors/provider_registry.hpp"

namespace cloudbrain {

bool provider_registry::add(provider_actor& p) {
  const std::lock_guard lock(mutex_);
  if (current_->contains(p.section().name)) return false;
  auto next = std::make_shared<map>(*current_);
  next->emplace(p.section().name, &p);
  current_ = std::move(next);
  return true;
}

std::shared_ptr<const provider_registry::map> provider_registry::snapshot() const {
  const std::lock_guard lock(mutex_);
  return current_;
}

provider_actor* provider_registry::find(std::string_view name) const {
  const auto providers = snapshot();
  const auto it = providers->find(name);
  return it == providers->end() ? nullptr : it->second;
}

const provider_section* provider_registry::section(std::string_view name) const {
  const auto* p = find(name);
  return p ? &p->section() : nullptr;
}

}  // namespace cloudbrain
