// Random identifiers from the OS CSPRNG (getrandom(2)).
//
// A polling sid is a bearer credential: whoever knows it can read and write
// the session. Ids are 20 characters of base64url (120 random bits). Bytes
// come from the kernel in batches kept per thread, so an id costs one copy,
// not one system call; sids and socket ids draw from separate pools so a
// socket id shown to other users says nothing about any sid.
#pragma once

#include <array>
#include <cstddef>
#include <string>

namespace chat::transport {

class RandomPool {
 public:
  // Fill out with n random bytes. Aborts the process if the kernel has no
  // CSPRNG to offer (an id must never come from anything weaker).
  void take(unsigned char* out, std::size_t n);

 private:
  void refill();
  std::array<unsigned char, 480> buf_{};
  std::size_t pos_ = buf_.size();
};

// 20 base64url characters from 15 random bytes of pool.
std::string random_id(RandomPool& pool);

// Fill out with n bytes straight from getrandom(2) (start-up use).
void os_random(unsigned char* out, std::size_t n);

}  // namespace chat::transport
