#include "runtime/memory.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace runtime {

std::shared_ptr<void> allocate_bytes(uint64_t bytes) {
  uint64_t size = std::max<uint64_t>(bytes, 1);
  if (size > SIZE_MAX - kAlign)
    throw Error(ErrorCode::kResource, "out of memory allocating " + std::to_string(bytes) + " bytes");
  size = (size + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, static_cast<size_t>(size));
  if (p == nullptr)
    throw Error(ErrorCode::kResource, "out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, static_cast<size_t>(size));
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  const uint64_t bytes = (pages <= 0 || page <= 0) ? UINT64_MAX
                                                   : static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  return std::min<uint64_t>(bytes, static_cast<uint64_t>(SIZE_MAX));
}

int64_t checked_elements(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t product = 1;   // of the non-zero dims
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0 || d > ops::kMaxDim)
      throw Error(ErrorCode::kResource, what + " has shape " + ops::shape_string(shape) +
                                            " with a dim outside [0, 2^40], which overflows the size limits; use a smaller batch or input");
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(product, d, &product) || product >= (int64_t{1} << 62))
      throw Error(ErrorCode::kResource, what + " has shape " + ops::shape_string(shape) + " whose size overflows; use a smaller batch or input");
  }
  return empty ? 0 : product;
}

uint64_t checked_bytes(const std::vector<int64_t>& shape, DType dtype, const std::string& what) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(checked_elements(shape, what)), dtype_size(dtype), &bytes) ||
      bytes > physical_memory_bytes())
    throw Error(ErrorCode::kResource, what + " of shape " + ops::shape_string(shape) +
                                          " needs more memory than this machine has; use a smaller batch");
  return bytes;
}

}  // namespace runtime
}  // namespace sparsert
