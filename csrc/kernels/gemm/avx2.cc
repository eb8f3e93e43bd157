// AVX2 dense gemm: 6 x 16 microkernel (12 YMM accumulators), 6 x 8 for strips
// of at most 8 columns, masked column tails, K blocks of 256; for weights
// above 512 KB, column blocks of up to 64 (a 64 KB X buffer on the stack) and row
// chunks of 120 (gemm_impl.h). GEMV (n == 1) streams the packed panels with
// permuted broadcasts of x.
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/gemm_impl.h"
#include "kernels/simd_avx2.h"

namespace sparsert {
namespace kernels {
namespace {
constexpr int kMr = 6;
constexpr int kKc = 256;

// GEMV (n == 1): y[r] = bias[r] + W[r, :] . x for 6-row panels. Four k of a
// panel are 24 consecutive floats [k][r], three YMM loads; x[k..k+3] is
// permuted to the matching [k] pattern, so three FMAs take 24 products and
// the four partial sums of row r end up in lanes r, 6 + r, 12 + r, 18 + r.
// (The generic scalar-accumulator loop ran the 1280 -> 1000 classifier of
// MobileNetV2 at ~0.6 multiply-adds per cycle; this streams the weights.)
void gemv_panels_avx2(const float* packed, int64_t rows, int64_t k_cols, int64_t row_begin,
                      int64_t row_end, const float* x, int64_t ldx, const float* bias, float* y,
                      int64_t ldy) {
  const int64_t rows_padded = (rows + kMr - 1) / kMr * kMr;
  const __m256i p0 = _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 1, 1);
  const __m256i p1 = _mm256_setr_epi32(1, 1, 1, 1, 2, 2, 2, 2);
  const __m256i p2 = _mm256_setr_epi32(2, 2, 3, 3, 3, 3, 3, 3);
  for (int64_t r = row_begin; r < row_end; r += kMr) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps();
    float tail[kMr] = {};
    for (int64_t k0 = 0; k0 < k_cols; k0 += kKc) {
      const int64_t kc = k_cols - k0 < kKc ? k_cols - k0 : kKc;
      const float* panel = packed + k0 * rows_padded + r * kc;
      const float* xk = x + k0 * ldx;
      int64_t k = 0;
      if (ldx == 1) {  // two independent sets of accumulators: 8 k per step
        for (; k + 8 <= kc; k += 8) {
          const __m256 xx = _mm256_castps128_ps256(_mm_loadu_ps(xk + k));
          const __m256 xy = _mm256_castps128_ps256(_mm_loadu_ps(xk + k + 4));
          const float* w = panel + k * kMr;
          a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_permutevar8x32_ps(xx, p0), a0);
          a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), _mm256_permutevar8x32_ps(xx, p1), a1);
          a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 16), _mm256_permutevar8x32_ps(xx, p2), a2);
          b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 24), _mm256_permutevar8x32_ps(xy, p0), b0);
          b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 32), _mm256_permutevar8x32_ps(xy, p1), b1);
          b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 40), _mm256_permutevar8x32_ps(xy, p2), b2);
        }
      }
      for (; k + 4 <= kc; k += 4) {
        const __m128 xs = ldx == 1 ? _mm_loadu_ps(xk + k)
                                   : _mm_setr_ps(xk[k * ldx], xk[(k + 1) * ldx], xk[(k + 2) * ldx],
                                                 xk[(k + 3) * ldx]);
        const __m256 xx = _mm256_castps128_ps256(xs);
        const float* w = panel + k * kMr;
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_permutevar8x32_ps(xx, p0), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), _mm256_permutevar8x32_ps(xx, p1), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 16), _mm256_permutevar8x32_ps(xx, p2), a2);
      }
      for (; k < kc; ++k) {
        const float xv = xk[k * ldx];
        for (int i = 0; i < kMr; ++i) tail[i] += panel[k * kMr + i] * xv;
      }
    }
    alignas(32) float s[3 * 8];
    _mm256_store_ps(s, _mm256_add_ps(a0, b0));
    _mm256_store_ps(s + 8, _mm256_add_ps(a1, b1));
    _mm256_store_ps(s + 16, _mm256_add_ps(a2, b2));
    const int64_t mr = row_end - r < kMr ? row_end - r : kMr;
    for (int64_t i = 0; i < mr; ++i)
      y[(r + i) * ldy] = (s[i] + s[6 + i]) + (s[12 + i] + s[18 + i]) + tail[i] +
                         (bias != nullptr ? bias[r + i] : 0.0f);
  }
}
}  // namespace

void gemm_f32_avx2_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  gemm_pack_panels<kMr, kKc>(w, rows, cols, ldw, packed);
}

void gemm_f32_avx2(const float* packed, int64_t rows, int64_t cols, int64_t row_begin,
                   int64_t row_end, const float* x, int64_t ldx, int64_t n, const float* bias,
                   float* y, int64_t ldy) {
  if (n == 1 && cols > 0) {
    gemv_panels_avx2(packed, rows, cols, row_begin, row_end, x, ldx, bias, y, ldy);
    return;
  }
  gemm_run_impl<Avx2Ops, kMr, 2, kKc, 64, 120>(packed, rows, cols, row_begin, row_end, x, ldx, n,
                                               bias, y, ldy);
}

}  // namespace kernels
}  // namespace sparsert
