// Element-wise Add, Sub, Mul, Div with NumPy broadcasting. Either operand may
// be an activation or a dense float32 constant (bias, scale, SE gates).
#include <algorithm>
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace ops {

enum class BinaryKind { kAdd, kSub, kMul, kDiv };

namespace {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      shape_error("shapes " + shape_string(a) + " and " + shape_string(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

template <BinaryKind K>
inline float apply(float x, float y) {
  if (K == BinaryKind::kAdd) return x + y;
  if (K == BinaryKind::kSub) return x - y;
  if (K == BinaryKind::kMul) return x * y;
  return x / y;
}

template <BinaryKind K>
void inner_loop(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = apply<K>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float y = b[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply<K>(a[i], y);
  } else if (sa == 0 && sb == 1) {
    const float x = a[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply<K>(x, b[i]);
  } else {
    const float v = apply<K>(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) out[i] = v;
  }
}

class BinaryOp final : public Op {
 public:
  explicit BinaryOp(BinaryKind kind) : kind_(kind) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    return {broadcast_shapes(inputs[0], inputs[1])};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    switch (kind_) {
      case BinaryKind::kAdd: return run_kind<BinaryKind::kAdd>(ctx, inputs, outputs[0]);
      case BinaryKind::kSub: return run_kind<BinaryKind::kSub>(ctx, inputs, outputs[0]);
      case BinaryKind::kMul: return run_kind<BinaryKind::kMul>(ctx, inputs, outputs[0]);
      case BinaryKind::kDiv: return run_kind<BinaryKind::kDiv>(ctx, inputs, outputs[0]);
    }
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "eltwise_broadcast";
  }

 private:
  template <BinaryKind K>
  void run_kind(const RunContext& ctx, const std::vector<InputRef>& inputs, const OutputRef& out) const {
    const Shape& os = out.shape;
    const size_t rank = os.size();
    const int64_t total = shape_elements(os);
    if (total == 0) return;
    // Element strides of each operand in the output's index space (0 = broadcast).
    std::vector<int64_t> dims, sa, sb;
    {
      std::vector<int64_t> stride_a(rank, 0), stride_b(rank, 0);
      auto fill = [&](const Shape& s, std::vector<int64_t>& st) {
        int64_t acc = 1;
        for (size_t i = 0; i < s.size(); ++i) {
          size_t oi = rank - 1 - i;
          int64_t d = s[s.size() - 1 - i];
          st[oi] = d == 1 ? 0 : acc;
          acc *= d;
        }
      };
      fill(inputs[0].shape, stride_a);
      fill(inputs[1].shape, stride_b);
      // merge adjacent dims that stay contiguous for both operands; drop size-1 dims
      for (size_t i = 0; i < rank; ++i) {
        if (os[i] == 1) continue;
        if (!dims.empty() && sa.back() == stride_a[i] * os[i] && sb.back() == stride_b[i] * os[i]) {
          dims.back() *= os[i];
          sa.back() = stride_a[i];
          sb.back() = stride_b[i];
          continue;
        }
        if (!dims.empty() && sa.back() == 0 && stride_a[i] == 0 && sb.back() == stride_b[i] * os[i]) {
          dims.back() *= os[i];
          sb.back() = stride_b[i];
          continue;
        }
        if (!dims.empty() && sb.back() == 0 && stride_b[i] == 0 && sa.back() == stride_a[i] * os[i]) {
          dims.back() *= os[i];
          sa.back() = stride_a[i];
          continue;
        }
        dims.push_back(os[i]);
        sa.push_back(stride_a[i]);
        sb.push_back(stride_b[i]);
      }
      if (dims.empty()) {
        dims.push_back(1);
        sa.push_back(0);
        sb.push_back(0);
      }
    }
    const size_t r = dims.size();
    const int64_t inner = dims[r - 1];
    const int64_t isa = sa[r - 1], isb = sb[r - 1];
    const int64_t outer = total / inner;
    const float* a = inputs[0].data;
    const float* b = inputs[1].data;
    float* o = out.data;
    const int64_t rows_per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1));
    const int64_t tasks = (outer + rows_per_task - 1) / rows_per_task;
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t row_begin = t * rows_per_task;
      const int64_t row_end = std::min(outer, row_begin + rows_per_task);
      for (int64_t row = row_begin; row < row_end; ++row) {
        // decompose row into outer indices
        int64_t rem = row, off_a = 0, off_b = 0;
        for (size_t d = r - 1; d-- > 0;) {
          int64_t idx = rem % dims[d];
          rem /= dims[d];
          off_a += idx * sa[d];
          off_b += idx * sb[d];
        }
        inner_loop<K>(a + off_a, isa ? 1 : 0, b + off_b, isb ? 1 : 0, o + row * inner, inner);
      }
    });
  }

  BinaryKind kind_;
};

std::unique_ptr<Op> make_binary(const NodeContext& ctx, BinaryKind kind) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  for (size_t i = 0; i < 2; ++i) {
    const format::TensorInfo* c = ctx.constant(i);
    if (c != nullptr && (c->storage != format::Storage::kDense || c->dtype != DType::kFloat32))
      ctx.fail("constant operand '" + c->name + "' must be dense float32");
  }
  return std::make_unique<BinaryOp>(kind);
}

}  // namespace

std::unique_ptr<Op> create_add(const NodeContext& ctx) { return make_binary(ctx, BinaryKind::kAdd); }
std::unique_ptr<Op> create_sub(const NodeContext& ctx) { return make_binary(ctx, BinaryKind::kSub); }
std::unique_ptr<Op> create_mul(const NodeContext& ctx) { return make_binary(ctx, BinaryKind::kMul); }
std::unique_ptr<Op> create_div(const NodeContext& ctx) { return make_binary(ctx, BinaryKind::kDiv); }

}  // namespace ops
}  // namespace sparsert
