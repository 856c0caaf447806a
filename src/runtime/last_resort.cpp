// LastResort: count, then log rate-limited; see last_resort.hpp.
#include "runtime/last_resort.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <string>

namespace chat::runtime {

namespace {
std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void LastResort::caught() noexcept {
  count_.fetch_add(1, std::memory_order_relaxed);
  const auto now = steady_ms();
  auto next = next_log_ms_.load(std::memory_order_relaxed);
  if (now < next || !next_log_ms_.compare_exchange_strong(next, now + 1000)) {
    unlogged_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto skipped = unlogged_.exchange(0, std::memory_order_relaxed);
  try {
    std::string what = "unknown exception";
    try {
      if (auto e = std::current_exception()) std::rethrow_exception(e);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("{}: exception caught and dropped: {} ({} more not logged)", where_, what,
                  skipped);
  } catch (...) {
    // Logging itself failed (out of memory): the count is what is left.
  }
}

}  // namespace chat::runtime
