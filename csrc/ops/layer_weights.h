// The weight of a Linear or Conv layer, written once for both: whatever the
// file stores (dense, CSR or BSR), it counts the nonzeros, keeps a CSR view
// (of the file's CSR, or an owned copy built from a mostly-zero dense
// weight) and/or dense weights packed for the gemm kernels (densified from
// CSR when the weight is mostly nonzero), as the op's cost model asks; and it
// times two candidate kernels for LoadOptions::tune.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "kernels/kernels.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {

// A CSR copy of a dense row-major rows x cols weight. `view` points into the
// owned arrays; column indices are 16-bit when cols <= 65536.
struct OwnedCsr {
  std::vector<uint32_t> row_ptr;
  std::vector<uint16_t> col16;
  std::vector<uint32_t> col32;
  std::vector<float> values;
  kernels::CsrMatrix view;
};
void build_owned_csr(const float* data, int64_t rows, int64_t cols, OwnedCsr* out);

// The 4x1 block view of a CSR matrix (kernels.h CsrMatrix::block_*): how many
// blocks it has, the owned arrays, and pointing a CsrMatrix at them.
struct OwnedBlocks4 {
  std::vector<uint32_t> ptr, col;
  std::vector<float> values;
};
int64_t count_blocks4(const kernels::CsrMatrix& m);
void build_blocks4(const kernels::CsrMatrix& m, OwnedBlocks4* out);
void attach_blocks4(const OwnedBlocks4& blocks, kernels::CsrMatrix* m);

// The weight as dense row-major floats (a copy; CSR / BSR expanded). The
// growth beyond the stored bytes is charged to config's expand budget.
kernels::AlignedFloats densify_weight(const format::TensorInfo& w, const LoadConfig& config);

// Time per stored nonzero of the block kernels relative to CSR's, as the cost
// models use it: Zen 3, 1 thread, min of 5 x 10 runs, 4x1-block-pruned
// weights, CSR / block time: 3072x768x128 2.3x at 30% and 50% sparsity, 1.3x
// at 90%; 256x2304x196 3.1x / 2.8x / 1.7x; 64x576x3136 (ResNet's 3x3 as
// im2col) 2.3x / 1.6x / 1.8x. 0.5 sits inside that range: a block-pruned layer
// runs sparse from 40% sparsity on (the CSR crossover of 0.30 becomes 0.60).
constexpr double kBlockCostFactor = 0.5;

class LayerWeights {
 public:
  // rows = dims[0], cols = product of the other dims.
  LayerWeights(const format::TensorInfo& w, const LoadConfig& config);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t nnz() const { return nnz_; }  // nonzero weights (stored, or counted when dense)
  double density() const { return density_; }
  const format::TensorInfo& info() const { return info_; }
  bool stored_sparse() const { return info_.storage != format::Storage::kDense; }

  // Builds the CSR view (spmm kernels) / the packed dense panels (gemm
  // kernels, one per group of rows / groups rows).
  void ensure_csr();
  // optional: a dense copy only tuning wants; skipped (returns false) when it
  // would exceed the model's expand budget instead of failing the load.
  bool ensure_dense(int64_t groups = 1, bool optional = false);
  // Drops one representation (after tuning decided it is never used).
  void drop_csr();
  void drop_dense();
  bool has_csr() const { return spmm_ != nullptr; }
  bool has_dense() const { return gemm_ != nullptr; }

  const kernels::CsrMatrix& csr() const { return csr_; }
  // Blocks of the 4x1 view (0: none; see build_block4).
  int64_t block_count() const { return csr_.block_ptr != nullptr ? csr_.block_ptr[csr_.block_count] : 0; }
  // The density the sparse-vs-dense cost models compare: with a 4x1 block
  // view, the share of block slots (explicit zeros included) scaled by
  // kBlockCostFactor.
  double sparse_cost_density() const {
    if (block_count() == 0 || rows_ * cols_ == 0) return density_;
    const double slots = 4.0 * static_cast<double>(block_count()) / static_cast<double>(rows_ * cols_);
    return std::min(density_, slots * kBlockCostFactor);
  }
  // Row ranges over [r_begin, r_end) with about equal nonzeros per task, on
  // 4-row boundaries when there is a block view.
  std::vector<int64_t> partition_sparse(int64_t r_begin, int64_t r_end, int64_t tasks) const;
  const kernels::SpmmKernel& spmm() const { return *spmm_; }
  const kernels::GemmKernel& gemm() const { return *gemm_; }
  const kernels::PackedGemmWeights& packed(int64_t group = 0) const { return packed_[group]; }

  // Fills the weight fields of a summary row; `sparse` = the sparse kernels run.
  void describe(bool sparse, NodeInfo* info) const;
  // " (sparse copy of dense)" / " (densified)" when the kernel that runs
  // differs from the stored form, else "".
  std::string storage_note(bool sparse) const;

 private:
  void bsr_to_csr();
  // The 4x1 block view of the CSR (kernels.h CsrMatrix::block_*), when the
  // blocks are filled well enough to beat the CSR kernel (see the .cc).
  void build_block4();

  const format::TensorInfo& info_;
  const LoadConfig config_;
  kernels::Isa isa_;
  int64_t rows_ = 0, cols_ = 0, nnz_ = 0;
  double density_ = 1.0;
  kernels::CsrMatrix csr_;
  OwnedCsr owned_csr_;
  OwnedBlocks4 blocks_;
  const kernels::SpmmKernel* spmm_ = nullptr;
  const kernels::GemmKernel* gemm_ = nullptr;
  std::vector<kernels::PackedGemmWeights> packed_;
};

// Median-free best-of timing for tune: runs fn `reps` times (after one
// warm-up) and returns the fastest in seconds.
template <typename F>
double best_time(F&& fn, int reps = 4) {
  double best = 1e30;
  for (int rep = 0; rep <= reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && t < best) best = t;
  }
  return best;
}

// Tune keeps a dense copy only of weights up to this size.
constexpr int64_t kTuneMaxDenseElements = int64_t{1} << 26;  // 256 MiB of float32

}  // namespace ops
}  // namespace sparsert
