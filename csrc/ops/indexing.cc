// Shape, indexing and data-movement ops with ONNX semantics, for every dtype:
//   Shape Size                 the input's shape (computed while planning)
//   Cast                       between float32, int32, int64 and bool
//   ConstantOfShape Range      tensors made from plan-time values
//   Gather GatherElements GatherND Slice Expand Tile Pad Where CumSum Not IsNaN IsInf
// Index inputs are int32 or int64; an index out of range is an error at run
// time (ONNX leaves it undefined; reading outside a tensor is never an option
// here). Inputs that decide a shape (Slice's starts/ends, Expand's shape, ...)
// must be known while planning: constants, or computed from input shapes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "ops/broadcast.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

// Strides of a row-major shape, in elements.
std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// Index i of an int32 / int64 tensor as int64.
inline int64_t index_at(const InputRef& t, int64_t i) {
  return t.dtype == DType::kInt32 ? t.as<int32_t>()[i] : t.as<int64_t>()[i];
}

// An index into a dim of size n, negative counting from the end; throws when out of range.
inline int64_t resolve_index(int64_t v, int64_t n, const char* what) {
  const int64_t r = v < 0 ? v + n : v;
  if (r < 0 || r >= n)
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + " " + std::to_string(v) +
                                                 " is out of range for a dim of size " + std::to_string(n));
  return r;
}

void copy_elements(const void* src, int64_t src_index, void* dst, int64_t dst_index, int64_t count,
                   size_t esize) {
  if (count <= 0) return;
  std::memcpy(static_cast<char*>(dst) + dst_index * esize, static_cast<const char*>(src) + src_index * esize,
              static_cast<size_t>(count) * esize);
}

// The accumulator of a sum: double for floats, the unsigned type (wrapping) for integers.
template <typename T, bool = std::is_floating_point<T>::value>
struct SumType {
  using type = double;
};
template <typename T>
struct SumType<T, false> {
  using type = typename std::make_unsigned<T>::type;
};

// --- Shape / Size ------------------------------------------------------------------

class ShapeOp final : public Op {
 public:
  ShapeOp(bool size, int64_t start, int64_t end, bool has_end) : size_(size), start_(start), end_(end), has_end_(has_end) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    if (size_) return {Shape{}};
    int64_t b, e;
    range(static_cast<int64_t>(inputs[0].size()), &b, &e);
    return {Shape{e - b}};
  }

  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& s = inputs[0].shape;
    int64_t* y = outputs[0].as<int64_t>();
    if (size_) {
      *y = shape_elements(s);
      return;
    }
    int64_t b, e;
    range(static_cast<int64_t>(s.size()), &b, &e);
    for (int64_t i = b; i < e; ++i) y[i - b] = s[i];
  }

  bool shape_only() const override { return true; }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "shape";
  }

 private:
  void range(int64_t rank, int64_t* b, int64_t* e) const {
    auto clamp = [rank](int64_t v) { return std::max<int64_t>(0, std::min(rank, v < 0 ? v + rank : v)); };
    *b = clamp(start_);
    *e = has_end_ ? clamp(end_) : rank;
    if (*e < *b) *e = *b;
  }
  bool size_;
  int64_t start_, end_;
  bool has_end_;
};

// --- Cast -------------------------------------------------------------------------

template <typename To, typename From>
To cast_value(From v) {
  if constexpr (std::is_same<To, uint8_t>::value) {
    return static_cast<uint8_t>(v != From(0));
  } else if constexpr (std::is_floating_point<From>::value && !std::is_floating_point<To>::value) {
    // float -> int: NaN gives 0 and out-of-range values saturate (a plain cast would be undefined)
    if (!(v == v)) return To(0);
    const double d = static_cast<double>(v);
    if (d >= static_cast<double>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    if (d <= static_cast<double>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

class CastOp final : public Op {
 public:
  CastOp(DType from, DType to) : from_(from), to_(to) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override { return {inputs[0]}; }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const int64_t n = shape_elements(inputs[0].shape);
    dispatch_dtype(from_, [&](auto from_tag) {
      using From = decltype(from_tag);
      dispatch_dtype(to_, [&](auto to_tag) {
        using To = decltype(to_tag);
        const From* x = inputs[0].as<From>();
        To* y = outputs[0].as<To>();
        for (int64_t i = 0; i < n; ++i) y[i] = cast_value<To>(x[i]);
      });
    });
  }
  int alias_of_input() const override { return from_ == to_ ? 0 : -1; }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = std::string("cast_") + dtype_name(from_) + "_" + dtype_name(to_);
  }

 private:
  DType from_, to_;
};

// --- ConstantOfShape / Range ------------------------------------------------------------

class ConstantOfShapeOp final : public Op {
 public:
  ConstantOfShapeOp(DType dtype, double value) : dtype_(dtype), value_(value) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>&) const override {
    shape_error("ConstantOfShape needs its shape input while planning");
  }
  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    if (inputs[0].shape.size() != 1) shape_error("ConstantOfShape input must be 1-D");
    const std::vector<int64_t> dims = known_ints(inputs[0], "ConstantOfShape input 'shape'");
    for (int64_t d : dims)
      if (d < 0) shape_error("ConstantOfShape shape " + shape_string(dims) + " has a negative dim");
    return {dims};
  }
  void run(const RunContext&, const std::vector<InputRef>&, const std::vector<OutputRef>& outputs) const override {
    const int64_t n = shape_elements(outputs[0].shape);
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
      T* y = outputs[0].as<T>();
      const T v = cast_value<T>(value_);
      for (int64_t i = 0; i < n; ++i) y[i] = v;
    });
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "fill";
  }

 private:
  DType dtype_;
  double value_;
};

