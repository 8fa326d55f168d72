#include "actors/reservation_set_reconciler.hpp"

#include "core/log.hpp"

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

constexpr std::size_t sets_per_pass = 200;
// Passes in a row without a pause, while there are more sets than one pass takes.
constexpr int max_full_passes = 10;

}  // namespace

reservation_set_reconciler::reservation_set_reconciler(asio::any_io_executor ex,
                                                       reservation_set_store& store,
                                                       std::chrono::milliseconds interval)
    : actor(std::move(ex), "reservation_sets", 16), store_(store), interval_(interval) {}

void reservation_set_reconciler::start() { spawn(loop(), "loop"); }

void reservation_set_reconciler::handle(set_reconciler_message&&) {
  if (!running_pass_) spawn(pass(), "pass");
}

asio::awaitable<void> reservation_set_reconciler::loop() {
  while (!closed()) {
    for (int round = 0; round < max_full_passes && !closed(); ++round) {
      if (!running_pass_) {
        auto passing = pass();
        co_await std::move(passing);
      }
      if (!cursor_) break;  // went round every unsettled set
    }
    const auto jitter = std::uniform_int_distribution<std::int64_t>(0, interval_.count() / 5)(rng_);
    co_await sleep_for(interval_ + std::chrono::milliseconds(jitter));
  }
}

asio::awaitable<void> reservation_set_reconciler::pass() {
  // Not a destructor-based guard: a pass still suspended when the process stops is destroyed
  // with the io_context, after this actor, and must not touch it then.
  running_pass_ = true;
  try {
    auto reconciling = reconcile_sets();
    co_await std::move(reconciling);
  } catch (...) {
    running_pass_ = false;
    throw;
  }
  running_pass_ = false;
}

asio::awaitable<void> reservation_set_reconciler::reconcile_sets() {
  auto reconciling = store_.reconcile(cursor_, sets_per_pass);
  auto done = co_await std::move(reconciling);
  stats_.passes.fetch_add(1);
  if (!done) {
    stats_.failures.fetch_add(1);
    if (!failing_) {
      log::warn("reservation sets could not be reconciled; retrying",
                {{"error", done.error().message()}});
    }
    failing_ = true;
    co_return;
  }
  if (failing_) log::info("reservation sets are reconciled again");
  failing_ = false;
  cursor_ = done->full ? done->last : std::nullopt;
  stats_.moves.fetch_add(done->moves.size());
  for (const auto& m : done->moves) {
    // Holding less than was asked for is worth a warning; the rest is the ordinary course.
    const bool short_of_request =
        m.to == "failed" || m.to == "partial" || (m.from == "pending" && m.to == "cancelling");
    log::write(
        short_of_request ? log::level::warn : log::level::info, "reservation set " + m.to,
        {{"reservation_set_id", m.id}, {"from", m.from}, {"to", m.to}, {"reason", m.reason}});
  }
  for (const auto& id : done->members_cancelled) {
    log::info("reservation cancelled with its set", {{"reservation_id", id}});
  }
}

}  // namespace cloudbrain
