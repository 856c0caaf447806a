// Runner: one load generator run from start to report.
//
// Starts the worker threads, ramps the connections up, waits for every
// client to be ready, runs the scenario's measured window while sampling the
// server processes, drains late deliveries, then stops and accounts.
#pragma once

#include "options.hpp"
#include "report.hpp"

namespace loadgen {

class Runner {
 public:
  explicit Runner(Options options);
  // Throws std::invalid_argument for bad options (before any connection).
  Report run();

 private:
  Options options_;
};

}  // namespace loadgen
