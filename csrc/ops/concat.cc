// Concat and Split along one axis. Both are copies of contiguous blocks: with
// outer = product of the dims before the axis, every (outer index, input)
// pair is one memcpy of dim(axis) * inner floats.
#include <algorithm>
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

int64_t normalize_axis(int64_t axis, size_t rank, const char* op) {
  const int64_t r = static_cast<int64_t>(rank);
  const int64_t a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r)
    shape_error(std::string(op) + " axis " + std::to_string(axis) + " is out of range for rank " +
                std::to_string(rank));
  return a;
}

// Copies `blocks` blocks of `count` floats; block b goes from src + b*src_stride to
// dst + b*dst_stride. Split into tasks of about 16K floats.
void copy_blocks(const RunContext& ctx, const float* src, int64_t src_stride, float* dst,
                 int64_t dst_stride, int64_t blocks, int64_t count) {
  if (blocks == 0 || count == 0) return;
  const int64_t per_task = std::max<int64_t>(1, 16384 / count);
  const int64_t tasks = (blocks + per_task - 1) / per_task;
  ctx.parallel_for(tasks, [&](int64_t t) {
    const int64_t b1 = std::min(blocks, (t + 1) * per_task);
    for (int64_t b = t * per_task; b < b1; ++b)
      std::memcpy(dst + b * dst_stride, src + b * src_stride, sizeof(float) * count);
  });
}

class ConcatOp final : public Op {
 public:
  explicit ConcatOp(int64_t axis) : axis_(axis) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& first = inputs[0];
    const int64_t axis = normalize_axis(axis_, first.size(), "Concat");
    Shape out = first;
    out[axis] = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Shape& s = inputs[i];
      bool ok = s.size() == first.size();
      for (size_t d = 0; ok && d < s.size(); ++d)
        ok = static_cast<int64_t>(d) == axis || s[d] == first[d];
      if (!ok)
        shape_error("input " + std::to_string(i) + " has shape " + shape_string(s) +
                    ", which does not match input 0 " + shape_string(first) + " outside axis " +
                    std::to_string(axis));
      out[axis] += s[axis];
    }
    return {out};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& os = outputs[0].shape;
    const int64_t axis = normalize_axis(axis_, os.size(), "Concat");
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= os[d];
    for (size_t d = axis + 1; d < os.size(); ++d) inner *= os[d];
    const int64_t out_row = os[axis] * inner;
    int64_t offset = 0;
    for (const InputRef& in : inputs) {
      const int64_t row = in.shape[axis] * inner;
      copy_blocks(ctx, in.data, row, outputs[0].data + offset, out_row, outer, row);
      offset += row;
    }
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&,
                NodeInfo* info) const override {
    info->kernel = "concat_copy";
  }

 private:
  int64_t axis_;
};

class SplitOp final : public Op {
 public:
  // sizes empty: split into `parts` equal parts.
  SplitOp(int64_t axis, std::vector<int64_t> sizes, size_t parts)
      : axis_(axis), sizes_(std::move(sizes)), parts_(parts) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    const int64_t axis = normalize_axis(axis_, x.size(), "Split");
    const std::vector<int64_t> sizes = split_sizes(x[axis]);
    std::vector<Shape> out;
    for (int64_t s : sizes) {
      Shape y = x;
      y[axis] = s;
      out.push_back(y);
    }
    return out;
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t axis = normalize_axis(axis_, xs.size(), "Split");
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= xs[d];
    for (size_t d = axis + 1; d < xs.size(); ++d) inner *= xs[d];
    const int64_t in_row = xs[axis] * inner;
    int64_t offset = 0;
    for (const OutputRef& out : outputs) {
      const int64_t row = out.shape[axis] * inner;
      copy_blocks(ctx, inputs[0].data + offset, in_row, out.data, row, outer, row);
      offset += row;
    }
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&,
                NodeInfo* info) const override {
    info->kernel = "split_copy";
  }

 private:
  std::vector<int64_t> split_sizes(int64_t dim) const {
    if (sizes_.empty()) {
      if (dim % static_cast<int64_t>(parts_) != 0)
        shape_error("Split: dim " + std::to_string(dim) + " does not divide into " +
                    std::to_string(parts_) + " equal parts (give 'split' sizes)");
      return std::vector<int64_t>(parts_, dim / static_cast<int64_t>(parts_));
    }
    int64_t total = 0;
    bool overflow = false;  // sizes are >= 0 (checked at load), so an overflowing sum never matches
    for (int64_t s : sizes_) overflow |= __builtin_add_overflow(total, s, &total);
    if (overflow || total != dim)
      shape_error("Split sizes " + shape_string(sizes_) + " sum to " + std::to_string(total) +
                  " but the split axis has size " + std::to_string(dim));
    return sizes_;
  }

  int64_t axis_;
  std::vector<int64_t> sizes_;
  size_t parts_;
};

}  // namespace

std::unique_ptr<Op> create_concat(const NodeContext& ctx) {
  ctx.check_input_count(1, 1u << 20);
  ctx.check_output_count(1);
  if (!ctx.has_attr("axis")) ctx.fail("attribute 'axis' (INT) is required");
  for (size_t i = 0; i < ctx.input_count(); ++i) {
    if (!ctx.has_input(i)) ctx.fail("input " + std::to_string(i) + " is absent");
    const format::TensorInfo* c = ctx.constant(i);
    if (c != nullptr && (c->storage != format::Storage::kDense || c->dtype != DType::kFloat32))
      ctx.fail("constant input '" + c->name + "' must be dense float32");
  }
  return std::make_unique<ConcatOp>(ctx.attr_int("axis", 0));
}

std::unique_ptr<Op> create_split(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  const size_t parts = ctx.node().outputs.size();
  if (parts < 1) ctx.fail("expects at least one output");
  if (ctx.constant(0) != nullptr) ctx.fail("input must be an activation, not a constant");
  std::vector<int64_t> sizes = ctx.attr_ints("split", {});
  if (ctx.has_attr("split")) {
    if (sizes.size() != parts)
      ctx.fail("attribute 'split' has " + std::to_string(sizes.size()) +
               " sizes but the node has " + std::to_string(parts) + " outputs");
    for (int64_t s : sizes)
      if (s < 0) ctx.fail("attribute 'split' has a negative size: " + shape_string(sizes));
  }
  return std::make_unique<SplitOp>(ctx.attr_int("axis", 0), sizes, parts);
}

}  // namespace ops
}  // namespace sparsert
