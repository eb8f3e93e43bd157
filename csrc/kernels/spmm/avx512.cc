// AVX-512 CSR spmm: 64-column tiles (4 ZMM) with masked tails, X panels packed
// per K block into an L1-sized buffer (spmm_impl.h); SpMV (n == 1) reads the
// values 16 at a time and feeds scalar FMAs (spmv_lanes below).
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/simd_avx512.h"
#include "kernels/spmm/spmm_impl.h"
#include "kernels/spmm/block4_impl.h"

namespace sparsert {
namespace kernels {
namespace {

// SpMV. The scalar loop (value and x[k] both loaded per nonzero) is bound by
// the two FP loads per cycle at ~1 nonzero per cycle. Here the values come 16
// at a time in one vector load and each moves to lane 0 with a shuffle, so a
// nonzero costs one FP load (x[k], the FMA's operand) and one shuffle; 8
// accumulators cover the FMA latency. Zen 5, 1 thread, 90% sparsity, median ms
// (scalar 4-accumulator loop -> this): 4096 x 4096: 0.49 -> 0.42;
// 8192 x 4096: 1.02 -> 0.87; 3072 x 768: 0.066 -> 0.057. (vgatherdps: 0.50,
// 8 scalar accumulators: 0.48, 64-bit index loads: 0.49 on 4096 x 4096.)
// The < 16 tail nonzeros go round-robin into the accumulators (4 at a time,
// then singly) instead of one serial sum: 4096 x 4096: 0.384 -> 0.368 (~410
// nonzeros per row); 3072 x 768 (~77 per row): 0.054 either way.
__m128 lane(__m128 q, int i) {
  switch (i) {
    case 0:
      return q;
    case 1:
      return _mm_permute_ps(q, 0x55);
    case 2:
      return _mm_permute_ps(q, 0xaa);
    default:
      return _mm_permute_ps(q, 0xff);
  }
}

// GCC 12 reports its own _mm512_extractf32x4_ps as reading an uninitialised
// value (GCC bug 105593, the `__Y = __Y` idiom in its headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <typename Index>
void spmv_lanes(const float* values, const Index* idx, const uint32_t* row_ptr, int64_t row_begin,
                int64_t row_end, const float* x, int64_t ldx, const float* bias, float* y,
                int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    uint32_t j = row_ptr[r];
    const uint32_t end = row_ptr[r + 1];
    __m128 a[8];
    for (int i = 0; i < 8; ++i) a[i] = _mm_setzero_ps();
    for (; j + 16 <= end; j += 16) {
      const __m512 vv = _mm512_loadu_ps(values + j);
      const __m128 q[4] = {_mm512_extractf32x4_ps(vv, 0), _mm512_extractf32x4_ps(vv, 1),
                           _mm512_extractf32x4_ps(vv, 2), _mm512_extractf32x4_ps(vv, 3)};
      for (int i = 0; i < 16; ++i) {
        const __m128 qi = q[i / 4];
        const __m128 xi = _mm_load_ss(x + static_cast<int64_t>(idx[j + i]) * ldx);
        a[i % 8] = _mm_fmadd_ss(lane(qi, i % 4), xi, a[i % 8]);
      }
    }
    // The tail (< 16 nonzeros) in up to 4 independent chains, not one serial one.
    for (; j + 4 <= end; j += 4) {
      for (int i = 0; i < 4; ++i) {
        a[i] = _mm_fmadd_ss(_mm_load_ss(values + j + i),
                            _mm_load_ss(x + static_cast<int64_t>(idx[j + i]) * ldx), a[i]);
      }
    }
    for (int i = 4; j < end; ++j, ++i) {
      a[i] = _mm_fmadd_ss(_mm_load_ss(values + j),
                          _mm_load_ss(x + static_cast<int64_t>(idx[j]) * ldx), a[i]);
    }
    const __m128 s = _mm_add_ss(_mm_add_ss(_mm_add_ss(a[0], a[1]), _mm_add_ss(a[2], a[3])),
                                _mm_add_ss(_mm_add_ss(a[4], a[5]), _mm_add_ss(a[6], a[7])));
    y[r * ldy] = (bias != nullptr ? bias[r] : 0.0f) + _mm_cvtss_f32(s);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace

namespace {

void spmm_csr_avx512(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                     int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  if (row_begin >= row_end || n <= 0) return;
  if (n == 1) {
    if (w.col_idx16 != nullptr) {
      spmv_lanes(w.values, w.col_idx16, w.row_ptr, row_begin, row_end, x, ldx, bias, y, ldy);
    } else {
      spmv_lanes(w.values, w.col_idx32, w.row_ptr, row_begin, row_end, x, ldx, bias, y, ldy);
    }
    return;
  }
  if (w.col_idx16 != nullptr) {
    spmm_run<Avx512Ops>(w.values, w.col_idx16, w.row_ptr, w.cols, row_begin, row_end, x, ldx, n,
                        bias, y, ldy);
  } else {
    spmm_run<Avx512Ops>(w.values, w.col_idx32, w.row_ptr, w.cols, row_begin, row_end, x, ldx, n,
                        bias, y, ldy);
  }
}

}  // namespace

// Whole 4x1 blocks through the block view, the other rows (or all, without
// one) through the CSR kernel.
void spmm_f32_avx512(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                   int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  if (row_begin >= row_end || n <= 0) return;
  block4_spmm<Avx512Ops, 4>(w, row_begin, row_end, x, ldx, n, bias, y, ldy,
                          [&](int64_t rb, int64_t re) { spmm_csr_avx512(w, rb, re, x, ldx, n, bias, y, ldy); });
}

}  // namespace kernels
}  // namespace sparsert
