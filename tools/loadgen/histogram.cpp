// Histogram bucket arithmetic and JSON form.
#include "histogram.hpp"

#include <algorithm>
#include <bit>

namespace loadgen {

namespace {
constexpr unsigned kSubBits = 7;                           // 128 sub-buckets per power of two
constexpr std::uint64_t kLinear = 1ULL << (kSubBits + 1);  // values below are exact
constexpr std::size_t kBuckets = kLinear + (64 - kSubBits - 1) * (1ULL << kSubBits);
}  // namespace

Histogram::Histogram() : buckets_(kBuckets, 0) {}

std::size_t Histogram::index_of(std::uint64_t v) {
  if (v < kLinear) return static_cast<std::size_t>(v);
  const unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(v));
  const unsigned shift = msb - kSubBits;
  const std::uint64_t sub = (v >> shift) - (1ULL << kSubBits);  // 0..127
  return static_cast<std::size_t>(kLinear + (msb - kSubBits - 1) * (1ULL << kSubBits) + sub);
}

std::uint64_t Histogram::upper_of(std::size_t index) {
  if (index < kLinear) return index;
  const std::size_t rel = index - kLinear;
  const unsigned msb = static_cast<unsigned>(rel >> kSubBits) + kSubBits + 1;
  const unsigned shift = msb - kSubBits;
  const std::uint64_t sub = (rel & ((1ULL << kSubBits) - 1)) + (1ULL << kSubBits);
  return ((sub + 1) << shift) - 1;
}

void Histogram::record(std::int64_t value_ns) {
  // A negative latency means the clocks disagree by a hair: count it as zero.
  const std::int64_t v = std::max<std::int64_t>(value_ns, 0);
  ++buckets_[index_of(static_cast<std::uint64_t>(v))];
  if (count_ == 0 || v < min_) min_ = v;
  if (count_ == 0 || v > max_) max_ = v;
  ++count_;
  sum_ += v;
}

void Histogram::merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  min_ = count_ ? std::min(min_, other.min_) : other.min_;
  max_ = count_ ? std::max(max_, other.max_) : other.max_;
  count_ += other.count_;
  sum_ += other.sum_;
}

std::int64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min<std::int64_t>(static_cast<std::int64_t>(upper_of(i)), max_);
  }
  return max_;
}

nlohmann::json Histogram::to_json() const {
  nlohmann::json b = nlohmann::json::array();
  for (std::size_t i = 0; i < buckets_.size(); ++i)
    if (buckets_[i]) b.push_back({i, buckets_[i]});
  return {{"count", count_}, {"min", min()}, {"max", max()}, {"sum", sum_}, {"buckets", b}};
}

Histogram Histogram::from_json(const nlohmann::json& j) {
  Histogram h;
  for (const auto& pair : j.at("buckets")) {
    const auto i = pair.at(0).get<std::size_t>();
    if (i < h.buckets_.size()) h.buckets_[i] += pair.at(1).get<std::uint64_t>();
  }
  h.count_ = j.at("count").get<std::uint64_t>();
  h.min_ = j.at("min").get<std::int64_t>();
  h.max_ = j.at("max").get<std::int64_t>();
  h.sum_ = j.at("sum").get<std::int64_t>();
  return h;
}

}  // namespace loadgen
