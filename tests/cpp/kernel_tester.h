// Shared tester for the kernel families (in the style of XNNPACK's
// SpMMMicrokernelTester and ruy's TestSet): builds random CSR / dense weights
// and activations from a seed, pre-fills every output buffer with NaN, runs
// EVERY compiled and supported kernel of the family on the same inputs and
// compares it with the reference kernel (the first of the list), which is
// itself checked against a double-precision evaluation.
//
// Tolerance (stated once): for output (r, c), with
//   mag = |bias[r]| + sum_k |W[r,k]| * |X[k,c]|,
// |y - expected| <= 1e-5 * sqrt(K + 1) * mag + 1e-30.
// Elements outside [row_begin, row_end) x [0, n) (strides, column offsets,
// rows outside the range) must keep their NaN: a kernel may not write there.
// Padding of X outside the tile is NaN too, so reading it shows up in Y.
//
// Failures print the case, including its seed; SPARSERT_TEST_SEED=<n>
// changes the base seed of the randomised cases.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "ops/layer_weights.h"

namespace sparsert {
namespace testing {

inline uint64_t base_seed() {
  const char* env = std::getenv("SPARSERT_TEST_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20240611u;
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Fields shared by both testers.
struct KernelCase {
  int64_t rows = 1;
  int64_t cols = 1;  // K
  int64_t n = 1;
  double sparsity = 0.5;    // fraction of weights that are zero
  double empty_rows = 0.0;  // fraction of rows forced to be all-zero
  bool bias = true;
  int64_t row_begin = 0;
  int64_t row_end = -1;  // -1: rows
  int64_t ldx_pad = 0;   // ldx = c0 + n + ldx_pad
  int64_t ldy_pad = 0;   // ldy = c0 + n + ldy_pad
  int64_t c0 = 0;        // the kernel sees x + c0, y + c0
  bool index32 = false;  // force 32-bit column indices (forced anyway when cols > 65536)
  // > 0: the pattern is 4x1 blocks (four consecutive rows sharing a column,
  // kept with probability 1 - sparsity), each slot of a kept block nonzero
  // with this probability (1: block-pruned; lower: blocks with explicit zeros).
  double block4_fill = 0.0;
  uint64_t seed = 1;

  std::string describe() const {
    std::ostringstream s;
    s << "rows=" << rows << " cols=" << cols << " n=" << n << " sparsity=" << sparsity
      << " empty_rows=" << empty_rows << " bias=" << bias << " row_range=[" << row_begin << ","
      << (row_end < 0 ? rows : row_end) << ") ldx_pad=" << ldx_pad << " ldy_pad=" << ldy_pad
      << " c0=" << c0 << " index32=" << index32 << " block4_fill=" << block4_fill
      << " seed=" << seed;
    return s.str();
  }
};

// Random problem data built from a KernelCase.
struct Problem {
  KernelCase kc;
  int64_t ldx = 0, ldy = 0;
  std::vector<float> w;  // dense rows x cols (zeros where sparse)
  std::vector<float> bias;
  std::vector<float> x;  // cols x ldx, NaN outside [c0, c0 + n)
  // CSR of w
  std::vector<uint32_t> row_ptr;
  std::vector<uint16_t> col16;
  std::vector<uint32_t> col32;
  std::vector<float> values;
  std::vector<double> expected;  // double precision, rows x n
  std::vector<double> magnitude;

  explicit Problem(const KernelCase& c) : kc(c) {
    std::mt19937_64 rng(c.seed);
    std::uniform_real_distribution<float> val(-1.0f, 1.0f);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    ldx = c.c0 + c.n + c.ldx_pad;
    ldy = c.c0 + c.n + c.ldy_pad;
    w.assign(static_cast<size_t>(c.rows * c.cols), 0.0f);
    row_ptr.push_back(0);
    std::vector<char> block_kept;  // 4x1 pattern: [block row][col]
    if (c.block4_fill > 0.0) {
      block_kept.resize(static_cast<size_t>((c.rows + 3) / 4 * c.cols));
      for (char& kept : block_kept) kept = u01(rng) >= c.sparsity;
    }
    for (int64_t r = 0; r < c.rows; ++r) {
      const bool empty = u01(rng) < c.empty_rows;
      for (int64_t k = 0; k < c.cols; ++k) {
        if (c.block4_fill > 0.0) {
          if (empty || !block_kept[(r / 4) * c.cols + k] || !(u01(rng) < c.block4_fill)) continue;
        } else if (empty || !(u01(rng) >= c.sparsity)) {
          continue;
        }
        float v = val(rng);
        if (v == 0.0f) v = 0.5f;
        w[r * c.cols + k] = v;
        values.push_back(v);
        if (c.index32 || c.cols > 65536) {
          col32.push_back(static_cast<uint32_t>(k));
        } else {
          col16.push_back(static_cast<uint16_t>(k));
        }
      }
      row_ptr.push_back(static_cast<uint32_t>(values.size()));
    }
    if (c.bias) {
      for (int64_t r = 0; r < c.rows; ++r) bias.push_back(val(rng));
    }
    x.assign(static_cast<size_t>(std::max<int64_t>(c.cols, 1) * ldx), kNaN);
    for (int64_t k = 0; k < c.cols; ++k) {
      for (int64_t j = 0; j < c.n; ++j) x[k * ldx + c.c0 + j] = val(rng);
    }
    expected.assign(static_cast<size_t>(c.rows * c.n), 0.0);
    magnitude.assign(static_cast<size_t>(c.rows * c.n), 0.0);
    // Over the nonzeros only (zeros add nothing), in double precision; row by
    // row with the columns innermost, so X is read in order (a column-wise
    // walk over a 4 MB X made this loop most of the C++ suite's time, ~20x
    // more under qemu).
    for (int64_t r = 0; r < c.rows; ++r) {
      double* acc = expected.data() + r * c.n;
      double* mag = magnitude.data() + r * c.n;
      for (int64_t j = 0; j < c.n; ++j) {
        acc[j] = c.bias ? bias[r] : 0.0;
        mag[j] = c.bias ? std::fabs(bias[r]) : 0.0;
      }
      for (uint32_t e = row_ptr[r]; e < row_ptr[r + 1]; ++e) {
        const int64_t k = col32.empty() ? col16[e] : col32[e];
        const double v = values[e];
        const float* xk = x.data() + k * ldx + c.c0;
        for (int64_t j = 0; j < c.n; ++j) {
          const double p = v * xk[j];
          acc[j] += p;
          mag[j] += std::fabs(p);
        }
      }
    }
  }

  kernels::CsrMatrix csr() const {
    kernels::CsrMatrix m;
    m.rows = kc.rows;
    m.cols = kc.cols;
    m.row_ptr = row_ptr.data();
    m.values = values.data();
    if (kc.index32 || kc.cols > 65536) {
      m.col_idx32 = col32.data();
    } else {
      m.col_idx16 = col16.data();
    }
    return m;
  }
  const float* bias_ptr() const { return kc.bias ? bias.data() : nullptr; }
  std::vector<float> fresh_y() const {
    return std::vector<float>(static_cast<size_t>(std::max<int64_t>(kc.rows, 1) * ldy), kNaN);
  }
  double tolerance(int64_t r, int64_t j) const {
    return 1e-5 * std::sqrt(static_cast<double>(kc.cols + 1)) * magnitude[r * kc.n + j] + 1e-30;
  }

  // Checks y (full buffer) for rows [rb, re): values within tolerance of
  // `want(r, j)`, and NaN everywhere the kernel must not write. Reports the
  // first bad element only.
  template <typename Want>
  void check(const std::vector<float>& y, int64_t rb, int64_t re, const std::string& kernel,
             Want want) const {
    for (int64_t r = 0; r < kc.rows; ++r) {
      for (int64_t col = 0; col < ldy; ++col) {
        const float got = y[r * ldy + col];
        const int64_t j = col - kc.c0;
        const bool inside = r >= rb && r < re && j >= 0 && j < kc.n;
        if (!inside) {
          if (!std::isnan(got)) {
            ADD_FAILURE() << kernel << " wrote outside its output at row " << r << " col " << col
                          << " (" << got << "); case: " << kc.describe();
            return;
          }
          continue;
        }
        const double w_ = want(r, j);
        if (!(std::fabs(got - w_) <= tolerance(r, j))) {
          ADD_FAILURE() << kernel << " mismatch at row " << r << " col " << j << ": got " << got
                        << ", expected " << w_ << " (tolerance " << tolerance(r, j)
                        << "); case: " << kc.describe();
          return;
        }
      }
    }
  }
};

// Runs spmm kernel `kernel` (an index into kernels::spmm_kernels(); 0 is the
// reference, checked against double precision) on one case; the others are
// checked against the reference's float result.
inline void test_spmm_case(const KernelCase& c, size_t kernel) {
  const Problem p(c);
  const kernels::CsrMatrix m = p.csr();
  const int64_t rb = c.row_begin;
  const int64_t re = c.row_end < 0 ? c.rows : c.row_end;
  const auto& list = kernels::spmm_kernels();
  ASSERT_LT(kernel, list.size());
  ASSERT_EQ(list.front().isa, kernels::Isa::kScalar);
  std::vector<float> ref = p.fresh_y();
  list.front().fn(m, rb, re, p.x.data() + c.c0, p.ldx, c.n, p.bias_ptr(), ref.data() + c.c0, p.ldy);
  if (kernel == 0) {
    p.check(ref, rb, re, list.front().name, [&](int64_t r, int64_t j) { return p.expected[r * c.n + j]; });
    return;
  }
  std::vector<float> y = p.fresh_y();
  list[kernel].fn(m, rb, re, p.x.data() + c.c0, p.ldx, c.n, p.bias_ptr(), y.data() + c.c0, p.ldy);
  p.check(y, rb, re, list[kernel].name,
          [&](int64_t r, int64_t j) { return static_cast<double>(ref[r * p.ldy + c.c0 + j]); });
}

// Runs spmm kernel `kernel` with the weight's 4x1 block view attached (built
// whatever its fill), against the reference's CSR result (the reference
// ignores the view) and, for the reference, double precision. A kernel that
// misreads the view, or a view that misses or misplaces a nonzero, shows up.
inline void test_spmm_block_case(const KernelCase& c, size_t kernel) {
  const Problem p(c);
  kernels::CsrMatrix m = p.csr();
  ops::OwnedBlocks4 blocks;
  ops::build_blocks4(m, &blocks);
  ops::attach_blocks4(blocks, &m);
  const int64_t rb = c.row_begin;
  const int64_t re = c.row_end < 0 ? c.rows : c.row_end;
  const auto& list = kernels::spmm_kernels();
  ASSERT_LT(kernel, list.size());
  std::vector<float> ref = p.fresh_y();
  list.front().fn(m, rb, re, p.x.data() + c.c0, p.ldx, c.n, p.bias_ptr(), ref.data() + c.c0, p.ldy);
  p.check(ref, rb, re, list.front().name, [&](int64_t r, int64_t j) { return p.expected[r * c.n + j]; });
  if (kernel == 0) return;
  std::vector<float> y = p.fresh_y();
  list[kernel].fn(m, rb, re, p.x.data() + c.c0, p.ldx, c.n, p.bias_ptr(), y.data() + c.c0, p.ldy);
  p.check(y, rb, re, list[kernel].name,
          [&](int64_t r, int64_t j) { return static_cast<double>(ref[r * p.ldy + c.c0 + j]); });
}

// Runs gemm kernel `kernel` (an index into kernels::gemm_kernels(); 0 is the
// reference) on one case. Each kernel's row range starts at a multiple of its
// row_block: row_begin is rounded down to one.
inline void test_gemm_case(const KernelCase& c, size_t kernel) {
  const Problem p(c);
  const auto& list = kernels::gemm_kernels();
  ASSERT_LT(kernel, list.size());
  ASSERT_EQ(list.front().isa, kernels::Isa::kScalar);
  const int64_t re = c.row_end < 0 ? c.rows : c.row_end;
  // Reference over all rows, checked against double precision.
  kernels::PackedGemmWeights ref_w;
  list.front().pack(p.w.data(), c.rows, c.cols, c.cols, &ref_w);
  std::vector<float> ref = p.fresh_y();
  list.front().fn(ref_w, 0, c.rows, p.x.data() + c.c0, p.ldx, c.n, p.bias_ptr(), ref.data() + c.c0,
                  p.ldy);
  if (kernel == 0) {
    p.check(ref, 0, c.rows, list.front().name, [&](int64_t r, int64_t j) { return p.expected[r * c.n + j]; });
    return;
  }
  // Pack from a copy with a padded row stride when the case is strided.
  const int64_t ldw = c.cols + c.ldx_pad;
  std::vector<float> w_strided(static_cast<size_t>(c.rows * ldw), kNaN);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t k = 0; k < c.cols; ++k) w_strided[r * ldw + k] = p.w[r * c.cols + k];
  }
  kernels::PackedGemmWeights packed;
  list[kernel].pack(w_strided.data(), c.rows, c.cols, ldw, &packed);
  ASSERT_EQ(packed.isa, list[kernel].isa);
  const int64_t rb = c.row_begin / packed.row_block * packed.row_block;
  std::vector<float> y = p.fresh_y();
  list[kernel].fn(packed, rb, re, p.x.data() + c.c0, p.ldx, c.n, p.bias_ptr(), y.data() + c.c0, p.ldy);
  p.check(y, rb, re, list[kernel].name,
          [&](int64_t r, int64_t j) { return static_cast<double>(ref[r * p.ldy + c.c0 + j]); });
}

// One value per kernel of a family, and the test-name suffix that names it
// (gtest: "Kernel/Spmm.RowsAndN/spmm_f32_avx2"), so a failure names its kernel.
template <typename List>
std::vector<size_t> kernel_indices(const List& list) {
  std::vector<size_t> out;
  for (size_t i = 0; i < list.size(); ++i) out.push_back(i);
  return out;
}

}  // namespace testing
}  // namespace sparsert
