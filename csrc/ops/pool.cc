// MaxPool, AveragePool (1-D, 2-D and 3-D), GlobalAveragePool and
// GlobalMaxPool over [N, C, spatial...] activations.
//
// Output size follows PyTorch (aten/src/ATen/native/Pool.h,
// pooling_output_shape) with asymmetric pads (ONNX order: all begins, then
// all ends; for 2-D [top, left, bottom, right]):
//   out = floor((in + begin + end - d*(k-1) - 1 [+ s-1 if ceil_mode]) / s) + 1
// and, with ceil_mode, the last window is dropped when it would start in the
// end padding ((out-1)*s >= in + begin). Every case runs as 3-D (missing
// leading spatial dims have size 1). The valid kernel taps of every output
// index along each axis are computed once per run, so the inner loops never
// test bounds, and pooling is separable: per output (depth, row) the max (or
// sum) over the depth and row taps is taken for the whole input row
// (contiguous, vectorises), then over the column taps of each output: one
// fixed-stride loop for the outputs whose window lies inside the row (common
// strides and widths are compiled as their own loops, so the taps unroll and
// the strided loads vectorise), a general one at the padded edges. Work is
// split over (n, c) planes. Attributes are bounded at load (window, stride,
// pad and dilation <= 2^24), so no tap arithmetic can overflow.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/multiversion.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

constexpr int kMaxPoolRank = 3;

struct PoolGeometry {
  int rank = 2;  // spatial dims, 1..3
  // per spatial axis, in 3-D form (index 3 - rank + i holds axis i)
  int64_t kernel[3] = {1, 1, 1};
  int64_t strides[3] = {1, 1, 1};
  int64_t pad_begin[3] = {0, 0, 0};
  int64_t pad_end[3] = {0, 0, 0};
  int64_t dilations[3] = {1, 1, 1};
  bool ceil_mode = false;

  int64_t extent(int d) const { return dilations[d] * (kernel[d] - 1) + 1; }

  int64_t output_size(int d, int64_t in) const {
    const int64_t s = strides[d];
    const int64_t span = in + pad_begin[d] + pad_end[d] - extent(d);
    if (span < 0)
      shape_error("pooling window (extent " + std::to_string(extent(d)) +
                  ") is larger than the padded input (" + std::to_string(in + pad_begin[d] + pad_end[d]) +
                  ") along spatial axis " + std::to_string(d - (3 - rank)));
    int64_t out = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
    if (ceil_mode && (out - 1) * s >= in + pad_begin[d]) --out;
    return out;
  }
};

// For output index o along one axis: the first input index of the window
// (may be negative) and the range [tap_begin, tap_end) of kernel taps that
// fall inside the input; window_end is the window's end clipped to the padded
// input (the AveragePool divisor with count_include_pad).
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
    const int64_t s = o * g.strides[d] - g.pad_begin[d];
    const int64_t tb = s >= 0 ? 0 : (-s + dil - 1) / dil;
    int64_t te = in - 1 - s < 0 ? 0 : std::min(g.kernel[d], (in - 1 - s) / dil + 1);
    if (te < tb) te = tb;
    t.start[o] = s;
    t.tap_begin[o] = tb;
    t.tap_end[o] = te;
    t.window_end[o] = std::min(s + g.kernel[d], in + g.pad_end[d]);
  }
  return t;
}

