// Token bucket: a steady rate with bursts. One per user, touched on one thread.
#pragma once

#include <algorithm>
#include <chrono>

namespace chat::app {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter(double rate_per_second, double burst, Clock::time_point now = Clock::now())
      : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}

  // Take one token; false when the bucket is empty.
  bool allow(Clock::time_point now = Clock::now()) {
    if (rate_ <= 0) return true;  // 0 disables the limit
    const std::chrono::duration<double> dt = now - last_;
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + dt.count() * rate_);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace chat::app
