// Linear: Y[..., M] = act(X[..., K] W^T + B), W dense or CSR.
//
// Kernels compute feature-major Y^T = W X^T (kernels.h), so for a batch of
// B > 1 rows the input is transposed into scratch (K x B), the kernel writes
// Y^T (M x B) and each task transposes its own rows back into Y. With B == 1
// the kernel reads X and writes Y directly (SpMV / GEMV).
//
// Per-layer kernel choice: whatever the file stores, the op runs the sparse
// kernel when the weight is sparse enough for it to win and the dense packed
// GEMM otherwise (a CSR weight that is mostly nonzero is densified; a dense
// weight that is mostly zero gets a CSR copy). The crossover densities come
// from measurements on Zen 4 (AVX-512) at 1 thread, where one stored nonzero
// costs the sparse kernel ~2.6x (SpMV, 4096x4096) to ~3.4x (SpMM,
// 512x4608x196) what one dense weight costs the GEMM:
//   batch 1, weights larger than the last-level cache (SpMV vs GEMV, both
//     memory bound; 4096x4096: 2.2x per stored nonzero): sparse below density 0.35
//   batch 1, weights that fit in cache (GEMV runs from L3 at ~50 GFLOP/s;
//     768x768 and 3072x768: 5.9x per nonzero, sparse at 70% was 0.66x dense,
//     at 80% 0.93x):                       sparse below density 0.15
//   batch > 1 (SpMM vs GEMM):              sparse below density 0.28
// With LoadOptions::tune both kernels are timed at load on this machine.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include <unistd.h>