// The row loops are multiversioned (kernels/multiversion.h).
// PyTorch propagates NaN: a NaN tap wins, and nan_max keeps it. Written as
// a bit select so that no compiler turns it into a branch: the scalar tails
// of the row loops would mispredict on every other element of random data
// (MaxPool over N(0, 1) ran 2x slower than over a smooth ramp).
inline float nan_max(float m, float v) {
  const uint32_t take = 0u - static_cast<uint32_t>((v > m) | (v != v));
  uint32_t mb, vb;
  std::memcpy(&mb, &m, 4);
  std::memcpy(&vb, &v, 4);
  const uint32_t r = (vb & take) | (mb & ~take);
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

SPARSERT_MULTIVERSION void rows_max(float* acc, const float* row, int64_t n) {
  for (int64_t k = 0; k < n; ++k) acc[k] = nan_max(acc[k], row[k]);
}

SPARSERT_MULTIVERSION void rows_sum(float* acc, const float* row, int64_t n) {
  for (int64_t k = 0; k < n; ++k) acc[k] += row[k];
}

// y[j] = max (or sum / count) of v[S * j + c], c < K, for j < n.
template <bool kMax, int S, int K>
__attribute__((always_inline)) inline void row_window(const float* v, float* y, int64_t n, float count) {
  for (int64_t j = 0; j < n; ++j) {
    const float* w = v + S * j;
    float m = w[0];
    for (int c = 1; c < K; ++c) m = kMax ? nan_max(m, w[c]) : m + w[c];
    y[j] = kMax ? m : m / count;
  }
}

// The whole-window outputs of one row for the common (stride, width) pairs,
// each its own loop (the taps unroll, the strided loads vectorise); false for
// any other pair.
SPARSERT_MULTIVERSION bool row_windows(bool is_max, int64_t s, int64_t k, const float* v, float* y, int64_t n,
                                     float count) {
#define SPARSERT_POOL_CASE(S, K)                                                               \
  if (s == S && k == K) {                                                                      \
    if (is_max) {                                                                              \
      row_window<true, S, K>(v, y, n, count);                                                  \
    } else {                                                                                   \
      row_window<false, S, K>(v, y, n, count);                                                 \
    }                                                                                          \
    return true;                                                                               \
  }
  SPARSERT_POOL_CASE(1, 2)
  SPARSERT_POOL_CASE(1, 3)
  SPARSERT_POOL_CASE(1, 5)
  SPARSERT_POOL_CASE(2, 2)
  SPARSERT_POOL_CASE(2, 3)
  SPARSERT_POOL_CASE(3, 3)
#undef SPARSERT_POOL_CASE
  return false;
}

enum class PoolKind { kMax, kAvg };

// The spatial dims of x in 3-D form.
void spatial3(const Shape& x, int rank, int64_t out[3]) {
  for (int i = 0; i < 3; ++i) out[i] = 1;
  for (int i = 0; i < rank; ++i) out[3 - rank + i] = x[2 + i];
}

class PoolOp final : public Op {
 public:
  PoolOp(PoolKind kind, PoolGeometry g, bool count_include_pad)
      : kind_(kind), g_(g), count_include_pad_(count_include_pad) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (static_cast<int>(x.size()) != 2 + g_.rank)
      shape_error("input must be " + std::to_string(2 + g_.rank) + "-D [N, C, " + std::to_string(g_.rank) +
                  " spatial dims] for a " + std::to_string(g_.rank) + "-D window, got " + shape_string(x));
    Shape y = {x[0], x[1]};
    int64_t in[3];
    spatial3(x, g_.rank, in);
    for (int i = 3 - g_.rank; i < 3; ++i) y.push_back(g_.output_size(i, in[i]));
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t planes = xs[0] * xs[1];
    int64_t in[3], out[3];
    spatial3(xs, g_.rank, in);
    spatial3(outputs[0].shape, g_.rank, out);
    const int64_t out_plane = out[0] * out[1] * out[2], in_plane = in[0] * in[1] * in[2];
    if (planes * out_plane == 0) return;
    AxisTaps taps[3];
    for (int d = 0; d < 3; ++d) taps[d] = axis_taps(g_, d, in[d], out[d]);
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    const Interior interior = interior_columns(taps[2], g_.kernel[2]);
    const int64_t window = g_.kernel[0] * g_.kernel[1] * g_.kernel[2];
    const int64_t per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, out_plane * window));
    const int64_t tasks = (planes + per_task - 1) / per_task;
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t p1 = std::min(planes, (t + 1) * per_task);
      std::vector<float> vrow(static_cast<size_t>(in[2]));  // the reduction of a window's rows
      for (int64_t p = t * per_task; p < p1; ++p)
        pool_plane(x + p * in_plane, in, y + p * out_plane, out, taps, interior, vrow.data());
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>& outputs, NodeInfo* info) const override {
    info->kernel = kind_ == PoolKind::kMax ? "maxpool_separable" : "avgpool_separable";
    info->flops = shape_elements(outputs[0]) * g_.kernel[0] * g_.kernel[1] * g_.kernel[2];
    info->dense_flops = info->flops;
  }

 private:
  // Output columns [begin, end) whose windows lie whole inside the input row.
  struct Interior {
    int64_t begin = 0, end = 0;
  };

  static Interior interior_columns(const AxisTaps& tw, int64_t kw) {
    Interior r;
    const int64_t n = static_cast<int64_t>(tw.start.size());
    while (r.begin < n && !(tw.tap_begin[r.begin] == 0 && tw.tap_end[r.begin] == kw)) ++r.begin;
    r.end = r.begin;
    while (r.end < n && tw.tap_begin[r.end] == 0 && tw.tap_end[r.end] == kw) ++r.end;
    return r;
  }

  void pool_plane(const float* x, const int64_t in[3], float* y, const int64_t out[3], const AxisTaps taps[3],
                  const Interior& interior, float* vrow) const {
    const int64_t dd = g_.dilations[0], dh = g_.dilations[1], dw = g_.dilations[2];
    const int64_t iw = in[2];
    const bool is_max = kind_ == PoolKind::kMax;
    const float neg_inf = -std::numeric_limits<float>::infinity();
    const AxisTaps &td = taps[0], &th = taps[1], &tw = taps[2];
    for (int64_t od = 0; od < out[0]; ++od) {
      for (int64_t oh = 0; oh < out[1]; ++oh) {
        float* yrow = y + (od * out[1] + oh) * out[2];
        // reduce the (depth, row) taps into vrow
        bool first = true;
        for (int64_t a = td.tap_begin[od]; a < td.tap_end[od]; ++a) {
          const float* slice = x + (td.start[od] + a * dd) * in[1] * iw;
          for (int64_t b = th.tap_begin[oh]; b < th.tap_end[oh]; ++b) {
            const float* row = slice + (th.start[oh] + b * dh) * iw;
            if (first) {
              std::copy(row, row + iw, vrow);
              first = false;
            } else if (is_max) {
              rows_max(vrow, row, iw);
            } else {
              rows_sum(vrow, row, iw);
            }
          }
        }
        if (first) {  // the window sees only padding
          std::fill(yrow, yrow + out[2], is_max ? neg_inf : 0.0f);
          continue;
        }
        const int64_t rows_in = (td.tap_end[od] - td.tap_begin[od]) * (th.tap_end[oh] - th.tap_begin[oh]);
        const int64_t rows_all = (td.window_end[od] - td.start[od]) * (th.window_end[oh] - th.start[oh]);
        // Outputs [ja, jb) have whole windows inside the row: one fixed-stride
        // pass (a kernel per common stride and width, so the compiler unrolls
        // the taps and vectorises the strided loads); the rest, cut by padding,
        // take the general loop.
        int64_t ja = interior.begin, jb = interior.end;
        const float count =
            static_cast<float>(std::max<int64_t>((count_include_pad_ ? rows_all : rows_in) * g_.kernel[2], 1));
        if (jb > ja && (g_.dilations[2] != 1 ||
                        !row_windows(is_max, g_.strides[2], g_.kernel[2], vrow + tw.start[ja], yrow + ja, jb - ja,
                                     count)))
          ja = jb = 0;
        for (int64_t j = 0; j < out[2]; ++j) {
          if (j == ja && jb > ja) {
            j = jb - 1;
            continue;
          }
          const int64_t s0 = tw.start[j];
          if (is_max) {
            float m = neg_inf;
            for (int64_t c = tw.tap_begin[j]; c < tw.tap_end[j]; ++c) m = nan_max(m, vrow[s0 + c * dw]);
            yrow[j] = m;
          } else {
            float sum = 0.0f;
            for (int64_t c = tw.tap_begin[j]; c < tw.tap_end[j]; ++c) sum += vrow[s0 + c * dw];
            const int64_t count = count_include_pad_ ? rows_all * (tw.window_end[j] - tw.start[j])
                                                     : rows_in * (tw.tap_end[j] - tw.tap_begin[j]);
            yrow[j] = sum / static_cast<float>(std::max<int64_t>(count, 1));
          }
        }
      }
    }
  }

  PoolKind kind_;
  PoolGeometry g_;
  bool count_include_pad_;
};

