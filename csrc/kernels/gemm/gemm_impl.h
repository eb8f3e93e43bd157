// The dense gemm algorithm shared by the SIMD kernels, written once over the
// vector-operations struct `Ops` of each ISA file (see spmm/spmm_impl.h for
// the Ops contract and why everything here is file-local templates).
//
// W (rows x K) is packed once, K block by K block (blocks of kKc, the last
// shorter): block k0 holds the panels of MR rows (zero-padded to a multiple of
// MR) one after another, each k-major: W[r][k0 + k] sits at
//   packed[k0 * rows_padded + (r / MR) * MR * kc + k * MR + r % MR],
// so one K block of all panels is one contiguous stream.
// The microkernel keeps an MR x NR block of Y in MR * NV vector registers
// (NR = NV * kLanes) and per k does NV vector loads of X, MR broadcasts of W
// and MR * NV FMAs.
// Loop order: column blocks, K blocks, row chunks of kMc, strips of NR
// columns, row panels. Per (column block, K block) the X block is copied into
// a stack buffer of kKc x kNcMax floats as strips of NR columns (the last strip
// with as few vectors as it needs, zero-padded), so it sits in cache whatever
// ldx is, and column tails need masks only when storing Y.
// When the weights of the row range exceed kSmallW floats (512 KB, half of a
// Zen 4 L2; it was 4 MB, and a thread's share of ResNet's 512 x 4608 weights
// on 2 threads, 1.2 MB, was then read once per 32-column strip: the layer
// gained 1.0-1.5x from the second thread, now 1.5-1.7x),
// a column block holds up to kNcMax columns (balanced, so the last block is no
// sliver), and each kKc x kMc chunk of W is read from memory once per column
// block and reused from L2 by every strip: ResNet's 512 x 4608 weights at 7x7
// (n = 49) are streamed once, not once per 32-column strip. The first strip of
// each chunk prefetches the next chunk (distance kMc x kKc floats in the packed
// stream): with it, the DRAM-cold 512 x 4608 x 49 product runs as fast as with
// the weights in cache. Smaller weights come back from L2/L3 cheaply; a column
// block is then one strip (X strip in L1 for all row panels), which is faster
// for small K.
#pragma once

#include <cstdint>

