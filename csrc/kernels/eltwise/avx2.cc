// AVX2 + FMA eltwise kernels: the algorithms of eltwise_impl.h on 8-lane YMM
// vectors, vmaskmov loads / stores for row tails.
#include <immintrin.h>

#include <cstdint>

#include "kernels/eltwise/eltwise_impl.h"

namespace sparsert {
namespace kernels {
namespace {

struct Avx2EltwiseOps {
  using V = __m256;
  using M = __m256;  // all-ones lanes
  static constexpr int kLanes = 8;
  struct DAcc {
    __m256d lo, hi;
  };
  static __m256i tail(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V load_tail(const float* p, int count) { return _mm256_maskload_ps(p, tail(count)); }
  static void store_tail(float* p, V v, int count) { _mm256_maskstore_ps(p, tail(count), v); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  // 1 / a (a >= 1): the division (rcpps has 12 bits: one Newton step leaves ~2^-22).
  static V recip(V a) { return _mm256_div_ps(_mm256_set1_ps(1.0f), a); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V abs(V a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
  static V round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V floor(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static V int_bits(V n) { return _mm256_castsi256_ps(_mm256_cvtps_epi32(n)); }
  static V pow2(V n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static M isnan(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  static V copysign(V mag, V sign) {
    const V s = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sign));
  }
  static float hmax(V a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static float hsum(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static DAcc dacc_zero() { return DAcc{_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void dacc_add(DAcc& acc, V v) {
    acc.lo = _mm256_add_pd(acc.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc.hi = _mm256_add_pd(acc.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  static void dacc_add_sq(DAcc& acc, V v, double mean) {
    const __m256d m = _mm256_set1_pd(mean);
    const __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
    const __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
    acc.lo = _mm256_fmadd_pd(a, a, acc.lo);
    acc.hi = _mm256_fmadd_pd(b, b, acc.hi);
  }
  static double dacc_sum(const DAcc& acc) {
    const __m256d s = _mm256_add_pd(acc.lo, acc.hi);
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    t = _mm_add_sd(t, _mm_unpackhi_pd(t, t));
    return _mm_cvtsd_f64(t);
  }
};

using O = Avx2EltwiseOps;

}  // namespace

void eltwise_exp_f32_avx2(const float* x, float* y, int64_t n) { map_v<O, exp_v<O>>(x, y, n); }
void eltwise_tanh_f32_avx2(const float* x, float* y, int64_t n) { map_v<O, tanh_v<O>>(x, y, n); }
void eltwise_erf_f32_avx2(const float* x, float* y, int64_t n) { map_v<O, erf_v<O>>(x, y, n); }
void eltwise_sigmoid_f32_avx2(const float* x, float* y, int64_t n) {
  map_v<O, sigmoid_v<O>>(x, y, n);
}
void eltwise_silu_f32_avx2(const float* x, float* y, int64_t n) { map_v<O, silu_v<O>>(x, y, n); }
void eltwise_gelu_f32_avx2(const float* x, float* y, int64_t n) { map_v<O, gelu_v<O>>(x, y, n); }
void eltwise_gelu_tanh_f32_avx2(const float* x, float* y, int64_t n) {
  map_v<O, gelu_tanh_v<O>>(x, y, n);
}
void softmax_row_f32_avx2(const float* x, float* y, int64_t n) { softmax_row_v<O>(x, y, n); }
void layernorm_row_f32_avx2(const float* x, float* y, int64_t n, const float* gamma,
                            const float* beta, double epsilon) {
  layernorm_row_v<O>(x, y, n, gamma, beta, epsilon);
}

}  // namespace kernels
}  // namespace sparsert
