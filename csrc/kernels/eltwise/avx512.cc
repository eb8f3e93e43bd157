// AVX-512 eltwise kernels: the algorithms of eltwise_impl.h on 16-lane ZMM
// vectors, masked loads / stores for row tails.
#include <immintrin.h>

#include <cstdint>

#include "kernels/eltwise/eltwise_impl.h"

namespace sparsert {
namespace kernels {
namespace {

struct Avx512EltwiseOps {
  using V = __m512;
  using M = __mmask16;
  static constexpr int kLanes = 16;
  struct DAcc {
    __m512d lo, hi;
  };
  static __mmask16 tail(int count) { return static_cast<__mmask16>((1u << count) - 1u); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V load_tail(const float* p, int count) { return _mm512_maskz_loadu_ps(tail(count), p); }
  static void store_tail(float* p, V v, int count) { _mm512_mask_storeu_ps(p, tail(count), v); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  // 1 / a: the 14-bit estimate and one Newton step (relative error < 2^-23 +
  // rounding): 3 cheap operations instead of a division (about 10 cycles per
  // ZMM on Zen 4). a must not be 0, inf or NaN (the callers' are >= 1).
  static V recip(V a) {
    const V r = _mm512_rcp14_ps(a);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(a, r, _mm512_set1_ps(1.0f)), r);
  }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static V round(V a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static V floor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static V int_bits(V n) { return _mm512_castsi512_ps(_mm512_cvtps_epi32(n)); }
  static V pow2(V n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static M isnan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static bool any(M m) { return m != 0; }
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  static V copysign(V mag, V sign) {
    const __m512i s = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    // bit = s ? sign : mag
    return _mm512_castsi512_ps(
        _mm512_ternarylogic_epi32(s, _mm512_castps_si512(sign), _mm512_castps_si512(mag), 0xca));
  }
  // (not _mm512_reduce_*: GCC 12's versions trip -Wmaybe-uninitialized)
  static float hmax(V a) {
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float hsum(V a) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static DAcc dacc_zero() { return DAcc{_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static void dacc_add(DAcc& acc, V v) {
    acc.lo = _mm512_add_pd(acc.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc.hi = _mm512_add_pd(acc.hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
  }
  static void dacc_add_sq(DAcc& acc, V v, double mean) {
    const __m512d m = _mm512_set1_pd(mean);
    const __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), m);
    const __m512d b = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), m);
    acc.lo = _mm512_fmadd_pd(a, a, acc.lo);
    acc.hi = _mm512_fmadd_pd(b, b, acc.hi);
  }
  static double dacc_sum(const DAcc& acc) {
    const __m512d s = _mm512_add_pd(acc.lo, acc.hi);
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(s), _mm512_extractf64x4_pd(s, 1));
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    t = _mm_add_sd(t, _mm_unpackhi_pd(t, t));
    return _mm_cvtsd_f64(t);
  }
};

using O = Avx512EltwiseOps;

}  // namespace

void eltwise_exp_f32_avx512(const float* x, float* y, int64_t n) { map_v<O, exp_v<O>>(x, y, n); }
void eltwise_tanh_f32_avx512(const float* x, float* y, int64_t n) { map_v<O, tanh_v<O>>(x, y, n); }
void eltwise_erf_f32_avx512(const float* x, float* y, int64_t n) { map_v<O, erf_v<O>>(x, y, n); }
void eltwise_sigmoid_f32_avx512(const float* x, float* y, int64_t n) {
  map_v<O, sigmoid_v<O>>(x, y, n);
}
void eltwise_silu_f32_avx512(const float* x, float* y, int64_t n) { map_v<O, silu_v<O>>(x, y, n); }
void eltwise_gelu_f32_avx512(const float* x, float* y, int64_t n) { map_v<O, gelu_v<O>>(x, y, n); }
void eltwise_gelu_tanh_f32_avx512(const float* x, float* y, int64_t n) {
  map_v<O, gelu_tanh_v<O>>(x, y, n);
}
void softmax_row_f32_avx512(const float* x, float* y, int64_t n) { softmax_row_v<O>(x, y, n); }
void layernorm_row_f32_avx512(const float* x, float* y, int64_t n, const float* gamma,
                              const float* beta, double epsilon) {
  layernorm_row_v<O>(x, y, n, gamma, beta, epsilon);
}

}  // namespace kernels
}  // namespace sparsert
