// dst[j * ldd + i] = src[i * lds + j] for i < m, j < n: the (m x n) block at
// src transposed into the (n x m) block at dst, in 4 x 4 register tiles (SSE
// on x86-64, NEON on aarch64 / armv7 with NEON; every x86-64 and aarch64 CPU
// has them) with scalar edges. Used where a kernel wants the other layout:
// the batched Linear (feature-major Y^T = W X^T) transposes X in and Y out
// with it; scalar element-by-element copies with one side strided cost it
// ~15% of a 90%-sparse BERT-2.
#pragma once

#include <cstdint>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#define SPARSERT_TRANSPOSE_SSE 1
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define SPARSERT_TRANSPOSE_NEON 1
#endif

namespace sparsert {
namespace ops {

inline void transpose_block(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t m, int64_t n) {
  int64_t i = 0;
#if defined(SPARSERT_TRANSPOSE_SSE) || defined(SPARSERT_TRANSPOSE_NEON)
  for (; i + 4 <= m; i += 4) {
    const float* s = src + i * lds;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
#if defined(SPARSERT_TRANSPOSE_SSE)
      __m128 r0 = _mm_loadu_ps(s + j), r1 = _mm_loadu_ps(s + lds + j);
      __m128 r2 = _mm_loadu_ps(s + 2 * lds + j), r3 = _mm_loadu_ps(s + 3 * lds + j);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(dst + j * ldd + i, r0);
      _mm_storeu_ps(dst + (j + 1) * ldd + i, r1);
      _mm_storeu_ps(dst + (j + 2) * ldd + i, r2);
      _mm_storeu_ps(dst + (j + 3) * ldd + i, r3);
#else
      const float32x4x2_t t01 = vtrnq_f32(vld1q_f32(s + j), vld1q_f32(s + lds + j));
      const float32x4x2_t t23 = vtrnq_f32(vld1q_f32(s + 2 * lds + j), vld1q_f32(s + 3 * lds + j));
      vst1q_f32(dst + j * ldd + i, vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0])));
      vst1q_f32(dst + (j + 1) * ldd + i, vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1])));
      vst1q_f32(dst + (j + 2) * ldd + i, vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0])));
      vst1q_f32(dst + (j + 3) * ldd + i, vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1])));
#endif
    }
    for (; j < n; ++j)
      for (int64_t ii = 0; ii < 4; ++ii) dst[j * ldd + i + ii] = s[ii * lds + j];
  }
#endif
  for (; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace ops
}  // namespace sparsert