class RangeOp final : public Op {
 public:
  explicit RangeOp(DType dtype) : dtype_(dtype) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>&) const override {
    shape_error("Range needs start, limit and delta while planning");
  }
  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    for (int i = 0; i < 3; ++i)
      if (shape_elements(inputs[i].shape) != 1 || inputs[i].value == nullptr)
        shape_error("Range start, limit and delta must be scalars known while planning");
    double v[3];
    for (int i = 0; i < 3; ++i) {
      if (dtype_ == DType::kFloat32)
        v[i] = inputs[i].as<float>()[0];
      else
        v[i] = static_cast<double>(known_ints(inputs[i], "Range input")[0]);
    }
    if (v[2] == 0.0 || !std::isfinite(v[0]) || !std::isfinite(v[1]) || !std::isfinite(v[2]))
      shape_error("Range delta must be non-zero and every bound finite");
    const double count = std::ceil((v[1] - v[0]) / v[2]);
    if (!(count < static_cast<double>(kMaxDim))) shape_error("Range would have more than 2^40 elements");
    return {Shape{std::max<int64_t>(0, static_cast<int64_t>(count))}};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const int64_t n = outputs[0].shape[0];
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same<T, uint8_t>::value) {
        const T start = inputs[0].as<T>()[0], delta = inputs[2].as<T>()[0];
        T* y = outputs[0].as<T>();
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(start + static_cast<T>(i) * delta);
      }
    });
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "range";
  }

 private:
  DType dtype_;
};

// --- Gather family ------------------------------------------------------------------

class GatherOp final : public Op {
 public:
  explicit GatherOp(int64_t axis) : axis_(axis) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(x.size()), "Gather axis");
    Shape y(x.begin(), x.begin() + axis);
    y.insert(y.end(), inputs[1].begin(), inputs[1].end());
    y.insert(y.end(), x.begin() + axis + 1, x.end());
    if (y.size() > format::kMaxRank) shape_error("Gather output rank exceeds 8");
    return {y};
  }
  void run(const RunContext& ctx, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& x = inputs[0].shape;
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(x.size()), "Gather axis");
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= x[i];
    for (size_t i = axis + 1; i < x.size(); ++i) inner *= x[i];
    const int64_t n = x[axis];
    const int64_t count = shape_elements(inputs[1].shape);
    const size_t esize = dtype_size(inputs[0].dtype);
    if (outer * count * inner == 0) return;
    // indices first, so a bad one fails before anything is written
    std::vector<int64_t> idx(static_cast<size_t>(count));
    for (int64_t j = 0; j < count; ++j) idx[j] = resolve_index(index_at(inputs[1], j), n, "Gather index");
    const int64_t rows = outer * count;
    const int64_t per_task = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, inner * static_cast<int64_t>(esize)));
    ctx.parallel_for((rows + per_task - 1) / per_task, [&](int64_t t) {
      const int64_t r1 = std::min(rows, (t + 1) * per_task);
      for (int64_t r = t * per_task; r < r1; ++r) {
        const int64_t o = r / count, j = r % count;
        copy_elements(inputs[0].raw, (o * n + idx[j]) * inner, outputs[0].raw, r * inner, inner, esize);
      }
    });
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "gather_rows";
  }

 private:
  int64_t axis_;
};

