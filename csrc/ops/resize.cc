// Resize of the last two dims (ONNX Resize, modes nearest and linear).
// The target is the `scales` or `sizes` attribute ([h, w]), or ONNX's inputs
// 2 (scales, one per dim) / 3 (sizes, one per dim) known while planning;
// only the last two dims may change.
//
// Output size: `sizes`, or floor(in * scale) with `scales` (computed in
// double, as PyTorch's interpolate). The source coordinate of output index x
// (ONNX coordinate_transformation_mode) uses the given scale when there is
// one, else out / in:
//   half_pixel          (x + 0.5) / scale - 0.5
//   pytorch_half_pixel  same, but 0 when the output length is 1 (ONNX rule;
//                       PyTorch's own bilinear is half_pixel, see below)
//   align_corners       x * (in - 1) / (out - 1), 0 when out == 1
//   asymmetric          x / scale
// asymmetric is computed as PyTorch's nearest does (aten/src/ATen/native/
// UpSample.h: float, x * float(1 / scale)), so that mode="nearest" matches it
// exactly even when x / scale is an integer that float rounding moves; the
// other modes use double arithmetic, as onnxruntime. Linear clamps the
// coordinate into [0, in - 1] (so half_pixel + linear is PyTorch's bilinear
// with align_corners=False); nearest rounds by nearest_mode and clamps the
// index. Indices and weights per output row and column are computed once per
// run.
#include <algorithm>
#include <cmath>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

enum class CoordMode { kHalfPixel, kPytorchHalfPixel, kAlignCorners, kAsymmetric };
enum class NearestMode { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };

struct AxisMap {
  std::vector<int64_t> i0, i1;  // source indices (nearest uses i0 only)
  std::vector<float> w1;        // weight of i1 (linear)
};

