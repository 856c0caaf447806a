// The compressed copies of a worker's recent frames (permessage-deflate).
//
// A broadcast hands every receiver on a worker the same shared payload; the
// first receiver that negotiated compression compresses it, the others find
// it here. Keyed by the payload's address, the entry holding the payload so
// that the address is not reused while it is cached. The last kEntries
// payloads, at most kBudgetBytes of payloads and their compressed copies
// together (the oldest go first; a payload larger than that is compressed
// for each receiver instead): a burst of broadcasts flushed to many
// connections in one turn finds each of them. One per worker thread, no lock.
#pragma once

#include "protocol/deflate.hpp"

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

namespace chat::transport {

class DeflateCache {
 public:
  static constexpr std::size_t kEntries = 256;
  static constexpr std::size_t kBudgetBytes = 4 << 20;

  // The compressed payload, or null when compressing does not make it smaller.
  std::shared_ptr<const std::string> get(const std::shared_ptr<const std::string>& payload) {
    if (auto it = entries_.find(payload.get()); it != entries_.end()) {
      ++hits_;
      return it->second.out;
    }
    ++misses_;
    auto z = deflater_.compress(*payload);
    std::shared_ptr<const std::string> out;
    if (z.size() < payload->size()) out = std::make_shared<const std::string>(std::move(z));
    const std::size_t cost = payload->size() + (out ? out->size() : 0);
    if (cost > kBudgetBytes) return out;
    while (!order_.empty() && (order_.size() >= kEntries || bytes_ + cost > kBudgetBytes)) {
      const auto old = entries_.find(order_.front());
      bytes_ -= old->second.cost;
      entries_.erase(old);
      order_.pop_front();
    }
    entries_.emplace(payload.get(), Entry{payload, out, cost});
    order_.push_back(payload.get());
    bytes_ += cost;
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
  std::size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::shared_ptr<const std::string> in, out;
    std::size_t cost = 0;
  };
  protocol::deflate::Deflater deflater_;
  std::unordered_map<const std::string*, Entry> entries_;
  std::deque<const std::string*> order_;  // oldest first
  std::size_t bytes_ = 0;
  std::size_t hits_ = 0, misses_ = 0;
};

}  // namespace chat::transport
