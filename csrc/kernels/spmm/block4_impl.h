// Block-sparse (4x1) microkernels shared by the SIMD spmm and sparse direct
// conv files, written once over the ISA's vector-operations struct `Ops`
// (spmm_impl.h lists what Ops provides). Included only by ISA files; templates
// in an anonymous namespace (see spmm_impl.h for why).
//
// A 4x1 block is four consecutive output rows that share one input column
// (block pruning with block=(4, 1), the pattern XNNPACK's and TVM's sparse
// kernels use): each loaded vector of X feeds four FMAs instead of one, so the
// kernel needs a quarter of CSR's X loads (the L1/L2 reads that bound the CSR
// kernel at 90% sparsity) and a quarter of its index reads. A block row keeps
// 4 x kNv accumulators in registers: kNv = 3 on AVX2 (12 of 16 YMM), 4 on
// AVX-512 and NEON (16 of 32).
//
// Layout (kernels.h, CsrMatrix::block_*): block row b (rows 4b..4b+3) has the
// blocks [ptr[b], ptr[b + 1]); block j reads X at column col[j] (spmm) or at
// x + offset[j] (conv) and holds the four row values values[4j .. 4j + 3].
#pragma once

#include <cstdint>

namespace sparsert {
namespace kernels {
namespace {

// Block rows [0, nb) of one column tile (kNv vectors; the last masked when
// kTail): block row i has the blocks [starts[i * stride], starts[i * stride +
// 1]) (stride 1: a block_ptr; larger: a split table). xat(j) is the X row
// segment of block j at the tile's first column. bias and y start at the first
// block row's first row; without `accumulate`, Y starts at bias (or 0).
template <class Ops, int kNv, bool kTail, class XAt>
void block4_tile_rows(const uint32_t* starts, int64_t stride, const float* values, int64_t nb,
                      XAt xat, const float* bias, float* y, int64_t ldy, typename Ops::Tail tail,
                      bool accumulate) {
  using V = typename Ops::V;
  constexpr int L = Ops::kLanes;
  for (int64_t i = 0; i < nb; ++i) {
    const uint32_t jb = starts[i * stride];
    const uint32_t je = starts[i * stride + 1];
    float* yb = y + 4 * i * ldy;
    V acc[4][kNv];
    for (int r = 0; r < 4; ++r) {
      if (accumulate) {
        for (int v = 0; v < kNv; ++v) {
          acc[r][v] = (kTail && v == kNv - 1) ? Ops::load_tail(yb + r * ldy + v * L, tail)
                                              : Ops::load(yb + r * ldy + v * L);
        }
      } else {
        const V bv = Ops::set1(bias != nullptr ? bias[4 * i + r] : 0.0f);
        for (int v = 0; v < kNv; ++v) acc[r][v] = bv;
      }
    }
    for (uint32_t j = jb; j < je; ++j) {
      const float* xj = xat(j);
      const float* w = values + 4 * static_cast<int64_t>(j);
      V xv[kNv];
      for (int v = 0; v < kNv; ++v) {
        xv[v] = (kTail && v == kNv - 1) ? Ops::load_tail(xj + v * L, tail) : Ops::load(xj + v * L);
      }
      for (int r = 0; r < 4; ++r) {
        const V wr = Ops::set1(w[r]);
        for (int v = 0; v < kNv; ++v) acc[r][v] = Ops::fma(wr, xv[v], acc[r][v]);
      }
    }
    for (int r = 0; r < 4; ++r) {
      for (int v = 0; v < kNv; ++v) {
        if (kTail && v == kNv - 1) {
          Ops::store_tail(yb + r * ldy + v * L, acc[r][v], tail);
        } else {
          Ops::store(yb + r * ldy + v * L, acc[r][v]);
        }
      }
    }
  }
}

// One column tile of `cols` columns (1 .. kMaxNv * kLanes), arguments as above.
template <class Ops, int kMaxNv, class XAt>
void block4_tile(const uint32_t* starts, int64_t stride, const float* values, int64_t nb, XAt xat,
                 int64_t cols, const float* bias, float* y, int64_t ldy, bool accumulate) {
  static_assert(kMaxNv >= 1 && kMaxNv <= 4, "tile of 1..4 vectors");
  constexpr int L = Ops::kLanes;
  const int64_t nv = (cols + L - 1) / L;
  const int rem = static_cast<int>(cols % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
#define SPARSERT_B4(NV, TAIL)                                                                  \
  block4_tile_rows<Ops, (NV <= kMaxNv ? NV : kMaxNv), TAIL>(starts, stride, values, nb, xat, bias, \
                                                            y, ldy, tail, accumulate)
  if (rem == 0) {
    switch (nv) {
      case 1:
        SPARSERT_B4(1, false);
        break;
      case 2:
        SPARSERT_B4(2, false);
        break;
      case 3:
        SPARSERT_B4(3, false);
        break;
      default:
        SPARSERT_B4(4, false);
        break;
    }
  } else {
    switch (nv) {
      case 1:
        SPARSERT_B4(1, true);
        break;
      case 2:
        SPARSERT_B4(2, true);
        break;
      case 3:
        SPARSERT_B4(3, true);
        break;
      default:
        SPARSERT_B4(4, true);
        break;
    }
  }
#undef SPARSERT_B4
}

// Block rows per pass: their weights stay in L2 while every column tile and
// K block goes over them, and each packed block of X serves all of them.
constexpr int64_t kBlock4RowChunk = 256;
// X panels (K x tile) up to SpmmBlocking::direct_panel_bytes (half of L1d)
// are read in place (they stay in L1). Larger ones go one K block at a time
// into a contiguous stack buffer of SpmmBlocking::block4_pack_bytes (3/4 of
// L1d, 24 KB on a 32 KB L1d; at most kBlock4MaxPackBytes, the buffer's size):
// read in place from L2 with a power-of-two row stride, a 3-vector tile costs
// ~2 cache lines per block, and the kernel ran at ~31 GFLOP/s on 3072 x 768 x
// 128 at 90% (Zen 3), no faster than CSR.
constexpr int64_t kBlock4MaxPackBytes = 48 * 1024;
// The per-pass K split table (32 KB of stack): passes shrink so that block
// rows * (K blocks + 1) entries fit.
constexpr int64_t kBlock4SplitEntries = 8192;

// Y rows [4 * b0, 4 * b1) = bias + W X for the block rows, X K x n (ldx).
// Column tiles are balanced (16 vectors in tiles of at most 3: 3,3,3,3,2,2),
// so no tile falls to one vector, whose 4 accumulators cannot hide the FMA
// latency.
template <class Ops, int kMaxNv>
void block4_spmm_run(const uint32_t* ptr, const uint32_t* col, const float* values, int64_t k_cols,
                     int64_t b0, int64_t b1, const float* x, int64_t ldx, int64_t n,
                     const float* bias, float* y, int64_t ldy) {
  constexpr int64_t L = Ops::kLanes;
  constexpr int64_t kTile = kMaxNv * L;
  const int64_t n_vec = (n + L - 1) / L;
  const int64_t n_tiles = (n_vec + kMaxNv - 1) / kMaxNv;
  const int64_t tile_cols = n < kTile ? n : kTile;
  const SpmmBlocking& blocking = spmm_blocking();
  const int64_t pack_bytes =
      blocking.block4_pack_bytes < kBlock4MaxPackBytes ? blocking.block4_pack_bytes : kBlock4MaxPackBytes;
  bool pack = k_cols * tile_cols * static_cast<int64_t>(sizeof(float)) > blocking.direct_panel_bytes;
  int64_t kb = k_cols;
  if (pack) {
    const int64_t rows_fit = pack_bytes / (tile_cols * static_cast<int64_t>(sizeof(float)));
    const int64_t nkb = (k_cols + rows_fit - 1) / rows_fit;
    kb = (k_cols + nkb - 1) / nkb;
    // So deep that the split table would not hold one block row: read in place.
    if (nkb + 1 > kBlock4SplitEntries) pack = false, kb = k_cols;
  }
  alignas(64) float xbuf[kBlock4MaxPackBytes / sizeof(float) + kTile];
  // Each pass's blocks split by K block once (not once per column tile):
  // block row b's blocks in K block kb_i are [split[(b - bc) * stride + kb_i],
  // split[(b - bc) * stride + kb_i + 1]).
  const int64_t nkb = (k_cols + kb - 1) / kb;
  const int64_t stride = nkb + 1;
  uint32_t split[kBlock4SplitEntries];
  int64_t chunk = kBlock4SplitEntries / stride;
  if (chunk > kBlock4RowChunk) chunk = kBlock4RowChunk;
  if (chunk < 1) chunk = 1;  // (nkb + 1 <= kBlock4SplitEntries, above)
  for (int64_t bc = b0; bc < b1; bc += chunk) {
    const int64_t be = b1 - bc < chunk ? b1 : bc + chunk;
    if (pack) {
      for (int64_t b = bc; b < be; ++b) {
        uint32_t* sp = split + (b - bc) * stride;
        uint32_t j = ptr[b];
        const uint32_t end = ptr[b + 1];
        sp[0] = j;
        for (int64_t i = 1; i < nkb; ++i) {
          const int64_t limit = i * kb;
          while (j < end && static_cast<int64_t>(col[j]) < limit) ++j;
          sp[i] = j;
        }
        sp[nkb] = end;
      }
    }
    for (int64_t t = 0; t < n_tiles; ++t) {
      const int64_t c0 = n_vec * t / n_tiles * L;
      const int64_t c1 = n_vec * (t + 1) / n_tiles * L < n ? n_vec * (t + 1) / n_tiles * L : n;
      const int64_t cols = c1 - c0;
      if (!pack) {
        auto xat = [&](uint32_t j) { return x + static_cast<int64_t>(col[j]) * ldx + c0; };
        block4_tile<Ops, kMaxNv>(ptr + bc, 1, values, be - bc, xat, cols,
                                 bias != nullptr ? bias + 4 * bc : nullptr, y + 4 * bc * ldy + c0,
                                 ldy, false);
        continue;
      }
      for (int64_t i = 0; i < nkb; ++i) {
        const int64_t k0 = i * kb;
        const int64_t k1 = k0 + kb < k_cols ? k0 + kb : k_cols;
        for (int64_t k = k0; k < k1; ++k) {
          const float* src = x + k * ldx + c0;
          float* dst = xbuf + (k - k0) * tile_cols;
          for (int64_t c = 0; c < cols; ++c) dst[c] = src[c];
        }
        auto xat = [&](uint32_t j) { return xbuf + (static_cast<int64_t>(col[j]) - k0) * tile_cols; };
        block4_tile<Ops, kMaxNv>(split + i, stride, values, be - bc, xat, cols,
                                 bias != nullptr ? bias + 4 * bc : nullptr, y + 4 * bc * ldy + c0,
                                 ldy, i > 0);
      }
    }
  }
}

// SpMV (n == 1) over block rows [b0, b1): two sets of four accumulators (one
// per row of the block), alternating blocks, so each x[k] load feeds four
// multiply-adds and the chains overlap.
inline void block4_spmv(const uint32_t* ptr, const uint32_t* col, const float* values, int64_t b0,
                        int64_t b1, const float* x, int64_t ldx, const float* bias, float* y,
                        int64_t ldy) {
  for (int64_t b = b0; b < b1; ++b) {
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f}, c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    uint32_t j = ptr[b];
    const uint32_t end = ptr[b + 1];
    for (; j + 2 <= end; j += 2) {
      const float x0 = x[static_cast<int64_t>(col[j]) * ldx];
      const float x1 = x[static_cast<int64_t>(col[j + 1]) * ldx];
      const float* w = values + 4 * static_cast<int64_t>(j);
      for (int r = 0; r < 4; ++r) {
        a[r] += w[r] * x0;
        c[r] += w[4 + r] * x1;
      }
    }
    if (j < end) {
      const float x0 = x[static_cast<int64_t>(col[j]) * ldx];
      const float* w = values + 4 * static_cast<int64_t>(j);
      for (int r = 0; r < 4; ++r) a[r] += w[r] * x0;
    }
    for (int r = 0; r < 4; ++r)
      y[(4 * b + r) * ldy] = (bias != nullptr ? bias[4 * b + r] : 0.0f) + (a[r] + c[r]);
  }
}

// Sparse direct conv over block rows [0, count) of a block view whose block j
// reads x + offsets[j]: column tiles outermost (the x window a tile reads stays
// in L1/L2 while every block row goes over it). bias and y start at the first
// block row's first row.
template <class Ops, int kMaxNv>
void block4_conv_run(const uint32_t* ptr, const int32_t* offsets, const float* values,
                     int64_t count, const float* x, int64_t n, const float* bias, float* y,
                     int64_t ldy) {
  constexpr int64_t kTile = kMaxNv * Ops::kLanes;
  for (int64_t c0 = 0; c0 < n; c0 += kTile) {
    const int64_t cols = n - c0 < kTile ? n - c0 : kTile;
    auto xat = [&](uint32_t j) { return x + offsets[j] + c0; };
    block4_tile<Ops, kMaxNv>(ptr, 1, values, count, xat, cols, bias, y + c0, ldy, false);
  }
}

// The part of [row_begin, row_end) made of whole blocks of a CsrMatrix's 4x1
// view: block rows [*b0, *b1) (empty when there is none); the rows before
// 4 * b0 and from 4 * b1 on are left to the CSR kernel.
template <class M>
bool block4_range(const M& w, int64_t row_begin, int64_t row_end, int64_t* b0, int64_t* b1) {
  if (w.block_ptr == nullptr) return false;
  *b0 = (row_begin + 3) / 4;
  *b1 = row_end / 4 < w.block_count ? row_end / 4 : w.block_count;
  return *b0 < *b1;
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert

namespace sparsert {
namespace kernels {
namespace {

// An spmm call (kernels.h SpmmFn semantics) through the block view where it
// covers whole blocks of the row range, and through csr(begin, end) for the
// rows around them (and for everything when there is no block view).
template <class Ops, int kMaxNv, class M, class Csr>
void block4_spmm(const M& w, int64_t row_begin, int64_t row_end, const float* x, int64_t ldx,
                 int64_t n, const float* bias, float* y, int64_t ldy, Csr csr) {
  int64_t b0 = 0, b1 = 0;
  if (!block4_range(w, row_begin, row_end, &b0, &b1)) {
    csr(row_begin, row_end);
    return;
  }
  if (row_begin < 4 * b0) csr(row_begin, 4 * b0);
  if (n == 1) {
    block4_spmv(w.block_ptr, w.block_col, w.block_values, b0, b1, x, ldx, bias, y, ldy);
  } else {
    block4_spmm_run<Ops, kMaxNv>(w.block_ptr, w.block_col, w.block_values, w.cols, b0, b1, x, ldx,
                                 n, bias, y, ldy);
  }
  if (4 * b1 < row_end) csr(4 * b1, row_end);
}

// The conv sparse direct call (conv.h ConvSparseDirectFn semantics: y and the
// rows' outputs start at row_begin) through the block view `blocks` where it
// covers whole blocks, and csr(begin, end, y_at_begin) around them.
template <class Ops, int kMaxNv, class B, class Csr>
void block4_conv(const B* blocks, int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                 const float* bias, float* y, int64_t ldy, Csr csr) {
  int64_t b0 = 0, b1 = 0;
  if (blocks == nullptr || !block4_range(*blocks, row_begin, row_end, &b0, &b1)) {
    csr(row_begin, row_end, y);
    return;
  }
  if (row_begin < 4 * b0) csr(row_begin, 4 * b0, y);
  block4_conv_run<Ops, kMaxNv>(blocks->block_ptr + b0, blocks->block_offsets, blocks->block_values,
                               b1 - b0, x, n, bias != nullptr ? bias + 4 * b0 : nullptr,
                               y + (4 * b0 - row_begin) * ldy, ldy);
  if (4 * b1 < row_end) csr(4 * b1, row_end, y + (4 * b1 - row_begin) * ldy);
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
