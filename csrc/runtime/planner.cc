#include "runtime/planner.h"

#include <algorithm>
#include <iterator>

#include "runtime/memory.h"

namespace sparsert {
namespace runtime {
namespace {
uint64_t rounded(uint64_t bytes) { return std::max<uint64_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign); }
}  // namespace

int64_t ArenaPlanner::allocate(uint64_t bytes) {
  bytes = rounded(bytes);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second >= bytes) {
      const int64_t offset = it->first;
      if (it->second == bytes) {
        free_.erase(it);
      } else {
        it->first += static_cast<int64_t>(bytes);
        it->second -= bytes;
      }
      return offset;
    }
  }
  // grow: reuse a free block at the end if there is one
  if (!free_.empty() && free_.back().first + static_cast<int64_t>(free_.back().second) == end_) {
    const int64_t offset = free_.back().first;
    free_.pop_back();
    end_ = offset + static_cast<int64_t>(bytes);
    return offset;
  }
  const int64_t offset = end_;
  end_ += static_cast<int64_t>(bytes);
  return offset;
}

void ArenaPlanner::release(int64_t offset, uint64_t bytes) {
  bytes = rounded(bytes);
  auto it = free_.begin();
  while (it != free_.end() && it->first < offset) ++it;
  it = free_.insert(it, {offset, bytes});
  auto next = std::next(it);
  if (next != free_.end() && it->first + static_cast<int64_t>(it->second) == next->first) {
    it->second += next->second;
    free_.erase(next);
  }
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + static_cast<int64_t>(prev->second) == it->first) {
      prev->second += it->second;
      free_.erase(it);
    }
  }
}

}  // namespace runtime
}  // namespace sparsert
