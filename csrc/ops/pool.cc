// MaxPool2d, AvgPool2d and GlobalAveragePool over NCHW activations.
//
// Output size follows PyTorch (aten/src/ATen/native/Pool.h,
// pooling_output_shape) with asymmetric pads [top, left, bottom, right]:
//   out = floor((in + begin + end - d*(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1
// and, with ceil_mode, the last window is dropped when it would start in the
// end padding ((out-1)*s >= in + begin). The valid kernel taps of every output
// row and column are computed once per run, so the inner loops never test
// bounds. Work is split over (n, c) planes.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

struct PoolGeometry {
  int64_t kernel[2] = {1, 1};
  int64_t strides[2] = {1, 1};
  int64_t pads[4] = {0, 0, 0, 0};  // top, left, bottom, right
  int64_t dilations[2] = {1, 1};
  bool ceil_mode = false;

  int64_t pad_begin(int d) const { return pads[d]; }
  int64_t pad_end(int d) const { return pads[d + 2]; }
  int64_t extent(int d) const { return dilations[d] * (kernel[d] - 1) + 1; }

  int64_t output_size(int d, int64_t in) const {
    const int64_t s = strides[d];
    const int64_t span = in + pad_begin(d) + pad_end(d) - extent(d);
    if (span < 0)
      shape_error("pooling window (extent " + std::to_string(extent(d)) +
                  ") is larger than the padded input (" +
                  std::to_string(in + pad_begin(d) + pad_end(d)) + ") along " +
                  (d == 0 ? "H" : "W"));
    int64_t out = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
    if (ceil_mode && (out - 1) * s >= in + pad_begin(d)) --out;
    return out;
  }
};

// For output index o along one axis: the first input index of the window
// (may be negative) and the range [tap_begin, tap_end) of kernel taps that
// fall inside the input.
struct AxisTaps {
  std::vector<int64_t> start, tap_begin, tap_end, window_end;
};

AxisTaps axis_taps(const PoolGeometry& g, int d, int64_t in, int64_t out) {
  AxisTaps t;
  t.start.resize(out);
  t.tap_begin.resize(out);
  t.tap_end.resize(out);
  t.window_end.resize(out);
  const int64_t dil = g.dilations[d];
  for (int64_t o = 0; o < out; ++o) {
    const int64_t s = o * g.strides[d] - g.pad_begin(d);
    int64_t tb = s >= 0 ? 0 : (-s + dil - 1) / dil;
    int64_t te = in - 1 - s < 0 ? 0 : std::min(g.kernel[d], (in - 1 - s) / dil + 1);
    if (te < tb) te = tb;
    t.start[o] = s;
    t.tap_begin[o] = tb;
    t.tap_end[o] = te;
    // window end clipped to the padded input (AvgPool divisor with count_include_pad)
    t.window_end[o] = std::min(s + g.kernel[d], in + g.pad_end(d));
  }
  return t;
}

enum class PoolKind { kMax, kAvg };

