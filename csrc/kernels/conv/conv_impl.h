// The conv kernel algorithms shared by the SIMD files, written once over a
// vector-operations struct `Ops` (simd_avx2.h / simd_avx512.h, extended by
// each ISA file with gather_stride). Included only by ISA files; everything
// is a template in an anonymous namespace (see spmm_impl.h for why), using
// raw pointers only.
//
// Ops adds to the spmm/gemm Ops: full_tail() (all lanes) and
//   gather_stride(p, stride, t): lanes i < count of p[i * stride], others 0.
// Optional: load_stride2(p): all lanes of p[2 * i], reading only p[0, 2 * kLanes - 1)
//   (two loads and a shuffle, much faster than a gather); used for stride 2
//   when the Ops struct has it.
// Optional: load_stride2_tail(p, t): lanes i < count of p[2 * i] for t = tail(count),
//   others 0, reading only p[0, 2 * count - 1); the masked form of load_stride2.
// Optional: max(a, b) / min(a, b), lane-wise, returning b where b is NaN: the
//   depthwise output clamp in registers; without them the clamp is a scalar
//   pass over each finished row.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/conv/conv.h"

namespace sparsert {
namespace kernels {
namespace {

// --- sparse direct -------------------------------------------------------------
// One column tile (kNv vectors, the last masked when kTail) of rows
// [row_begin, row_end): like spmm_tile_rows, with x + offsets[j] instead of a
// row of X, two accumulator sets (four for one-vector tiles) against FMA latency.
template <class Ops, int kNv, bool kTail>
void conv_direct_tile_rows(const float* values, const int32_t* offsets, const uint32_t* row_ptr,
                           int64_t row_begin, int64_t row_end, const float* x, const float* bias,
                           float* y, int64_t ldy, typename Ops::Tail tail) {
  using V = typename Ops::V;
  constexpr int L = Ops::kLanes;
  constexpr int kSets = kNv == 1 ? 4 : 2;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint32_t jb = row_ptr[r];
    const uint32_t je = row_ptr[r + 1];
    float* yr = y + (r - row_begin) * ldy;
    V acc[kSets][kNv];
    const V b = Ops::set1(bias != nullptr ? bias[r] : 0.0f);
    for (int v = 0; v < kNv; ++v) acc[0][v] = b;
    for (int s = 1; s < kSets; ++s) {
      for (int v = 0; v < kNv; ++v) acc[s][v] = Ops::zero();
    }
    uint32_t j = jb;
    for (; j + kSets <= je; j += kSets) {
      for (int s = 0; s < kSets; ++s) {
        const float* xj = x + offsets[j + s];
        const V w = Ops::set1(values[j + s]);
        for (int v = 0; v < kNv; ++v) {
          const V xv =
              (kTail && v == kNv - 1) ? Ops::load_tail(xj + v * L, tail) : Ops::load(xj + v * L);
          acc[s][v] = Ops::fma(w, xv, acc[s][v]);
        }
      }
    }
    for (; j < je; ++j) {
      const float* xj = x + offsets[j];
      const V w = Ops::set1(values[j]);
      for (int v = 0; v < kNv; ++v) {
        const V xv =
            (kTail && v == kNv - 1) ? Ops::load_tail(xj + v * L, tail) : Ops::load(xj + v * L);
        acc[0][v] = Ops::fma(w, xv, acc[0][v]);
      }
    }
    for (int v = 0; v < kNv; ++v) {
      V sum = acc[0][v];
      for (int s = 1; s < kSets; ++s) sum = Ops::add(sum, acc[s][v]);
      if (kTail && v == kNv - 1) {
        Ops::store_tail(yr + v * L, sum, tail);
      } else {
        Ops::store(yr + v * L, sum);
      }
    }
  }
}

// Column tiles outermost: the window of x a tile reads (for every nonzero, one
// tile-wide segment) stays in L1/L2 while all rows go over it.
template <class Ops>
void conv_sparse_direct_run(const float* values, const int32_t* offsets, const uint32_t* row_ptr,
                            int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                            const float* bias, float* y, int64_t ldy) {
  constexpr int L = Ops::kLanes;
  constexpr int64_t kTile = 4 * L;
  if (row_begin >= row_end || n <= 0) return;
  for (int64_t c0 = 0; c0 < n; c0 += kTile) {
    const int64_t cols = n - c0 < kTile ? n - c0 : kTile;
    const int64_t nv = (cols + L - 1) / L;
    const int rem = static_cast<int>(cols % L);
    const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
#define SPARSERT_TILE(NV, TAIL)                                                                    \
  conv_direct_tile_rows<Ops, NV, TAIL>(values, offsets, row_ptr, row_begin, row_end, x + c0, bias, \
                                       y + c0, ldy, tail)
    if (rem == 0) {
      switch (nv) {
        case 1:
          SPARSERT_TILE(1, false);
          break;
        case 2:
          SPARSERT_TILE(2, false);
          break;
        case 3:
          SPARSERT_TILE(3, false);
          break;
        default:
          SPARSERT_TILE(4, false);
          break;
      }
    } else {
      switch (nv) {
        case 1:
          SPARSERT_TILE(1, true);
          break;
        case 2:
          SPARSERT_TILE(2, true);
          break;
        case 3:
          SPARSERT_TILE(3, true);
          break;
        default:
          SPARSERT_TILE(4, true);
          break;
      }
    }
#undef SPARSERT_TILE
  }
}

// --- depthwise -------------------------------------------------------------------
template <class Ops, class = void>
struct HasLoadStride2 : std::false_type {};
template <class Ops>
struct HasLoadStride2<Ops, decltype(void(&Ops::load_stride2))> : std::true_type {};
template <class Ops, class = void>
struct HasMinMax : std::false_type {};
template <class Ops>
struct HasMinMax<Ops, decltype(void(&Ops::max), void(&Ops::min))> : std::true_type {};
template <class Ops, class = void>
struct HasLoadStride2Tail : std::false_type {};
template <class Ops>
struct HasLoadStride2Tail<Ops, decltype(void(&Ops::load_stride2_tail))> : std::true_type {};

// The output clamp, in registers when Ops has max/min (else a no-op here and
// conv_depthwise_clamp_row after the row is stored).
template <class Ops>
inline typename Ops::V conv_depthwise_clamp(typename Ops::V v, typename Ops::V lo,
                                            typename Ops::V hi) {
  if constexpr (HasMinMax<Ops>::value) {
    return Ops::min(hi, Ops::max(lo, v));
  } else {
    return v;
  }
}

template <class Ops>
inline void conv_depthwise_clamp_row(float* y, int64_t n, float lo, float hi) {
  if constexpr (!HasMinMax<Ops>::value) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] < lo ? lo : (y[i] > hi ? hi : y[i]);
  }
}

