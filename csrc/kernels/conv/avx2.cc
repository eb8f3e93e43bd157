// AVX2 conv kernels (conv_impl.h): sparse direct in 32-column tiles with a
// masked tail; depthwise over 8-wide output vectors, stride 2 by two loads and a
// shuffle, other strides by gathers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/conv/conv.h"
#include "kernels/simd_avx2.h"

namespace sparsert {
namespace kernels {
namespace {

struct Avx2ConvOps : Avx2Ops {
  static Tail full_tail() { return _mm256_set1_epi32(-1); }
  // a NaN in b is returned (x86 max/min return the second operand on NaN)
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V gather_stride(const float* p, int64_t stride, Tail t) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i idx = _mm256_mullo_epi32(lane, _mm256_set1_epi32(static_cast<int>(stride)));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(t), 4);
  }
  static V load_stride2(const float* p) {  // p[0], p[2], ..., p[14]; reads p[0, 15)
    const __m256 lo = _mm256_loadu_ps(p);
    const __m256 hi = _mm256_maskload_ps(p + 8, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0));
    // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> [lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6]
    const __m256 mixed = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // lanes i < count of p[2 * i] (t = tail(count)), others 0; reads p[0, 2 * count - 1)
  static V load_stride2_tail(const float* p, Tail t) {
    const int count = __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(t)));
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i need_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * count - 1), lane);
    const __m256i need_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(2 * count - 9), lane);
    const __m256 lo = _mm256_maskload_ps(p, need_lo);
    const __m256 hi = _mm256_maskload_ps(p + 8, need_hi);
    const __m256 mixed = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};

}  // namespace
}  // namespace kernels
}  // namespace sparsert

#include "kernels/conv/conv_impl.h"
#include "kernels/conv/winograd_impl.h"
#include "kernels/spmm/block4_impl.h"

namespace sparsert {
namespace kernels {

void conv_sparse_direct_f32_avx2(const float* values, const int32_t* offsets,
                                 const uint32_t* row_ptr, const ConvBlocks4* blocks,
                                 int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                                 const float* bias, float* y, int64_t ldy) {
  block4_conv<Avx2ConvOps, 3>(blocks, row_begin, row_end, x, n, bias, y, ldy,
                             [&](int64_t rb, int64_t re, float* yb) {
                               conv_sparse_direct_run<Avx2ConvOps>(values, offsets, row_ptr, rb, re, x, n,
                                                                bias, yb, ldy);
                             });
}

void conv_depthwise_f32_avx2(const ConvGeometry& g, const float* x, const float* w, float bias,
                             float out_min, float out_max, float* y) {
  conv_depthwise_run<Avx2ConvOps>(g, x, w, bias, out_min, out_max, y);
}

void winograd_input_f4x4_avx2(const float* xp, int64_t wp, int64_t plane, int64_t c_begin,
                              int64_t c_end, int64_t ty_begin, int64_t ty_end, int64_t tiles_w,
                              float* v, int64_t ld_xi, int64_t ld_c) {
  winograd_input_run(xp, wp, plane, c_begin, c_end, ty_begin, ty_end, tiles_w, v, ld_xi, ld_c);
}

void winograd_output_f4x4_avx2(const float* m, int64_t ld_xi, int64_t ty_begin, int64_t ty_end,
                               int64_t tiles_w, float bias, float* y, int64_t out_h,
                               int64_t out_w) {
  winograd_output_run(m, ld_xi, ty_begin, ty_end, tiles_w, bias, y, out_h, out_w);
}

}  // namespace kernels
}  // namespace sparsert