class GatherElementsOp final : public Op {
 public:
  explicit GatherElementsOp(int64_t axis) : axis_(axis) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    if (inputs[0].size() != inputs[1].size()) shape_error("GatherElements data and indices must have the same rank");
    normalize_axis(axis_, static_cast<int64_t>(inputs[0].size()), "GatherElements axis");
    for (size_t i = 0; i < inputs[0].size(); ++i)
      if (static_cast<int64_t>(i) != normalize_axis(axis_, static_cast<int64_t>(inputs[0].size()), "axis") &&
          inputs[1][i] > inputs[0][i])
        shape_error("GatherElements indices " + shape_string(inputs[1]) + " exceed data " + shape_string(inputs[0]));
    return {inputs[1]};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const Shape& is = inputs[1].shape;
    const int64_t rank = static_cast<int64_t>(xs.size());
    const int64_t axis = normalize_axis(axis_, rank, "GatherElements axis");
    const std::vector<int64_t> xst = strides_of(xs);
    const int64_t total = shape_elements(is);
    const size_t esize = dtype_size(inputs[0].dtype);
    std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
    for (int64_t k = 0; k < total; ++k) {
      int64_t src = 0;
      for (int64_t d = 0; d < rank; ++d)
        src += (d == axis ? resolve_index(index_at(inputs[1], k), xs[d], "GatherElements index") : pos[d]) * xst[d];
      copy_elements(inputs[0].raw, src, outputs[0].raw, k, 1, esize);
      for (int64_t d = rank; d-- > 0;) {
        if (++pos[d] < is[d]) break;
        pos[d] = 0;
      }
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "gather_elements_ref";
  }

 private:
  int64_t axis_;
};

class GatherNDOp final : public Op {
 public:
  explicit GatherNDOp(int64_t batch_dims) : batch_dims_(batch_dims) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    const Shape& i = inputs[1];
    const int64_t b = batch_dims_;
    if (i.empty() || static_cast<int64_t>(i.size()) <= b || static_cast<int64_t>(x.size()) <= b)
      shape_error("GatherND indices must have rank > batch_dims");
    const int64_t k = i.back();
    if (k < 1 || b + k > static_cast<int64_t>(x.size())) shape_error("GatherND index depth does not fit the data");
    for (int64_t d = 0; d < b; ++d)
      if (x[d] != i[d]) shape_error("GatherND batch dims of data and indices differ");
    Shape y(i.begin(), i.end() - 1);
    y.insert(y.end(), x.begin() + b + k, x.end());
    if (y.size() > format::kMaxRank) shape_error("GatherND output rank exceeds 8");
    return {y};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& x = inputs[0].shape;
    const Shape& is = inputs[1].shape;
    const int64_t b = batch_dims_, k = is.back();
    const std::vector<int64_t> xst = strides_of(x);
    int64_t batch = 1, per_batch = 1, inner = 1;
    for (int64_t d = 0; d < b; ++d) batch *= x[d];
    for (size_t d = b; d + 1 < is.size(); ++d) per_batch *= is[d];
    for (size_t d = b + k; d < x.size(); ++d) inner *= x[d];
    const int64_t batch_stride = b > 0 ? xst[b - 1] : 0;
    const size_t esize = dtype_size(inputs[0].dtype);
    for (int64_t bi = 0; bi < batch; ++bi) {
      for (int64_t j = 0; j < per_batch; ++j) {
        const int64_t row = bi * per_batch + j;
        int64_t src = bi * batch_stride;
        for (int64_t q = 0; q < k; ++q)
          src += resolve_index(index_at(inputs[1], row * k + q), x[b + q], "GatherND index") * xst[b + q];
        copy_elements(inputs[0].raw, src, outputs[0].raw, row * inner, inner, esize);
      }
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "gather_nd_ref";
  }

 private:
  int64_t batch_dims_;
};

// --- Slice ------------------------------------------------------------------------------

struct SliceAxis {
  int64_t start = 0, step = 1, count = 0;
};

