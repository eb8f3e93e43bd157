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
#pragma once

#include <cstdint>
#include <type_traits>

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

// kNv output vectors of one output row starting at column ow0; the last is
// masked by `tail` when kTail.
template <class Ops, int kNv, bool kTail>
inline void conv_depthwise_block(const ConvGeometry& g, const float* x_row0, int64_t wp,
                                 const float* w, float bias, int64_t ow0, float* yr,
                                 typename Ops::Tail tail) {
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
    if (kTail && v == kNv - 1) {
      Ops::store_tail(yr + ow0 + v * L, acc[v], tail);
    } else {
      Ops::store(yr + ow0 + v * L, acc[v]);
    }
  }
}

template <class Ops>
void conv_depthwise_run(const ConvGeometry& g, const float* x, const float* w, float bias,
                        float* y) {
  constexpr int L = Ops::kLanes;
  const int64_t wp = g.in_w + g.pad_left + g.pad_right;  // no inline calls in ISA code
  const int64_t full = g.out_w / L;
  const int rem = static_cast<int>(g.out_w % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const float* x_row0 = x + oh * g.stride_h * wp;
    float* yr = y + oh * g.out_w;
    int64_t v = 0;
    for (; v + 2 <= full; v += 2) {
      conv_depthwise_block<Ops, 2, false>(g, x_row0, wp, w, bias, v * L, yr, tail);
    }
    if (v < full) {
      if (rem != 0) {
        conv_depthwise_block<Ops, 2, true>(g, x_row0, wp, w, bias, v * L, yr, tail);
        continue;
      }
      conv_depthwise_block<Ops, 1, false>(g, x_row0, wp, w, bias, v * L, yr, tail);
    } else if (rem != 0) {
      conv_depthwise_block<Ops, 1, true>(g, x_row0, wp, w, bias, v * L, yr, tail);
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
