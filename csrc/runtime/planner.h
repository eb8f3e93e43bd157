// The arena planner: offsets for the intermediate buffers of one execution
// plan, assigned by liveness so that buffers are reused as soon as their last
// reader ran. First fit over a free list with coalescing of freed blocks;
// every block is a multiple of 64 bytes (and 64-byte aligned in the arena).
#pragma once

#include <cstdint>
#include <list>
#include <utility>

namespace sparsert {
namespace runtime {

class ArenaPlanner {
 public:
  // Offset of a new block of `bytes` (rounded up to 64; 0 bytes take 64).
  int64_t allocate(uint64_t bytes);
  // Frees a block returned by allocate() with the same size.
  void release(int64_t offset, uint64_t bytes);
  // Bytes the arena needs: the end of the highest block ever allocated.
  uint64_t size() const { return static_cast<uint64_t>(end_); }

 private:
  std::list<std::pair<int64_t, uint64_t>> free_;  // (offset, bytes), sorted by offset
  int64_t end_ = 0;
};

}  // namespace runtime
}  // namespace sparsert
