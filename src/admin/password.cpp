// PasswordChecker; see password.hpp.
#include "admin/password.hpp"

#include <crypt.h>

#include <cstring>
#include <memory>
#include <stdexcept>

namespace chat::admin {

bool PasswordChecker::valid_hash(const std::string& hash) {
  if (hash.size() != 60) return false;
  if (!(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")))
    return false;
  if (hash[6] != '$') return false;
  for (int i = 4; i < 6; ++i)
    if (hash[i] < '0' || hash[i] > '9') return false;
  const int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
  return cost >= 4 && cost <= 31;
}

bool PasswordChecker::verify(const std::string& password, const std::string& hash) {
  if (!valid_hash(hash)) return false;
  // A NUL inside the password would cut it short for crypt(): refuse it.
  if (password.find('\0') != std::string::npos) return false;
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_r(password.c_str(), hash.c_str(), data.get());
  if (!out || std::strlen(out) != hash.size()) return false;
  // Compared in full, in constant time.
  unsigned char diff = 0;
  for (std::size_t i = 0; i < hash.size(); ++i)
    diff |= static_cast<unsigned char>(out[i] ^ hash[i]);
  return diff == 0;
}

PasswordChecker::PasswordChecker(std::string user, std::string hash, double rate, std::size_t queue)
    : user_(std::move(user)),
      hash_(std::move(hash)),
      rate_(rate),
      queue_(queue),
      tokens_(static_cast<double>(queue)),
      refilled_(std::chrono::steady_clock::now()) {
  if (!valid_hash(hash_))
    throw std::invalid_argument(
        "the Admin UI password hash is not bcrypt ($2a$/$2b$/$2y$, 60 characters)");
  thread_ = std::thread([this] { run(); });
}

PasswordChecker::~PasswordChecker() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  // Logins still waiting get an answer: nobody is left to check them.
  for (auto& j : jobs_) j.done(Verdict::busy);
}

bool PasswordChecker::take_token() {
  const auto now = std::chrono::steady_clock::now();
  tokens_ = std::min(static_cast<double>(queue_),
                     tokens_ + rate_ * std::chrono::duration<double>(now - refilled_).count());
  refilled_ = now;
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

void PasswordChecker::check(std::string user, std::string password,
                            std::function<void(Verdict)> done) {
  {
    std::lock_guard lk(mu_);
    if (!stop_ && jobs_.size() < queue_ && take_token()) {
      jobs_.push_back(Job{std::move(user), std::move(password), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(Verdict::busy);
}

void PasswordChecker::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    // The hash is computed whether or not the name matches.
    const bool password_ok = verify(job.password, hash_);
    job.done(password_ok && job.user == user_ ? Verdict::ok : Verdict::bad);
  }
}

}  // namespace chat::admin
