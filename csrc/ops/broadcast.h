// NumPy broadcasting, written once: the output shape of several operands, and
// a reduced loop over the output (adjacent dims merged where every operand
// stays contiguous or broadcast along both, size-1 dims dropped) with each
// operand's element strides (0 along broadcast dims). Used by the binary
// ops, Where, Expand and the broadcasting residual of Conv.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/op.h"

namespace sparsert {
namespace ops {

// False when the shapes do not broadcast.
bool broadcast_shapes(const std::vector<Shape>& shapes, Shape* out);
// The broadcast of a and b, or a shape error naming both.
Shape broadcast_or_throw(const Shape& a, const Shape& b);

struct BroadcastLoop {
  std::vector<int64_t> dims;                  // reduced output dims (at least one)
  std::vector<std::vector<int64_t>> strides;  // per operand, per reduced dim
  int64_t inner() const { return dims.back(); }
  int64_t outer() const;  // product of all dims but the last
  // Element offset of operand k at the start of outer row `row`.
  int64_t offset(size_t k, int64_t row) const;
  // Stride of operand k along the inner dim: 1 (contiguous) or 0 (broadcast).
  int64_t inner_stride(size_t k) const { return strides[k].back(); }
};

// `out` must be the broadcast of `operands`.
BroadcastLoop make_broadcast_loop(const Shape& out, const std::vector<Shape>& operands);

// Calls fn(dtype tag) with a value of the C++ type of `dtype`.
template <typename F>
void dispatch_dtype(DType dtype, F&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      fn(float{});
      return;
    case DType::kInt32:
      fn(int32_t{});
      return;
    case DType::kInt64:
      fn(int64_t{});
      return;
    case DType::kBool:
      fn(uint8_t{});
      return;
  }
  throw Error(ErrorCode::kInternal, "unknown dtype");
}

}  // namespace ops
}  // namespace sparsert
