// PasswordChecker: checks the Admin UI's login against a bcrypt hash, off
// the I/O threads.
//
// A bcrypt check costs tens of milliseconds of CPU by design, so it never
// runs on an event loop: one thread of its own takes the checks in turn.
// What a flood of logins may cost is bounded: at most `queue` checks wait,
// at most `rate` start per second (burst `queue`); beyond that a login is
// answered "busy" at once, without hashing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace chat::admin {

class PasswordChecker {
 public:
  enum class Verdict { ok, bad, busy };

  // hash: bcrypt, "$2a$", "$2b$" or "$2y$", 60 characters (what the
  // Node admin-ui's bcryptjs and htpasswd -B make); throws
  // std::invalid_argument for anything else.
  PasswordChecker(std::string user, std::string hash, double rate = 5.0, std::size_t queue = 8);
  ~PasswordChecker();
  PasswordChecker(const PasswordChecker&) = delete;
  PasswordChecker& operator=(const PasswordChecker&) = delete;

  // done runs once: on the checker's thread for ok / bad, on the caller's
  // for busy. A wrong user name costs a hash too (no hint which part was wrong).
  void check(std::string user, std::string password, std::function<void(Verdict)> done);

  static bool valid_hash(const std::string& hash);
  // The check itself (blocking: tens of milliseconds).
  static bool verify(const std::string& password, const std::string& hash);

 private:
  struct Job {
    std::string user, password;
    std::function<void(Verdict)> done;
  };
  void run();
  bool take_token();  // caller holds mu_

  const std::string user_;
  const std::string hash_;
  const double rate_;
  const std::size_t queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  double tokens_;
  std::chrono::steady_clock::time_point refilled_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace chat::admin
