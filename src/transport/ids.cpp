// Random identifiers; see ids.hpp.
#include "transport/ids.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace chat::transport {

void os_random(unsigned char* out, std::size_t n) {
  while (n > 0) {
    const auto got = getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "getrandom failed: %s\n", std::strerror(errno));
      std::abort();
    }
    out += got;
    n -= static_cast<std::size_t>(got);
  }
}

void RandomPool::refill() {
  os_random(buf_.data(), buf_.size());
  pos_ = 0;
}

void RandomPool::take(unsigned char* out, std::size_t n) {
  while (n > 0) {
    if (pos_ == buf_.size()) refill();
    const auto k = std::min(n, buf_.size() - pos_);
    std::memcpy(out, buf_.data() + pos_, k);
    // Used bytes are not kept around.
    std::memset(buf_.data() + pos_, 0, k);
    pos_ += k;
    out += k;
    n -= k;
  }
}

std::string random_id(RandomPool& pool) {
  static constexpr char kChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char b[15];
  pool.take(b, sizeof b);
  std::string id(20, ' ');
  for (std::size_t i = 0, o = 0; i < sizeof b; i += 3, o += 4) {
    const unsigned v = (unsigned{b[i]} << 16) | (unsigned{b[i + 1]} << 8) | b[i + 2];
    id[o] = kChars[(v >> 18) & 63];
    id[o + 1] = kChars[(v >> 12) & 63];
    id[o + 2] = kChars[(v >> 6) & 63];
    id[o + 3] = kChars[v & 63];
  }
  return id;
}

}  // namespace chat::transport
