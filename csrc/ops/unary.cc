// Element-wise activation ops: ReLU, ReLU6, Clip, LeakyReLU, Sigmoid,
// HardSigmoid, HardSwish, SiLU, Tanh, GELU. All share one Op class over
// apply_activation(); each type only maps its attributes.
#include <algorithm>

#include "ops/activation.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

class UnaryOp final : public Op {
 public:
  explicit UnaryOp(Activation act) : act_(act) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    return {inputs[0]};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const int64_t n = shape_elements(inputs[0].shape);
    const float* in = inputs[0].data;
    float* out = outputs[0].data;
    constexpr int64_t kChunk = 16384;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    ctx.parallel_for(chunks, [&](int64_t c) {
      const int64_t begin = c * kChunk;
      apply_activation(act_, in + begin, out + begin, std::min(kChunk, n - begin));
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    info->kernel = std::string("eltwise_") + act_.name();
  }

 private:
  Activation act_;
};

std::unique_ptr<Op> make_unary(const NodeContext& ctx, const std::string& name,
                               std::vector<double> params) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  if (ctx.constant(0) != nullptr) ctx.fail("input must be an activation, not a constant");
  Activation act;
  std::string error;
  if (!activation_from_name(name, params, &act, &error)) ctx.fail(error);
  return std::make_unique<UnaryOp>(act);
}

}  // namespace

std::unique_ptr<Op> create_relu(const NodeContext& ctx) { return make_unary(ctx, "relu", {}); }
std::unique_ptr<Op> create_relu6(const NodeContext& ctx) { return make_unary(ctx, "relu6", {}); }
std::unique_ptr<Op> create_clip(const NodeContext& ctx) {
  return make_unary(ctx, "clip",
                    {ctx.attr_float("min", -3.4028234663852886e38), ctx.attr_float("max", 3.4028234663852886e38)});
}
std::unique_ptr<Op> create_leaky_relu(const NodeContext& ctx) {
  return make_unary(ctx, "leaky_relu", {ctx.attr_float("alpha", 0.01)});
}
std::unique_ptr<Op> create_sigmoid(const NodeContext& ctx) { return make_unary(ctx, "sigmoid", {}); }
std::unique_ptr<Op> create_hard_sigmoid(const NodeContext& ctx) {
  return make_unary(ctx, "hardsigmoid", {ctx.attr_float("alpha", 0.2), ctx.attr_float("beta", 0.5)});
}
std::unique_ptr<Op> create_hard_swish(const NodeContext& ctx) { return make_unary(ctx, "hardswish", {}); }
std::unique_ptr<Op> create_silu(const NodeContext& ctx) { return make_unary(ctx, "silu", {}); }
std::unique_ptr<Op> create_tanh(const NodeContext& ctx) { return make_unary(ctx, "tanh", {}); }
std::unique_ptr<Op> create_gelu(const NodeContext& ctx) {
  std::string approximate = ctx.attr_string("approximate", "none");
  if (approximate != "none" && approximate != "tanh")
    ctx.fail("attribute 'approximate' must be 'none' or 'tanh', got '" + approximate + "'");
  return make_unary(ctx, approximate == "tanh" ? "gelu_tanh" : "gelu", {});
}

}  // namespace ops
}  // namespace sparsert
