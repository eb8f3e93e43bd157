// AVX2 dense gemm: 6 x 16 microkernel (12 YMM accumulators), 6 x 8 for strips
// of at most 8 columns, masked column tails, K blocks of 256; for weights
// above 4 MB, column blocks of up to 64 (a 64 KB X buffer on the stack) and row
// chunks of 120 (gemm_impl.h).
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/simd_avx2.h"

namespace sparsert {
namespace kernels {
namespace {
constexpr int kMr = 6;
constexpr int kKc = 256;
}  // namespace

void gemm_f32_avx2_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  gemm_pack_panels<kMr, kKc>(w, rows, cols, ldw, packed);
}

void gemm_f32_avx2(const float* packed, int64_t rows, int64_t cols, int64_t row_begin,
                   int64_t row_end, const float* x, int64_t ldx, int64_t n, const float* bias,
                   float* y, int64_t ldy) {
  if (n == 1 && cols > 0) {
    gemv_panels<kMr, kKc>(packed, rows, cols, row_begin, row_end, x, ldx, bias, y, ldy);
    return;
  }
  gemm_run_impl<Avx2Ops, kMr, 2, kKc, 64, 120>(packed, rows, cols, row_begin, row_end, x, ldx, n,
                                               bias, y, ldy);
}

}  // namespace kernels
}  // namespace sparsert
