// sparsert::Tensor: owning (64-byte aligned, zero-filled) or a view.
#include <cstdlib>
#include <cstring>

#include "ops/op.h"
#include "runtime/memory.h"
#include "sparsert/sparsert.h"

namespace sparsert {

Tensor::Tensor(std::vector<int64_t> shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {
  if (dtype_size(dtype) == 0) throw Error(ErrorCode::kInvalidArgument, "Tensor: unknown dtype");
  for (int64_t d : shape_)
    if (d < 0) throw Error(ErrorCode::kInvalidArgument, "Tensor shape has a negative dim");
  const uint64_t bytes = runtime::checked_bytes(shape_, dtype, "Tensor");
  storage_ = runtime::allocate_bytes(bytes);
  data_ = storage_.get();
}

Tensor Tensor::view(float* data, std::vector<int64_t> shape) {
  return view(static_cast<void*>(data), std::move(shape), DType::kFloat32);
}

Tensor Tensor::view(void* data, std::vector<int64_t> shape, DType dtype) {
  if (dtype_size(dtype) == 0) throw Error(ErrorCode::kInvalidArgument, "Tensor::view: unknown dtype");
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.data_ = data;
  return t;
}

int64_t Tensor::size() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

size_t Tensor::nbytes() const { return static_cast<size_t>(size()) * dtype_size(dtype_); }

float* Tensor::data() {
  if (dtype_ != DType::kFloat32)
    throw Error(ErrorCode::kInvalidArgument,
                std::string("Tensor::data() is for float32 tensors; this one is ") + dtype_name(dtype_) +
                    " (use raw_data())");
  return static_cast<float*>(data_);
}

const float* Tensor::data() const { return const_cast<Tensor*>(this)->data(); }

}  // namespace sparsert
