// SequenceTracker bitmap bookkeeping.
#include "sequence_tracker.hpp"

#include <algorithm>

namespace loadgen {

SequenceTracker::Result SequenceTracker::record(std::uint64_t sender, std::uint64_t seq) {
  auto& s = senders_[sender];
  const std::size_t word = static_cast<std::size_t>(seq >> 6);
  if (word >= s.bits.size()) s.bits.resize(std::max<std::size_t>(word + 1, s.bits.size() * 2), 0);
  const std::uint64_t mask = 1ULL << (seq & 63);
  if (s.bits[word] & mask) return Result::duplicate;
  s.bits[word] |= mask;
  ++s.distinct;
  const bool reordered = s.distinct > 1 && seq < s.highest;
  s.first = std::min(s.first, seq);
  s.highest = std::max(s.highest, seq);
  return reordered ? Result::reordered : Result::fresh;
}

std::uint64_t SequenceTracker::missing(std::uint64_t sender, std::uint64_t expected_count) const {
  const auto it = senders_.find(sender);
  if (it == senders_.end()) return expected_count;
  const auto& s = it->second;
  if (expected_count > 0) return expected_count > s.distinct ? expected_count - s.distinct : 0;
  const std::uint64_t span = s.highest - s.first + 1;
  return span > s.distinct ? span - s.distinct : 0;
}

std::uint64_t SequenceTracker::received(std::uint64_t sender) const {
  const auto it = senders_.find(sender);
  return it == senders_.end() ? 0 : it->second.distinct;
}

}  // namespace loadgen
