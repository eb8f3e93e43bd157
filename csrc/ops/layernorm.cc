// LayerNorm: as torch.nn.functional.layer_norm over dims axis..end,
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta   (biased variance)
// with optional gamma / beta constants of the normalized shape. Statistics
// are accumulated in double, one row per normalized slice (the eltwise
// layernorm row kernel of the best ISA); tasks take rows.
#include <algorithm>
#include <cmath>

#include "kernels/eltwise/eltwise.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

class LayerNormOp final : public Op {
 public:
  LayerNormOp(int64_t axis, double epsilon, const format::TensorInfo* gamma,
              const format::TensorInfo* beta, kernels::Isa isa)
      : axis_(axis), epsilon_(epsilon), gamma_(gamma), beta_(beta), eltwise_(&kernels::eltwise_kernel(isa)) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    const int64_t axis = normalized_axis(x.size());
    const Shape normalized(x.begin() + axis, x.end());
    for (const format::TensorInfo* t : {gamma_, beta_}) {
      if (t == nullptr) continue;
      const bool flat = t->dims.size() == 1 && t->dims[0] == shape_elements(normalized);
      if (t->dims != normalized && !flat)
        shape_error("'" + t->name + "' has shape " + shape_string(t->dims) +
                    " but the normalized shape is " + shape_string(normalized));
    }
    return {x};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t axis = normalized_axis(xs.size());
    int64_t n = 1;
    for (size_t d = axis; d < xs.size(); ++d) n *= xs[d];
    const int64_t rows = n == 0 ? 0 : shape_elements(xs) / n;
    if (rows == 0) return;
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    const float* gamma = gamma_ ? static_cast<const float*>(gamma_->data) : nullptr;
    const float* beta = beta_ ? static_cast<const float*>(beta_->data) : nullptr;
    const kernels::LayerNormRowFn row = eltwise_->layernorm_row;
    const double epsilon = epsilon_;
    const int64_t per_task = std::max<int64_t>(1, 16384 / n);
    ctx.parallel_for((rows + per_task - 1) / per_task, [&](int64_t t) {
      const int64_t r1 = std::min(rows, (t + 1) * per_task);
      for (int64_t r = t * per_task; r < r1; ++r) {
        row(x + r * n, y + r * n, n, gamma, beta, epsilon);
      }
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    info->kernel = eltwise_->layernorm_name;
    info->flops = 8 * shape_elements(inputs[0]);
    info->dense_flops = info->flops;
  }

 private:
  int64_t normalized_axis(size_t rank) const {
    return normalize_axis(axis_, static_cast<int64_t>(rank), "LayerNormalization axis");
  }

  int64_t axis_;
  double epsilon_;
  const format::TensorInfo* gamma_;
  const format::TensorInfo* beta_;
  const kernels::EltwiseKernel* eltwise_;
};

}  // namespace

std::unique_ptr<Op> create_layer_normalization(const NodeContext& ctx) {
  ctx.check_input_count(1, 3);
  ctx.check_output_count(1);
  const format::TensorInfo* params[2] = {nullptr, nullptr};
  const char* names[2] = {"gamma", "beta"};
  for (int i = 0; i < 2; ++i) {
    if (!ctx.has_input(1 + i)) continue;
    params[i] = &ctx.require_constant(1 + i, names[i]);
    if (params[i]->storage != format::Storage::kDense)
      ctx.fail(std::string(names[i]) + " '" + params[i]->name + "' must be stored dense");
  }
  const double epsilon = ctx.attr_float("epsilon", 1e-5, 0.0, 1e10);
  return std::make_unique<LayerNormOp>(ctx.attr_axis("axis", -1), epsilon, params[0], params[1], ctx.isa());
}

}  // namespace ops
}  // namespace sparsert