class SliceOp final : public Op {
 public:
  std::vector<Shape> infer_shapes(const std::vector<Shape>&) const override {
    shape_error("Slice needs starts and ends while planning");
  }
  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    const std::vector<SliceAxis> axes = plan(inputs);
    Shape y(axes.size());
    for (size_t i = 0; i < axes.size(); ++i) y[i] = axes[i].count;
    return {y};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    std::vector<TensorMeta> metas;
    for (const auto& in : inputs) metas.push_back(TensorMeta{in.dtype, in.shape, in.raw, in.raw != nullptr || !in.shape.empty()});
    const std::vector<SliceAxis> axes = plan(metas);
    const Shape& xs = inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(xs.size());
    const std::vector<int64_t> st = strides_of(xs);
    const int64_t total = shape_elements(outputs[0].shape);
    if (total == 0) return;
    const size_t esize = dtype_size(inputs[0].dtype);
    if (rank == 0) {
      copy_elements(inputs[0].raw, 0, outputs[0].raw, 0, 1, esize);
      return;
    }
    // rows of the last axis: contiguous when its step is 1
    const SliceAxis& last = axes[rank - 1];
    const int64_t rows = total / last.count;
    std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t src = 0;
      for (int64_t d = 0; d + 1 < rank; ++d) src += (axes[d].start + pos[d] * axes[d].step) * st[d];
      if (last.step == 1) {
        copy_elements(inputs[0].raw, src + last.start, outputs[0].raw, r * last.count, last.count, esize);
      } else {
        for (int64_t j = 0; j < last.count; ++j)
          copy_elements(inputs[0].raw, src + last.start + j * last.step, outputs[0].raw, r * last.count + j, 1, esize);
      }
      for (int64_t d = rank - 1; d-- > 0;) {
        if (++pos[d] < axes[d].count) break;
        pos[d] = 0;
      }
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "slice_copy";
  }

 private:
  // numpy / ONNX slicing: clamped starts and ends, negative steps run backwards.
  static std::vector<SliceAxis> plan(const std::vector<TensorMeta>& inputs) {
    const Shape& xs = inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(xs.size());
    std::vector<SliceAxis> out(static_cast<size_t>(rank));
    for (int64_t d = 0; d < rank; ++d) out[d] = SliceAxis{0, 1, xs[d]};
    const std::vector<int64_t> starts = known_ints(inputs[1], "Slice starts");
    const std::vector<int64_t> ends = known_ints(inputs[2], "Slice ends");
    if (starts.size() != ends.size()) shape_error("Slice starts and ends differ in length");
    std::vector<int64_t> axes(starts.size()), steps(starts.size(), 1);
    for (size_t i = 0; i < axes.size(); ++i) axes[i] = static_cast<int64_t>(i);
    if (inputs.size() > 3 && inputs[3].present) axes = known_ints(inputs[3], "Slice axes");
    if (inputs.size() > 4 && inputs[4].present) steps = known_ints(inputs[4], "Slice steps");
    if (axes.size() != starts.size() || steps.size() != starts.size())
      shape_error("Slice starts, ends, axes and steps differ in length");
    std::vector<bool> seen(static_cast<size_t>(rank), false);
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t a = normalize_axis(axes[i], rank, "Slice axis");
      if (seen[a]) shape_error("Slice names axis " + std::to_string(a) + " twice");
      seen[a] = true;
      const int64_t n = xs[a], step = steps[i];
      if (step == 0) shape_error("Slice step is 0");
      auto clamp = [](int64_t v, int64_t lo, int64_t hi) { return std::max(lo, std::min(hi, v)); };
      int64_t s = starts[i], e = ends[i];
      // huge sentinels (INT64_MAX, INT64_MIN) must not overflow: clamp before adding n
      s = s < 0 ? (s < -n ? -n : s) + n : s;
      e = e < 0 ? (e < -n - 1 ? -n - 1 : e) + n : e;
      int64_t count;
      if (step > 0) {
        s = clamp(s, 0, n);
        e = clamp(e, 0, n);
        count = e > s ? (e - s + step - 1) / step : 0;
      } else {
        s = clamp(s, -1, n - 1);
        e = clamp(e, -1, n - 1);
        // onnxruntime reads an end of INT64_MAX with a negative step as "through the first
        // element" (exporters write it for x[::-1]); the spec's clamp would give an empty
        // slice. Real models are validated against onnxruntime, so follow it.
        if (ends[i] == std::numeric_limits<int64_t>::max()) e = -1;
        count = s > e ? (s - e + (-step) - 1) / (-step) : 0;
      }
      out[a] = SliceAxis{count > 0 ? s : 0, step, count};
    }
    return out;
  }
};

// --- Expand / Tile / Where -------------------------------------------------------------