// Reads kernel_shape / strides / pads / dilations / ceil_mode, validating each.
PoolGeometry parse_geometry(const NodeContext& ctx, bool has_dilations) {
  PoolGeometry g;
  if (!ctx.has_attr("kernel_shape")) ctx.fail("attribute 'kernel_shape' (INTS, one per spatial dim) is required");
  const std::vector<int64_t> kernel = ctx.attr_ints("kernel_shape", {}, 1, kMaxPoolRank, 1, kMaxSpatial);
  const size_t r = kernel.size();
  g.rank = static_cast<int>(r);
  const std::vector<int64_t> strides = ctx.attr_ints("strides", kernel, r, r, 1, kMaxSpatial);
  const std::vector<int64_t> pads = ctx.attr_ints("pads", std::vector<int64_t>(2 * r, 0), 2 * r, 2 * r, 0, kMaxSpatial);
  const std::vector<int64_t> dilations =
      ctx.attr_ints("dilations", std::vector<int64_t>(r, 1), r, r, 1, kMaxSpatial);
  if (!has_dilations && std::any_of(dilations.begin(), dilations.end(), [](int64_t d) { return d != 1; }))
    ctx.fail("attribute 'dilations' must be all 1 (AveragePool has no dilation)", ErrorCode::kUnsupported);
  g.ceil_mode = ctx.attr_bool("ceil_mode", false);
  const int off = 3 - g.rank;
  for (size_t i = 0; i < r; ++i) {
    g.kernel[off + i] = kernel[i];
    g.strides[off + i] = strides[i];
    g.dilations[off + i] = dilations[i];
    g.pad_begin[off + i] = pads[i];
    g.pad_end[off + i] = pads[r + i];
  }
  for (size_t i = 0; i < r; ++i) {
    // A pad as large as the window would make windows that see only padding
    // (PyTorch requires pad <= kernel / 2).
    const int64_t extent = g.extent(off + static_cast<int>(i));
    if (pads[i] >= extent || pads[r + i] >= extent)
      ctx.fail("attribute 'pads' " + shape_string(pads) + ": each pad must be smaller than the window (" +
               std::to_string(extent) + ")");
  }
  return g;
}

