#pragma once

#include "actors/provider_actor.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace cloudbrain {

// The providers this process serves, by name, for the API's handlers on every thread. A reload
// (SIGHUP) adds to it while requests read it: readers take an immutable snapshot, a writer
// publishes a new one. Nothing is ever removed, so a provider_actor* (and its section) read
// from it stays valid for the life of the process.
class provider_registry {
 public:
  using map = std::map<std::string, provider_actor*, std::less<>>;

  provider_registry() : current_(std::make_shared<const map>()) {}

  // False when a provider of that name is already served.
  bool add(provider_actor& p);

  [[nodiscard]] std::shared_ptr<const map> snapshot() const;
  [[nodiscard]] provider_actor* find(std::string_view name) const;
  [[nodiscard]] const provider_section* section(std::string_view name) const;

 private:
  mutable std::mutex mutex_;  // guards the pointer only; a snapshot is never written
  std::shared_ptr<const map> current_;
};

}  // namespace cloudbrain