// Writes the broadcast of inputs (all of element size esize) into `out` with
// element fn(out_index, offsets...). Used by Expand and Where.
class ExpandOp final : public Op {
 public:
  std::vector<Shape> infer_shapes(const std::vector<Shape>&) const override {
    shape_error("Expand needs its shape input while planning");
  }
  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    if (inputs[1].shape.size() != 1) shape_error("Expand shape must be 1-D");
    const std::vector<int64_t> target = known_ints(inputs[1], "Expand input 'shape'");
    for (int64_t d : target)
      if (d < 0) shape_error("Expand shape " + shape_string(target) + " has a negative dim");
    return {broadcast_or_throw(inputs[0].shape, target)};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const int64_t total = shape_elements(outputs[0].shape);
    if (total == 0) return;
    const BroadcastLoop loop = make_broadcast_loop(outputs[0].shape, {inputs[0].shape});
    const size_t esize = dtype_size(inputs[0].dtype);
    const int64_t inner = loop.inner();
    for (int64_t row = 0; row < loop.outer(); ++row) {
      const int64_t src = loop.offset(0, row);
      if (loop.inner_stride(0) == 1) {
        copy_elements(inputs[0].raw, src, outputs[0].raw, row * inner, inner, esize);
      } else {
        for (int64_t j = 0; j < inner; ++j) copy_elements(inputs[0].raw, src, outputs[0].raw, row * inner + j, 1, esize);
      }
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "broadcast_copy";
  }
};

class TileOp final : public Op {
 public:
  std::vector<Shape> infer_shapes(const std::vector<Shape>&) const override {
    shape_error("Tile needs its repeats while planning");
  }
  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    const std::vector<int64_t> reps = known_ints(inputs[1], "Tile repeats");
    const Shape& x = inputs[0].shape;
    if (reps.size() != x.size()) shape_error("Tile repeats must have one entry per input dim");
    Shape y(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      if (reps[i] < 0) shape_error("Tile repeats must be >= 0");
      y[i] = checked_mul(x[i], reps[i], "Tile output dim");
    }
    return {y};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const Shape& ys = outputs[0].shape;
    const int64_t total = shape_elements(ys);
    if (total == 0) return;
    const int64_t rank = static_cast<int64_t>(xs.size());
    const std::vector<int64_t> st = strides_of(xs);
    const size_t esize = dtype_size(inputs[0].dtype);
    std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
    for (int64_t k = 0; k < total; ++k) {
      int64_t src = 0;
      for (int64_t d = 0; d < rank; ++d) src += (pos[d] % xs[d]) * st[d];
      copy_elements(inputs[0].raw, src, outputs[0].raw, k, 1, esize);
      for (int64_t d = rank; d-- > 0;) {
        if (++pos[d] < ys[d]) break;
        pos[d] = 0;
      }
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "tile_ref";
  }
};

class WhereOp final : public Op {
 public:
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    Shape out;
    if (!broadcast_shapes({inputs[0], inputs[1], inputs[2]}, &out))
      shape_error("Where inputs " + shape_string(inputs[0]) + ", " + shape_string(inputs[1]) + ", " +
                  shape_string(inputs[2]) + " do not broadcast");
    return {out};
  }
  void run(const RunContext& ctx, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const int64_t total = shape_elements(outputs[0].shape);
    if (total == 0) return;
    const BroadcastLoop loop =
        make_broadcast_loop(outputs[0].shape, {inputs[0].shape, inputs[1].shape, inputs[2].shape});
    const size_t esize = dtype_size(inputs[1].dtype);
    const uint8_t* c = inputs[0].as<uint8_t>();
    const int64_t inner = loop.inner();
    const int64_t sc = loop.inner_stride(0), sa = loop.inner_stride(1), sb = loop.inner_stride(2);
    const int64_t rows_per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1));
    const int64_t outer = loop.outer();
    ctx.parallel_for((outer + rows_per_task - 1) / rows_per_task, [&](int64_t t) {
      const int64_t r1 = std::min(outer, (t + 1) * rows_per_task);
      for (int64_t row = t * rows_per_task; row < r1; ++row) {
        const int64_t oc = loop.offset(0, row), oa = loop.offset(1, row), ob = loop.offset(2, row);
        for (int64_t j = 0; j < inner; ++j) {
          const bool pick = c[oc + j * sc] != 0;
          copy_elements(pick ? inputs[1].raw : inputs[2].raw, pick ? oa + j * sa : ob + j * sb, outputs[0].raw,
                        row * inner + j, 1, esize);
        }
      }
    });
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "where_broadcast";
  }
};

// --- Pad ----------------------------------------------------------------------------------

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

