// Softmax along one axis, numerically stable (subtract the max). The last
// axis (contiguous rows) runs on the eltwise softmax row kernel of the best
// ISA; other axes use the strided scalar loop.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/eltwise/eltwise.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

class SoftmaxOp final : public Op {
 public:
  SoftmaxOp(int64_t axis, bool log, kernels::Isa isa)
      : axis_(axis), log_(log), eltwise_(&kernels::eltwise_kernel(isa)) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    normalize_axis(axis_, static_cast<int64_t>(inputs[0].size()), "Softmax axis");
    return {inputs[0]};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& s = inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(s.size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= s[i];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= s[i];
    const int64_t n = s[axis];
    const float* in = inputs[0].f32();
    float* out = outputs[0].f32();
    if (outer * inner * n == 0) return;
    if (inner == 1 && !log_) {
      const kernels::SoftmaxRowFn row = eltwise_->softmax_row;
      const int64_t per_task = std::max<int64_t>(1, 16384 / n);
      ctx.parallel_for((outer + per_task - 1) / per_task, [&](int64_t t) {
        const int64_t r1 = std::min(outer, (t + 1) * per_task);
        for (int64_t r = t * per_task; r < r1; ++r) row(in + r * n, out + r * n, n);
      });
      return;
    }
    ctx.parallel_for(outer, [&](int64_t o) {
      for (int64_t j = 0; j < inner; ++j) {
        const float* x = in + o * n * inner + j;
        float* y = out + o * n * inner + j;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i * inner]);
        if (std::isinf(m) && m < 0) m = 0.0f;  // all -inf: yields NaN like the references
        double sum = 0.0;
        if (log_) {
          for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i * inner] - m));
          const float shift = static_cast<float>(m + std::log(sum));
          for (int64_t i = 0; i < n; ++i) y[i * inner] = x[i * inner] - shift;
          continue;
        }
        for (int64_t i = 0; i < n; ++i) {
          float e = std::exp(x[i * inner] - m);
          y[i * inner] = e;
          sum += e;
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t i = 0; i < n; ++i) y[i * inner] *= inv;
      }
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    const int64_t rank = static_cast<int64_t>(inputs[0].size());
    const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
    info->kernel = log_ ? "log_softmax_ref" : axis == rank - 1 ? eltwise_->softmax_name : "softmax_strided_ref";
  }

 private:
  int64_t axis_;
  bool log_;
  const kernels::EltwiseKernel* eltwise_;
};

}  // namespace

std::unique_ptr<Op> create_softmax(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  return std::make_unique<SoftmaxOp>(ctx.attr_axis("axis", -1), false, ctx.isa());
}

std::unique_ptr<Op> create_log_softmax(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  return std::make_unique<SoftmaxOp>(ctx.attr_axis("axis", -1), true, ctx.isa());
}

}  // namespace ops
}  // namespace sparsert
