// Reductions over a set of axes (ONNX Reduce* with `axes` as an attribute or
// as input 1 known while planning; absent axes = all, unless
// noop_with_empty_axes): ReduceMean, ReduceSum, ReduceMax, ReduceMin,
// ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSumExp, and
// ArgMax / ArgMin (one axis, int64 indices). Adjacent reduced dims, and
// adjacent kept dims, are merged; each output element then reduces its
// sub-tensor with an odometer over the reduced dims, float sums accumulating
// in double. Sum, Max, Min and Prod also take int32 / int64 (mask sums).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/broadcast.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

enum class ReduceKind { kMean, kSum, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSumExp, kArgMax, kArgMin };

// The reduced mask for these axes over `rank` dims (all when axes is empty).
std::vector<bool> reduced_mask(const std::vector<int64_t>& axes, size_t rank, bool all_when_empty) {
  std::vector<bool> mask(rank, axes.empty() && all_when_empty);
  for (int64_t a : axes) {
    const int64_t axis = normalize_axis(a, static_cast<int64_t>(rank), "reduce axis");
    if (mask[axis]) shape_error("reduce axes " + shape_string(axes) + " name axis " + std::to_string(axis) + " twice");
    mask[axis] = true;
  }
  return mask;
}

class ReduceOp final : public Op {
 public:
  ReduceOp(ReduceKind kind, DType dtype, std::vector<int64_t> axes, bool axes_from_input, bool keepdims,
           bool noop_empty, bool select_last)
      : kind_(kind),
        dtype_(dtype),
        axes_(std::move(axes)),
        axes_from_input_(axes_from_input),
        keepdims_(keepdims),
        noop_empty_(noop_empty),
        select_last_(select_last) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    return infer_with(inputs[0], axes_);
  }

  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    return infer_with(inputs[0].shape, axes_of(inputs));
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    std::vector<int64_t> axes = axes_;
    if (axes_from_input_ && inputs.size() > 1 && inputs[1].raw != nullptr) {
      TensorMeta m{inputs[1].dtype, inputs[1].shape, inputs[1].raw, true};
      axes = known_ints(m, "reduce axes");
    }
    const Shape& xs = inputs[0].shape;
    const std::vector<bool> reduced = mask_for(xs.size(), axes);
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same<T, uint8_t>::value) run_typed<T>(ctx, inputs[0], outputs[0], reduced);
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "reduce_ref";
    info->flops = shape_elements(inputs[0]);
    info->dense_flops = info->flops;
  }

 private:
  bool is_arg() const { return kind_ == ReduceKind::kArgMax || kind_ == ReduceKind::kArgMin; }

  std::vector<int64_t> axes_of(const std::vector<TensorMeta>& inputs) const {
    if (!axes_from_input_ || inputs.size() < 2 || !inputs[1].present) return axes_;
    if (inputs[1].shape.size() != 1 || inputs[1].shape[0] > static_cast<int64_t>(format::kMaxRank))
      shape_error("reduce input 'axes' must be 1-D with at most 8 entries");
    return known_ints(inputs[1], "reduce input 'axes'");
  }

  std::vector<bool> mask_for(size_t rank, const std::vector<int64_t>& axes) const {
    if (is_arg()) return reduced_mask(axes, rank, false);
    if (axes.empty() && noop_empty_) return std::vector<bool>(rank, false);
    return reduced_mask(axes, rank, true);
  }

  std::vector<Shape> infer_with(const Shape& x, const std::vector<int64_t>& axes) const {
    const std::vector<bool> reduced = mask_for(x.size(), axes);
    Shape y;
    for (size_t d = 0; d < x.size(); ++d) {
      if (!reduced[d]) {
        y.push_back(x[d]);
      } else {
        if ((kind_ == ReduceKind::kMax || kind_ == ReduceKind::kMin || is_arg()) && x[d] == 0)
          shape_error("cannot take the max / min over an empty axis of " + shape_string(x));
        if (keepdims_) y.push_back(1);
      }
    }
    return {y};
  }

  template <typename T>
  void run_typed(const RunContext& ctx, const InputRef& in, const OutputRef& out,
                 const std::vector<bool>& reduced) const {
    const Shape& xs = in.shape;
    // merged dims with their strides, split into kept and reduced lists (outer to inner)
    std::vector<int64_t> kept_dims, kept_strides, red_dims, red_strides;
    std::vector<int64_t> strides(xs.size());
    int64_t stride = 1;
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
      if (kind == last && !(is_arg() && kind == 1)) {
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
    const int64_t outs = shape_elements(out.shape);
    if (outs == 0) return;
    if (red_dims.empty()) red_dims.push_back(1), red_strides.push_back(1);
    const size_t rr = red_dims.size();
    const int64_t inner = red_dims[rr - 1], inner_stride = red_strides[rr - 1];
    const int64_t red_outer = count == 0 ? 0 : count / inner;
    const T* x = in.as<T>();
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
        std::fill(idx.begin(), idx.end(), 0);
        int64_t offset = base;
        // visit(value, flat index within the reduced sub-tensor)
        auto for_each = [&](auto&& visit) {
          int64_t flat = 0;
          for (int64_t r = 0; r < red_outer; ++r) {
            const T* p = x + offset;
            for (int64_t j = 0; j < inner; ++j, ++flat) visit(p[j * inner_stride], flat);
            for (size_t d = rr - 1; d-- > 0;) {
              offset += red_strides[d];
              if (++idx[d] < red_dims[d]) break;
              offset -= idx[d] * red_strides[d];
              idx[d] = 0;
            }
          }
        };
        write<T>(out, o, count, for_each);
      }
    });
  }

  template <typename T, typename F>
  void write(const OutputRef& out, int64_t o, int64_t count, F&& for_each) const {
    switch (kind_) {
      case ReduceKind::kArgMax:
      case ReduceKind::kArgMin: {
        const bool is_max = kind_ == ReduceKind::kArgMax;
        double best = 0.0;
        int64_t best_at = -1;
        for_each([&](auto v, int64_t i) {
          const double dv = static_cast<double>(v);
          const bool better = best_at < 0 || (is_max ? (select_last_ ? dv >= best : dv > best)
                                                     : (select_last_ ? dv <= best : dv < best));
          if (better) {
            best = dv;
            best_at = i;
          }
        });
        out.as<int64_t>()[o] = best_at;
        return;
      }
      default:
        break;
    }
    {
      {
        T* y = out.as<T>();
        if constexpr (std::is_floating_point<T>::value) {
          double acc = 0.0;
          switch (kind_) {
            case ReduceKind::kMax:
            case ReduceKind::kMin: {
              const bool is_max = kind_ == ReduceKind::kMax;
              float m = is_max ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
              for_each([&](float v, int64_t) { m = (v != v || (is_max ? v > m : v < m)) ? v : m; });
              y[o] = m;
              return;
            }
            case ReduceKind::kProd:
              acc = 1.0;
              for_each([&](float v, int64_t) { acc *= v; });
              break;
            case ReduceKind::kL1:
              for_each([&](float v, int64_t) { acc += std::fabs(static_cast<double>(v)); });
              break;
            case ReduceKind::kL2:
            case ReduceKind::kSumSquare:
              for_each([&](float v, int64_t) { acc += static_cast<double>(v) * v; });
              if (kind_ == ReduceKind::kL2) acc = std::sqrt(acc);
              break;
            case ReduceKind::kLogSumExp: {
              double m = -std::numeric_limits<double>::infinity();
              for_each([&](float v, int64_t) { m = std::max(m, static_cast<double>(v)); });
              if (std::isinf(m)) {
                y[o] = static_cast<float>(m);
                return;
              }
              for_each([&](float v, int64_t) { acc += std::exp(static_cast<double>(v) - m); });
              acc = m + std::log(acc);
              break;
            }
            default:  // sum, mean
              for_each([&](float v, int64_t) { acc += v; });
              if (kind_ == ReduceKind::kMean) acc /= static_cast<double>(count);  // 0 / 0 = NaN, as numpy
              break;
          }
          y[o] = static_cast<T>(acc);
        } else {
          using U = typename std::make_unsigned<T>::type;  // wrapping sums and products
          U acc = kind_ == ReduceKind::kProd ? 1 : 0;
          T m = kind_ == ReduceKind::kMax ? std::numeric_limits<T>::min() : std::numeric_limits<T>::max();
          for_each([&](T v, int64_t) {
            if (kind_ == ReduceKind::kProd) acc = static_cast<U>(acc * static_cast<U>(v));
            else acc = static_cast<U>(acc + static_cast<U>(v));
            m = kind_ == ReduceKind::kMax ? std::max(m, v) : std::min(m, v);
          });
          y[o] = (kind_ == ReduceKind::kMax || kind_ == ReduceKind::kMin) ? m : static_cast<T>(acc);
        }
      }
    }
  }

  ReduceKind kind_;
  DType dtype_;
  std::vector<int64_t> axes_;
  bool axes_from_input_;
  bool keepdims_;
  bool noop_empty_;
  bool select_last_;
};