class ResizeOp final : public Op {
 public:
  ResizeOp(bool linear, std::vector<double> scales, std::vector<int64_t> sizes, CoordMode coord,
           NearestMode nearest, bool from_inputs)
      : linear_(linear),
        scales_(std::move(scales)),
        sizes_(std::move(sizes)),
        coord_(coord),
        nearest_(nearest),
        from_inputs_(from_inputs) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    if (from_inputs_) shape_error("Resize needs its scales or sizes input while planning");
    return {out_shape(inputs[0], scales_, sizes_)};
  }

  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    std::vector<double> scales = scales_;
    std::vector<int64_t> sizes = sizes_;
    resolve(inputs, &scales, &sizes);
    return {out_shape(inputs[0].shape, scales, sizes)};
  }

  Shape out_shape(const Shape& x, const std::vector<double>& scales_, const std::vector<int64_t>& sizes_) const {
    if (x.size() < 3) shape_error("input must be [N, C, H, W] (rank >= 3), got " + shape_string(x));
    Shape y = x;
    for (int d = 0; d < 2; ++d) {
      const size_t axis = x.size() - 2 + d;
      if (sizes_.empty()) {
        // checked in double first: converting a value past int64 to int64 is undefined
        const double scaled = std::floor(static_cast<double>(x[axis]) * scales_[d]);
        if (!(scaled < 0x1p62))
          shape_error("Resize of " + shape_string(x) + " by the given scales is too large");
        y[axis] = static_cast<int64_t>(scaled);
      } else {
        y[axis] = sizes_[d];
      }
      if (y[axis] < 1 || x[axis] < 1)
        shape_error("Resize of " + shape_string(x) + " gives an empty output " + shape_string(y));
    }
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    std::vector<double> scales = scales_;
    std::vector<int64_t> sizes = sizes_;
    if (from_inputs_) {
      std::vector<TensorMeta> metas;
      for (const auto& in : inputs) metas.push_back(TensorMeta{in.dtype, in.shape, in.raw, in.raw != nullptr});
      resolve(metas, &scales, &sizes);
    }
    const Shape& xs = inputs[0].shape;
    const Shape& ys = outputs[0].shape;
    const size_t r = xs.size();
    const int64_t ih = xs[r - 2], iw = xs[r - 1], oh = ys[r - 2], ow = ys[r - 1];
    if (shape_elements(xs) == 0 || shape_elements(ys) == 0) return;
    const int64_t planes = shape_elements(xs) / (ih * iw);
    const AxisMap mh = axis_map(0, ih, oh, scales), mw = axis_map(1, iw, ow, scales);
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    const int64_t rows = planes * oh;
    const int64_t per_task = std::max<int64_t>(1, 16384 / ow);
    ctx.parallel_for((rows + per_task - 1) / per_task, [&](int64_t t) {
      const int64_t row1 = std::min(rows, (t + 1) * per_task);
      for (int64_t row = t * per_task; row < row1; ++row) {
        const int64_t p = row / oh, i = row % oh;
        const float* xp = x + p * ih * iw;
        float* dst = y + row * ow;
        if (!linear_) {
          const float* src = xp + mh.i0[i] * iw;
          for (int64_t j = 0; j < ow; ++j) dst[j] = src[mw.i0[j]];
          continue;
        }
        const float* r0 = xp + mh.i0[i] * iw;
        const float* r1 = xp + mh.i1[i] * iw;
        const float b = mh.w1[i], a = 1.0f - b;
        for (int64_t j = 0; j < ow; ++j) {
          const int64_t c0 = mw.i0[j], c1 = mw.i1[j];
          const float wb = mw.w1[j], wa = 1.0f - wb;
          dst[j] = a * (wa * r0[c0] + wb * r0[c1]) + b * (wa * r1[c0] + wb * r1[c1]);
        }
      }
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>& outputs,
                NodeInfo* info) const override {
    info->kernel = linear_ ? "resize_bilinear" : "resize_nearest";
    info->flops = linear_ ? 8 * shape_elements(outputs[0]) : 0;
    info->dense_flops = info->flops;
  }

 private:
  // scales / sizes from inputs 2 / 3 (one entry per dim; only the last two may differ from 1 / the input).
  void resolve(const std::vector<TensorMeta>& inputs, std::vector<double>* scales, std::vector<int64_t>* sizes) const {
    if (!from_inputs_) return;
    const Shape& x = inputs[0].shape;
    const size_t r = x.size();
    if (r < 2) shape_error("Resize needs an input of rank >= 2, got " + shape_string(x));  // (fuzz_graph)
    if (inputs.size() > 3 && inputs[3].present && shape_elements(inputs[3].shape) > 0) {
      const std::vector<int64_t> v = known_ints(inputs[3], "Resize sizes");
      if (v.size() != r) shape_error("Resize sizes must have one entry per input dim");
      for (size_t i = 0; i + 2 < r; ++i)
        if (v[i] != x[i]) shape_error("Resize may only change the last two dims");
      for (size_t i = r - 2; i < r; ++i)
        if (v[i] < 1 || v[i] > kMaxDim) shape_error("Resize sizes must be in [1, 2^40]");
      *sizes = {v[r - 2], v[r - 1]};
      scales->clear();
      return;
    }
    if (inputs.size() > 2 && inputs[2].present && shape_elements(inputs[2].shape) > 0) {
      if (inputs[2].dtype != DType::kFloat32 || inputs[2].value == nullptr)
        shape_error("Resize scales must be float32 and known while planning");
      if (static_cast<size_t>(shape_elements(inputs[2].shape)) != r) shape_error("Resize scales must have one entry per input dim");
      const float* v = inputs[2].as<float>();
      for (size_t i = 0; i + 2 < r; ++i)
        if (v[i] != 1.0f) shape_error("Resize may only change the last two dims");
      for (size_t i = r - 2; i < r; ++i)
        if (!(v[i] >= 1.0f / 65536.0f && v[i] <= 65536.0f)) shape_error("Resize scales must be in [2^-16, 2^16]");
      *scales = {v[r - 2], v[r - 1]};
      sizes->clear();
      return;
    }
    shape_error("Resize needs scales (input 2) or sizes (input 3)");
  }

  AxisMap axis_map(int d, int64_t in, int64_t out, const std::vector<double>& scales_) const {
    const double scale =
        scales_.empty() ? static_cast<double>(out) / static_cast<double>(in) : scales_[d];
    // PyTorch's compute_scales_value: the reciprocal, rounded to float
    const float inv_float = scales_.empty() ? static_cast<float>(in) / static_cast<float>(out)
                                            : static_cast<float>(1.0 / scales_[d]);
    AxisMap m;
    m.i0.resize(out);
    m.i1.resize(out);
    m.w1.resize(out);
    for (int64_t o = 0; o < out; ++o) {
      const double x = static_cast<double>(o);
      double c = 0.0;
      switch (coord_) {
        case CoordMode::kHalfPixel:
          c = (x + 0.5) / scale - 0.5;
          break;
        case CoordMode::kPytorchHalfPixel:
          c = out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
          break;
        case CoordMode::kAlignCorners:
          c = out > 1 ? x * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
          break;
        case CoordMode::kAsymmetric:
          c = static_cast<float>(o) * inv_float;
          break;
      }
      c = std::min(std::max(c, -1.0), static_cast<double>(in));  // in range for the casts below
      if (linear_) {
        c = std::max(c, 0.0);
        const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(c), in - 1);
        m.i0[o] = i0;
        m.i1[o] = std::min<int64_t>(i0 + 1, in - 1);
        m.w1[o] = m.i1[o] == i0 ? 0.0f : static_cast<float>(c - static_cast<double>(i0));
      } else {
        double n = 0.0;
        switch (nearest_) {
          case NearestMode::kRoundPreferFloor:
            n = std::ceil(c - 0.5);
            break;
          case NearestMode::kRoundPreferCeil:
            n = std::floor(c + 0.5);
            break;
          case NearestMode::kFloor:
            n = std::floor(c);
            break;
          case NearestMode::kCeil:
            n = std::ceil(c);
            break;
        }
        m.i0[o] = std::min<int64_t>(std::max<int64_t>(static_cast<int64_t>(n), 0), in - 1);
      }
    }
    return m;
  }

  bool linear_;
  std::vector<double> scales_;
  std::vector<int64_t> sizes_;
  CoordMode coord_;
  NearestMode nearest_;
  bool from_inputs_;
};

}  // namespace

