// The worker's cache of compressed frames: one compression per payload for
// every receiver, and a bound on what it holds.
#include "transport/deflate_cache.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

using chat::transport::DeflateCache;

namespace {

std::shared_ptr<const std::string> payload(std::size_t n, char c) {
  return std::make_shared<const std::string>(std::string(n, c) + "tail");
}

TEST(DeflateCache, OnePayloadIsCompressedOnceForEveryReceiver) {
  DeflateCache cache;
  const auto p = payload(5000, 'a');
  const auto first = cache.get(p);
  ASSERT_TRUE(first);
  EXPECT_LT(first->size(), p->size());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(cache.get(p), first) << "the same shared frame";
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.hits(), 100u);
  // An incompressible payload gives null: it goes plain.
  std::mt19937 rng(7);
  std::string noise;
  for (int i = 0; i < 2000; ++i) noise += static_cast<char>(rng() & 0xff);
  EXPECT_FALSE(cache.get(std::make_shared<const std::string>(noise)));
}

TEST(DeflateCache, HoldsAtMostItsBudgetAndItsEntries) {
  DeflateCache cache;
  std::vector<std::shared_ptr<const std::string>> kept;
  for (int i = 0; i < 40; ++i) {
    kept.push_back(payload(512 * 1024, static_cast<char>('a' + i % 26)));
    cache.get(kept.back());
    EXPECT_LE(cache.bytes(), DeflateCache::kBudgetBytes);
  }
  // The oldest went: asking for it compresses again.
  const auto misses = cache.misses();
  cache.get(kept.front());
  EXPECT_EQ(cache.misses(), misses + 1);
  // Larger than the whole budget: compressed, not kept.
  const auto huge = payload(DeflateCache::kBudgetBytes + 1, 'z');
  EXPECT_TRUE(cache.get(huge));
  EXPECT_TRUE(cache.get(huge));
  EXPECT_EQ(cache.misses(), misses + 3);
  EXPECT_LE(cache.bytes(), DeflateCache::kBudgetBytes);
  // Many small ones: at most kEntries.
  DeflateCache small;
  std::vector<std::shared_ptr<const std::string>> many;
  for (std::size_t i = 0; i < DeflateCache::kEntries + 10; ++i) {
    many.push_back(payload(2000, 'q'));
    small.get(many.back());
  }
  const auto m = small.misses();
  small.get(many.front());
  EXPECT_EQ(small.misses(), m + 1) << "the first was pushed out by the count";
  small.get(many.back());
  EXPECT_EQ(small.misses(), m + 1) << "the last is still there";
}

}  // namespace
