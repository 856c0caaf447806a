// LastResort: what a thread does with an exception nothing else caught.
//
// Exceptions are for start-up; on a running thread one means a bug or an
// input nobody foresaw. Ending the thread (std::terminate) would take the
// replica and every user on it down, so the outermost loop of every thread
// catches, counts (for /metrics) and logs, at most once per second with the
// number not logged, so a flood of bad input cannot flood the log either.
#pragma once

#include <atomic>
#include <cstdint>

namespace chat::runtime {

class LastResort {
 public:
  explicit LastResort(const char* where) : where_(where) {}
  LastResort(const LastResort&) = delete;
  LastResort& operator=(const LastResort&) = delete;

  // Call inside a catch block (any: it reads std::current_exception()).
  void caught() noexcept;
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  const char* where_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> unlogged_{0};
  std::atomic<std::int64_t> next_log_ms_{0};
};

}  // namespace chat::runtime
