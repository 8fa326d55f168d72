#pragma once

#include "actors/cluster_node.hpp"
#include "actors/health.hpp"
#include "actors/provider_actor.hpp"
#include "actors/reservation_store.hpp"
#include "core/actor.hpp"

#include <random>
#include <variant>

namespace cloudbrain {

struct janitor_pass_now {};
using janitor_message = std::variant<janitor_pass_now>;

// One per provider: every `interval` it cancels the provider's reservations that should not be
// paid for any more, and releases what the cloud holds for this deployment without a reason:
//   - a reservation past its end time (ends_at) is cancelled and ends `expired` (the cloud's own
//     end date, where it has one, is the backstop behind this);
//   - an active reservation with no instance in it for `unused_grace` is cancelled (`unused`);
//   - a reservation found at the cloud with this deployment's marker but no live row in that
//     zone (an orphan), older than `orphan_grace`, is released at once.
// Every cancellation is logged, counted and recorded (reservation_events). When its view is
// doubtful (the listing failed or the database could not be read) it releases nothing at the
// cloud and says so in /readyz and the log until a pass succeeds again.
// Every node has one per provider, but only the node that holds the provider's janitor role
// (`lead`, see cluster_node) runs passes; it stops a pass as soon as it no longer holds it.
class reservation_janitor : public actor<reservation_janitor, janitor_message> {
 public:
  reservation_janitor(boost::asio::any_io_executor ex, provider_actor& provider,
                      reservation_store& store, health& status, const leadership& lead,
                      std::chrono::milliseconds interval, std::chrono::milliseconds unused_grace,
                      std::chrono::milliseconds orphan_grace);

  void start();
  void handle(janitor_message&& m);
  void on_restart() {}

 private:
  struct orphan {
    providers::cloud_reservation r;
    std::optional<std::string> reservation_id;
    std::string why;
  };

  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> pass();  // one at a time (running_pass_)
  boost::asio::awaitable<void> sweep();
  boost::asio::awaitable<void> release_orphan(orphan o);
  void freeze(const std::string& why);
  void thaw();
  // Whether this node still leads the provider's janitor; says so when it stops.
  [[nodiscard]] bool leading(std::string_view before) const;

  provider_actor& provider_;
  reservation_store& store_;
  health& health_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds unused_grace_;
  std::chrono::milliseconds orphan_grace_;
  const leadership& lead_;
  std::string warning_key_;
  bool running_pass_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace cloudbrain
