// The last resort of every thread: a worker handler that throws is counted,
// and the worker goes on running the others.
#include "runtime/last_resort.hpp"
#include "runtime/workers.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

TEST(LastResort, CountsWhatItCatches) {
  chat::runtime::LastResort lr("test");
  for (int i = 0; i < 3; ++i) {
    try {
      throw std::runtime_error("boom");
    } catch (...) {
      lr.caught();
    }
  }
  try {
    throw 42;  // not a std::exception
  } catch (...) {
    lr.caught();
  }
  EXPECT_EQ(lr.count(), 4u);
}

TEST(Workers, AThrowingHandlerDoesNotEndTheWorker) {
  chat::runtime::Workers workers(1);
  workers.start();
  boost::asio::post(workers.at(0), [] { throw std::runtime_error("handler bug"); });
  boost::asio::post(workers.at(0), [] { throw std::bad_alloc(); });
  std::promise<std::thread::id> ran;
  boost::asio::post(workers.at(0), [&] { ran.set_value(std::this_thread::get_id()); });
  auto f = ran.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_NE(f.get(), std::this_thread::get_id());
  EXPECT_EQ(workers.exceptions(), 2u);
  workers.stop();
  workers.join();
}
