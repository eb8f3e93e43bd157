// Concat and Split along one axis, for every dtype. Both are copies of
// contiguous blocks: with outer = product of the dims before the axis, every
// (outer index, input) pair is one memcpy of dim(axis) * inner elements.
#include <algorithm>
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

// Copies `blocks` blocks of `count` bytes; block b goes from src + b*src_stride to
// dst + b*dst_stride (strides in bytes). Split into tasks of about 64 KiB,
// cutting a block into pieces when it is larger: a channel concat at batch 1
// is one block per input, which one thread used to copy alone while the other
// waited (and pulled from the other core's cache the half that core wrote:
// SqueezeNet's concats ran 2.3x slower on 2 threads than on 1).
void copy_blocks(const RunContext& ctx, const char* src, int64_t src_stride, char* dst,
                 int64_t dst_stride, int64_t blocks, int64_t count) {
  if (blocks == 0 || count == 0) return;
  constexpr int64_t kTaskBytes = 65536;
  // Below 512 KiB in all the copy stays on the calling thread: a second core
  // would first have to pull what this one just wrote (SqueezeNet's 13x13
  // concats, 200 KB: 7 us on one thread, 22 us on two).
  constexpr int64_t kMinParallelBytes = 512 * 1024;
  if (blocks * count < kMinParallelBytes) {
    for (int64_t b = 0; b < blocks; ++b)
      std::memcpy(dst + b * dst_stride, src + b * src_stride, static_cast<size_t>(count));
    return;
  }
  if (count > kTaskBytes) {
    const int64_t pieces = (count + kTaskBytes - 1) / kTaskBytes;
    ctx.parallel_for(blocks * pieces, [&](int64_t t) {
      const int64_t b = t / pieces, piece = t % pieces;
      const int64_t begin = count * piece / pieces, end = count * (piece + 1) / pieces;
      std::memcpy(dst + b * dst_stride + begin, src + b * src_stride + begin, static_cast<size_t>(end - begin));
    });
    return;
  }
  const int64_t per_task = std::max<int64_t>(1, kTaskBytes / count);
  const int64_t tasks = (blocks + per_task - 1) / per_task;
  ctx.parallel_for(tasks, [&](int64_t t) {
    const int64_t b1 = std::min(blocks, (t + 1) * per_task);
    for (int64_t b = t * per_task; b < b1; ++b)
      std::memcpy(dst + b * dst_stride, src + b * src_stride, static_cast<size_t>(count));
  });
}

class ConcatOp final : public Op {
 public:
  explicit ConcatOp(int64_t axis) : axis_(axis) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& first = inputs[0];
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(first.size()), "Concat axis");
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
      out[axis] = checked_add(out[axis], s[axis], "Concat output size");
    }
    return {out};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& os = outputs[0].shape;
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(os.size()), "Concat axis");
    const int64_t esize = static_cast<int64_t>(dtype_size(outputs[0].dtype));
    int64_t outer = 1, inner = esize;
    for (int64_t d = 0; d < axis; ++d) outer *= os[d];
    for (size_t d = axis + 1; d < os.size(); ++d) inner *= os[d];
    const int64_t out_row = os[axis] * inner;
    int64_t offset = 0;
    char* out = static_cast<char*>(outputs[0].raw);
    for (const InputRef& in : inputs) {
      const int64_t row = in.shape[axis] * inner;
      copy_blocks(ctx, static_cast<const char*>(in.raw), row, out + offset, out_row, outer, row);
      offset += row;
    }
  }

  bool inputs_are_slices(const std::vector<Shape>& inputs, const Shape& output,
                         std::vector<int64_t>* offsets) const override {
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(output.size()), "Concat axis");
    for (int64_t d = 0; d < axis; ++d)
      if (output[d] != 1) return false;
    offsets->clear();
    int64_t at = 0;
    for (const Shape& in : inputs) {
      offsets->push_back(at);
      at += shape_elements(in);
    }
    return at == shape_elements(output);
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
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(x.size()), "Split axis");
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
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(xs.size()), "Split axis");
    const int64_t esize = static_cast<int64_t>(dtype_size(inputs[0].dtype));
    int64_t outer = 1, inner = esize;
    for (int64_t d = 0; d < axis; ++d) outer *= xs[d];
    for (size_t d = axis + 1; d < xs.size(); ++d) inner *= xs[d];
    const int64_t in_row = xs[axis] * inner;
    int64_t offset = 0;
    const char* in = static_cast<const char*>(inputs[0].raw);
    for (const OutputRef& out : outputs) {
      const int64_t row = out.shape[axis] * inner;
      copy_blocks(ctx, in + offset, in_row, static_cast<char*>(out.raw), row, outer, row);
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
  const DType dtype = ctx.has_input(0) ? ctx.input_dtype(0) : DType::kFloat32;
  for (size_t i = 0; i < ctx.input_count(); ++i) {
    if (!ctx.has_input(i)) ctx.fail("input " + std::to_string(i) + " is absent");
    if (ctx.input_dtype(i) != dtype)
      ctx.fail("input " + std::to_string(i) + " has dtype " + dtype_name(ctx.input_dtype(i)) +
               ", input 0 has " + dtype_name(dtype));
  }
  ctx.set_output_dtypes({dtype});
  return std::make_unique<ConcatOp>(ctx.attr_axis("axis", 0));
}

std::unique_ptr<Op> create_split(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1, 1u << 16);
  const size_t parts = ctx.node().outputs.size();
  std::vector<int64_t> sizes = ctx.attr_ints("split", {}, 0, 1u << 16, 0, kMaxDim);
  if (ctx.has_attr("split") && sizes.size() != parts)
    ctx.fail("attribute 'split' has " + std::to_string(sizes.size()) + " sizes but the node has " +
             std::to_string(parts) + " outputs");
  ctx.set_output_dtypes(std::vector<DType>(parts, ctx.input_dtype(0)));
  return std::make_unique<SplitOp>(ctx.attr_axis("axis", 0), sizes, parts);
}

}  // namespace ops
}  // namespace sparsert
