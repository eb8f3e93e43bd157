// Memory helpers of the runtime: aligned allocation that reports failure as
// Error(kResource), the machine's memory size, and overflow-checked byte
// counts of shapes (every dim <= 2^40 and the product of the non-zero dims
// < 2^62, so any product of some of a tensor's dims fits in int64 — the
// planner refuses other shapes before any op sees them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sparsert/sparsert.h"

namespace sparsert {
namespace runtime {

constexpr size_t kAlign = 64;

// 64-byte aligned, zero-filled; at least one byte.
std::shared_ptr<void> allocate_bytes(uint64_t bytes);

// Bytes the process may use: physical memory, capped by what the address
// space can index (32-bit builds on boards with >= 4 GiB).
uint64_t physical_memory_bytes();

// Element count of `shape`, or Error(kResource) naming `what` when a dim is
// above 2^40 or the product of the non-zero dims is 2^62 or more.
int64_t checked_elements(const std::vector<int64_t>& shape, const std::string& what);
// checked_elements * dtype size, refused (kResource) above physical memory.
uint64_t checked_bytes(const std::vector<int64_t>& shape, DType dtype, const std::string& what);

}  // namespace runtime
}  // namespace sparsert
