// NEON dense gemm: 8 x 8 microkernel (16 Q accumulators) on aarch64, 4 x 8 on
// armv7 (16 Q registers in all), 4-column strips for n <= 4, column tails
// through a stack buffer, K blocks of 256; for weights above 512 KB, column
// blocks of up to 32 (a 32 KB X buffer on the stack) and row chunks of 64
// (gemm_impl.h). The row block must match SPARSERT_NEON_GEMM_MR in gemm.inc.
#include <arm_neon.h>

#include <cstdint>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/simd_neon.h"

namespace sparsert {
namespace kernels {
namespace {
#if defined(__aarch64__)
constexpr int kMr = 8;
#else
constexpr int kMr = 4;
#endif
constexpr int kKc = 256;
}  // namespace

void gemm_f32_neon_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  gemm_pack_panels<kMr, kKc>(w, rows, cols, ldw, packed);
}

void gemm_f32_neon(const float* packed, int64_t rows, int64_t cols, int64_t row_begin,
                   int64_t row_end, const float* x, int64_t ldx, int64_t n, const float* bias,
                   float* y, int64_t ldy) {
  if (n == 1 && cols > 0) {
    gemv_panels<kMr, kKc>(packed, rows, cols, row_begin, row_end, x, ldx, bias, y, ldy);
    return;
  }
  gemm_run_impl<NeonOps, kMr, 2, kKc, 32, 64>(packed, rows, cols, row_begin, row_end, x, ldx, n,
                                              bias, y, ldy);
}

}  // namespace kernels
}  // namespace sparsert
