// NEON CSR spmm (aarch64 and armv7): 16-column tiles (4 Q registers) with
// tails through a stack buffer, X panels packed per K block into an L1-sized
// buffer (spmm_impl.h);
// SpMV (n == 1) uses scalar multiply-adds with 4 accumulators.
#include <arm_neon.h>

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/simd_neon.h"
#include "kernels/spmm/spmm_impl.h"
#include "kernels/spmm/block4_impl.h"

namespace sparsert {
namespace kernels {

namespace {

void spmm_csr_neon(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                   int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  if (row_begin >= row_end || n <= 0) return;
  if (n == 1) {
    if (w.col_idx16 != nullptr) {
      spmv_scalar(w.values, w.col_idx16, w.row_ptr, row_begin, row_end, x, ldx, bias, y, ldy);
    } else {
      spmv_scalar(w.values, w.col_idx32, w.row_ptr, row_begin, row_end, x, ldx, bias, y, ldy);
    }
    return;
  }
  if (w.col_idx16 != nullptr) {
    spmm_run<NeonOps>(w.values, w.col_idx16, w.row_ptr, w.cols, row_begin, row_end, x, ldx, n, bias,
                      y, ldy);
  } else {
    spmm_run<NeonOps>(w.values, w.col_idx32, w.row_ptr, w.cols, row_begin, row_end, x, ldx, n, bias,
                      y, ldy);
  }
}

}  // namespace

// Whole 4x1 blocks through the block view, the other rows (or all, without
// one) through the CSR kernel.
void spmm_f32_neon(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                   int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  if (row_begin >= row_end || n <= 0) return;
  block4_spmm<NeonOps, 4>(w, row_begin, row_end, x, ldx, n, bias, y, ldy,
                          [&](int64_t rb, int64_t re) { spmm_csr_neon(w, rb, re, x, ldx, n, bias, y, ldy); });
}

}  // namespace kernels
}  // namespace sparsert