std::unique_ptr<Op> create_resize(const NodeContext& ctx) {
  ctx.check_input_count(1, 4);
  ctx.check_output_count(1);
  const std::string mode = ctx.attr_choice("mode", "nearest", {"nearest", "linear"});
  const bool has_scales = ctx.has_attr("scales"), has_sizes = ctx.has_attr("sizes");
  const bool from_inputs = ctx.has_input(2) || ctx.has_input(3);
  if (from_inputs && (has_scales || has_sizes))
    ctx.fail("give the target as attributes or as inputs, not both");
  if (!from_inputs && has_scales == has_sizes)
    ctx.fail("exactly one of the attributes 'scales' and 'sizes' must be given");
  if (ctx.has_input(3)) ctx.require_dtype(3, "sizes", {DType::kInt64, DType::kInt32});
  if (ctx.has_input(2)) ctx.require_dtype(2, "scales", {DType::kFloat32});
  ctx.require_dtype(0, "X", {DType::kFloat32});
  ctx.set_output_dtypes({DType::kFloat32});
  const std::vector<double> scales = ctx.attr_floats("scales", {}, 2, 2, 1.0 / 65536.0, 65536.0);
  const std::vector<int64_t> sizes = ctx.attr_ints("sizes", {}, 2, 2, 1, kMaxDim);
  const std::string coord_name = ctx.attr_choice("coordinate_transformation_mode", "half_pixel",
                                                  {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"});
  const CoordMode coord = coord_name == "half_pixel"           ? CoordMode::kHalfPixel
                          : coord_name == "pytorch_half_pixel" ? CoordMode::kPytorchHalfPixel
                          : coord_name == "align_corners"      ? CoordMode::kAlignCorners
                                                               : CoordMode::kAsymmetric;
  const std::string nearest_name =
      ctx.attr_choice("nearest_mode", "round_prefer_floor", {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"});
  const NearestMode nearest = nearest_name == "round_prefer_floor"  ? NearestMode::kRoundPreferFloor
                              : nearest_name == "round_prefer_ceil" ? NearestMode::kRoundPreferCeil
                              : nearest_name == "floor"             ? NearestMode::kFloor
                                                                    : NearestMode::kCeil;
  return std::make_unique<ResizeOp>(mode == "linear", scales, sizes, coord, nearest, from_inputs);
}

}  // namespace ops
}  // namespace sparsert
