// Wall-clock nanoseconds shared by every load generator process on the machine.
//
// CLOCK_REALTIME is the same for all processes, so a sender in one process
// and a receiver in another measure latency against one clock.
#pragma once

#include <time.h>

#include <cstdint>

namespace loadgen {

inline std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace loadgen