// kNv output vectors of one output row starting at column ow0; the last is
// masked by `tail` when kTail.
template <class Ops, int kNv, bool kTail>
inline void conv_depthwise_block(const ConvGeometry& g, const float* x_row0, int64_t wp,
                                 const float* w, float bias, typename Ops::V lo, typename Ops::V hi,
                                 int64_t ow0, float* yr, typename Ops::Tail tail) {
  using V = typename Ops::V;
  constexpr int L = Ops::kLanes;
  V acc[kNv];
  for (int v = 0; v < kNv; ++v) acc[v] = Ops::set1(bias);
  const int64_t sw = g.stride_w;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    const float* row = x_row0 + kh * g.dilation_h * wp + ow0 * sw;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const V wv = Ops::set1(w[kh * g.kernel_w + kw]);
      const float* p = row + kw * g.dilation_w;
      for (int v = 0; v < kNv; ++v) {
        const float* pv = p + v * L * sw;
        V xv;
        if (sw == 1) {
          xv = (kTail && v == kNv - 1) ? Ops::load_tail(pv, tail) : Ops::load(pv);
        } else if (HasLoadStride2<Ops>::value && sw == 2 && !(kTail && v == kNv - 1)) {
          if constexpr (HasLoadStride2<Ops>::value) xv = Ops::load_stride2(pv);
        } else {
          xv = Ops::gather_stride(pv, sw, (kTail && v == kNv - 1) ? tail : Ops::full_tail());
        }
        acc[v] = Ops::fma(wv, xv, acc[v]);
      }
    }
  }
  for (int v = 0; v < kNv; ++v) {
    acc[v] = conv_depthwise_clamp<Ops>(acc[v], lo, hi);
    if (kTail && v == kNv - 1) {
      Ops::store_tail(yr + ow0 + v * L, acc[v], tail);
    } else {
      Ops::store(yr + ow0 + v * L, acc[v]);
    }
  }
}

