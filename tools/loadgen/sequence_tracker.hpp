// SequenceTracker: what one receiver got from each sender.
//
// A bitmap of sequence numbers per sender finds duplicates and, at the end,
// gaps; messages that arrive below the highest number seen are out of order.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace loadgen {

class SequenceTracker {
 public:
  enum class Result { fresh, duplicate, reordered };

  Result record(std::uint64_t sender, std::uint64_t seq);

  // Messages missing from sender: expected_count > 0 means the sender is
  // known to have sent seq 0..expected_count-1; otherwise the range from the
  // first to the highest number seen is expected.
  std::uint64_t missing(std::uint64_t sender, std::uint64_t expected_count) const;
  // Number of distinct messages received from sender.
  std::uint64_t received(std::uint64_t sender) const;

  template <class F>
  void for_each_sender(F f) const {
    for (const auto& [sender, s] : senders_) f(sender);
  }

 private:
  struct PerSender {
    std::vector<std::uint64_t> bits;
    std::uint64_t first = UINT64_MAX;
    std::uint64_t highest = 0;
    std::uint64_t distinct = 0;
  };
  std::unordered_map<std::uint64_t, PerSender> senders_;
};

}  // namespace loadgen
