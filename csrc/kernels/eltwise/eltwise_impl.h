// The eltwise algorithms shared by the SIMD files, written once over a
// vector-operations struct `Ops` that each ISA file defines (file-local
// templates in an anonymous namespace, as in spmm_impl.h, so no AVX-512
// instantiation can be the copy the linker keeps for another file).
//
// Ops contract: V (float vector), M (lane mask), kLanes; load, store,
// load_tail(p, count) (lanes >= count read as 0 and are not accessed),
// store_tail(p, v, count); set1, add, sub, mul, div, recip (1 / a for finite a >= 1, to
// within 2^-23 relative), fma (a * b + c), max, min
// (both return the second operand when one is NaN, like maxps / minps), abs,
// round (to nearest even), floor, pow2 (2^n for integral n in [-126, 127]),
// int_bits(n) (the float whose bits are the integer n, n in [0, 2^23]),
// lt, eq, isnan (masks), any(m) (some lane set), select(m, a, b) = m ? a : b, copysign(magnitude,
// sign), hmax, hsum; DAcc (double accumulators) with dacc_zero, dacc_add(acc,
// v) (+= v), dacc_add_sq(acc, v, mean) (+= (v - mean)^2) and dacc_sum.
//
// Approximations (float arithmetic, FMA), with the worst errors measured
// against double-precision references over all float inputs of the tests
// (tests/test_transformer.py states the tolerances):
// - exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Cephes
//   polynomial for e^r (~1 ulp); 2^n applied as 2^(n/2) 2^(n - n/2) so results
//   that overflow give +inf and results below FLT_MIN become denormals.
//   exp_hilo(hi, lo) = exp(hi + lo) with the reduction done on hi exactly.
// - tanh: |x| < 0.625 odd Cephes polynomial; else 1 - 2 / (exp(2|x|) + 1).
// - erf / erfc: |x| < 0.5 Taylor series to x^13 (truncation < 1e-9); else
//   erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), the Chebyshev fit of
//   Numerical Recipes (6.2, relative error < 1.2e-7 for all z >= 0), with z^2
//   split exactly into hi + lo by an FMA so the exponent loses nothing.
// - sigmoid: e = exp(-|x|), 1 / (1 + e) or e / (1 + e): no overflow, and
//   relative precision for very negative x.
#pragma once

#include <cstdint>

