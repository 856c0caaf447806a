// PasswordChecker: bcrypt hashes of every revision the Node admin-ui takes,
// refusals, and the bound on waiting checks.
#include "admin/password.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

using chat::admin::PasswordChecker;

namespace {
// bcrypt of "changeit" (cost 12 and 10, three revisions of the same hash).
const std::string kHash12 = "$2b$12$wpsgEtq3qxxlFiIH/1WFm.Q5U9h1btBIuSIuUeQ8xDVNdqJvwl.J2";
const std::string kHashA = "$2a$10$uvkwQEuLOpll0RtQmIqC3uxP7kDuyIQewW0nztG2K4KfkkkW/FZ7C";
}  // namespace

TEST(PasswordChecker, VerifiesBcryptRevisions) {
  EXPECT_TRUE(PasswordChecker::verify("changeit", kHash12));
  EXPECT_TRUE(PasswordChecker::verify("changeit", kHashA));
  // $2y$ and $2b$ are the same algorithm as $2a$ for ASCII passwords.
  EXPECT_TRUE(PasswordChecker::verify("changeit", "$2y$" + kHashA.substr(4)));
  EXPECT_TRUE(PasswordChecker::verify("changeit", "$2b$" + kHashA.substr(4)));
  EXPECT_FALSE(PasswordChecker::verify("changeiT", kHash12));
  EXPECT_FALSE(PasswordChecker::verify("", kHash12));
  EXPECT_FALSE(PasswordChecker::verify(std::string("changeit\0x", 10), kHash12));
}

TEST(PasswordChecker, RefusesWhatIsNotBcrypt) {
  EXPECT_TRUE(PasswordChecker::valid_hash(kHash12));
  EXPECT_FALSE(PasswordChecker::valid_hash("changeit"));
  EXPECT_FALSE(PasswordChecker::valid_hash("$2x$" + kHashA.substr(4)));
  EXPECT_FALSE(PasswordChecker::valid_hash(kHashA.substr(0, 59)));
  EXPECT_FALSE(PasswordChecker::valid_hash("$2a$99" + kHashA.substr(6)));
  EXPECT_FALSE(PasswordChecker::valid_hash("$6$saltsalt$" + std::string(49, 'a')));
  EXPECT_FALSE(PasswordChecker::verify("changeit", "$6$saltsalt$" + std::string(49, 'a')));
  EXPECT_THROW(PasswordChecker("admin", "plain"), std::invalid_argument);
}

TEST(PasswordChecker, ChecksOffTheCallersThreadAndNeedsTheUser) {
  PasswordChecker checker("admin", kHashA);
  const auto caller = std::this_thread::get_id();
  auto run = [&](std::string user, std::string password) {
    std::promise<std::pair<PasswordChecker::Verdict, std::thread::id>> p;
    checker.check(std::move(user), std::move(password), [&p](PasswordChecker::Verdict v) {
      p.set_value({v, std::this_thread::get_id()});
    });
    return p.get_future().get();
  };
  auto [ok, ok_thread] = run("admin", "changeit");
  EXPECT_EQ(ok, PasswordChecker::Verdict::ok);
  EXPECT_NE(ok_thread, caller);
  EXPECT_EQ(run("root", "changeit").first, PasswordChecker::Verdict::bad);
  EXPECT_EQ(run("admin", "nope").first, PasswordChecker::Verdict::bad);
}

TEST(PasswordChecker, BeyondTheQueueLoginsAreBusyAtOnce) {
  // Queue of 2, 1 per second: of 10 checks at once, at most 2 are hashed.
  PasswordChecker checker("admin", kHash12, 1.0, 2);
  std::atomic<int> busy{0}, answered{0};
  for (int i = 0; i < 10; ++i) {
    checker.check("admin", "nope", [&](PasswordChecker::Verdict v) {
      if (v == PasswordChecker::Verdict::busy) ++busy;
      ++answered;
    });
  }
  EXPECT_GE(busy.load(), 8);  // answered at once, on this thread
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (answered.load() < 10 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(answered.load(), 10);
}