std::unique_ptr<Op> make_reduce(const NodeContext& ctx, ReduceKind kind) {
  const bool arg = kind == ReduceKind::kArgMax || kind == ReduceKind::kArgMin;
  ctx.check_input_count(1, arg ? 1 : 2);
  ctx.check_output_count(1);
  const bool ints_ok = kind == ReduceKind::kSum || kind == ReduceKind::kMax || kind == ReduceKind::kMin ||
                       kind == ReduceKind::kProd || arg;
  if (ints_ok)
    ctx.require_dtype(0, "input", {DType::kFloat32, DType::kInt32, DType::kInt64});
  else
    ctx.require_dtype(0, "input", {DType::kFloat32});
  std::vector<int64_t> axes;
  if (arg) {
    axes = {ctx.attr_axis("axis", 0)};
  } else {
    if (ctx.has_attr("axes") && ctx.has_input(1)) ctx.fail("give 'axes' as an attribute or as input 1, not both");
    axes = ctx.attr_ints("axes", {}, 0, format::kMaxRank, -8, 7);
    if (ctx.has_input(1)) ctx.require_dtype(1, "axes", {DType::kInt64, DType::kInt32});
  }
  ctx.set_output_dtypes({arg ? DType::kInt64 : ctx.input_dtype(0)});
  return std::make_unique<ReduceOp>(kind, ctx.input_dtype(0), axes, !arg && ctx.has_input(1),
                                    ctx.attr_bool("keepdims", true), ctx.attr_bool("noop_with_empty_axes", false),
                                    arg && ctx.attr_bool("select_last_index", false));
}

}  // namespace

#define SPARSERT_REDUCE(name, kind) \
  std::unique_ptr<Op> name(const NodeContext& ctx) { return make_reduce(ctx, ReduceKind::kind); }
SPARSERT_REDUCE(create_reduce_mean, kMean)
SPARSERT_REDUCE(create_reduce_sum, kSum)
SPARSERT_REDUCE(create_reduce_max, kMax)
SPARSERT_REDUCE(create_reduce_min, kMin)
SPARSERT_REDUCE(create_reduce_prod, kProd)
SPARSERT_REDUCE(create_reduce_l1, kL1)
SPARSERT_REDUCE(create_reduce_l2, kL2)
SPARSERT_REDUCE(create_reduce_sum_square, kSumSquare)
SPARSERT_REDUCE(create_reduce_log_sum_exp, kLogSumExp)
SPARSERT_REDUCE(create_arg_max, kArgMax)
SPARSERT_REDUCE(create_arg_min, kArgMin)
#undef SPARSERT_REDUCE

}  // namespace ops
}  // namespace sparsert
