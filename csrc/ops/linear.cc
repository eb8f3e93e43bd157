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
//   batch > 1 (SpMM vs GEMM):              sparse below density 0.32 (below)
// With LoadOptions::tune both kernels are timed at load on this machine.
#include <algorithm>
#include <cstring>
#include <random>
#include <sstream>

#include <unistd.h>

#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/layer_weights.h"
#include "ops/op.h"
#include "ops/partition.h"
#include "ops/transpose_block.h"
#include "ops/tune_cache.h"

namespace sparsert {
namespace ops {
namespace {

constexpr double kSparseMaxDensityBatch1Streaming = 0.35;
constexpr double kSparseMaxDensityBatch1Cached = 0.15;
// Re-measured 2026-12-03 (Zen 3, 1 thread, benchmarks/block_sparsity.py, sparse
// forced vs dense, seq 128): 768->3072 / 3072->768 / 768->768 at 70% sparsity
// 1.31x / 1.02x / 1.47x faster sparse, at 60% 1.03x / 0.67x / 1.03x: 0.32.
constexpr double kSparseMaxDensityBatched = 0.32;
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
  LinearOp(const NodeContext& ctx, const format::TensorInfo& w, const float* bias)
      : weights_(w, ctx.config()), rows_(w.dims[0]), cols_(w.dims[1]), bias_(bias),
        act_(parse_fused_activation(ctx)) {
    const int64_t elements = rows_ * cols_;
    const double density = weights_.density();
    const double batch1_max_density = elements > last_level_cache_bytes() / 4
                                          ? kSparseMaxDensityBatch1Streaming
                                          : kSparseMaxDensityBatch1Cached;
    // Build the representation(s) some batch regime will run. A weight with a
    // 4x1 block view costs less per nonzero in the sparse kernels
    // (LayerWeights::sparse_cost_density): its CSR copy is built up to that
    // crossover and dropped again if it has no blocks.
    const double sparse_max = std::max(batch1_max_density, kSparseMaxDensityBatched);
    const double dense_min = std::min(batch1_max_density, kSparseMaxDensityBatched);
    const LoadConfig::LayerKernel forced = ctx.config().layer_kernel;
    const bool tune = ctx.tune() && elements > 0 && elements <= kTuneMaxDenseElements;
    // tune with a cache that holds both batch regimes' choices for this weight:
    // only the representations they name are built (no dense copy to pack for a
    // layer that runs sparse), and nothing is timed.
    TuneCache* cache = tune && forced == LoadConfig::LayerKernel::kAuto ? ctx.config().tune_cache.get() : nullptr;
    std::string tune_key;
    int cached_b1 = -1, cached_bn = -1;
    if (cache != nullptr) {
      weights_.ensure_csr();  // the key hashes the sparsity pattern
      const kernels::CsrMatrix& m = weights_.csr();
      std::ostringstream s;
      s << ctx.config().tune_machine << "|linear " << rows_ << "x" << cols_ << " nnz " << weights_.nnz()
        << " pattern " << std::hex << TuneCache::pattern_hash(m) << std::dec << " blocks " << m.block_count;
      tune_key = s.str();
      cached_b1 = cache->lookup(tune_key + " batch 1");
      cached_bn = cache->lookup(tune_key + " batch " + std::to_string(kTuneBatch));
    }
    const bool cached = cached_b1 >= 0 && cached_bn >= 0;
    const bool keep_both = (tune && !cached) || forced != LoadConfig::LayerKernel::kAuto;
    bool want_sparse = elements > 0 && (keep_both || (cached ? cached_b1 == 1 || cached_bn == 1
                                                             : density <= sparse_max / kBlockCostFactor));
    double cost = density;
    if (want_sparse) {
      weights_.ensure_csr();
      cost = weights_.sparse_cost_density();
      if (!keep_both && !cached && cost > sparse_max) {
        weights_.drop_csr();
        cost = density;
      }
    } else if (weights_.has_csr() && weights_.has_dense()) {
      weights_.drop_csr();  // built only for the key
    }
    const bool want_dense =
        elements > 0 && (keep_both || (cached ? cached_b1 == 0 || cached_bn == 0 : cost > dense_min));
    if (ctx.tune() && elements > kTuneMaxDenseElements && !want_dense)
      ctx.config().note("weight '" + w.name + "': not tuned (a dense copy of " + std::to_string(elements) +
                        " floats is over the tuning limit); the cost model picks its kernel");
    // a dense copy that only tuning asked for is skipped when over the expand budget
    const bool dense_optional = weights_.has_csr() && !(cost > dense_min);
    if (want_dense) weights_.ensure_dense(1, dense_optional && forced == LoadConfig::LayerKernel::kAuto);
    sparse_batch1_ = weights_.has_csr() && (!weights_.has_dense() || cost <= batch1_max_density);
    sparse_batched_ = weights_.has_csr() && (!weights_.has_dense() || cost <= kSparseMaxDensityBatched);
    if (forced != LoadConfig::LayerKernel::kAuto) {
      sparse_batch1_ = sparse_batched_ = forced == LoadConfig::LayerKernel::kSparse;
    } else if (cached || (tune && weights_.has_csr() && weights_.has_dense())) {
      if (cached) {
        // (a dense copy the expand budget refused leaves the sparse kernel)
        sparse_batch1_ = weights_.has_csr() && (cached_b1 == 1 || !weights_.has_dense());
        sparse_batched_ = weights_.has_csr() && (cached_bn == 1 || !weights_.has_dense());
      } else {
        sparse_batch1_ = tuned_choice(cache, tune_key, 1);
        sparse_batched_ = tuned_choice(cache, tune_key, kTuneBatch);
      }
      // drop the representation no regime uses
      if (!sparse_batch1_ && !sparse_batched_ && weights_.has_dense()) {
        weights_.drop_csr();
      } else if (sparse_batch1_ && sparse_batched_ && weights_.has_csr()) {
        weights_.drop_dense();
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
    const int64_t batch = batch_of(inputs[0]);
    if (batch <= 1) return 0;
    return sizeof(float) * static_cast<size_t>(batch * (cols_ + rows_)) + 128;
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const int64_t batch = batch_of(inputs[0].shape);
    float* y = outputs[0].f32();
    if (rows_ == 0 || batch == 0) return;
    if (cols_ == 0) {  // empty reduction: bias only
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t r = 0; r < rows_; ++r) y[b * rows_ + r] = bias_ ? bias_[r] : 0.0f;
        apply_activation(act_, y + b * rows_, rows_);
      }
      return;
    }
    compute_all(ctx, inputs[0].f32(), batch, y, static_cast<float*>(ctx.scratch()));
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    const int64_t batch = batch_of(inputs[0]);
    const bool sparse = use_sparse(batch);
    weights_.describe(sparse, info);
    info->flops = 2 * (sparse ? weights_.nnz() : rows_ * cols_) * batch;
    info->dense_flops = 2 * rows_ * cols_ * batch;
    if (rows_ * cols_ == 0) {
      info->kernel = "bias_only";
      return;
    }
    info->kernel = std::string(sparse ? weights_.spmm().name : weights_.gemm().name) + weights_.storage_note(sparse);
  }