class PadOp final : public Op {
 public:
  PadOp(PadMode mode, std::vector<int64_t> pads, bool pads_from_input) : mode_(mode), pads_(std::move(pads)), from_input_(pads_from_input) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    if (from_input_) shape_error("Pad needs its pads while planning");
    return {out_shape(inputs[0], pads_)};
  }
  std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const override {
    return {out_shape(inputs[0].shape, pads_of(inputs))};
  }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    std::vector<TensorMeta> metas;
    for (const auto& in : inputs) metas.push_back(TensorMeta{in.dtype, in.shape, in.raw, in.raw != nullptr});
    const std::vector<int64_t> pads = pads_of(metas);
    const Shape& xs = inputs[0].shape;
    const Shape& ys = outputs[0].shape;
    const int64_t rank = static_cast<int64_t>(xs.size());
    const int64_t total = shape_elements(ys);
    if (total == 0) return;
    const size_t esize = dtype_size(inputs[0].dtype);
    const std::vector<int64_t> st = strides_of(xs);
    // the fill value as bytes of the tensor's dtype
    alignas(8) char fill[8] = {};
    if (inputs.size() > 2 && inputs[2].raw != nullptr && shape_elements(inputs[2].shape) >= 1)
      std::memcpy(fill, inputs[2].raw, esize);
    bool empty_input = shape_elements(xs) == 0;
    for (int64_t d = 0; d < rank; ++d)  // cropped to nothing along d
      empty_input |= xs[d] + std::min<int64_t>(pads[d], 0) + std::min<int64_t>(pads[rank + d], 0) <= 0;
    if (empty_input && mode_ != PadMode::kConstant)
      throw Error(ErrorCode::kInvalidArgument, "Pad of an empty (or wholly cropped) tensor needs mode 'constant'");
    std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
    for (int64_t k = 0; k < total; ++k) {
      int64_t src = 0;
      bool outside = false;
      for (int64_t d = 0; d < rank && !outside; ++d) {
        // Negative pads crop first (ONNX): the padding modes then see only the kept
        // range [lo, lo + n) of the input.
        const int64_t lo = pads[d] < 0 ? -pads[d] : 0;
        const int64_t n = xs[d] - lo - (pads[rank + d] < 0 ? -pads[rank + d] : 0);
        int64_t i = pos[d] - (pads[d] > 0 ? pads[d] : 0);
        if (i < 0 || i >= n) {
          switch (mode_) {
            case PadMode::kConstant:
              outside = true;
              break;
            case PadMode::kEdge:
              i = i < 0 ? 0 : n - 1;
              break;
            case PadMode::kWrap:
              i = ((i % n) + n) % n;
              break;
            case PadMode::kReflect: {
              if (n == 1) {
                i = 0;
                break;
              }
              const int64_t period = 2 * (n - 1);
              i = ((i % period) + period) % period;
              if (i >= n) i = period - i;
              break;
            }
          }
        }
        src += (lo + i) * st[d];
      }
      if (outside)
        std::memcpy(static_cast<char*>(outputs[0].raw) + k * esize, fill, esize);
      else
        copy_elements(inputs[0].raw, src, outputs[0].raw, k, 1, esize);
      for (int64_t d = rank; d-- > 0;) {
        if (++pos[d] < ys[d]) break;
        pos[d] = 0;
      }
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "pad_ref";
  }

 private:
  std::vector<int64_t> pads_of(const std::vector<TensorMeta>& inputs) const {
    if (!from_input_) return pads_;
    std::vector<int64_t> pads = known_ints(inputs[1], "Pad pads");
    const int64_t rank = static_cast<int64_t>(inputs[0].shape.size());
    if (inputs.size() > 3 && inputs[3].present) {  // axes: pads for those axes only
      const std::vector<int64_t> axes = known_ints(inputs[3], "Pad axes");
      if (pads.size() != 2 * axes.size()) shape_error("Pad pads must have 2 entries per axis");
      std::vector<int64_t> full(static_cast<size_t>(2 * rank), 0);
      for (size_t i = 0; i < axes.size(); ++i) {
        const int64_t a = normalize_axis(axes[i], rank, "Pad axis");
        full[a] = pads[i];
        full[rank + a] = pads[axes.size() + i];
      }
      pads = full;
    }
    return pads;
  }
  static Shape out_shape(const Shape& x, const std::vector<int64_t>& pads) {
    const size_t rank = x.size();
    if (pads.size() != 2 * rank) shape_error("Pad pads must have 2 x rank = " + std::to_string(2 * rank) + " entries");
    Shape y(rank);
    for (size_t i = 0; i < rank; ++i) {
      if (pads[i] < -kMaxDim || pads[i] > kMaxDim || pads[rank + i] < -kMaxDim || pads[rank + i] > kMaxDim)
        shape_error("Pad pads are out of range");
      y[i] = x[i] + pads[i] + pads[rank + i];
      if (y[i] < 0) shape_error("Pad crops more than the input has");
    }
    return y;
  }
  PadMode mode_;
  std::vector<int64_t> pads_;
  bool from_input_;
};

