// ReduceMean over a set of axes (ONNX ReduceMean with `axes` as an attribute;
// absent axes = all). Adjacent reduced dims, and adjacent kept dims, are
// merged; each output element then sums its reduced sub-tensor with an
// odometer over the reduced dims, accumulating in double.
#include <algorithm>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

class ReduceMeanOp final : public Op {
 public:
  ReduceMeanOp(std::vector<int64_t> axes, bool keepdims)
      : axes_(std::move(axes)), keepdims_(keepdims) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    const std::vector<bool> reduced = reduced_mask(x.size());
    Shape y;
    for (size_t d = 0; d < x.size(); ++d) {
      if (!reduced[d])
        y.push_back(x[d]);
      else if (keepdims_)
        y.push_back(1);
    }
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const std::vector<bool> reduced = reduced_mask(xs.size());
    // merged dims with their strides, split into kept and reduced lists (outer to inner)
    std::vector<int64_t> kept_dims, kept_strides, red_dims, red_strides;
    int64_t stride = 1;
    std::vector<int64_t> strides(xs.size());
    for (size_t d = xs.size(); d-- > 0;) {
      strides[d] = stride;
      stride *= xs[d];
    }
    int last = -1;  // 0 kept, 1 reduced
    for (size_t d = 0; d < xs.size(); ++d) {
      if (xs[d] == 1) continue;
      const int kind = reduced[d] ? 1 : 0;
      auto& dims = kind ? red_dims : kept_dims;
      auto& st = kind ? red_strides : kept_strides;
      if (kind == last) {
        dims.back() *= xs[d];
        st.back() = strides[d];
      } else {
        dims.push_back(xs[d]);
        st.push_back(strides[d]);
      }
      last = kind;
    }
    int64_t count = 1;
    for (size_t d = 0; d < xs.size(); ++d)
      if (reduced[d]) count *= xs[d];
    const int64_t outs = shape_elements(outputs[0].shape);
    if (outs == 0) return;
    const float* x = inputs[0].data;
    float* y = outputs[0].data;
    const double inv = 1.0 / static_cast<double>(count);  // count 0 gives NaN, as numpy and PyTorch
    if (red_dims.empty()) red_dims.push_back(1), red_strides.push_back(1);
    const size_t rr = red_dims.size();
    const int64_t inner = red_dims[rr - 1], inner_stride = red_strides[rr - 1];
    const int64_t red_outer = count == 0 ? 0 : count / inner;
    const int64_t per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, count));
    ctx.parallel_for((outs + per_task - 1) / per_task, [&](int64_t t) {
      const int64_t o1 = std::min(outs, (t + 1) * per_task);
      std::vector<int64_t> idx(rr);
      for (int64_t o = t * per_task; o < o1; ++o) {
        int64_t rem = o, base = 0;
        for (size_t k = kept_dims.size(); k-- > 0;) {
          base += (rem % kept_dims[k]) * kept_strides[k];
          rem /= kept_dims[k];
        }
        double sum = 0.0;
        std::fill(idx.begin(), idx.end(), 0);
        int64_t offset = base;
        for (int64_t r = 0; r < red_outer; ++r) {
          const float* p = x + offset;
          for (int64_t j = 0; j < inner; ++j) sum += p[j * inner_stride];
          for (size_t d = rr - 1; d-- > 0;) {
            offset += red_strides[d];
            if (++idx[d] < red_dims[d]) break;
            offset -= idx[d] * red_strides[d];
            idx[d] = 0;
          }
        }
        y[o] = static_cast<float>(sum * inv);
      }
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    info->kernel = "reduce_mean_ref";
    info->flops = shape_elements(inputs[0]);
    info->dense_flops = info->flops;
  }

 private:
  std::vector<bool> reduced_mask(size_t rank) const {
    std::vector<bool> mask(rank, axes_.empty());
    const int64_t r = static_cast<int64_t>(rank);
    for (int64_t a : axes_) {
      const int64_t axis = a < 0 ? a + r : a;
      if (axis < 0 || axis >= r)
        shape_error("ReduceMean axis " + std::to_string(a) + " is out of range for rank " +
                    std::to_string(rank));
      if (mask[axis])
        shape_error("ReduceMean axes " + shape_string(axes_) + " name axis " +
                    std::to_string(axis) + " twice");
      mask[axis] = true;
    }
    return mask;
  }

  std::vector<int64_t> axes_;
  bool keepdims_;
};

}  // namespace

std::unique_ptr<Op> create_reduce_mean(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  if (ctx.constant(0) != nullptr) ctx.fail("input must be an activation, not a constant");
  const int64_t keepdims = ctx.attr_int("keepdims", 1);
  if (keepdims != 0 && keepdims != 1) ctx.fail("attribute 'keepdims' must be 0 or 1");
  return std::make_unique<ReduceMeanOp>(ctx.attr_ints("axes", {}), keepdims != 0);
}

}  // namespace ops
}  // namespace sparsert