class Pool2dOp final : public Op {
 public:
  Pool2dOp(PoolKind kind, PoolGeometry g, bool count_include_pad)
      : kind_(kind), g_(g), count_include_pad_(count_include_pad) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.size() != 4) shape_error("input must be 4-D [N, C, H, W], got " + shape_string(x));
    return {{x[0], x[1], g_.output_size(0, x[2]), g_.output_size(1, x[3])}};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const Shape& ys = outputs[0].shape;
    const int64_t planes = xs[0] * xs[1];
    const int64_t ih = xs[2], iw = xs[3], oh = ys[2], ow = ys[3];
    if (planes * oh * ow == 0) return;
    const AxisTaps th = axis_taps(g_, 0, ih, oh);
    const AxisTaps tw = axis_taps(g_, 1, iw, ow);
    const float* x = inputs[0].data;
    float* y = outputs[0].data;
    const int64_t per_task =
        std::max<int64_t>(1, 16384 / std::max<int64_t>(1, oh * ow * g_.kernel[0] * g_.kernel[1]));
    const int64_t tasks = (planes + per_task - 1) / per_task;
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t p1 = std::min(planes, (t + 1) * per_task);
      std::vector<float> vrow(kind_ == PoolKind::kMax ? static_cast<size_t>(iw) : 0);
      for (int64_t p = t * per_task; p < p1; ++p) {
        const float* xp = x + p * ih * iw;
        float* yp = y + p * oh * ow;
        if (kind_ == PoolKind::kMax)
          max_plane(xp, iw, yp, oh, ow, th, tw, vrow.data());
        else
          avg_plane(xp, iw, yp, oh, ow, th, tw);
      }
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>& outputs,
                NodeInfo* info) const override {
    info->kernel = kind_ == PoolKind::kMax ? "maxpool2d_separable" : "avgpool2d_direct";
    info->flops = shape_elements(outputs[0]) * g_.kernel[0] * g_.kernel[1];
    info->dense_flops = info->flops;
  }

 private:
  // Separable: the max over the window's rows is taken first for the whole
  // input row (contiguous, vectorises), then over the columns of each output.
  // PyTorch propagates NaN: a NaN tap wins, and nan_max keeps it.
  static inline float nan_max(float m, float v) { return (v > m || v != v) ? v : m; }

  void max_plane(const float* x, int64_t iw, float* y, int64_t oh, int64_t ow, const AxisTaps& th,
                 const AxisTaps& tw, float* vrow) const {
    const int64_t dh = g_.dilations[0], dw = g_.dilations[1];
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t a0 = th.tap_begin[i], a1 = th.tap_end[i];
      float* yrow = y + i * ow;
      if (a0 >= a1) {
        std::fill(yrow, yrow + ow, neg_inf);
        continue;
      }
      const float* first = x + (th.start[i] + a0 * dh) * iw;
      std::copy(first, first + iw, vrow);
      for (int64_t a = a0 + 1; a < a1; ++a) {
        const float* row = x + (th.start[i] + a * dh) * iw;
        for (int64_t k = 0; k < iw; ++k) vrow[k] = nan_max(vrow[k], row[k]);
      }
      for (int64_t j = 0; j < ow; ++j) {
        const float* v = vrow + tw.start[j];
        float m = neg_inf;
        for (int64_t b = tw.tap_begin[j]; b < tw.tap_end[j]; ++b) m = nan_max(m, v[b * dw]);
        yrow[j] = m;
      }
    }
  }

  void avg_plane(const float* x, int64_t iw, float* y, int64_t oh, int64_t ow, const AxisTaps& th,
                 const AxisTaps& tw) const {
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        float sum = 0.0f;
        for (int64_t a = th.tap_begin[i]; a < th.tap_end[i]; ++a) {
          const float* row = x + (th.start[i] + a) * iw + tw.start[j];
          for (int64_t b = tw.tap_begin[j]; b < tw.tap_end[j]; ++b) sum += row[b];
        }
        int64_t count;
        if (count_include_pad_) {
          count = (th.window_end[i] - th.start[i]) * (tw.window_end[j] - tw.start[j]);
        } else {
          count = (th.tap_end[i] - th.tap_begin[i]) * (tw.tap_end[j] - tw.tap_begin[j]);
        }
        y[i * ow + j] = sum / static_cast<float>(count);
      }
    }
  }

  PoolKind kind_;
  PoolGeometry g_;
  bool count_include_pad_;
};

