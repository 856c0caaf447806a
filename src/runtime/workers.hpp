// Workers: one io_context per thread (one event loop per core).
//
// Every connection is pinned to one worker at accept time; everything that
// belongs to the connection (socket, timers, send queue, the chat state of its
// user) is touched only on that worker's thread, so the hot path needs no lock.
// Cross-thread work is handed over with post(), once per batch, not per delivery.
#pragma once

#include "runtime/last_resort.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace chat::runtime {

class Workers {
 public:
  explicit Workers(unsigned count);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  unsigned size() const { return static_cast<unsigned>(contexts_.size()); }
  boost::asio::io_context& at(unsigned index) { return *contexts_[index]; }
  // Round-robin choice for a new connection.
  unsigned next_index();
  boost::asio::io_context& next() { return at(next_index()); }

  // Index of the worker whose thread is calling, or -1 off the worker threads.
  static int current();

  // Start one thread per worker. Each loop keeps running until stop(); a
  // handler that throws is counted and logged, and the loop goes on.
  void start();
  std::uint64_t exceptions() const { return last_resort_.count(); }
  // Let every loop return and join the threads. Safe to call twice.
  void stop();
  // Block until the threads have exited (after stop() from elsewhere).
  void join();

  // Run f(index) on every worker (asynchronously).
  template <class F>
  void post_all(F f) {
    for (unsigned i = 0; i < size(); ++i) boost::asio::post(at(i), [f, i]() mutable { f(i); });
  }

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<
      std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>>
      guards_;
  std::vector<std::thread> threads_;
  std::atomic<unsigned> rr_{0};
  LastResort last_resort_{"worker"};
};

}  // namespace chat::runtime