enum class GlobalKind { kAvg, kMax };

class GlobalPoolOp final : public Op {
 public:
  explicit GlobalPoolOp(GlobalKind kind) : kind_(kind) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.size() < 3) shape_error("input must be [N, C, spatial...] (rank >= 3), got " + shape_string(x));
    Shape y = x;
    for (size_t i = 2; i < y.size(); ++i) y[i] = 1;
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t planes = xs[0] * xs[1];
    if (planes == 0) return;
    const int64_t n = shape_elements(xs) / planes;
    const float* x = inputs[0].f32();
    float* y = outputs[0].f32();
    const int64_t per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
    const int64_t tasks = (planes + per_task - 1) / per_task;
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t p1 = std::min(planes, (t + 1) * per_task);
      for (int64_t p = t * per_task; p < p1; ++p) {
        const float* xp = x + p * n;
        if (kind_ == GlobalKind::kMax) {
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < n; ++i) m = (xp[i] > m || xp[i] != xp[i]) ? xp[i] : m;
          y[p] = m;
          continue;
        }
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
        y[p] = n == 0 ? std::numeric_limits<float>::quiet_NaN()
                      : ((s[0] + s[1]) + (s[2] + s[3])) / static_cast<float>(n);
      }
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = kind_ == GlobalKind::kMax ? "global_maxpool_ref" : "global_avgpool_ref";
    info->flops = shape_elements(inputs[0]);
    info->dense_flops = info->flops;
  }

 private:
  GlobalKind kind_;
};

}  // namespace

std::unique_ptr<Op> create_max_pool(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  if (ctx.attr_int("storage_order", 0, 0, 0) != 0) ctx.fail("storage_order must be 0");
  return std::make_unique<PoolOp>(PoolKind::kMax, parse_geometry(ctx, true), false);
}

std::unique_ptr<Op> create_average_pool(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  return std::make_unique<PoolOp>(PoolKind::kAvg, parse_geometry(ctx, false),
                                  ctx.attr_bool("count_include_pad", false));
}

std::unique_ptr<Op> create_global_average_pool(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  return std::make_unique<GlobalPoolOp>(GlobalKind::kAvg);
}

std::unique_ptr<Op> create_global_max_pool(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  return std::make_unique<GlobalPoolOp>(GlobalKind::kMax);
}

}  // namespace ops
}  // namespace sparsert
