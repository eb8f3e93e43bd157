// InstanceNormalization and LRN (local response normalization across
// channels) over [N, C, spatial...] float32 activations, statistics in double.
#include <algorithm>
#include <cmath>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

class InstanceNormOp final : public Op {
 public:
  InstanceNormOp(const float* scale, const float* bias, int64_t channels, double epsilon)
      : scale_(scale), bias_(bias), channels_(channels), epsilon_(epsilon) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.size() < 3 || x[1] != channels_)
      shape_error("input must be [N, " + std::to_string(channels_) + ", spatial...], got " + shape_string(x));
    return {x};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t planes = xs[0] * xs[1];
    if (planes == 0) return;
    const int64_t n = shape_elements(xs) / planes;
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    ctx.parallel_for(planes, [&](int64_t p) {
      const float* xp = x + p * n;
      float* yp = y + p * n;
      double sum = 0.0, sq = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += xp[i];
      const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
      for (int64_t i = 0; i < n; ++i) sq += (xp[i] - mean) * (xp[i] - mean);
      const double inv = 1.0 / std::sqrt(sq / static_cast<double>(std::max<int64_t>(n, 1)) + epsilon_);
      const int64_t c = p % channels_;
      const float a = static_cast<float>(scale_[c] * inv);
      const float b = static_cast<float>(bias_[c] - mean * scale_[c] * inv);
      for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] * a + b;
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "instance_norm_ref";
    info->flops = 4 * shape_elements(inputs[0]);
    info->dense_flops = info->flops;
  }

 private:
  const float* scale_;
  const float* bias_;
  int64_t channels_;
  double epsilon_;
};

class LrnOp final : public Op {
 public:
  LrnOp(int64_t size, double alpha, double beta, double bias) : size_(size), alpha_(alpha), beta_(beta), bias_(bias) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    if (inputs[0].size() < 3) shape_error("input must be [N, C, spatial...], got " + shape_string(inputs[0]));
    return {inputs[0]};
  }

  // y = x / (bias + alpha / size * sum over the `size` channels around c of x^2) ^ beta
  void run(const RunContext& ctx, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t batch = xs[0], channels = xs[1];
    if (batch * channels == 0) return;
    const int64_t plane = shape_elements(xs) / (batch * channels);
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    const int64_t before = (size_ - 1) / 2, after = size_ / 2;  // ONNX: floor((size-1)/2), ceil((size-1)/2)
    ctx.parallel_for(batch * channels, [&](int64_t t) {
      const int64_t b = t / channels, c = t % channels;
      const int64_t c0 = std::max<int64_t>(0, c - before), c1 = std::min(channels - 1, c + after);
      const float* xc = x + (b * channels + c) * plane;
      float* yc = y + (b * channels + c) * plane;
      for (int64_t i = 0; i < plane; ++i) {
        double sq = 0.0;
        for (int64_t k = c0; k <= c1; ++k) {
          const double v = x[(b * channels + k) * plane + i];
          sq += v * v;
        }
        yc[i] = static_cast<float>(xc[i] / std::pow(bias_ + alpha_ / static_cast<double>(size_) * sq, beta_));
      }
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "lrn_ref";
  }

 private:
  int64_t size_;
  double alpha_, beta_, bias_;
};

}  // namespace

std::unique_ptr<Op> create_instance_normalization(const NodeContext& ctx) {
  ctx.check_input_count(3, 3);
  ctx.check_output_count(1);
  const format::TensorInfo& scale = ctx.require_constant(1, "scale");
  const format::TensorInfo& bias = ctx.require_constant(2, "B");
  if (scale.dims.size() != 1 || bias.dims != scale.dims)
    ctx.fail("scale and B must be 1-D constants of the same length");
  return std::make_unique<InstanceNormOp>(static_cast<const float*>(scale.data), static_cast<const float*>(bias.data),
                                          scale.dims[0], ctx.attr_float("epsilon", 1e-5, 0.0, 1e10));
}

std::unique_ptr<Op> create_lrn(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  if (!ctx.has_attr("size")) ctx.fail("attribute 'size' is required");
  return std::make_unique<LrnOp>(ctx.attr_int("size", 1, 1, 4096), ctx.attr_float("alpha", 1e-4, -1e10, 1e10),
                                 ctx.attr_float("beta", 0.75, -1e10, 1e10), ctx.attr_float("bias", 1.0, -1e10, 1e10));
}

}  // namespace ops
}  // namespace sparsert
