// View ops: Flatten, Reshape, Squeeze, Unsqueeze, Identity. The output is the
// input's bytes under a new shape, so the planner aliases the buffers and
// run() (a copy) is only used when it cannot (e.g. the result is a graph
// output). Any dtype. Reshape's target comes from its `shape` attribute or
// from input 1, which must be known while planning (a constant, or computed
// from input shapes: the Shape -> Gather -> Concat chains of dynamic exports).
#include <algorithm>
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

enum class ViewKind { kFlatten, kReshape, kSqueeze, kUnsqueeze, kIdentity };

Shape reshape_target(const Shape& in, const std::vector<int64_t>& target, bool allow_zero) {
  const int64_t rank = static_cast<int64_t>(in.size());
  Shape out(target.size());
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t d = target[i];
    if (d < -1) shape_error("Reshape target " + shape_string(target) + " has a negative dim other than -1");
    if (d == 0 && !allow_zero) {
      if (static_cast<int64_t>(i) >= rank)
        shape_error("Reshape target " + shape_string(target) + ": 0 at position " + std::to_string(i) +
                    " copies an input dim that does not exist (input " + shape_string(in) + ")");
      d = in[i];
    }
    if (d == -1) {
      if (infer_at >= 0) shape_error("Reshape target " + shape_string(target) + " has more than one -1");
      infer_at = static_cast<int64_t>(i);
      out[i] = -1;
      continue;
    }
    out[i] = d;
    if (__builtin_mul_overflow(known, d, &known))  // can never match the input's size
      shape_error("cannot reshape " + shape_string(in) + " to " + shape_string(target) +
                  ": the target's size overflows");
  }
  const int64_t total = shape_elements(in);
  if (infer_at >= 0) {
    if (known == 0 || total % known != 0)
      shape_error("cannot reshape " + shape_string(in) + " to " + shape_string(target));
    out[infer_at] = total / known;
  } else if (known != total) {
    shape_error("cannot reshape " + shape_string(in) + " (" + std::to_string(total) + " elements) to " +
                shape_string(target));
  }
  return out;
}

class ViewOp final : public Op {
 public:
  ViewOp(ViewKind kind, int64_t axis, std::vector<int64_t> values, bool has_values, bool allow_zero)
      : kind_(kind), axis_(axis), values_(std::move(values)), has_values_(has_values), allow_zero_(allow_zero) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    std::vector<TensorMeta> metas;
    for (const Shape& s : inputs) metas.push_back(TensorMeta{DType::kInt64, s, nullptr});
    return infer_shapes_with_values(metas);
  }

  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    const Shape& in = inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(in.size());
    std::vector<int64_t> values = values_;
    if (!has_values_ && inputs.size() > 1 && inputs[1].present && kind_ != ViewKind::kFlatten) {
      const char* what = kind_ == ViewKind::kReshape ? "Reshape input 'shape'" : "input 'axes'";
      if (inputs[1].shape.size() > 1) shape_error(std::string(what) + " must be 1-D");
      if (shape_elements(inputs[1].shape) > static_cast<int64_t>(format::kMaxRank) * 2)
        shape_error(std::string(what) + " has too many entries");
      values = known_ints(inputs[1], what);
    }
    switch (kind_) {
      case ViewKind::kIdentity:
        return {in};
      case ViewKind::kFlatten: {
        const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
        if (axis < 0 || axis > rank)
          shape_error("Flatten axis " + std::to_string(axis_) + " out of range for rank " + std::to_string(rank));
        int64_t a = 1, b = 1;
        for (int64_t i = 0; i < axis; ++i) a *= in[i];
        for (int64_t i = axis; i < rank; ++i) b *= in[i];
        return {{a, b}};
      }
      case ViewKind::kReshape:
        return {reshape_target(in, values, allow_zero_)};
      case ViewKind::kSqueeze: {
        std::vector<bool> drop(in.size(), false);
        if (!has_values_ && (inputs.size() < 2 || !inputs[1].present)) {
          for (size_t i = 0; i < in.size(); ++i) drop[i] = in[i] == 1;
        } else {
          for (int64_t a : values) {
            const int64_t axis = normalize_axis(a, rank, "Squeeze axis");
            if (in[axis] != 1)
              shape_error("Squeeze axis " + std::to_string(a) + " has size " + std::to_string(in[axis]) +
                          ", not 1 (input " + shape_string(in) + ")");
            drop[axis] = true;
          }
        }
        Shape out;
        for (size_t i = 0; i < in.size(); ++i)
          if (!drop[i]) out.push_back(in[i]);
        return {out};
      }
      case ViewKind::kUnsqueeze: {
        const int64_t out_rank = rank + static_cast<int64_t>(values.size());
        if (out_rank > static_cast<int64_t>(format::kMaxRank))
          shape_error("Unsqueeze would give rank " + std::to_string(out_rank) + " (at most 8)");
        std::vector<bool> inserted(static_cast<size_t>(out_rank), false);
        for (int64_t a : values) {
          const int64_t axis = normalize_axis(a, out_rank, "Unsqueeze axis");
          if (inserted[axis]) shape_error("Unsqueeze axes repeat " + std::to_string(a));
          inserted[axis] = true;
        }
        Shape out;
        size_t next = 0;
        for (int64_t i = 0; i < out_rank; ++i) out.push_back(inserted[i] ? 1 : in[next++]);
        return {out};
      }
    }
    return {in};
  }

  void run(const RunContext&, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const size_t bytes = static_cast<size_t>(shape_elements(inputs[0].shape)) * dtype_size(inputs[0].dtype);
    if (outputs[0].raw != inputs[0].raw && bytes > 0) std::memcpy(outputs[0].raw, inputs[0].raw, bytes);
  }

  int alias_of_input() const override { return 0; }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "view";
  }

 private:
  ViewKind kind_;
  int64_t axis_;
  std::vector<int64_t> values_;
  bool has_values_;
  bool allow_zero_;
};

