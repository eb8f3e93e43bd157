// AVX2 CSR spmm: 32-column tiles (4 YMM) with masked tails, X panels packed
// per K block into an L1-sized buffer (spmm_impl.h); SpMV (n == 1) uses
// scalar FMAs with 4 accumulators.
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/simd_avx2.h"
#include "kernels/spmm/spmm_impl.h"
#include "kernels/spmm/block4_impl.h"

namespace sparsert {
namespace kernels {

namespace {

void spmm_csr_avx2(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
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
    spmm_run<Avx2Ops>(w.values, w.col_idx16, w.row_ptr, w.cols, row_begin, row_end, x, ldx, n, bias,
                      y, ldy);
  } else {
    spmm_run<Avx2Ops>(w.values, w.col_idx32, w.row_ptr, w.cols, row_begin, row_end, x, ldx, n, bias,
                      y, ldy);
  }
}

}  // namespace

// Whole 4x1 blocks through the block view, the other rows (or all, without
// one) through the CSR kernel.
void spmm_f32_avx2(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                   int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  if (row_begin >= row_end || n <= 0) return;
  block4_spmm<Avx2Ops, 3>(w, row_begin, row_end, x, ldx, n, bias, y, ldy,
                          [&](int64_t rb, int64_t re) { spmm_csr_avx2(w, rb, re, x, ldx, n, bias, y, ldy); });
}

}  // namespace kernels
}  // namespace sparsert