// Reads kernel / strides / pads / dilations / ceil_mode, validating each.
PoolGeometry parse_geometry(const NodeContext& ctx, bool has_dilations) {
  PoolGeometry g;
  if (!ctx.has_attr("kernel")) ctx.fail("attribute 'kernel' (INTS [kh, kw]) is required");
  const std::vector<int64_t> kernel = ctx.attr_ints("kernel", {});
  if (kernel.size() != 2 || kernel[0] < 1 || kernel[1] < 1)
    ctx.fail("attribute 'kernel' must be 2 positive ints [kh, kw], got " + shape_string(kernel));
  const std::vector<int64_t> strides = ctx.attr_ints("strides", kernel);
  if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1)
    ctx.fail("attribute 'strides' must be 2 positive ints [sh, sw], got " + shape_string(strides));
  const std::vector<int64_t> pads = ctx.attr_ints("pads", {0, 0, 0, 0});
  if (pads.size() != 4)
    ctx.fail("attribute 'pads' must be 4 ints [top, left, bottom, right], got " +
             shape_string(pads));
  const std::vector<int64_t> dilations = ctx.attr_ints("dilations", {1, 1});
  if (dilations.size() != 2 || dilations[0] < 1 || dilations[1] < 1)
    ctx.fail("attribute 'dilations' must be 2 positive ints [dh, dw], got " +
             shape_string(dilations));
  if (!has_dilations && (dilations[0] != 1 || dilations[1] != 1))
    ctx.fail("attribute 'dilations' must be [1, 1] (this op has no dilation)");
  const int64_t ceil_mode = ctx.attr_int("ceil_mode", 0);
  if (ceil_mode != 0 && ceil_mode != 1) ctx.fail("attribute 'ceil_mode' must be 0 or 1");
  for (int d = 0; d < 2; ++d) {
    g.kernel[d] = kernel[d];
    g.strides[d] = strides[d];
    g.dilations[d] = dilations[d];
  }
  for (int i = 0; i < 4; ++i) {
    // A pad as large as the window would make windows that see only padding
    // (PyTorch requires pad <= kernel / 2).
    if (pads[i] < 0 || pads[i] >= g.extent(i % 2))
      ctx.fail("attribute 'pads' " + shape_string(pads) +
               ": each pad must be >= 0 and smaller than the window (" +
               std::to_string(g.extent(i % 2)) + ")");
    g.pads[i] = pads[i];
  }
  g.ceil_mode = ceil_mode != 0;
  return g;
}

void check_activation_input(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  if (ctx.constant(0) != nullptr) ctx.fail("input must be an activation, not a constant");
}

class GlobalAveragePoolOp final : public Op {
 public:
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.size() < 3)
      shape_error("input must be [N, C, spatial...] (rank >= 3), got " + shape_string(x));
    Shape y = x;
    for (size_t i = 2; i < y.size(); ++i) y[i] = 1;
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t planes = xs[0] * xs[1];
    const int64_t n = shape_elements(xs) / std::max<int64_t>(planes, 1);
    const float* x = inputs[0].data;
    float* y = outputs[0].data;
    if (planes == 0) return;
    const int64_t per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
    const int64_t tasks = (planes + per_task - 1) / per_task;
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t p1 = std::min(planes, (t + 1) * per_task);
      for (int64_t p = t * per_task; p < p1; ++p) {
        const float* xp = x + p * n;
        // four partial sums: shorter dependency chains, less rounding error
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) {
          s[0] += xp[i];
          s[1] += xp[i + 1];
          s[2] += xp[i + 2];
          s[3] += xp[i + 3];
        }
        for (; i < n; ++i) s[0] += xp[i];
        y[p] = ((s[0] + s[1]) + (s[2] + s[3])) / static_cast<float>(n);
      }
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    info->kernel = "global_avgpool_ref";
    info->flops = shape_elements(inputs[0]);
    info->dense_flops = info->flops;
  }
};

}  // namespace

std::unique_ptr<Op> create_max_pool2d(const NodeContext& ctx) {
  check_activation_input(ctx);
  return std::make_unique<Pool2dOp>(PoolKind::kMax, parse_geometry(ctx, true), false);
}

std::unique_ptr<Op> create_avg_pool2d(const NodeContext& ctx) {
  check_activation_input(ctx);
  const int64_t include = ctx.attr_int("count_include_pad", 0);
  if (include != 0 && include != 1) ctx.fail("attribute 'count_include_pad' must be 0 or 1");
  return std::make_unique<Pool2dOp>(PoolKind::kAvg, parse_geometry(ctx, false), include != 0);
}

std::unique_ptr<Op> create_global_average_pool(const NodeContext& ctx) {
  check_activation_input(ctx);
  return std::make_unique<GlobalAveragePoolOp>();
}

}  // namespace ops
}  // namespace sparsert
