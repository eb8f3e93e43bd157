// BatchNorm (inference): Y[n, c, ...] = (X - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c],
// folded at load into Y = X * a[c] + b[c], then the fused activation (the
// loader's fuse_activation pass puts a following Relu etc. here: a BatchNorm
// that no convolution absorbs, as in pre-activation blocks, is one pass over
// the data instead of two). Channel axis 1, any rank >= 2.
#include <cmath>

#include "kernels/multiversion.h"
#include "ops/activation.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {
namespace {

// y = x * a + b over one plane, multiversioned (kernels/multiversion.h: the
// AVX2 / AVX-512 variants may fuse it into an FMA).
SPARSERT_MULTIVERSION void affine_row(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
}

class BatchNormOp final : public Op {
 public:
  BatchNormOp(std::vector<float> a, std::vector<float> b, Activation act)
      : a_(std::move(a)), b_(std::move(b)), act_(act) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.size() < 2 || x[1] != static_cast<int64_t>(a_.size()))
      shape_error("input X " + shape_string(x) + " must have rank >= 2 and " +
                  std::to_string(a_.size()) + " channels on axis 1");
    return {x};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& s = inputs[0].shape;
    const int64_t channels = s[1];
    const int64_t planes = s[0] * channels;
    if (planes == 0) return;
    const int64_t inner = shape_elements(s) / planes;
    const int64_t tasks = partition_task_count(ctx.threads(), planes * inner / 4, planes);
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    ctx.parallel_for(tasks, [&](int64_t t) {
      for (int64_t p = planes * t / tasks; p < planes * (t + 1) / tasks; ++p) {
        const float a = a_[p % channels], b = b_[p % channels];
        const float* xp = x + p * inner;
        float* yp = y + p * inner;
        affine_row(xp, yp, inner, a, b);
        apply_activation(act_, yp, inner);
      }
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "batchnorm_affine";
  }

 private:
  std::vector<float> a_, b_;
  Activation act_;
};

}  // namespace

std::unique_ptr<Op> create_batch_normalization(const NodeContext& ctx) {
  ctx.check_input_count(5, 5);
  ctx.check_output_count(1);
  const char* names[4] = {"scale", "bias", "mean", "var"};
  const float* p[4];
  int64_t channels = -1;
  for (int i = 0; i < 4; ++i) {
    const format::TensorInfo& t = ctx.require_constant(static_cast<size_t>(i + 1), names[i]);
    if (t.storage != format::Storage::kDense || t.dims.size() != 1)
      ctx.fail(std::string(names[i]) + " '" + t.name + "' must be a dense 1-D constant, got " +
               shape_string(t.dims));
    if (channels >= 0 && t.elements != channels)
      ctx.fail(std::string(names[i]) + " '" + t.name + "' has " + std::to_string(t.elements) +
               " elements, expected " + std::to_string(channels) + " like scale");
    channels = t.elements;
    p[i] = static_cast<const float*>(t.data);
  }
  const double eps = ctx.attr_float("epsilon", 1e-5, 0.0, 1e10);
  std::vector<float> a(static_cast<size_t>(channels)), b(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const double var = p[3][c];
    if (!(var + eps > 0.0))
      ctx.fail("var[" + std::to_string(c) + "] + epsilon must be > 0, got " +
               std::to_string(var + eps));
    const double inv = 1.0 / std::sqrt(var + eps);
    a[c] = static_cast<float>(p[0][c] * inv);
    b[c] = static_cast<float>(p[1][c] - p[2][c] * p[0][c] * inv);
  }
  return std::make_unique<BatchNormOp>(std::move(a), std::move(b), parse_fused_activation(ctx));
}

}  // namespace ops
}  // namespace sparsert