// --- CumSum, Not, IsNaN, IsInf -----------------------------------------------------------

class CumSumOp final : public Op {
 public:
  CumSumOp(DType dtype, bool exclusive, bool reverse) : dtype_(dtype), exclusive_(exclusive), reverse_(reverse) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override { return {inputs[0]}; }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t rank = static_cast<int64_t>(xs.size());
    if (shape_elements(inputs[1].shape) != 1) throw Error(ErrorCode::kInvalidArgument, "CumSum axis must be a scalar");
    const int64_t axis = normalize_axis(index_at(inputs[1], 0), std::max<int64_t>(rank, 1), "CumSum axis");
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= xs[i];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= xs[i];
    const int64_t n = rank == 0 ? 1 : xs[axis];
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same<T, uint8_t>::value) {
        using Acc = typename SumType<T>::type;
        const T* x = inputs[0].as<T>();
        T* y = outputs[0].as<T>();
        for (int64_t o = 0; o < outer; ++o) {
          for (int64_t j = 0; j < inner; ++j) {
            Acc acc = 0;
            for (int64_t s = 0; s < n; ++s) {
              const int64_t i = reverse_ ? n - 1 - s : s;
              const int64_t at = (o * n + i) * inner + j;
              const T v = x[at];
              if (exclusive_) {
                y[at] = static_cast<T>(acc);
                acc = static_cast<Acc>(acc + static_cast<Acc>(v));
              } else {
                acc = static_cast<Acc>(acc + static_cast<Acc>(v));
                y[at] = static_cast<T>(acc);
              }
            }
          }
        }
      }
    });
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "cumsum_ref";
  }

 private:
  DType dtype_;
  bool exclusive_, reverse_;
};

enum class PredicateKind { kNot, kIsNaN, kIsInf };

class PredicateOp final : public Op {
 public:
  PredicateOp(PredicateKind kind, bool pos, bool neg) : kind_(kind), pos_(pos), neg_(neg) {}
  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override { return {inputs[0]}; }
  void run(const RunContext&, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const int64_t n = shape_elements(inputs[0].shape);
    uint8_t* y = outputs[0].as<uint8_t>();
    if (kind_ == PredicateKind::kNot) {
      const uint8_t* x = inputs[0].as<uint8_t>();
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] == 0;
      return;
    }
    const float* x = inputs[0].f32();
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      y[i] = kind_ == PredicateKind::kIsNaN ? v != v : ((pos_ && v == std::numeric_limits<float>::infinity()) ||
                                                        (neg_ && v == -std::numeric_limits<float>::infinity()));
    }
  }
  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "predicate";
  }

 private:
  PredicateKind kind_;
  bool pos_, neg_;
};

DType cast_target(const NodeContext& ctx) {
  // ONNX TensorProto codes
  switch (ctx.attr_int("to", 1, 0, 100)) {
    case 1:
      return DType::kFloat32;
    case 6:
      return DType::kInt32;
    case 7:
      return DType::kInt64;
    case 9:
      return DType::kBool;
    default:
      ctx.fail("attribute 'to' must be 1 (float32), 6 (int32), 7 (int64) or 9 (bool)", ErrorCode::kUnsupported);
  }
}

const std::initializer_list<DType> kAnyDtype = {DType::kFloat32, DType::kInt32, DType::kInt64, DType::kBool};

}  // namespace

std::unique_ptr<Op> create_shape(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  ctx.set_output_dtypes({DType::kInt64});
  return std::make_unique<ShapeOp>(false, ctx.attr_int("start", 0, -64, 64), ctx.attr_int("end", 0, -64, 64),
                                   ctx.has_attr("end"));
}

std::unique_ptr<Op> create_size(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  ctx.set_output_dtypes({DType::kInt64});
  return std::make_unique<ShapeOp>(true, 0, 0, false);
}

std::unique_ptr<Op> create_cast(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  const DType to = cast_target(ctx);
  ctx.set_output_dtypes({to});
  return std::make_unique<CastOp>(ctx.input_dtype(0), to);
}

std::unique_ptr<Op> create_constant_of_shape(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "shape", {DType::kInt64, DType::kInt32});
  const DType dtype = ctx.has_attr("to") ? cast_target(ctx) : DType::kFloat32;
  const double value = ctx.attr_float("value", 0.0, -1e300, 1e300);
  ctx.set_output_dtypes({dtype});
  return std::make_unique<ConstantOfShapeOp>(dtype, value);
}