template <class F, int... I>
inline void static_for_impl(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
// f(std::integral_constant<int, i>) for i in [0, N), unrolled at compile time.
template <int N, class F>
inline void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// Specialised K x K depthwise, stride S (1 or 2), dilation 1: the K*K weights
// stay in registers across the plane, and kRows output rows are computed per
// column vector so that each loaded input vector feeds every output row that
// uses it (for S = 1 and kRows = 4: 6 rows x K loads for 4*K*K FMAs).
template <class Ops, int K, int S>
inline typename Ops::V conv_depthwise_load(const float* p, typename Ops::Tail tail, bool partial) {
  if constexpr (S == 1) {
    return partial ? Ops::load_tail(p, tail) : Ops::load(p);
  } else if constexpr (S == 2 && HasLoadStride2<Ops>::value && HasLoadStride2Tail<Ops>::value) {
    return partial ? Ops::load_stride2_tail(p, tail) : Ops::load_stride2(p);
  } else if constexpr (S == 2 && HasLoadStride2<Ops>::value) {
    return partial ? Ops::gather_stride(p, 2, tail) : Ops::load_stride2(p);
  } else {
    return Ops::gather_stride(p, S, partial ? tail : Ops::full_tail());
  }
}

// kRows output rows (at y, stride ldy) of one column vector; x is the padded
// input at the first row and column this vector reads.
template <class Ops, int K, int S, int kRows, bool kTail>
inline void conv_depthwise_fixed_block(const float* x, int64_t wp, const typename Ops::V* w,
                                       typename Ops::V b, typename Ops::V lo, typename Ops::V hi,
                                       float* y, int64_t ldy, typename Ops::Tail tail) {
  using V = typename Ops::V;
  constexpr int kInRows = (kRows - 1) * S + K;
  V acc[kRows];
  for (int r = 0; r < kRows; ++r) acc[r] = b;
  // compile-time loops: the row/tap pairing is resolved by the compiler, and
  // the weights are indexed by constants so they stay in registers
  static_for<kInRows>([&](auto i_constant) {
    constexpr int i = decltype(i_constant)::value;
    const float* row = x + i * wp;
    static_for<K>([&](auto kw_constant) {
      constexpr int kw = decltype(kw_constant)::value;
      const V xv = conv_depthwise_load<Ops, K, S>(row + kw, tail, kTail);
      static_for<kRows>([&](auto r_constant) {
        constexpr int r = decltype(r_constant)::value;
        constexpr int kh = i - r * S;
        if constexpr (kh >= 0 && kh < K) acc[r] = Ops::fma(w[kh * K + kw], xv, acc[r]);
      });
    });
  });
  for (int r = 0; r < kRows; ++r) {
    acc[r] = conv_depthwise_clamp<Ops>(acc[r], lo, hi);
    if (kTail) {
      Ops::store_tail(y + r * ldy, acc[r], tail);
    } else {
      Ops::store(y + r * ldy, acc[r]);
    }
  }
}

template <class Ops, int K, int S, int kRows>
inline void conv_depthwise_fixed_rows(const float* x, int64_t wp, const typename Ops::V* w,
                                      typename Ops::V b, typename Ops::V lo, typename Ops::V hi,
                                      float* y, int64_t out_w, int64_t full, int rem,
                                      typename Ops::Tail tail) {
  constexpr int L = Ops::kLanes;
  for (int64_t v = 0; v < full; ++v) {
    conv_depthwise_fixed_block<Ops, K, S, kRows, false>(x + v * L * S, wp, w, b, lo, hi, y + v * L,
                                                        out_w, tail);
  }
  if (rem != 0) {
    conv_depthwise_fixed_block<Ops, K, S, kRows, true>(x + full * L * S, wp, w, b, lo, hi,
                                                       y + full * L, out_w, tail);
  }
}

template <class Ops, int K, int S>
void conv_depthwise_fixed(const ConvGeometry& g, const float* x, const float* w, float bias,
                          float out_min, float out_max, float* y) {
  using V = typename Ops::V;
  constexpr int L = Ops::kLanes;
  constexpr int kRows = S == 1 ? 4 : 2;
  const int64_t wp = g.in_w + g.pad_left + g.pad_right;
  const int64_t full = g.out_w / L;
  const int rem = static_cast<int>(g.out_w % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
  V wv[K * K];
  for (int i = 0; i < K * K; ++i) wv[i] = Ops::set1(w[i]);
  const V b = Ops::set1(bias);
  const V lo = Ops::set1(out_min), hi = Ops::set1(out_max);
  int64_t oh = 0;
  for (; oh + kRows <= g.out_h; oh += kRows) {
    conv_depthwise_fixed_rows<Ops, K, S, kRows>(x + oh * S * wp, wp, wv, b, lo, hi,
                                                y + oh * g.out_w, g.out_w, full, rem, tail);
    conv_depthwise_clamp_row<Ops>(y + oh * g.out_w, kRows * g.out_w, out_min, out_max);
  }
  for (; oh < g.out_h; ++oh) {
    conv_depthwise_fixed_rows<Ops, K, S, 1>(x + oh * S * wp, wp, wv, b, lo, hi, y + oh * g.out_w,
                                            g.out_w, full, rem, tail);
    conv_depthwise_clamp_row<Ops>(y + oh * g.out_w, g.out_w, out_min, out_max);
  }
}

template <class Ops>
void conv_depthwise_run(const ConvGeometry& g, const float* x, const float* w, float bias,
                        float out_min, float out_max, float* y) {
  if (g.dilation_h == 1 && g.dilation_w == 1 && g.stride_h == g.stride_w &&
      g.kernel_h == g.kernel_w && (g.stride_h == 1 || g.stride_h == 2) &&
      (g.kernel_h == 3 || g.kernel_h == 5)) {
    if (g.kernel_h == 3) {
      return g.stride_h == 1 ? conv_depthwise_fixed<Ops, 3, 1>(g, x, w, bias, out_min, out_max, y)
                             : conv_depthwise_fixed<Ops, 3, 2>(g, x, w, bias, out_min, out_max, y);
    }
    return g.stride_h == 1 ? conv_depthwise_fixed<Ops, 5, 1>(g, x, w, bias, out_min, out_max, y)
                           : conv_depthwise_fixed<Ops, 5, 2>(g, x, w, bias, out_min, out_max, y);
  }
  constexpr int L = Ops::kLanes;
  const int64_t wp = g.in_w + g.pad_left + g.pad_right;  // no inline calls in ISA code
  const int64_t full = g.out_w / L;
  const int rem = static_cast<int>(g.out_w % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
  const typename Ops::V lo = Ops::set1(out_min), hi = Ops::set1(out_max);
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const float* x_row0 = x + oh * g.stride_h * wp;
    float* yr = y + oh * g.out_w;
    int64_t v = 0;
    for (; v + 2 <= full; v += 2) {
      conv_depthwise_block<Ops, 2, false>(g, x_row0, wp, w, bias, lo, hi, v * L, yr, tail);
    }
    if (v < full) {
      if (rem != 0) {
        conv_depthwise_block<Ops, 2, true>(g, x_row0, wp, w, bias, lo, hi, v * L, yr, tail);
      } else {
        conv_depthwise_block<Ops, 1, false>(g, x_row0, wp, w, bias, lo, hi, v * L, yr, tail);
      }
    } else if (rem != 0) {
      conv_depthwise_block<Ops, 1, true>(g, x_row0, wp, w, bias, lo, hi, v * L, yr, tail);
    }
    conv_depthwise_clamp_row<Ops>(yr, g.out_w, out_min, out_max);
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
