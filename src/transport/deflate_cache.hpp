// The compressed copies of a worker's recent frames (permessage-deflate).
//
// A broadcast hands every receiver on a worker the same shared payload; the
// first receiver that negotiated compression compresses it, the others find
// it here. Keyed by the payload's address, the entry holding the payload so
// that the address is not reused while it is cached. A ring of the last
// kEntries payloads: a burst of broadcasts flushed to many connections in
// one turn finds each of them. One per worker thread, no lock.
#pragma once

#include "protocol/deflate.hpp"

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>

namespace chat::transport {

class DeflateCache {
 public:
  static constexpr std::size_t kEntries = 256;

  // The compressed payload, or null when compressing does not make it smaller.
  std::shared_ptr<const std::string> get(const std::shared_ptr<const std::string>& payload) {
    if (auto it = index_.find(payload.get()); it != index_.end()) {
      ++hits_;
      return ring_[it->second].out;
    }
    auto z = deflater_.compress(*payload);
    std::shared_ptr<const std::string> out;
    if (z.size() < payload->size()) out = std::make_shared<const std::string>(std::move(z));
    auto& slot = ring_[next_];
    if (slot.in) index_.erase(slot.in.get());
    slot = Entry{payload, out};
    index_[payload.get()] = next_;
    next_ = (next_ + 1) % kEntries;
    ++misses_;
    return out;
  }
  std::string gzip(std::string_view body) { return deflater_.gzip(body); }

  // The one of this thread.
  static DeflateCache& here() {
    thread_local DeflateCache cache;
    return cache;
  }
  std::size_t hits() const { return hits_; }
  std::size_t misses() const { return misses_; }

 private:
  struct Entry {
    std::shared_ptr<const std::string> in, out;
  };
  protocol::deflate::Deflater deflater_;
  std::array<Entry, kEntries> ring_;
  std::unordered_map<const std::string*, std::size_t> index_;
  std::size_t next_ = 0;
  std::size_t hits_ = 0, misses_ = 0;
};

}  // namespace chat::transport
