// Histogram: log-linear latency histogram (HdrHistogram-like, ~0.8% precision).
//
// Values are nanoseconds. Buckets are exact below 256 ns; above that every
// power of two is split into 128 linear sub-buckets, so a recorded value is
// known to within 1/128 of itself. Fixed bucket layout makes histograms from
// several threads or processes mergeable by adding counts.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace loadgen {

class Histogram {
 public:
  Histogram();

  void record(std::int64_t value_ns);
  void merge(const Histogram& other);

  std::uint64_t count() const { return count_; }
  std::int64_t min() const { return count_ ? min_ : 0; }
  std::int64_t max() const { return count_ ? max_ : 0; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }
  // Value at quantile q in [0,1]: the upper edge of the bucket holding it,
  // clamped to the exact max.
  std::int64_t quantile(double q) const;

  // Sparse JSON: {"count","min","max","sum","buckets":[[index,count],...]}.
  nlohmann::json to_json() const;
  static Histogram from_json(const nlohmann::json& j);

 private:
  static std::size_t index_of(std::uint64_t v);
  static std::uint64_t upper_of(std::size_t index);

  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  // Sum in ns fits 2^63 for ~290 years of total latency: enough.
  std::int64_t sum_ = 0;
};

}  // namespace loadgen