  bool accepts_sparse_constant(size_t input) const override { return input == 1; }

 private:
  // Rows of X: the product of every dim but the last (which is cols_).
  static int64_t batch_of(const Shape& x) {
    int64_t b = 1;
    for (size_t i = 0; i + 1 < x.size(); ++i) b *= x[i];
    return b;
  }
  bool use_sparse(int64_t batch) const { return batch <= 1 ? sparse_batch1_ : sparse_batched_; }

  // The cached choice for `batch` when the cache has one, else timed (and recorded).
  bool tuned_choice(TuneCache* cache, const std::string& key, int64_t batch) const {
    if (cache == nullptr) return time_sparse_vs_dense(batch);
    const std::string k = key + " batch " + std::to_string(batch);
    const int cached = cache->lookup(k);
    if (cached >= 0) return cached == 1;
    const bool sparse = time_sparse_vs_dense(batch);
    cache->record(k, sparse);
    return sparse;
  }

  // Times both kernels (single thread) on a random batch; true if sparse wins.
  bool time_sparse_vs_dense(int64_t batch) const {
    std::mt19937 gen(12345);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(cols_ * batch)), y(static_cast<size_t>(rows_ * batch));
    for (auto& v : x) v = dist(gen);
    auto time_one = [&](bool sparse) {
      return best_time([&] {
        if (sparse)
          weights_.spmm().fn(weights_.csr(), 0, rows_, x.data(), batch, batch, bias_, y.data(), batch);
        else
          weights_.gemm().fn(weights_.packed(), 0, rows_, x.data(), batch, batch, bias_, y.data(), batch);
      });
    };
    return time_one(true) <= time_one(false);
  }

  void compute(bool sparse, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n, float* y,
               int64_t ldy) const {
    if (sparse) {
      weights_.spmm().fn(weights_.csr(), r0, r1, x, ldx, n, bias_, y, ldy);
    } else {
      weights_.gemm().fn(weights_.packed(), r0, r1, x, ldx, n, bias_, y, ldy);
    }
  }

  void compute_all(const RunContext& ctx, const float* x, int64_t batch, float* y, float* scratch) const {
    const bool sparse = use_sparse(batch);
    const int64_t work = (sparse ? weights_.nnz() : rows_ * cols_) * batch;
    const int64_t tasks = partition_task_count(ctx.threads(), work, rows_);
    const std::vector<int64_t> bounds = sparse ? weights_.partition_sparse(0, rows_, tasks)
                                               : partition_rows(rows_, tasks, weights_.packed().row_block);
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
      transpose_block(x + k0, cols_, xt + k0 * batch, batch, batch, k1 - k0);
    });
    ctx.parallel_for(n_tasks, [&](int64_t t) {
      const int64_t r0 = bounds[t], r1 = bounds[t + 1];
      if (r0 == r1) return;
      compute(sparse, r0, r1, xt, batch, batch, yt, batch);
      // The activation and the transpose back in chunks of rows that stay in
      // L1 between the two (a task's Y^T can exceed L2: 3072 x 128 is 1.5 MB).
      const int64_t chunk = std::max<int64_t>(4, (8192 / std::max<int64_t>(batch, 1)) & ~int64_t{3});
      for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = std::min(r1, c0 + chunk);
        apply_activation(act_, yt + c0 * batch, (c1 - c0) * batch);
        transpose_block(yt + c0 * batch, batch, y + c0, rows_, c1 - c0, batch);
      }
    });
  }

  LayerWeights weights_;
  int64_t rows_, cols_;
  const float* bias_;
  Activation act_;
  bool sparse_batch1_ = false;
  bool sparse_batched_ = false;
};

}  // namespace

std::unique_ptr<Op> create_linear(const NodeContext& ctx) {
  ctx.check_input_count(2, 3);
  ctx.check_output_count(1);
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
  return std::make_unique<LinearOp>(ctx, w, bias);
}

}  // namespace ops
}  // namespace sparsert