std::unique_ptr<Op> make_view(const NodeContext& ctx, ViewKind kind, const char* values_attr) {
  ctx.check_input_count(1, kind == ViewKind::kFlatten || kind == ViewKind::kIdentity ? 1 : 2);
  ctx.check_output_count(1);
  bool has_values = false;
  std::vector<int64_t> values;
  if (values_attr != nullptr && ctx.has_attr(values_attr)) {
    if (ctx.has_input(1)) ctx.fail(std::string("give '") + values_attr + "' as an attribute or as input 1, not both");
    has_values = true;
    values = ctx.attr_ints(values_attr, {}, 0, format::kMaxRank * 2, kind == ViewKind::kReshape ? -1 : -16,
                           kind == ViewKind::kReshape ? kMaxDim : 15);
  } else if (kind == ViewKind::kReshape && !ctx.has_input(1)) {
    ctx.fail("needs the target shape: attribute 'shape' (INTS) or input 1");
  }
  if (ctx.has_input(1)) ctx.require_dtype(1, values_attr, {DType::kInt64, DType::kInt32});
  if (kind == ViewKind::kUnsqueeze && !has_values && !ctx.has_input(1))
    ctx.fail("needs 'axes' (attribute or input 1)");
  const int64_t axis = kind == ViewKind::kFlatten ? ctx.attr_int("axis", 1, -8, 8) : 0;
  const bool allow_zero = kind == ViewKind::kReshape && ctx.attr_bool("allowzero", false);
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<ViewOp>(kind, axis, values, has_values, allow_zero);
}

}  // namespace

std::unique_ptr<Op> create_flatten(const NodeContext& ctx) { return make_view(ctx, ViewKind::kFlatten, nullptr); }
std::unique_ptr<Op> create_reshape(const NodeContext& ctx) { return make_view(ctx, ViewKind::kReshape, "shape"); }
std::unique_ptr<Op> create_squeeze(const NodeContext& ctx) { return make_view(ctx, ViewKind::kSqueeze, "axes"); }
std::unique_ptr<Op> create_unsqueeze(const NodeContext& ctx) {
  return make_view(ctx, ViewKind::kUnsqueeze, "axes");
}
std::unique_ptr<Op> create_identity(const NodeContext& ctx) { return make_view(ctx, ViewKind::kIdentity, nullptr); }

}  // namespace ops
}  // namespace sparsert