namespace sparsert {
namespace kernels {
namespace {

// exp(hi + lo) * 2^k for integral k in [0, 64] (k = 0: exp(hi + lo)); the
// offset lets a result headed below FLT_MIN stay a normal float until the
// caller scales it back with one multiplication.
template <class O>
typename O::V exp_hilo(typename O::V hi, typename O::V lo, typename O::V k) {
  using V = typename O::V;
  const V x = O::add(hi, lo);
  // Below -104 the result is 0 even as a denormal (-148: also with k = 64);
  // above 89 it is +inf.
  const V lim_lo = O::set1(-148.0f), lim_hi = O::set1(89.0f);
  const V n = O::round(O::mul(O::min(O::max(x, lim_lo), lim_hi), O::set1(1.44269504088896341f)));
  // r = hi - n ln2 + lo, ln2 = 0.693359375 - 2.12194440e-4 (the first part has 9
  // bits, so n * it is exact and hi - n * it is exact for the hi that matter)
  V r = O::fma(n, O::set1(-0.693359375f), O::min(O::max(hi, lim_lo), lim_hi));
  r = O::add(O::fma(n, O::set1(2.12194440e-4f), r), lo);
  V p = O::set1(1.9875691500e-4f);
  p = O::fma(p, r, O::set1(1.3981999507e-3f));
  p = O::fma(p, r, O::set1(8.3334519073e-3f));
  p = O::fma(p, r, O::set1(4.1665795894e-2f));
  p = O::fma(p, r, O::set1(1.6666665459e-1f));
  p = O::fma(p, r, O::set1(5.0000001201e-1f));
  p = O::fma(p, O::mul(r, r), O::add(r, O::set1(1.0f)));
  const V nk = O::add(n, k);
  const V n1 = O::floor(O::mul(nk, O::set1(0.5f)));
  const V y = O::mul(O::mul(p, O::pow2(n1)), O::pow2(O::sub(nk, n1)));
  return O::select(O::isnan(x), x, y);
}

template <class O>
typename O::V exp_v(typename O::V x) {
  return exp_hilo<O>(x, O::set1(0.0f), O::set1(0.0f));
}

template <class O>
typename O::V tanh_v(typename O::V x) {
  using V = typename O::V;
  const V ax = O::abs(x);
  const V z = O::mul(x, x);
  V p = O::set1(-5.70498872745e-3f);
  p = O::fma(p, z, O::set1(2.06390887954e-2f));
  p = O::fma(p, z, O::set1(-5.37397155531e-2f));
  p = O::fma(p, z, O::set1(1.33314422036e-1f));
  p = O::fma(p, z, O::set1(-3.33332819422e-1f));
  const V small = O::fma(O::mul(p, z), x, x);
  const V e = exp_v<O>(O::add(ax, ax));
  const V large =
      O::copysign(O::sub(O::set1(1.0f), O::div(O::set1(2.0f), O::add(e, O::set1(1.0f)))), x);
  return O::select(O::lt(ax, O::set1(0.625f)), small, large);
}

// erf(z) for 0 <= z < 0.5 (z * a polynomial in z^2).
template <class O>
typename O::V erf_small(typename O::V z) {
  using V = typename O::V;
  const V t = O::mul(z, z);
  // 2/sqrt(pi) * (1 - t/3 + t^2/10 - t^3/42 + t^4/216 - t^5/1320 + t^6/9360)
  V p = O::set1(1.2055332981789664e-4f);
  p = O::fma(p, t, O::set1(-8.5483270234508528e-4f));
  p = O::fma(p, t, O::set1(5.2239776254421878e-3f));
  p = O::fma(p, t, O::set1(-2.6866170645131252e-2f));
  p = O::fma(p, t, O::set1(1.1283791670955126e-1f));
  p = O::fma(p, t, O::set1(-3.7612638903183752e-1f));
  p = O::fma(p, t, O::set1(1.1283791670955126f));
  return O::mul(z, p);
}

// erfc(z) for z >= 0 given z^2 = z2_hi + z2_lo exactly (relative error ~2e-7).
template <class O>
typename O::V erfc_large(typename O::V z, typename O::V z2_hi, typename O::V z2_lo, typename O::V k) {
  using V = typename O::V;
  const V t = O::recip(O::fma(z, O::set1(0.5f), O::set1(1.0f)));
  V p = O::set1(0.17087277f);
  p = O::fma(p, t, O::set1(-0.82215223f));
  p = O::fma(p, t, O::set1(1.48851587f));
  p = O::fma(p, t, O::set1(-1.13520398f));
  p = O::fma(p, t, O::set1(0.27886807f));
  p = O::fma(p, t, O::set1(-0.18628806f));
  p = O::fma(p, t, O::set1(0.09678418f));
  p = O::fma(p, t, O::set1(0.37409196f));
  p = O::fma(p, t, O::set1(1.00002368f));
  p = O::fma(p, t, O::set1(-1.26551223f));
  return O::mul(t, exp_hilo<O>(O::sub(O::set1(0.0f), z2_hi), O::sub(p, z2_lo), k));
}

template <class O>
__attribute__((always_inline)) inline typename O::V erf_v(typename O::V x) {
  using V = typename O::V;
  // erf(6) = 1 in float (erfc(6) = 2e-17), and erfc stays a normal float up to
  // there (past ~9.2 it is denormal, and denormal arithmetic is slow); NaN -> 6
  const V z = O::min(O::abs(x), O::set1(6.0f));
  const V z2 = O::mul(z, z);
  const V z2_lo = O::fma(z, z, O::sub(O::set1(0.0f), z2));
  const V large = O::sub(O::set1(1.0f), erfc_large<O>(z, z2, z2_lo, O::set1(0.0f)));
  const V y = O::select(O::lt(z, O::set1(0.5f)), erf_small<O>(z), large);
  return O::select(O::isnan(x), x, O::copysign(y, x));
}

template <class O>
typename O::V sigmoid_v(typename O::V x) {
  using V = typename O::V;
  const V e = exp_v<O>(O::sub(O::set1(0.0f), O::abs(x)));
  const V s = O::recip(O::add(O::set1(1.0f), e));
  // x >= 0: s; otherwise (and NaN, whose e is NaN) e * s
  return O::select(O::lt(x, O::set1(0.0f)), O::mul(e, s), O::select(O::isnan(x), x, s));
}

template <class O>
typename O::V silu_v(typename O::V x) {
  using V = typename O::V;
  // x <= -200: the product underflows to -0, and -inf * 0 must not become NaN
  const V y = O::mul(O::max(x, O::set1(-200.0f)), sigmoid_v<O>(x));
  return O::select(O::isnan(x), x, y);
}

template <class O>
__attribute__((always_inline)) inline typename O::V gelu_v(typename O::V x) {
  using V = typename O::V;
  using M = typename O::M;
  // h = x/2 * erfc(|x| / sqrt 2); gelu = x < 0 ? h : x - h. Below -14.5 h is
  // under half the smallest denormal (|h(-14.5)| = 1.3e-46), so it rounds to
  // -0 there too; above 12.44 (|x| / sqrt 2 > 8.8) h < 3e-35 is far below half
  // an ulp of x, so x - h = x. Clamping to [-14.5, 12.44] keeps +-inf out of
  // the arithmetic and h a normal float for x > 0. Denormal arithmetic costs
  // an assist per operation on x86 (GELU over a Linear's outputs with |x| > 13
  // in 14% of lanes ran 2x slower), so for x < -12.5, whose h heads below
  // FLT_MIN, h is computed times 2^64 and scaled back by one multiplication.
  const V xc = O::min(O::max(x, O::set1(-14.5f)), O::set1(12.44f));
  const M tail = O::lt(x, O::set1(-12.5f));
  const V k = O::select(tail, O::set1(64.0f), O::set1(0.0f));
  const V z = O::mul(O::abs(xc), O::set1(0.70710678118654752f));
  // z^2 = xc^2 / 2 exactly as hi + lo (halving is exact)
  const V sq = O::mul(xc, xc);
  const V sq_lo = O::fma(xc, xc, O::sub(O::set1(0.0f), sq));
  const V half = O::set1(0.5f);
  // The Numerical Recipes erfc holds its relative error (< 1.2e-7) for every
  // z >= 0, and gelu needs erfc, not erf: no small-argument branch. (With one,
  // 20% of the cost went to a series most lanes discard.)
  const V erfc = erfc_large<O>(z, O::mul(sq, half), O::mul(sq_lo, half), k);
  const V h = O::mul(O::mul(half, xc), erfc);  // times 2^k
  const M negative = O::lt(x, O::set1(0.0f));
  if (!O::any(tail)) return O::select(O::isnan(x), x, O::select(negative, h, O::sub(x, h)));
  // The tail lanes' h * 2^-64 without denormal arithmetic: a denormal is the
  // integer |h| * 2^149 in the mantissa bits (|h| * 2^64 * 2^85, exact scaling,
  // rounded to nearest by the conversion); results that stay normal multiply,
  // from an operand clamped so that no lane's product leaves the normal range.
  const V a = O::abs(h);
  const V m = O::mul(a, O::set1(3.8685626227668134e25f));  // 2^85
  const V denormal = O::int_bits(O::min(m, O::set1(8388608.0f)));
  const V normal = O::mul(O::max(a, O::set1(2.168404344971009e-19f)), O::set1(5.421010862427522e-20f));  // 2^-62, 2^-64
  const V scaled = O::copysign(O::select(O::lt(m, O::set1(8388608.0f)), denormal, normal), x);
  const V y = O::select(negative, O::select(tail, scaled, h), O::sub(x, h));
  return O::select(O::isnan(x), x, y);
}

template <class O>
typename O::V gelu_tanh_v(typename O::V x) {
  using V = typename O::V;
  // x * (1 + tanh(u)) / 2 = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
  const V xc = O::min(O::max(x, O::set1(-20.0f)), O::set1(20.0f));
  const V u2 = O::mul(O::fma(O::mul(O::mul(xc, xc), xc), O::set1(0.044715f), xc),
                      O::set1(2.0f * 0.7978845608028654f));
  const V y = O::mul(O::max(x, O::set1(-20.0f)), sigmoid_v<O>(u2));
  return O::select(O::isnan(x), x, y);
}

template <class O, typename O::V (*F)(typename O::V)>
void map_v(const float* x, float* y, int64_t n) {
  constexpr int L = O::kLanes;
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const typename O::V a = F(O::load(x + i));
    const typename O::V b = F(O::load(x + i + L));
    O::store(y + i, a);
    O::store(y + i + L, b);
  }
  for (; i + L <= n; i += L) O::store(y + i, F(O::load(x + i)));
  if (i < n) {
    const int rem = static_cast<int>(n - i);
    O::store_tail(y + i, F(O::load_tail(x + i, rem)), rem);
  }
}

template <class O>
void softmax_row_v(const float* x, float* y, int64_t n) {
  using V = typename O::V;
  constexpr int L = O::kLanes;
  const float neg_inf = -__builtin_inff();
  V vm = O::set1(neg_inf);
  int64_t i = 0;
  for (; i + L <= n; i += L) vm = O::max(O::load(x + i), vm);
  float m = O::hmax(vm);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  if (m == neg_inf) m = 0.0f;  // all -inf: 0 / 0 = NaN like the references
  const V vmax = O::set1(m);
  V s0 = O::set1(0.0f), s1 = O::set1(0.0f);
  i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const V a = exp_v<O>(O::sub(O::load(x + i), vmax));
    const V b = exp_v<O>(O::sub(O::load(x + i + L), vmax));
    O::store(y + i, a);
    O::store(y + i + L, b);
    s0 = O::add(s0, a);
    s1 = O::add(s1, b);
  }
  for (; i + L <= n; i += L) {
    const V a = exp_v<O>(O::sub(O::load(x + i), vmax));
    O::store(y + i, a);
    s0 = O::add(s0, a);
  }
  float sum = O::hsum(O::add(s0, s1));
  for (; i < n; ++i) {
    // scalar tail through the vector exp, so every lane uses the same formula
    const V a = exp_v<O>(O::set1(x[i] - m));
    float e[O::kLanes];
    O::store(e, a);
    y[i] = e[0];
    sum += e[0];
  }
  const V inv = O::set1(1.0f / sum);
  i = 0;
  for (; i + L <= n; i += L) O::store(y + i, O::mul(O::load(y + i), inv));
  if (i < n) {
    const int rem = static_cast<int>(n - i);
    O::store_tail(y + i, O::mul(O::load_tail(y + i, rem), inv), rem);
  }
}

template <class O>
void layernorm_row_v(const float* x, float* y, int64_t n, const float* gamma, const float* beta,
                     double epsilon) {
  using V = typename O::V;
  constexpr int L = O::kLanes;
  typename O::DAcc acc = O::dacc_zero();
  int64_t i = 0;
  for (; i + L <= n; i += L) O::dacc_add(acc, O::load(x + i));
  double sum = O::dacc_sum(acc);
  for (; i < n; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(n);
  acc = O::dacc_zero();
  i = 0;
  for (; i + L <= n; i += L) O::dacc_add_sq(acc, O::load(x + i), mean);
  double sq = O::dacc_sum(acc);
  for (; i < n; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const float rstd =
      static_cast<float>(1.0 / __builtin_sqrt(sq / static_cast<double>(n) + epsilon));
  // mean = m_hi + m_lo, as in ref.cc
  const float m_hi = static_cast<float>(mean);
  const V vm = O::set1(m_hi), vm_lo = O::set1(static_cast<float>(mean - m_hi)), vr = O::set1(rstd);
  const V one = O::set1(1.0f), zero = O::set1(0.0f);
  i = 0;
  for (; i < n; i += L) {
    const int rem = n - i < L ? static_cast<int>(n - i) : L;
    const bool full = rem == L;
    const V xv = full ? O::load(x + i) : O::load_tail(x + i, rem);
    const V g = gamma == nullptr ? one : (full ? O::load(gamma + i) : O::load_tail(gamma + i, rem));
    const V b = beta == nullptr ? zero : (full ? O::load(beta + i) : O::load_tail(beta + i, rem));
    const V v = O::fma(O::mul(O::sub(O::sub(xv, vm), vm_lo), vr), g, b);
    if (full) {
      O::store(y + i, v);
    } else {
      O::store_tail(y + i, v, rem);
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
