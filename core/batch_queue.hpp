#pragma once

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cloudbrain {

struct batch_limits {
  std::size_t max_batch = 256;    // items in one batch
  std::size_t max_queued = 4096;  // items waiting for a batch; one more is refused, overloaded
  std::size_t max_in_flight = 2;  // batches running at once
};

// What a batch_queue counts; read from any thread.
struct batch_counters {
  // Batch sizes by power of two: sizes[i] counts batches of at most 2^i items (and more than
  // 2^(i-1)); the last one, those larger than 2^(size_buckets - 2).
  static constexpr std::size_t size_buckets = 10;
  [[nodiscard]] static constexpr std::size_t size_bucket(std::size_t items) noexcept {
    return std::min<std::size_t>(static_cast<std::size_t>(std::bit_width(items - 1)),
                                 size_buckets - 1);
  }

  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> items{0};
  std::atomic<std::uint64_t> refused{0};  // the queue was full
  std::atomic<std::uint64_t> expired{0};  // the item's deadline passed before its batch began
  std::atomic<std::int64_t> queued{0};
  std::array<std::atomic<std::uint64_t>, size_buckets> sizes{};
};

// Gathers what concurrent callers submit into batches run by one function: group commit. A
// batch begins as soon as fewer than max_in_flight run, with everything queued (up to
// max_batch); so a lone item goes at once, alone, and items that arrive while batches run
// share the next one. That is the batch's deadline too: it closes when a runner is free, or
// when it is full. Each caller gets its own item's result, never another's.
//
// `runner` gets the batch's items and the earliest of their deadlines, and returns one result
// per item in the same order (anything else fails the batch with errc::internal). It runs on
// the queue's strand, one coroutine per batch. The queue's state is shared with the batches in
// flight, so it may be destroyed while they run (their callers are still answered).
template <class Item, class Result>
class batch_queue {
 public:
  using results = std::vector<result<Result>>;
  using runner = std::function<boost::asio::awaitable<results>(std::vector<Item>&, deadline)>;

  batch_queue(boost::asio::any_io_executor ex, std::string name, batch_limits limits, runner run)
      : state_(std::make_shared<state>(std::move(ex), std::move(name), limits, std::move(run))) {}

  // The item's result once its batch has run; overloaded at once when max_queued items wait
  // already; timeout when `dl` passes before its batch begins.
  [[nodiscard]] boost::asio::awaitable<result<Result>> submit(Item item, deadline dl) {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(result<Result>)>(
        [s = state_, dl](auto handler, Item it) mutable {
          boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
          s->enqueue(std::move(it), dl, caller{std::move(ex), std::move(handler)});
        },
        boost::asio::use_awaitable, std::move(item));
  }

  [[nodiscard]] const batch_counters& counters() const noexcept { return state_->counters; }
  [[nodiscard]] const batch_limits& limits() const noexcept { return state_->limits; }

 private:
  // Who waits for an item, and where to resume it.
  struct caller {
    boost::asio::any_io_executor ex;
    boost::asio::any_completion_handler<void(result<Result>)> handler;
  };

  struct waiting {
    Item item;
    deadline dl;
    caller done;
  };

  struct state : std::enable_shared_from_this<state> {
    state(boost::asio::any_io_executor ex, std::string n, batch_limits l, runner r)
        : strand(boost::asio::make_strand(ex)), name(std::move(n)), limits(l), run(std::move(r)) {
      limits.max_batch = std::max<std::size_t>(limits.max_batch, 1);
      limits.max_in_flight = std::max<std::size_t>(limits.max_in_flight, 1);
    }

    // Any thread.
    void enqueue(Item item, deadline dl, caller done) {
      if (counters.queued.fetch_add(1, std::memory_order_acq_rel) >=
          static_cast<std::int64_t>(limits.max_queued)) {
        counters.queued.fetch_sub(1, std::memory_order_acq_rel);
        counters.refused.fetch_add(1, std::memory_order_relaxed);
        answer(std::move(done), fail(errc::overloaded, name + " has too many requests waiting"));
        return;
      }
      boost::asio::post(strand, [self = this->shared_from_this(),
                                 w = waiting{std::move(item), dl, std::move(done)}]() mutable {
        self->queue.push_back(std::move(w));
        self->pump();
      });
    }

    static void answer(caller done, result<Result> r) {
      auto ex = std::move(done.ex);
      boost::asio::post(ex, [h = std::move(done.handler), r = std::move(r)]() mutable {
        std::move(h)(std::move(r));
      });
    }

    // On the strand: starts batches while there is room and work.
    void pump() {
      while (in_flight < limits.max_in_flight && !queue.empty()) {
        std::vector<waiting> batch;
        batch.reserve(std::min(queue.size(), limits.max_batch));
        const auto now = steady_clock::now();
        while (!queue.empty() && batch.size() < limits.max_batch) {
          waiting w = std::move(queue.front());
          queue.pop_front();
          counters.queued.fetch_sub(1, std::memory_order_acq_rel);
          if (w.dl <= now) {
            counters.expired.fetch_add(1, std::memory_order_relaxed);
            answer(std::move(w.done), fail(errc::timeout, name + ": the deadline passed"));
            continue;
          }
          batch.push_back(std::move(w));
        }
        if (batch.empty()) continue;
        ++in_flight;
        boost::asio::co_spawn(strand, run_batch(this->shared_from_this(), std::move(batch)),
                              [self = this->shared_from_this()](const std::exception_ptr&) {
                                --self->in_flight;
                                self->pump();
                              });
      }
    }

    static boost::asio::awaitable<void> run_batch(std::shared_ptr<state> self,
                                                  std::vector<waiting> batch) {
      std::vector<Item> items;
      items.reserve(batch.size());
      deadline earliest = deadline::max();
      for (auto& w : batch) {
        items.push_back(std::move(w.item));
        earliest = std::min(earliest, w.dl);
      }
      self->counters.batches.fetch_add(1, std::memory_order_relaxed);
      self->counters.items.fetch_add(items.size(), std::memory_order_relaxed);
      self->counters.sizes[batch_counters::size_bucket(items.size())].fetch_add(
          1, std::memory_order_relaxed);
      std::optional<results> out;
      try {
        auto running = self->run(items, earliest);
        out = co_await std::move(running);
      } catch (const std::exception& e) {
        log::error("a batch failed", {{"queue", self->name}, {"error", e.what()}});
      }
      if (out && out->size() != batch.size()) {
        log::error("a batch answered for the wrong number of items",
                   {{"queue", self->name}, {"items", batch.size()}, {"results", out->size()}});
        out.reset();
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (out) {
          answer(std::move(batch[i].done), std::move((*out)[i]));
        } else {
          answer(std::move(batch[i].done), fail(errc::internal, self->name + " failed"));
        }
      }
    }

    boost::asio::strand<boost::asio::any_io_executor> strand;
    const std::string name;
    batch_limits limits;
    runner run;
    batch_counters counters;
    // On the strand.
    std::deque<waiting> queue;
    std::size_t in_flight = 0;
  };

  std::shared_ptr<state> state_;
};

}  // namespace cloudbrain