#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/conv_common.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {
namespace {

constexpr double kSparseMaxDensityBatch1Streaming = 0.35;
constexpr double kSparseMaxDensityBatch1Cached = 0.15;
constexpr double kSparseMaxDensityBatched = 0.28;
constexpr int64_t kTuneBatch = 32;

// Last-level cache size in bytes (32 MiB when the system does not say).
int64_t last_level_cache_bytes() {
#if defined(_SC_LEVEL3_CACHE_SIZE)
  long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return l3;
#endif
#if defined(_SC_LEVEL2_CACHE_SIZE)
  long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (l2 > 0) return l2;
#endif
  return int64_t{32} << 20;
}

class LinearOp final : public Op {
 public:
  LinearOp(const format::TensorInfo& w, const float* bias, Activation act, bool tune)
      : rows_(w.dims[0]), cols_(w.dims[1]), bias_(bias), act_(act), weight_(w) {
    const int64_t elements = rows_ * cols_;
    if (w.storage == format::Storage::kCsr) {
      csr_.rows = w.rows;
      csr_.cols = w.cols;
      csr_.row_ptr = w.row_ptr;
      csr_.col_idx16 = w.col_idx16;
      csr_.col_idx32 = w.col_idx32;
      csr_.values = w.values;
      nnz_ = static_cast<int64_t>(w.nnz);
    } else {
      const float* data = static_cast<const float*>(w.data);
      nnz_ = 0;
      for (int64_t i = 0; i < elements; ++i) nnz_ += data[i] != 0.0f;
    }
    const double density = elements == 0 ? 1.0 : static_cast<double>(nnz_) / static_cast<double>(elements);
    const double batch1_max_density = elements > last_level_cache_bytes() / 4
                                          ? kSparseMaxDensityBatch1Streaming
                                          : kSparseMaxDensityBatch1Cached;
    // Build the representation(s) some batch regime will run.
    bool want_sparse = density <= std::max(batch1_max_density, kSparseMaxDensityBatched);
    bool want_dense = density > std::min(batch1_max_density, kSparseMaxDensityBatched);
    // tune keeps both, but never densifies more than 1 GiB of weights
    if (tune && elements > 0 && elements <= (int64_t{1} << 28)) want_sparse = want_dense = true;
    if (want_sparse) ensure_csr();
    if (want_dense) ensure_dense();
    sparse_batch1_ = has_csr() && (!has_dense() || density <= batch1_max_density);
    sparse_batched_ = has_csr() && (!has_dense() || density <= kSparseMaxDensityBatched);
    if (tune && has_csr() && has_dense()) {
      sparse_batch1_ = time_sparse_vs_dense(1);
      sparse_batched_ = time_sparse_vs_dense(kTuneBatch);
      // drop the representation no regime uses
      if (!sparse_batch1_ && !sparse_batched_) {
        owned_csr_ = OwnedCsr();
        spmm_ = nullptr;
      } else if (sparse_batch1_ && sparse_batched_) {
        packed_ = kernels::PackedGemmWeights();
        gemm_ = nullptr;
      }
    }
  }

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.empty() || x.back() != cols_)
      shape_error("input " + shape_string(x) + " must have last dim " + std::to_string(cols_) +
                  " (the weight is " + std::to_string(rows_) + " x " + std::to_string(cols_) + ")");
    Shape y = x;
    y.back() = rows_;
    return {y};
  }

  size_t scratch_bytes(const std::vector<Shape>& inputs, int threads) const override {
    const int64_t batch = cols_ == 0 ? 0 : shape_elements(inputs[0]) / cols_;
    if (batch <= 1) return 0;
    return sizeof(float) * static_cast<size_t>(batch * (cols_ + rows_)) + 128;
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const int64_t batch = cols_ == 0 ? 0 : shape_elements(inputs[0].shape) / cols_;
    float* y = outputs[0].data;
    if (rows_ == 0 || batch == 0) return;
    if (cols_ == 0) {  // empty reduction: bias only
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t r = 0; r < rows_; ++r) y[b * rows_ + r] = bias_ ? bias_[r] : 0.0f;
        apply_activation(act_, y + b * rows_, rows_);
      }
      return;
    }
    compute_all(ctx, inputs[0].data, batch, y, static_cast<float*>(ctx.scratch()));
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    const int64_t batch = cols_ == 0 ? 0 : shape_elements(inputs[0]) / cols_;
    const bool sparse = use_sparse(batch);
    info->weight_storage = weight_.storage == format::Storage::kCsr ? "csr" : "dense";
    info->weight_shape = {rows_, cols_};
    info->weight_elements = rows_ * cols_;
    info->weight_nnz = weight_.storage == format::Storage::kCsr ? nnz_ : rows_ * cols_;
    info->weight_bytes = static_cast<int64_t>(weight_.stored_bytes());
    info->flops = 2 * (sparse ? nnz_ : rows_ * cols_) * batch;
    info->dense_flops = 2 * rows_ * cols_ * batch;
    if (rows_ * cols_ == 0) {
      info->kernel = "bias_only";
      return;
    }
    info->kernel = sparse ? spmm_->name : gemm_->name;
    const bool stored_sparse = weight_.storage == format::Storage::kCsr;
    if (sparse != stored_sparse) info->kernel += sparse ? " (sparse copy of dense)" : " (densified)";
  }

 private:
  bool has_csr() const { return spmm_ != nullptr; }
  bool has_dense() const { return gemm_ != nullptr; }
  bool use_sparse(int64_t batch) const { return batch <= 1 ? sparse_batch1_ : sparse_batched_; }

  void ensure_csr() {
    spmm_ = &kernels::spmm_best();
    if (weight_.storage == format::Storage::kCsr) return;
    build_owned_csr(static_cast<const float*>(weight_.data), rows_, cols_, &owned_csr_);
    csr_ = owned_csr_.view;
  }

  void ensure_dense() {
    gemm_ = &kernels::gemm_best();
    if (weight_.storage == format::Storage::kDense) {
      gemm_->pack(static_cast<const float*>(weight_.data), rows_, cols_, cols_, &packed_);
      return;
    }
    const kernels::AlignedFloats dense = densify_weight(weight_);
    gemm_->pack(dense.data(), rows_, cols_, cols_, &packed_);
  }

  // Times both kernels (single thread) on a random batch; true if sparse wins.
  bool time_sparse_vs_dense(int64_t batch) const {
    std::mt19937 gen(12345);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(cols_ * batch)), y(static_cast<size_t>(rows_ * batch));
    for (auto& v : x) v = dist(gen);
    auto time_one = [&](bool sparse) {
      double best = 1e30;
      for (int rep = 0; rep < 5; ++rep) {
        auto t0 = std::chrono::steady_clock::now();
        if (sparse)
          spmm_->fn(csr_, 0, rows_, x.data(), batch, batch, bias_, y.data(), batch);
        else
          gemm_->fn(packed_, 0, rows_, x.data(), batch, batch, bias_, y.data(), batch);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      return best;
    };
    return time_one(true) <= time_one(false);
  }

  void compute(bool sparse, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n, float* y,
               int64_t ldy) const {
    if (sparse) {
      spmm_->fn(csr_, r0, r1, x, ldx, n, bias_, y, ldy);
    } else {
      gemm_->fn(packed_, r0, r1, x, ldx, n, bias_, y, ldy);
    }
  }

  void compute_all(const RunContext& ctx, const float* x, int64_t batch, float* y, float* scratch) const {
    const bool sparse = use_sparse(batch);
    const int64_t work = (sparse ? nnz_ : rows_ * cols_) * batch;
    const int64_t tasks = partition_task_count(ctx.threads(), work, rows_);
    const std::vector<int64_t> bounds = sparse ? partition_csr_rows(csr_.row_ptr, rows_, tasks)
                                               : partition_rows(rows_, tasks, packed_.row_block);
    const int64_t n_tasks = static_cast<int64_t>(bounds.size()) - 1;
    if (batch == 1) {
      ctx.parallel_for(n_tasks, [&](int64_t t) {
        const int64_t r0 = bounds[t], r1 = bounds[t + 1];
        if (r0 == r1) return;
        compute(sparse, r0, r1, x, 1, 1, y, 1);
        apply_activation(act_, y + r0, r1 - r0);
      });
      return;
    }
    float* xt = scratch;
    float* yt = xt + ((batch * cols_ + 15) / 16) * 16;
    // X (batch x K) -> X^T (K x batch), in blocks of K.
    const int64_t k_block = 64;
    ctx.parallel_for((cols_ + k_block - 1) / k_block, [&](int64_t t) {
      const int64_t k0 = t * k_block, k1 = std::min(cols_, k0 + k_block);
      for (int64_t b = 0; b < batch; ++b) {
        const float* src = x + b * cols_;
        for (int64_t k = k0; k < k1; ++k) xt[k * batch + b] = src[k];
      }
    });
    ctx.parallel_for(n_tasks, [&](int64_t t) {
      const int64_t r0 = bounds[t], r1 = bounds[t + 1];
      if (r0 == r1) return;
      compute(sparse, r0, r1, xt, batch, batch, yt, batch);
      apply_activation(act_, yt + r0 * batch, (r1 - r0) * batch);
      for (int64_t b = 0; b < batch; ++b) {
        float* dst = y + b * rows_;
        for (int64_t r = r0; r < r1; ++r) dst[r] = yt[r * batch + b];
      }
    });
  }

  int64_t rows_, cols_;
  const float* bias_;
  Activation act_;
  const format::TensorInfo& weight_;
  int64_t nnz_ = 0;
  bool sparse_batch1_ = false;
  bool sparse_batched_ = false;
  kernels::CsrMatrix csr_;
  OwnedCsr owned_csr_;  // CSR copy of a dense weight
  const kernels::SpmmKernel* spmm_ = nullptr;
  const kernels::GemmKernel* gemm_ = nullptr;
  kernels::PackedGemmWeights packed_;
};

}  // namespace

std::unique_ptr<Op> create_linear(const NodeContext& ctx) {
  ctx.check_input_count(2, 3);
  ctx.check_output_count(1);
  if (ctx.constant(0) != nullptr) ctx.fail("input X must be an activation");
  const format::TensorInfo& w = ctx.require_constant(1, "weight");
  if (w.dims.size() != 2)
    ctx.fail("weight '" + w.name + "' must be 2-D [out_features, in_features], got " +
             shape_string(w.dims));
  const float* bias = nullptr;
  if (ctx.has_input(2)) {
    const format::TensorInfo& b = ctx.require_constant(2, "bias");
    if (b.storage != format::Storage::kDense || b.elements != w.dims[0])
      ctx.fail("bias '" + b.name + "' must be dense with " + std::to_string(w.dims[0]) + " elements, got " +
               shape_string(b.dims));
    bias = static_cast<const float*>(b.data);
  }
  return std::make_unique<LinearOp>(w, bias, parse_fused_activation(ctx), ctx.tune());
}

}  // namespace ops
}  // namespace sparsert
