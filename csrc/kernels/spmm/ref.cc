// The reference spmm: a naive CSR loop, never optimised. Every other spmm
// kernel is tested against it.
#include "kernels/kernels.h"

namespace sparsert {
namespace kernels {

void spmm_f32_ref(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                  int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* yr = y + r * ldy;
    for (int64_t c = 0; c < n; ++c) yr[c] = bias != nullptr ? bias[r] : 0.0f;
    for (uint32_t j = w.row_ptr[r]; j < w.row_ptr[r + 1]; ++j) {
      const int64_t k = w.col_idx16 != nullptr ? w.col_idx16[j] : w.col_idx32[j];
      const float v = w.values[j];
      const float* xk = x + k * ldx;
      for (int64_t c = 0; c < n; ++c) yr[c] += v * xk[c];
    }
  }
}

}  // namespace kernels
}  // namespace sparsert
