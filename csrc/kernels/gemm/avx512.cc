// AVX-512 dense gemm: 8 x 32 microkernel (16 ZMM accumulators), 8 x 16 for
// strips of at most 16 columns, masked column tails, K blocks of 256; for
// weights above 512 KB, column blocks of up to 64 (a 64 KB X buffer on the stack)
// and row chunks of 128 (gemm_impl.h). GEMV (n == 1) streams the packed panels
// with YMM FMAs.
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/simd_avx512.h"

namespace sparsert {
namespace kernels {
namespace {

constexpr int kMr = 8;
constexpr int kKc = 256;
constexpr int kNcMax = 64;
constexpr int kMc = 128;

// y[r] = bias[r] + W[r, :] . x for one 8-row panel (8 rows = one YMM per k).
void gemv_panels_avx512(const float* packed, int64_t rows, int64_t k_cols, int64_t row_begin,
                        int64_t row_end, const float* x, int64_t ldx, const float* bias, float* y,
                        int64_t ldy) {
  const int64_t rows_padded = (rows + kMr - 1) / kMr * kMr;
  for (int64_t r = row_begin; r < row_end; r += kMr) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t k0 = 0; k0 < k_cols; k0 += kKc) {
      const int64_t kc = k_cols - k0 < kKc ? k_cols - k0 : kKc;
      const float* panel = packed + k0 * rows_padded + r * kc;
      const float* xk = x + k0 * ldx;
      int64_t k = 0;
      for (; k + 4 <= kc; k += 4) {
        a0 = _mm256_fmadd_ps(_mm256_load_ps(panel + k * kMr), _mm256_set1_ps(xk[k * ldx]), a0);
        a1 = _mm256_fmadd_ps(_mm256_load_ps(panel + (k + 1) * kMr),
                             _mm256_set1_ps(xk[(k + 1) * ldx]), a1);
        a2 = _mm256_fmadd_ps(_mm256_load_ps(panel + (k + 2) * kMr),
                             _mm256_set1_ps(xk[(k + 2) * ldx]), a2);
        a3 = _mm256_fmadd_ps(_mm256_load_ps(panel + (k + 3) * kMr),
                             _mm256_set1_ps(xk[(k + 3) * ldx]), a3);
      }
      for (; k < kc; ++k) {
        a0 = _mm256_fmadd_ps(_mm256_load_ps(panel + k * kMr), _mm256_set1_ps(xk[k * ldx]), a0);
      }
    }
    alignas(32) float acc[kMr];
    _mm256_store_ps(acc, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    const int64_t mr = row_end - r < kMr ? row_end - r : kMr;
    for (int64_t i = 0; i < mr; ++i) {
      y[(r + i) * ldy] = acc[i] + (bias != nullptr ? bias[r + i] : 0.0f);
    }
  }
}

}  // namespace

void gemm_f32_avx512_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  gemm_pack_panels<kMr, kKc>(w, rows, cols, ldw, packed);
}

void gemm_f32_avx512(const float* packed, int64_t rows, int64_t cols, int64_t row_begin,
                     int64_t row_end, const float* x, int64_t ldx, int64_t n, const float* bias,
                     float* y, int64_t ldy) {
  if (n == 1 && cols > 0) {
    gemv_panels_avx512(packed, rows, cols, row_begin, row_end, x, ldx, bias, y, ldy);
    return;
  }
  gemm_run_impl<Avx512Ops, kMr, 2, kKc, kNcMax, kMc>(packed, rows, cols, row_begin, row_end, x, ldx,
                                                     n, bias, y, ldy);
}

}  // namespace kernels
}  // namespace sparsert
