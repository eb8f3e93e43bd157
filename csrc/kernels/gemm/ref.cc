// The reference gemm: packing is a plain row-major copy (row_block 1) and the
// kernel a naive triple loop, never optimised. Every other gemm kernel is
// tested against it.
#include <cstdint>

namespace sparsert {
namespace kernels {

void gemm_f32_ref_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) packed[r * cols + k] = w[r * ldw + k];
  }
}

void gemm_f32_ref(const float* packed, int64_t rows, int64_t cols, int64_t row_begin,
                  int64_t row_end, const float* x, int64_t ldx, int64_t n, const float* bias,
                  float* y, int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      float acc = bias != nullptr ? bias[r] : 0.0f;
      for (int64_t k = 0; k < cols; ++k) acc += packed[r * cols + k] * x[k * ldx + c];
      y[r * ldy + c] = acc;
    }
  }
}

}  // namespace kernels
}  // namespace sparsert
