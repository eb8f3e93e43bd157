// Flatten and Reshape: the output is the input's bytes under a new shape, so
// the planner aliases the buffers and run() (a copy) is only used when it
// cannot (e.g. the result is a graph output).
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

class ReshapeOp final : public Op {
 public:
  // flatten_axis >= -rank..rank for Flatten; shape for Reshape.
  ReshapeOp(bool is_flatten, int64_t axis, std::vector<int64_t> shape)
      : is_flatten_(is_flatten), axis_(axis), shape_(std::move(shape)) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& in = inputs[0];
    const int64_t rank = static_cast<int64_t>(in.size());
    if (is_flatten_) {
      int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
      if (axis < 0 || axis > rank)
        shape_error("Flatten axis " + std::to_string(axis_) + " out of range for rank " +
                    std::to_string(rank));
      int64_t a = 1, b = 1;
      for (int64_t i = 0; i < axis; ++i) a *= in[i];
      for (int64_t i = axis; i < rank; ++i) b *= in[i];
      return {{a, b}};
    }
    Shape out(shape_.size());
    int64_t known = 1, infer_at = -1;
    for (size_t i = 0; i < shape_.size(); ++i) {
      int64_t d = shape_[i];
      if (d == 0) {
        if (static_cast<int64_t>(i) >= rank)
          shape_error("Reshape target " + shape_string(shape_) + ": 0 at position " + std::to_string(i) +
                      " copies an input dim that does not exist (input " + shape_string(in) + ")");
        d = in[i];
      }
      if (d == -1) {
        infer_at = static_cast<int64_t>(i);
        out[i] = -1;
        continue;
      }
      out[i] = d;
      if (__builtin_mul_overflow(known, d, &known))  // can never match the input's size
        shape_error("cannot reshape " + shape_string(in) + " to " + shape_string(shape_) +
                    ": the target's size overflows");
    }
    const int64_t total = shape_elements(in);
    if (infer_at >= 0) {
      if (known == 0 || total % known != 0)
        shape_error("cannot reshape " + shape_string(in) + " to " + shape_string(shape_));
      out[infer_at] = total / known;
    } else if (known != total) {
      shape_error("cannot reshape " + shape_string(in) + " (" + std::to_string(total) + " elements) to " +
                  shape_string(shape_));
    }
    return {out};
  }

  void run(const RunContext&, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    if (outputs[0].data != inputs[0].data)
      std::memcpy(outputs[0].data, inputs[0].data, sizeof(float) * shape_elements(inputs[0].shape));
  }

  int alias_of_input() const override { return 0; }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "view";
  }

 private:
  bool is_flatten_;
  int64_t axis_;
  std::vector<int64_t> shape_;
};

}  // namespace

std::unique_ptr<Op> create_flatten(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  return std::make_unique<ReshapeOp>(true, ctx.attr_int("axis", 1), std::vector<int64_t>{});
}

std::unique_ptr<Op> create_reshape(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  if (!ctx.has_attr("shape")) ctx.fail("attribute 'shape' (INTS) is required");
  std::vector<int64_t> shape = ctx.attr_ints("shape", {});
  int minus_ones = 0;
  for (int64_t d : shape) {
    if (d < -1) ctx.fail("attribute 'shape' has a negative dim other than -1");
    minus_ones += d == -1;
  }
  if (minus_ones > 1) ctx.fail("attribute 'shape' has more than one -1");
  return std::make_unique<ReshapeOp>(false, 0, shape);
}

}  // namespace ops
}  // namespace sparsert
