// The CSR spmm algorithm shared by the SIMD kernels, written once over a
// vector-operations struct `Ops` that each ISA file (avx2.cc, avx512.cc,
// neon.cc) defines. Included only by those files, after their Ops.
//
// Everything here is a template in an anonymous namespace, so each ISA file
// gets its own internal-linkage copy compiled with its own flags: no inline
// function with external linkage (a COMDAT the linker could pick from the
// wrong ISA file) is created. Uses only raw pointers; no C++ library types.
//
// Ops provides:
//   V, Tail; kLanes; zero(), set1(f), load(p), store(p, v), fma(a, b, c) = a*b + c,
//   tail(count) (count in 1..kLanes-1), load_tail(p, t), store_tail(p, v, t).
//
// Algorithm (Y = W X, W in CSR, X K x n, Y M x n):
// - n is cut into tiles of 4 vectors (4 * kLanes columns); the last tile has
//   1..4 vectors, the last of which is masked, so there is no scalar tail.
// - Each output row of a tile is accumulated in registers over the row's
//   nonzeros, with 2 (4 for 1-vector tiles) independent accumulator sets so
//   the FMA latency is hidden; each nonzero costs one broadcast and one
//   vector load per vector of the tile.
// - A nonzero's X row segment must come from L1: from L2 (Zen 5: ~40 B per
//   cycle in practice) a 4-vector tile costs 5-7 cycles per nonzero instead
//   of ~3. So when the K x tile panel of X exceeds half of L1d (16 KB on a
//   32 KB L1d) and the rows reuse it (nnz >= K), K is cut into balanced blocks
//   of at most twice L1d (64 KB; at most 64 KB, at least 16 KB), and for
//   each tile and K block the block of X is first copied into a contiguous
//   stack buffer (row stride = tile width, so no L1 set conflicts from a
//   power-of-two ldx); then every row of the pass accumulates its nonzeros of
//   that block into Y (the first block writes bias + sum). A row's nonzeros
//   are split by K block once per pass of up to 1024 rows (a 32 KB stack
//   table), so the copy of each X block is shared by many rows.
// - Panels too deep for 64 packed blocks (K * tile > 4 MB), and panels of
//   more than 4 packed blocks with under 16 nonzeros per row and block on
//   average, use in-place K blocks of at most 3/8 of L2 (384 KB) instead.
// - The cache sizes are read at run time (kernels::spmm_blocking(), from
//   kernels::cache_sizes()); the figures above are for a 32 KB L1d, 1 MB L2.
// - Stack use: about 100 KB (the X buffer and the split table).
#pragma once

#include <cstdint>
#include <cstring>

