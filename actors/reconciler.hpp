#pragma once

#include "actors/cluster_node.hpp"
#include "actors/health.hpp"
#include "actors/instance_store.hpp"
#include "actors/provider_actor.hpp"
#include "core/actor.hpp"

#include <random>
#include <variant>

namespace cloudbrain {

struct reconcile_now {};
using reconciler_message = std::variant<reconcile_now>;

// One per provider: every `interval` it lists the cloud's VMs that carry this deployment's
// label (all zones, all pages) and repairs the difference with the database:
//   - a running instance's address follows the VM's;
//   - an instance whose VM is gone (confirmed by a direct read) and that no job is working on
//     becomes `terminated` if it was terminating, else `errored` ("vanished at the provider");
//   - a VM with no live instance behind it, older than `orphan_grace`, is deleted as an orphan
//     (logged, counted, recorded in instance_events).
// When its view is doubtful (the listing failed, the database could not be read) it deletes
// and marks nothing, and says so in /readyz and the log until a pass succeeds again.
// Every node has one per provider, but only the node that holds the provider's reconciler role
// (`lead`, see cluster_node) runs passes; it stops a pass as soon as it no longer holds it.
class reconciler : public actor<reconciler, reconciler_message> {
 public:
  reconciler(boost::asio::any_io_executor ex, provider_actor& provider, instance_store& store,
             health& status, const leadership& lead, std::chrono::milliseconds interval,
             std::chrono::milliseconds orphan_grace);

  void start();
  void handle(reconciler_message&& m);
  void on_restart() {}

 private:
  struct orphan {
    providers::vm v;
    std::optional<std::string> instance_id;
    std::string why;
  };

  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> delete_orphan(orphan o);
  boost::asio::awaitable<void> pass();  // one at a time (running_pass_)
  boost::asio::awaitable<void> compare_and_repair();
  void freeze(const std::string& why);
  void thaw();
  // Whether this node still leads the provider's reconciliation; says so when it stops.
  [[nodiscard]] bool leading(std::string_view before) const;

  provider_actor& provider_;
  instance_store& store_;
  health& health_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds orphan_grace_;
  const leadership& lead_;
  std::string warning_key_;
  bool running_pass_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace cloudbrain
