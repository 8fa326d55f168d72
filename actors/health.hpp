#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace cloudbrain {

// What /readyz reports besides a live database ping. Written by whoever learns it, read by the
// API: atomics plus one small guarded list, none of it actor state.
class health {
 public:
  void set_draining() { draining_.store(true); }
  [[nodiscard]] bool draining() const { return draining_.load(); }

  void set_schema_ok(bool ok) { schema_ok_.store(ok); }
  [[nodiscard]] bool schema_ok() const { return schema_ok_.load(); }

  // Named conditions that make the process not ready ("reconciler gce: listing failed", ...).
  void set_problem(const std::string& key, const std::string& text);
  void clear_problem(const std::string& key);
  [[nodiscard]] std::vector<std::string> problems() const;

  // Named conditions /readyz reports without failing ("reconciler gce: orphan collection
  // frozen: ..."): the API still serves, but an operator should know.
  void set_warning(const std::string& key, const std::string& text);
  void clear_warning(const std::string& key);
  [[nodiscard]] std::vector<std::string> warnings() const;

 private:
  std::atomic<bool> draining_{false};
  std::atomic<bool> schema_ok_{false};
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> problems_;
  std::vector<std::pair<std::string, std::string>> warnings_;
};

}  // namespace cloudbrain