namespace sparsert {
namespace kernels {
namespace {

constexpr int64_t kSpmmTileVectors = 4;
constexpr int64_t kSpmmRowChunk = 256;  // rows per pass without K blocking
// With K blocking, a pass takes as many rows (up to kSpmmMaxRowChunk) as fit
// a split table of kSpmmSplitEntries = rows * (K blocks + 1) entries (32 KB):
// more rows per pass spread the cost of packing each X block.
constexpr int64_t kSpmmSplitEntries = 8192;
constexpr int64_t kSpmmMaxRowChunk = 1024;
constexpr int64_t kSpmmMaxKBlocks = 64;
// X panels up to SpmmBlocking::direct_panel_bytes (half of L1d) are read in
// place (they stay in L1 even with a power-of-two row stride, whose L1 set
// conflicts make larger strided panels spill).
// Larger panels are copied, one K block at a time, into a contiguous stack
// buffer of at most SpmmBlocking::pack_bytes (twice L1d, at most this
// constant, the buffer's size). Zen 5 (AVX-512, 48 KB L1d), 1 thread, 90% sparsity,
// median ms with budget 32 / 40 / 48 / 64 KB (passes of up to 1024 rows):
//   3072 x 768 x 128:  0.91 / 0.83 / 0.76 / 0.71  (in place, no copy: 0.95)
//   256 x 256 x 3136:  0.46 / 0.44 / 0.45 / 0.45  (in place: 0.69)
//   512 x 4608 x 196:  1.91 / 1.70 / 1.66 / 1.58  (in place, K blocks of 512: 1.64)
// (The machine was shared: +-5%. 32 KB was best with passes of 128 rows.)
constexpr int64_t kSpmmPackBudgetBytes = 64 * 1024;
// Packed K blocks need at least this many nonzeros per row and block on
// average when there are more than 4 of them (see spmm_run).
constexpr int64_t kSpmmMinBlockRowNnz = 16;
// The K-blocked in-place path (K too deep for kSpmmMaxKBlocks packed blocks)
// keeps each X panel block under SpmmBlocking::l2_panel_bytes (3/8 of L2).

// Rows ahead whose first nonzeros are prefetched. With K blocks a pass reads
// each row's segment of one block: short runs with gaps, which the hardware
// prefetchers do not follow, so weights that are not in cache (every layer
// of a model, read once per run) stall on each line. Zen 4, 1 thread,
// 384 x 384 x 128 at 80%, 24 matrices in turn, ms per matrix: see
// docs/architecture.md.
constexpr int64_t kSpmmPrefetchRows = 4;

template <typename Index>
inline void spmm_prefetch_row(const float* values, const Index* idx, uint32_t j) {
  __builtin_prefetch(values + j);
  __builtin_prefetch(values + j + 16);
  __builtin_prefetch(values + j + 32);
  __builtin_prefetch(idx + j);
  __builtin_prefetch(idx + j + 32);
}

template <class Ops, typename Index, int kNv, bool kTail>
void spmm_tile_rows(const float* values, const Index* idx, const uint32_t* starts, int64_t stride,
                    int64_t nrows, const float* x, int64_t ldx, const float* bias, float* y,
                    int64_t ldy, typename Ops::Tail tail, bool accumulate, int64_t k0) {
  using V = typename Ops::V;
  constexpr int L = Ops::kLanes;
  constexpr int kSets = kNv == 1 ? 4 : 2;
  for (int64_t i = 0; i < nrows; ++i) {
    const uint32_t jb = starts[i * stride];
    const uint32_t je = starts[i * stride + 1];
    if (i + kSpmmPrefetchRows < nrows) spmm_prefetch_row(values, idx, starts[(i + kSpmmPrefetchRows) * stride]);
    float* yr = y + i * ldy;
    V acc[kSets][kNv];
    if (accumulate) {
      for (int v = 0; v < kNv; ++v) {
        acc[0][v] =
            (kTail && v == kNv - 1) ? Ops::load_tail(yr + v * L, tail) : Ops::load(yr + v * L);
      }
    } else {
      const V b = Ops::set1(bias != nullptr ? bias[i] : 0.0f);
      for (int v = 0; v < kNv; ++v) acc[0][v] = b;
    }
    for (int s = 1; s < kSets; ++s) {
      for (int v = 0; v < kNv; ++v) acc[s][v] = Ops::zero();
    }
    uint32_t j = jb;
    for (; j + kSets <= je; j += kSets) {
      for (int s = 0; s < kSets; ++s) {
        const float* xk = x + (static_cast<int64_t>(idx[j + s]) - k0) * ldx;
        const V w = Ops::set1(values[j + s]);
        for (int v = 0; v < kNv; ++v) {
          const V xv =
              (kTail && v == kNv - 1) ? Ops::load_tail(xk + v * L, tail) : Ops::load(xk + v * L);
          acc[s][v] = Ops::fma(w, xv, acc[s][v]);
        }
      }
    }
    for (; j < je; ++j) {
      const float* xk = x + (static_cast<int64_t>(idx[j]) - k0) * ldx;
      const V w = Ops::set1(values[j]);
      for (int v = 0; v < kNv; ++v) {
        const V xv =
            (kTail && v == kNv - 1) ? Ops::load_tail(xk + v * L, tail) : Ops::load(xk + v * L);
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

// One column tile of `cols` (1 .. 4 * kLanes) columns for rows [0, nrows) of
// the given start table.
template <class Ops, typename Index>
void spmm_tile(const float* values, const Index* idx, const uint32_t* starts, int64_t stride,
               int64_t nrows, const float* x, int64_t ldx, int64_t cols, const float* bias,
               float* y, int64_t ldy, bool accumulate, int64_t k0) {
  constexpr int L = Ops::kLanes;
  const int64_t nv = (cols + L - 1) / L;
  const int rem = static_cast<int>(cols % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
#define SPARSERT_TILE(NV, TAIL)                                                                  \
  spmm_tile_rows<Ops, Index, NV, TAIL>(values, idx, starts, stride, nrows, x, ldx, bias, y, ldy, \
                                       tail, accumulate, k0)
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

// Splits the nonzeros of rows [r0, r0 + nrows) by K block: row i's nonzeros
// with k in block b are [splits[i * (nb + 1) + b], splits[i * (nb + 1) + b + 1]).
template <typename Index>
void spmm_split_rows(const Index* idx, const uint32_t* row_ptr, int64_t r0, int64_t nrows,
                     int64_t kb, int64_t nb, uint32_t* splits) {
  const int64_t stride = nb + 1;
  for (int64_t i = 0; i < nrows; ++i) {
    uint32_t j = row_ptr[r0 + i];
    const uint32_t end = row_ptr[r0 + i + 1];
    uint32_t* s = splits + i * stride;
    s[0] = j;
    for (int64_t b = 1; b < nb; ++b) {
      const int64_t limit = b * kb;
      while (j < end && static_cast<int64_t>(idx[j]) < limit) ++j;
      s[b] = j;
    }
    s[nb] = end;
  }
}

template <class Ops, typename Index>
void spmm_run(const float* values, const Index* idx, const uint32_t* row_ptr, int64_t k_cols,
              int64_t row_begin, int64_t row_end, const float* x, int64_t ldx, int64_t n,
              const float* bias, float* y, int64_t ldy) {
  constexpr int64_t kTile = kSpmmTileVectors * Ops::kLanes;
  const int64_t tile_cols = n < kTile ? n : kTile;
  const float* bias_r = bias != nullptr ? bias + row_begin : nullptr;
  float* y_r = y + row_begin * ldy;
  const int64_t rows = row_end - row_begin;
  const int64_t panel_bytes = k_cols * tile_cols * static_cast<int64_t>(sizeof(float));
  const int64_t nnz = static_cast<int64_t>(row_ptr[row_end] - row_ptr[row_begin]);
  const SpmmBlocking& blocking = spmm_blocking();
  const int64_t pack_budget =
      blocking.pack_bytes < kSpmmPackBudgetBytes ? blocking.pack_bytes : kSpmmPackBudgetBytes;
  // Copying a panel pays off once its X rows are reused: nnz >= K on average.
  const bool pack = panel_bytes > blocking.direct_panel_bytes && nnz >= k_cols;
  // K blocks: balanced; packed blocks fit the budget, in-place ones L2.
  int64_t nb = (panel_bytes + pack_budget - 1) / pack_budget;
  // With many packed blocks and few nonzeros per row per block, the per-row
  // cost of each block (Y reload and store, the loop exit) dominates: then the
  // fewer, larger in-place L2 blocks are faster. Zen 5, 1 thread, median ms
  // (packed -> in place): 512 x 4608 x 196 at 95% (~13 nonzeros per row and
  // block of 256): 0.93 -> 0.84. Not for few blocks: 768 x 768 x 64 at 95%
  // (4 blocks): 0.042 -> 0.054; 256 x 256 x 3136 at 97% (1 block): 0.20 -> 0.23.
  const bool sparse_blocks = nb > 4 && nnz < kSpmmMinBlockRowNnz * rows * nb;
  const bool packed = pack && nb <= kSpmmMaxKBlocks && !sparse_blocks;
  if (!packed) {
    if (panel_bytes <= blocking.l2_panel_bytes) {
      // In place, no K blocking. Rows go in chunks so that the chunk's weights
      // and Y rows stay in L2 across the column tiles.
      for (int64_t rc = 0; rc < rows; rc += kSpmmRowChunk) {
        const int64_t nrows = rows - rc < kSpmmRowChunk ? rows - rc : kSpmmRowChunk;
        for (int64_t c0 = 0; c0 < n; c0 += kTile) {
          const int64_t cols = n - c0 < kTile ? n - c0 : kTile;
          spmm_tile<Ops, Index>(values, idx, row_ptr + row_begin + rc, 1, nrows, x + c0, ldx, cols,
                                bias_r != nullptr ? bias_r + rc : nullptr, y_r + rc * ldy + c0, ldy,
                                false, 0);
        }
      }
      return;
    }
    nb = (panel_bytes + blocking.l2_panel_bytes - 1) / blocking.l2_panel_bytes;
    if (nb > kSpmmMaxKBlocks) nb = kSpmmMaxKBlocks;
  }
  // kb * tile_cols floats <= budget / 4 + tile_cols: the buffer has room for one more row.
  const int64_t kb = (k_cols + nb - 1) / nb;
  nb = (k_cols + kb - 1) / kb;
  uint32_t splits[kSpmmSplitEntries];
  alignas(64) float xbuf[kSpmmPackBudgetBytes / sizeof(float) + kTile];
  const int64_t stride = nb + 1;
  const int64_t chunk =
      kSpmmSplitEntries / stride < kSpmmMaxRowChunk ? kSpmmSplitEntries / stride : kSpmmMaxRowChunk;
  for (int64_t rc = 0; rc < rows; rc += chunk) {
    const int64_t nrows = rows - rc < chunk ? rows - rc : chunk;
    spmm_split_rows(idx, row_ptr, row_begin + rc, nrows, kb, nb, splits);
    const float* bias_c = bias_r != nullptr ? bias_r + rc : nullptr;
    float* y_c = y_r + rc * ldy;
    for (int64_t c0 = 0; c0 < n; c0 += kTile) {
      const int64_t cols = n - c0 < kTile ? n - c0 : kTile;
      for (int64_t b = 0; b < nb; ++b) {
        if (packed) {
          // X[k0:k1, c0:c0+cols] -> xbuf, row stride tile_cols.
          const int64_t k0 = b * kb, k1 = k0 + kb < k_cols ? k0 + kb : k_cols;
          for (int64_t k = k0; k < k1; ++k) {
            std::memcpy(xbuf + (k - k0) * tile_cols, x + k * ldx + c0, cols * sizeof(float));
          }
          spmm_tile<Ops, Index>(values, idx, splits + b, stride, nrows, xbuf, tile_cols, cols,
                                bias_c, y_c + c0, ldy, b > 0, k0);
        } else {
          spmm_tile<Ops, Index>(values, idx, splits + b, stride, nrows, x + c0, ldx, cols, bias_c,
                                y_c + c0, ldy, b > 0, 0);
        }
      }
    }
  }
}

// SpMV (n == 1) without gathers: four scalar accumulators per row.
template <typename Index>
void spmv_scalar(const float* values, const Index* idx, const uint32_t* row_ptr, int64_t row_begin,
                 int64_t row_end, const float* x, int64_t ldx, const float* bias, float* y,
                 int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    uint32_t j = row_ptr[r];
    const uint32_t end = row_ptr[r + 1];
    for (; j + 4 <= end; j += 4) {
      a0 += values[j] * x[static_cast<int64_t>(idx[j]) * ldx];
      a1 += values[j + 1] * x[static_cast<int64_t>(idx[j + 1]) * ldx];
      a2 += values[j + 2] * x[static_cast<int64_t>(idx[j + 2]) * ldx];
      a3 += values[j + 3] * x[static_cast<int64_t>(idx[j + 3]) * ldx];
    }
    for (; j < end; ++j) a0 += values[j] * x[static_cast<int64_t>(idx[j]) * ldx];
    y[r * ldy] = (bias != nullptr ? bias[r] : 0.0f) + ((a0 + a1) + (a2 + a3));
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