std::unique_ptr<Op> create_range(const NodeContext& ctx) {
  ctx.check_input_count(3, 3);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "start", {DType::kFloat32, DType::kInt32, DType::kInt64});
  for (size_t i = 1; i < 3; ++i)
    if (ctx.input_dtype(i) != ctx.input_dtype(0)) ctx.fail("start, limit and delta must have one dtype");
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<RangeOp>(ctx.input_dtype(0));
}

std::unique_ptr<Op> create_gather(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "data", kAnyDtype);
  ctx.require_dtype(1, "indices", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<GatherOp>(ctx.attr_axis("axis", 0));
}

std::unique_ptr<Op> create_gather_elements(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "data", kAnyDtype);
  ctx.require_dtype(1, "indices", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<GatherElementsOp>(ctx.attr_axis("axis", 0));
}

std::unique_ptr<Op> create_gather_nd(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "data", kAnyDtype);
  ctx.require_dtype(1, "indices", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<GatherNDOp>(ctx.attr_int("batch_dims", 0, 0, 7));
}

std::unique_ptr<Op> create_slice(const NodeContext& ctx) {
  ctx.check_input_count(3, 5);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "data", kAnyDtype);
  for (size_t i = 1; i < 5; ++i)
    if (ctx.has_input(i)) ctx.require_dtype(i, "starts / ends / axes / steps", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<SliceOp>();
}

std::unique_ptr<Op> create_expand(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "input", kAnyDtype);
  ctx.require_dtype(1, "shape", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<ExpandOp>();
}

std::unique_ptr<Op> create_tile(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "input", kAnyDtype);
  ctx.require_dtype(1, "repeats", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<TileOp>();
}

std::unique_ptr<Op> create_where(const NodeContext& ctx) {
  ctx.check_input_count(3, 3);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "condition", {DType::kBool});
  ctx.require_dtype(1, "X", kAnyDtype);
  if (ctx.input_dtype(2) != ctx.input_dtype(1)) ctx.fail("X and Y must have the same dtype", ErrorCode::kUnsupported);
  ctx.set_output_dtypes({ctx.input_dtype(1)});
  return std::make_unique<WhereOp>();
}

std::unique_ptr<Op> create_pad(const NodeContext& ctx) {
  ctx.check_input_count(1, 4);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "data", kAnyDtype);
  const std::string mode = ctx.attr_choice("mode", "constant", {"constant", "reflect", "edge", "wrap"});
  const PadMode m = mode == "constant" ? PadMode::kConstant
                    : mode == "reflect" ? PadMode::kReflect
                    : mode == "edge"    ? PadMode::kEdge
                                        : PadMode::kWrap;
  if (ctx.has_input(1)) ctx.require_dtype(1, "pads", {DType::kInt64, DType::kInt32});
  if (ctx.has_input(2) && ctx.input_dtype(2) != ctx.input_dtype(0))
    ctx.fail("constant_value must have the data's dtype", ErrorCode::kUnsupported);
  if (ctx.has_input(3)) ctx.require_dtype(3, "axes", {DType::kInt64, DType::kInt32});
  const std::vector<int64_t> pads = ctx.attr_ints("pads", {}, 0, 2 * format::kMaxRank, 0, kMaxSpatial);
  if (!ctx.has_input(1) && !ctx.has_attr("pads")) ctx.fail("needs pads (input 1 or the 'pads' attribute)");
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<PadOp>(m, pads, ctx.has_input(1));
}

std::unique_ptr<Op> create_cum_sum(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "x", {DType::kFloat32, DType::kInt32, DType::kInt64});
  ctx.require_dtype(1, "axis", {DType::kInt64, DType::kInt32});
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<CumSumOp>(ctx.input_dtype(0), ctx.attr_bool("exclusive", false), ctx.attr_bool("reverse", false));
}

std::unique_ptr<Op> create_not(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "X", {DType::kBool});
  ctx.set_output_dtypes({DType::kBool});
  return std::make_unique<PredicateOp>(PredicateKind::kNot, false, false);
}

std::unique_ptr<Op> create_is_nan(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "X", {DType::kFloat32});
  ctx.set_output_dtypes({DType::kBool});
  return std::make_unique<PredicateOp>(PredicateKind::kIsNaN, false, false);
}

std::unique_ptr<Op> create_is_inf(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  ctx.require_dtype(0, "X", {DType::kFloat32});
  ctx.set_output_dtypes({DType::kBool});
  return std::make_unique<PredicateOp>(PredicateKind::kIsInf, ctx.attr_bool("detect_positive", true),
                                       ctx.attr_bool("detect_negative", true));
}

}  // namespace ops
}  // namespace sparsert