namespace sparsert {
namespace kernels {
namespace {

template <int kMr, int kKc>
void gemm_pack_panels(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  const int64_t rows_padded = (rows + kMr - 1) / kMr * kMr;
  for (int64_t k0 = 0; k0 < cols; k0 += kKc) {
    const int64_t kc = cols - k0 < kKc ? cols - k0 : kKc;
    for (int64_t p = 0; p * kMr < rows; ++p) {
      float* panel = packed + k0 * rows_padded + p * kMr * kc;
      const int64_t mr = rows - p * kMr < kMr ? rows - p * kMr : kMr;
      for (int64_t r = 0; r < mr; ++r) {
        const float* wr = w + (p * kMr + r) * ldw + k0;
        for (int64_t k = 0; k < kc; ++k) panel[k * kMr + r] = wr[k];
      }
    }
  }
}

// Y[0:mr, 0:nc] (= bias +|+=) W_panel[0:kc] X_tile[0:kc, 0:NR]; rows >= mr and
// columns >= nc are computed but not stored.
template <class Ops, int kMr, int kNv, bool kAccumulate, bool kPrefetch>
__attribute__((always_inline)) inline void gemm_micro(const float* panel, const float* xt,
                                                      int64_t kc, float* y, int64_t ldy, int mr,
                                                      int64_t nc, const float* bias,
                                                      const float* prefetch) {
  using V = typename Ops::V;
  constexpr int L = Ops::kLanes;
  constexpr int kNr = kNv * L;
  V acc[kMr][kNv];
  for (int r = 0; r < kMr; ++r) {
    for (int v = 0; v < kNv; ++v) acc[r][v] = Ops::zero();
  }
  for (int64_t k = 0; k < kc; ++k) {
    V xv[kNv];
    for (int v = 0; v < kNv; ++v) xv[v] = Ops::load(xt + k * kNr + v * L);
    const float* wk = panel + k * kMr;
    if constexpr (kPrefetch) __builtin_prefetch(prefetch + k * kMr);
    for (int r = 0; r < kMr; ++r) {
      const V wr = Ops::set1(wk[r]);
      for (int v = 0; v < kNv; ++v) acc[r][v] = Ops::fma(wr, xv[v], acc[r][v]);
    }
  }
  if (mr == kMr && nc == kNr) {  // whole tile: fully unrolled, accumulators stay in registers
    for (int r = 0; r < kMr; ++r) {
      float* yr = y + r * ldy;
      const V b = Ops::set1(bias != nullptr && !kAccumulate ? bias[r] : 0.0f);
      for (int v = 0; v < kNv; ++v) {
        Ops::store(yr + v * L, Ops::add(acc[r][v], kAccumulate ? Ops::load(yr + v * L) : b));
      }
    }
    return;
  }
  const int rem = static_cast<int>(nc % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
  const int64_t full = nc / L;  // vectors stored whole; one more with `tail` if rem != 0
  for (int r = 0; r < kMr; ++r) {
    if (r >= mr) break;
    float* yr = y + r * ldy;
    const V b = Ops::set1(bias != nullptr && !kAccumulate ? bias[r] : 0.0f);
    for (int v = 0; v < kNv; ++v) {
      if (v < full) {
        const V base = kAccumulate ? Ops::load(yr + v * L) : b;
        Ops::store(yr + v * L, Ops::add(acc[r][v], base));
      } else if (v == full && rem != 0) {
        const V base = kAccumulate ? Ops::load_tail(yr + v * L, tail) : b;
        Ops::store_tail(yr + v * L, Ops::add(acc[r][v], base), tail);
      }
    }
  }
}

// Copies X[0:kc, 0:nc] (row stride ldx) into xt (kc x NR, zero-padded).
template <class Ops, int kNv>
void gemm_pack_x(const float* x, int64_t ldx, int64_t kc, int64_t nc, float* xt) {
  constexpr int L = Ops::kLanes;
  constexpr int kNr = kNv * L;
  const int rem = static_cast<int>(nc % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
  const int64_t full = nc / L;
  for (int64_t k = 0; k < kc; ++k) {
    const float* xk = x + k * ldx;
    float* d = xt + k * kNr;
    for (int v = 0; v < kNv; ++v) {
      if (v < full) {
        Ops::store(d + v * L, Ops::load(xk + v * L));
      } else if (v == full && rem != 0) {
        Ops::store(d + v * L, Ops::load_tail(xk + v * L, tail));
      } else {
        Ops::store(d + v * L, Ops::zero());
      }
    }
  }
}

// Row panels [m0, m1) of one K block (panel r at block + r * kc) times one X
// strip of nv (1..kNv) vectors. Inlined into gemm_run_impl with NV and
// kAccumulate as constants: as run-time values, or called as a function of its
// own, the small-K shapes (MobileNet 1x1 convolutions) lose 10-20% (GCC 13).
template <class Ops, int kMr, int kNv, bool kAccumulate, bool kPrefetch = false>
__attribute__((always_inline)) inline void gemm_panels(int nv, const float* block, int64_t m0,
                                                       int64_t m1, const float* xt, int64_t kc,
                                                       float* y, int64_t ldy, int64_t nc,
                                                       const float* bias,
                                                       int64_t prefetch_ahead = 0) {
  if constexpr (kNv > 1) {
    if (nv != kNv) {
      gemm_panels<Ops, kMr, kNv - 1, kAccumulate, kPrefetch>(nv, block, m0, m1, xt, kc, y, ldy, nc,
                                                             bias, prefetch_ahead);
      return;
    }
  }
  for (int64_t r = m0; r < m1; r += kMr) {
    const int mr = static_cast<int>(m1 - r < kMr ? m1 - r : kMr);
    gemm_micro<Ops, kMr, kNv, kAccumulate, kPrefetch>(block + r * kc, xt, kc, y + r * ldy, ldy, mr,
                                                      nc, bias != nullptr ? bias + r : nullptr,
                                                      block + r * kc + prefetch_ahead);
  }
}

template <class Ops, int kNv>
void gemm_pack_x_nv(int nv, const float* x, int64_t ldx, int64_t kc, int64_t nc, float* xt) {
  if constexpr (kNv > 1) {
    if (nv != kNv) {
      gemm_pack_x_nv<Ops, kNv - 1>(nv, x, ldx, kc, nc, xt);
      return;
    }
  }
  gemm_pack_x<Ops, kNv>(x, ldx, kc, nc, xt);
}

// GEMV (n == 1): per panel and K block, MR scalar accumulators the compiler
// vectorises.
template <int kMr, int kKc>
void gemv_panels(const float* packed, int64_t rows, int64_t k_cols, int64_t row_begin,
                 int64_t row_end, const float* x, int64_t ldx, const float* bias, float* y,
                 int64_t ldy) {
  const int64_t rows_padded = (rows + kMr - 1) / kMr * kMr;
  for (int64_t r = row_begin; r < row_end; r += kMr) {
    float acc[kMr] = {};
    for (int64_t k0 = 0; k0 < k_cols; k0 += kKc) {
      const int64_t kc = k_cols - k0 < kKc ? k_cols - k0 : kKc;
      const float* panel = packed + k0 * rows_padded + r * kc;
      for (int64_t k = 0; k < kc; ++k) {
        const float xk = x[(k0 + k) * ldx];
        for (int i = 0; i < kMr; ++i) acc[i] += panel[k * kMr + i] * xk;
      }
    }
    const int64_t mr = row_end - r < kMr ? row_end - r : kMr;
    for (int64_t i = 0; i < mr; ++i)
      y[(r + i) * ldy] = acc[i] + (bias != nullptr ? bias[r + i] : 0.0f);
  }
}

// Y[row_begin:row_end, 0:n] for k_cols > 0 with column blocks of at most
// kMaxWidth columns (kBlocked: W too big for L2, see the top of this file).
// The two cases are separate functions so that each compiles to its own loop
// nest: the small-K shapes are sensitive to register allocation here.
template <class Ops, int kMr, int kNvMax, int kKc, int kMaxWidth, int kMc, bool kBlocked>
__attribute__((noinline)) void gemm_run_columns(const float* packed, int64_t rows, int64_t k_cols,
                                                int64_t row_begin, int64_t row_end, const float* x,
                                                int64_t ldx, int64_t n, const float* bias, float* y,
                                                int64_t ldy) {
  constexpr int L = Ops::kLanes;
  constexpr int64_t kNr = kNvMax * L;
  static_assert(kMaxWidth % kNr == 0, "column block must hold whole strips");
  static_assert(kMc % kMr == 0, "row chunk must hold whole panels");
  const int64_t rows_padded = (rows + kMr - 1) / kMr * kMr;
  alignas(64) float xb[kKc * kMaxWidth];
  const int64_t blocks = (n + kMaxWidth - 1) / kMaxWidth;
  const int64_t width = ((n + blocks - 1) / blocks + L - 1) / L * L;  // <= kMaxWidth
  for (int64_t c0 = 0; c0 < n; c0 += width) {
    const int64_t nb = n - c0 < width ? n - c0 : width;
    const int64_t strips = (nb + kNr - 1) / kNr;
    for (int64_t k0 = 0; k0 < k_cols; k0 += kKc) {
      const int64_t kc = k_cols - k0 < kKc ? k_cols - k0 : kKc;
      for (int64_t s = 0; s < strips; ++s) {
        const int64_t nc = nb - s * kNr < kNr ? nb - s * kNr : kNr;
        gemm_pack_x_nv<Ops, kNvMax>(static_cast<int>((nc + L - 1) / L), x + k0 * ldx + c0 + s * kNr,
                                    ldx, kc, nc, xb + s * kc * kNr);
      }
      const float* block = packed + k0 * rows_padded;
      for (int64_t m0 = row_begin; m0 < row_end; m0 += kMc) {
        const int64_t m1 = row_end - m0 < kMc ? row_end : m0 + kMc;
        for (int64_t s = 0; s < strips; ++s) {
          const int64_t nc = nb - s * kNr < kNr ? nb - s * kNr : kNr;
          const int nv = static_cast<int>((nc + L - 1) / L);
          const float* xs = xb + s * kc * kNr;
          float* ys = y + c0 + s * kNr;
          if (kBlocked && s == 0) {
            // The first strip brings the chunk into cache: prefetch the chunk
            // after it (the packed W is one stream across K blocks too).
            if (k0 == 0) {
              gemm_panels<Ops, kMr, kNvMax, false, kBlocked>(nv, block, m0, m1, xs, kc, ys, ldy, nc,
                                                             bias, kMc * kc);
            } else {
              gemm_panels<Ops, kMr, kNvMax, true, kBlocked>(nv, block, m0, m1, xs, kc, ys, ldy, nc,
                                                            bias, kMc * kc);
            }
          } else if (k0 == 0) {
            gemm_panels<Ops, kMr, kNvMax, false>(nv, block, m0, m1, xs, kc, ys, ldy, nc, bias);
          } else {
            gemm_panels<Ops, kMr, kNvMax, true>(nv, block, m0, m1, xs, kc, ys, ldy, nc, bias);
          }
        }
      }
    }
  }
}

// The whole kernel (see the top of this file). kNcMax is a multiple of the
// strip width NR = kNvMax * kLanes, kMc of MR.
template <class Ops, int kMr, int kNvMax, int kKc, int kNcMax, int kMc>
void gemm_run_impl(const float* packed, int64_t rows, int64_t k_cols, int64_t row_begin,
                   int64_t row_end, const float* x, int64_t ldx, int64_t n, const float* bias,
                   float* y, int64_t ldy) {
  if (k_cols == 0) {
    for (int64_t r = row_begin; r < row_end; ++r) {
      for (int64_t c = 0; c < n; ++c) y[r * ldy + c] = bias != nullptr ? bias[r] : 0.0f;
    }
    return;
  }
  constexpr int64_t kSmallW = 128 * 1024;
  if ((row_end - row_begin) * k_cols <= kSmallW) {
    gemm_run_columns<Ops, kMr, kNvMax, kKc, kNvMax * Ops::kLanes, kMc, false>(
        packed, rows, k_cols, row_begin, row_end, x, ldx, n, bias, y, ldy);
  } else {
    gemm_run_columns<Ops, kMr, kNvMax, kKc, kNcMax, kMc, true>(packed, rows, k_cols, row_begin,
                                                               row_end, x, ldx, n, bias, y, ldy);
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
