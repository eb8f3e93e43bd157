// Linear: Y[..., M] = act(X[..., K] W^T + B), W dense or CSR.
//
// Kernels compute feature-major Y^T = W X^T (kernels.h), so for a batch of
// B > 1 rows the input is transposed into scratch (K x B), the kernel writes
// Y^T (M x B) and each task transposes its own rows back into Y. With B == 1
// the kernel reads X and writes Y directly (SpMV / GEMV).
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {
namespace {

class LinearOp final : public Op {
 public:
  LinearOp(const format::TensorInfo& w, const float* bias, Activation act)
      : rows_(w.dims[0]), cols_(w.dims[1]), bias_(bias), act_(act), weight_(w) {
    if (w.storage == format::Storage::kCsr) {
      csr_.rows = w.rows;
      csr_.cols = w.cols;
      csr_.row_ptr = w.row_ptr;
      csr_.col_idx16 = w.col_idx16;
      csr_.col_idx32 = w.col_idx32;
      csr_.values = w.values;
      spmm_ = &kernels::spmm_best();
      nnz_ = static_cast<int64_t>(w.nnz);
    } else {
      gemm_ = &kernels::gemm_best();
      gemm_->pack(static_cast<const float*>(w.data), rows_, cols_, cols_, &packed_);
      nnz_ = rows_ * cols_;
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
    const int64_t batch = shape_elements(inputs[0]) / std::max<int64_t>(cols_, 1);
    if (batch <= 1) return 0;
    return sizeof(float) * static_cast<size_t>(batch * (cols_ + rows_)) + 128;
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const int64_t batch = cols_ == 0 ? shape_elements(inputs[0].shape)
                                     : shape_elements(inputs[0].shape) / cols_;
    const float* x = inputs[0].data;
    float* y = outputs[0].data;
    if (batch == 0 || rows_ == 0) return;
    const int64_t work = nnz_ * batch;
    const std::vector<int64_t> bounds = row_partition(ctx.threads(), work);
    if (batch == 1) {
      ctx.parallel_for(static_cast<int64_t>(bounds.size()) - 1, [&](int64_t t) {
        const int64_t r0 = bounds[t], r1 = bounds[t + 1];
        if (r0 == r1) return;
        compute(r0, r1, x, 1, 1, y, 1);
        apply_activation(act_, y + r0, r1 - r0);
      });
      return;
    }
    float* xt = static_cast<float*>(ctx.scratch());
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
    ctx.parallel_for(static_cast<int64_t>(bounds.size()) - 1, [&](int64_t t) {
      const int64_t r0 = bounds[t], r1 = bounds[t + 1];
      if (r0 == r1) return;
      compute(r0, r1, xt, batch, batch, yt, batch);
      apply_activation(act_, yt + r0 * batch, (r1 - r0) * batch);
      for (int64_t b = 0; b < batch; ++b) {
        float* dst = y + b * rows_;
        for (int64_t r = r0; r < r1; ++r) dst[r] = yt[r * batch + b];
      }
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    const int64_t batch = cols_ == 0 ? 0 : shape_elements(inputs[0]) / cols_;
    info->weight_storage = spmm_ ? "csr" : "dense";
    info->weight_shape = {rows_, cols_};
    info->weight_elements = rows_ * cols_;
    info->weight_nnz = nnz_;
    info->weight_bytes = static_cast<int64_t>(weight_.stored_bytes());
    info->flops = 2 * nnz_ * batch;
    info->dense_flops = 2 * rows_ * cols_ * batch;
    info->kernel = spmm_ ? spmm_->name : gemm_->name;
  }

 private:
  // Rows [r0, r1) of Y^T = W X^T (+ bias).
  void compute(int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n, float* y,
               int64_t ldy) const {
    if (spmm_) {
      spmm_->fn(csr_, r0, r1, x, ldx, n, bias_, y, ldy);
    } else {
      gemm_->fn(packed_, r0, r1, x, ldx, n, bias_, y, ldy);
    }
  }

  // Row boundaries for the tasks: balanced by nonzeros for CSR, multiples of
  // the packed row block for dense.
  std::vector<int64_t> row_partition(int threads, int64_t work) const {
    const int64_t tasks = partition_task_count(threads, work, rows_);
    if (spmm_) return partition_csr_rows(csr_.row_ptr, rows_, tasks);
    return partition_rows(rows_, tasks, packed_.row_block);
  }

  int64_t rows_, cols_;
  const float* bias_;
  Activation act_;
  const format::TensorInfo& weight_;
  int64_t nnz_ = 0;
  kernels::CsrMatrix csr_;
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
  return std::make_unique<LinearOp>(w, bias, parse_fused_activation(ctx));
}

}  // namespace ops
}  // namespace sparsert
