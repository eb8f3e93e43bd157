// The arena planner (csrc/runtime/planner.h) on its own: 64-byte blocks,
// reuse after release, coalescing, growth into a trailing free block, and a
// randomised liveness simulation that checks no two live blocks overlap.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>

#include "kernel_tester.h"
#include "runtime/planner.h"

namespace sparsert {
namespace testing {
namespace {

using runtime::ArenaPlanner;

TEST(ArenaPlanner, BlocksAreAlignedAndZeroBytesTakeOne) {
  ArenaPlanner p;
  EXPECT_EQ(p.allocate(0), 0);
  EXPECT_EQ(p.allocate(1), 64);
  EXPECT_EQ(p.allocate(65), 128);
  EXPECT_EQ(p.allocate(64), 256);
  EXPECT_EQ(p.size(), 320u);
}

TEST(ArenaPlanner, ReleasedBlockIsReusedFirstFit) {
  ArenaPlanner p;
  const int64_t a = p.allocate(256), b = p.allocate(128);
  p.release(a, 256);
  EXPECT_EQ(p.allocate(64), a);        // fits in the freed block, at its start
  EXPECT_EQ(p.allocate(128), a + 64);  // the rest of it
  EXPECT_EQ(p.allocate(64), a + 192);  // its last 64 bytes
  EXPECT_EQ(p.size(), 384u);           // nothing grew so far
  EXPECT_EQ(p.allocate(128), b + 128); // nothing free is left: the arena grows
  EXPECT_EQ(p.size(), 512u);
}

TEST(ArenaPlanner, NeighbouringFreeBlocksCoalesce) {
  ArenaPlanner p;
  const int64_t a = p.allocate(64), b = p.allocate(64), c = p.allocate(64);
  p.allocate(64);  // keeps the arena from ending right after c
  p.release(a, 64);
  p.release(c, 64);
  p.release(b, 64);                   // joins a and c into one 192-byte block
  EXPECT_EQ(p.allocate(192), a);      // only possible if all three coalesced
  EXPECT_EQ(p.size(), 256u);
}

TEST(ArenaPlanner, GrowthReusesAFreeBlockAtTheEnd) {
  ArenaPlanner p;
  p.allocate(64);
  const int64_t b = p.allocate(64);
  p.release(b, 64);
  EXPECT_EQ(p.allocate(256), b);  // extends the trailing free block instead of skipping it
  EXPECT_EQ(p.size(), 320u);
}

TEST(ArenaPlanner, RandomLivenessNeverOverlaps) {
  std::mt19937_64 rng(base_seed() * 7919u + 17u);
  for (int round = 0; round < 50; ++round) {
    ArenaPlanner p;
    std::map<int64_t, uint64_t> live;  // offset -> rounded bytes
    uint64_t peak_live = 0, now_live = 0;
    for (int step = 0; step < 400; ++step) {
      if (live.empty() || rng() % 3 != 0) {
        const uint64_t bytes = rng() % 5 == 0 ? 0 : 1 + rng() % 5000;
        const int64_t off = p.allocate(bytes);
        const uint64_t r = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
        ASSERT_EQ(off % 64, 0);
        auto next = live.lower_bound(off);
        if (next != live.end()) ASSERT_LE(off + static_cast<int64_t>(r), next->first) << "overlaps the next block";
        if (next != live.begin()) {
          auto prev = std::prev(next);
          ASSERT_LE(prev->first + static_cast<int64_t>(prev->second), off) << "overlaps the previous block";
        }
        live[off] = r;
        now_live += r;
        peak_live = std::max(peak_live, now_live);
        ASSERT_LE(static_cast<uint64_t>(off) + r, p.size());
      } else {
        auto it = live.begin();
        std::advance(it, static_cast<long>(rng() % live.size()));
        p.release(it->first, it->second);
        now_live -= it->second;
        live.erase(it);
      }
    }
    EXPECT_GE(p.size(), peak_live);
  }
}

}  // namespace
}  // namespace testing
}  // namespace sparsert
