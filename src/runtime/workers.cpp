// Workers: see workers.hpp.
#include "runtime/workers.hpp"

namespace chat::runtime {

namespace {
thread_local int tl_worker = -1;
}

Workers::Workers(unsigned count) {
  if (count == 0) count = 1;
  for (unsigned i = 0; i < count; ++i) {
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    guards_.push_back(
        std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
            contexts_.back()->get_executor()));
  }
}

Workers::~Workers() {
  stop();
  join();
}

unsigned Workers::next_index() {
  return rr_.fetch_add(1, std::memory_order_relaxed) % size();
}

int Workers::current() {
  return tl_worker;
}

void Workers::start() {
  for (unsigned i = 0; i < size(); ++i) {
    threads_.emplace_back([this, i] {
      tl_worker = static_cast<int>(i);
      // run() returns normally only once stopped; after a handler threw, the
      // io_context keeps its other work and run() picks it up again.
      for (;;) {
        try {
          contexts_[i]->run();
          return;
        } catch (...) {
          last_resort_.caught();
        }
      }
    });
  }
}

void Workers::stop() {
  for (auto& g : guards_) g->reset();
  for (auto& c : contexts_) c->stop();
}

void Workers::join() {
  for (auto& t : threads_)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  threads_.clear();
}

}  // namespace chat::runtime
