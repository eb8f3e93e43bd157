// AVX-512 conv kernels (conv_impl.h): sparse direct in 64-column tiles with a
// masked tail; depthwise over 16-wide output vectors, stride 2 by two loads and a
// permute, other strides by gathers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/conv/conv.h"
#include "kernels/simd_avx512.h"

namespace sparsert {
namespace kernels {
namespace {

struct Avx512ConvOps : Avx512Ops {
  static Tail full_tail() { return static_cast<__mmask16>(0xffff); }
  // a NaN in b is returned (x86 max/min return the second operand on NaN); the
  // maskz forms avoid GCC 12's false -Wmaybe-uninitialized on _mm512_max_ps
  static V max(V a, V b) { return _mm512_maskz_max_ps(static_cast<__mmask16>(0xffff), a, b); }
  static V min(V a, V b) { return _mm512_maskz_min_ps(static_cast<__mmask16>(0xffff), a, b); }
  static V gather_stride(const float* p, int64_t stride, Tail t) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int>(stride)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), t, idx, p, 4);
  }
  static V load_stride2(const float* p) {  // p[0], p[2], ..., p[30]; reads p[0, 31)
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 lo = _mm512_loadu_ps(p);
    const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(0x7fff), p + 16);
    return _mm512_permutex2var_ps(lo, even, hi);
  }
  // lanes i < count of p[2 * i] (t = tail(count)), others 0; reads p[0, 2 * count - 1)
  static V load_stride2_tail(const float* p, Tail t) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const unsigned count = static_cast<unsigned>(__builtin_popcount(t));
    const unsigned need = (1u << (2 * count - 1)) - 1u;  // count <= 16: at most 31 bits
    const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(need & 0xffffu), p);
    const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(need >> 16), p + 16);
    return _mm512_maskz_permutex2var_ps(t, lo, even, hi);
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

void conv_sparse_direct_f32_avx512(const float* values, const int32_t* offsets,
                                 const uint32_t* row_ptr, const ConvBlocks4* blocks,
                                 int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                                 const float* bias, float* y, int64_t ldy) {
  block4_conv<Avx512ConvOps, 4>(blocks, row_begin, row_end, x, n, bias, y, ldy,
                             [&](int64_t rb, int64_t re, float* yb) {
                               conv_sparse_direct_run<Avx512ConvOps>(values, offsets, row_ptr, rb, re, x, n,
                                                                bias, yb, ldy);
                             });
}

void conv_depthwise_f32_avx512(const ConvGeometry& g, const float* x, const float* w, float bias,
                               float out_min, float out_max, float* y) {
  conv_depthwise_run<Avx512ConvOps>(g, x, w, bias, out_min, out_max, y);
}

void winograd_input_f4x4_avx512(const float* xp, int64_t wp, int64_t plane, int64_t c_begin,
                              int64_t c_end, int64_t ty_begin, int64_t ty_end, int64_t tiles_w,
                              float* v, int64_t ld_xi, int64_t ld_c) {
  winograd_input_run(xp, wp, plane, c_begin, c_end, ty_begin, ty_end, tiles_w, v, ld_xi, ld_c);
}

void winograd_output_f4x4_avx512(const float* m, int64_t ld_xi, int64_t ty_begin, int64_t ty_end,
                               int64_t tiles_w, float bias, float* y, int64_t out_h,
                               int64_t out_w) {
  winograd_output_run(m, ld_xi, ty_begin, ty_end, tiles_w, bias, y, out_h, out_w);
}

}  // namespace kernels
}  // namespace sparsert
