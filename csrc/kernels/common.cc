// Generic (ISA-free) helpers of the kernel layer: ISA names and the aligned
// float storage that packed weights live in.
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/kernels.h"

namespace sparsert {
namespace kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
  }
  return "unknown";
}

AlignedFloats::AlignedFloats(size_t count) : size_(count) {
  if (count == 0) return;
  constexpr size_t kAlign = 64;
  if (count > (static_cast<size_t>(-1) - kAlign) / sizeof(float)) throw std::bad_alloc();
  // aligned_alloc wants a size that is a multiple of the alignment.
  size_t bytes = (count * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<float*>(p));
}

void AlignedFloats::Free::operator()(float* p) const { std::free(p); }

}  // namespace kernels
}  // namespace sparsert
