// The element-wise activation ops (every entry of activations.inc with an op
// type): one Op class over apply_activation(); the registry maps each op type
// of the list to create_unary().
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
    const float* in = inputs[0].f32();
    float* out = outputs[0].f32();
    constexpr int64_t kChunk = 16384;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    ctx.parallel_for(chunks, [&](int64_t c) {
      const int64_t begin = c * kChunk;
      apply_activation(act_, in + begin, out + begin, std::min(kChunk, n - begin));
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = std::string("eltwise_") + act_.name();
  }

 private:
  Activation act_;
};

}  // namespace

std::unique_ptr<Op> create_unary(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  Activation act;
  if (!activation_from_op(ctx, &act)) ctx.fail("not an activation op", ErrorCode::kInternal);
  return std::make_unique<UnaryOp>(act);
}

}  // namespace ops
}  // namespace sparsert
