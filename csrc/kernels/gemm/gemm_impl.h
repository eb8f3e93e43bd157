// The dense gemm algorithm shared by the SIMD kernels, written once over the
// vector-operations struct `Ops` of each ISA file (see spmm/spmm_impl.h for
// the Ops contract and why everything here is file-local templates).
//
// W (rows x K) is packed once into panels of MR rows, k-major:
// panel[k * MR + r], zero-padded to a multiple of MR rows. The microkernel
// keeps an MR x NR block of Y in MR * NV vector registers (NR = NV * kLanes)
// and per k does NV vector loads of X, MR broadcasts of W and MR * NV FMAs.
// X is read in place but, per (column strip, K block), a KC x NR tile of it is
// copied into a stack buffer (zero-padded on the right): it then sits in L1
// for every row panel, whatever ldx is (no cache-set conflicts for power-of-
// two strides), and column tails need masks only when storing Y.
#pragma once

#include <cstdint>

namespace sparsert {
namespace kernels {
namespace {

template <int kMr>
void gemm_pack_panels(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed) {
  for (int64_t p = 0; p * kMr < rows; ++p) {
    float* panel = packed + p * kMr * cols;
    const int64_t mr = rows - p * kMr < kMr ? rows - p * kMr : kMr;
    for (int64_t r = 0; r < mr; ++r) {
      const float* wr = w + (p * kMr + r) * ldw;
      for (int64_t k = 0; k < cols; ++k) panel[k * kMr + r] = wr[k];
    }
  }
}

// Y[0:mr, 0:nc] (=|+=) W_panel[0:kc] X_tile[0:kc, 0:NR]; rows >= mr and
// columns >= nc are computed but not stored.
template <class Ops, int kMr, int kNv>
void gemm_micro(const float* panel, const float* xt, int64_t kc, float* y, int64_t ldy, int mr,
                int64_t nc, const float* bias, bool accumulate) {
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
    for (int r = 0; r < kMr; ++r) {
      const V wr = Ops::set1(wk[r]);
      for (int v = 0; v < kNv; ++v) acc[r][v] = Ops::fma(wr, xv[v], acc[r][v]);
    }
  }
  const int rem = static_cast<int>(nc % L);
  const typename Ops::Tail tail = Ops::tail(rem == 0 ? 1 : rem);
  const int64_t full = nc / L;  // vectors stored whole; one more with `tail` if rem != 0
  for (int r = 0; r < kMr; ++r) {
    if (r >= mr) break;
    float* yr = y + r * ldy;
    const V b = Ops::set1(bias != nullptr && !accumulate ? bias[r] : 0.0f);
    for (int v = 0; v < kNv; ++v) {
      if (v < full) {
        const V base = accumulate ? Ops::load(yr + v * L) : b;
        Ops::store(yr + v * L, Ops::add(acc[r][v], base));
      } else if (v == full && rem != 0) {
        const V base = accumulate ? Ops::load_tail(yr + v * L, tail) : b;
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

template <class Ops, int kMr, int kNv>
void gemm_strip(const float* packed, int64_t k_cols, int64_t row_begin, int64_t row_end,
                const float* x, int64_t ldx, int64_t nc, const float* bias, float* y, int64_t ldy,
                float* xt, int64_t kc_max) {
  for (int64_t k0 = 0; k0 < k_cols; k0 += kc_max) {
    const int64_t kc = k_cols - k0 < kc_max ? k_cols - k0 : kc_max;
    gemm_pack_x<Ops, kNv>(x + k0 * ldx, ldx, kc, nc, xt);
    for (int64_t r = row_begin; r < row_end; r += kMr) {
      const int mr = static_cast<int>(row_end - r < kMr ? row_end - r : kMr);
      gemm_micro<Ops, kMr, kNv>(packed + r * k_cols + k0 * kMr, xt, kc, y + r * ldy, ldy, mr, nc,
                                bias != nullptr ? bias + r : nullptr, k0 > 0);
    }
  }
}

// GEMV (n == 1): per panel, MR scalar accumulators the compiler vectorises.
template <int kMr>
void gemv_panels(const float* packed, int64_t k_cols, int64_t row_begin, int64_t row_end,
                 const float* x, int64_t ldx, const float* bias, float* y, int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; r += kMr) {
    const float* panel = packed + r * k_cols;
    float acc[kMr] = {};
    for (int64_t k = 0; k < k_cols; ++k) {
      const float xk = x[k * ldx];
      for (int i = 0; i < kMr; ++i) acc[i] += panel[k * kMr + i] * xk;
    }
    const int64_t mr = row_end - r < kMr ? row_end - r : kMr;
    for (int64_t i = 0; i < mr; ++i)
      y[(r + i) * ldy] = acc[i] + (bias != nullptr ? bias[r + i] : 0.0f);
  }
}

// The whole kernel: column strips of NR = kNvMax vectors (a last narrower
// strip uses fewer vectors), K blocks of kKc.
template <class Ops, int kMr, int kNvMax, int kKc>
void gemm_run_impl(const float* packed, int64_t k_cols, int64_t row_begin, int64_t row_end,
                   const float* x, int64_t ldx, int64_t n, const float* bias, float* y,
                   int64_t ldy) {
  constexpr int L = Ops::kLanes;
  constexpr int64_t kNr = kNvMax * L;
  if (k_cols == 0) {
    for (int64_t r = row_begin; r < row_end; ++r) {
      for (int64_t c = 0; c < n; ++c) y[r * ldy + c] = bias != nullptr ? bias[r] : 0.0f;
    }
    return;
  }
  alignas(64) float xt[kKc * kNr];
  for (int64_t c0 = 0; c0 < n; c0 += kNr) {
    const int64_t nc = n - c0 < kNr ? n - c0 : kNr;
    if (nc <= L) {
      gemm_strip<Ops, kMr, 1>(packed, k_cols, row_begin, row_end, x + c0, ldx, nc, bias, y + c0,
                              ldy, xt, kKc);
    } else {
      gemm_strip<Ops, kMr, kNvMax>(packed, k_cols, row_begin, row_end, x + c0, ldx, nc, bias,
                                   y + c0, ldy, xt, kKc);
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
