// Element-wise binary ops with NumPy broadcasting (ops/broadcast.h):
//   arithmetic  Add Sub Mul Div Pow Max Min Mod   float32, int32, int64 (Pow: float32)
//   PRelu       x < 0 ? slope * x : x (slope broadcasts, float32)
//   comparison  Equal Less Greater LessOrEqual GreaterOrEqual -> bool
//   logic       And Or Xor                                     bool -> bool
// Both operands have the same dtype (the converter inserts Casts). Integer
// division and modulo by zero give 0 and INT_MIN / -1 gives INT_MIN, instead
// of trapping: a model file must never be able to crash the process.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/multiversion.h"
#include "ops/broadcast.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

enum class BinaryKind {
  kAdd, kSub, kMul, kDiv, kPow, kMax, kMin, kMod, kFmod, kPRelu,
  kEqual, kLess, kGreater, kLessOrEqual, kGreaterOrEqual,
  kAnd, kOr, kXor,
};

bool is_comparison(BinaryKind k) { return k >= BinaryKind::kEqual && k <= BinaryKind::kGreaterOrEqual; }
bool is_logic(BinaryKind k) { return k >= BinaryKind::kAnd; }

// Integer + - * wrap around (two's complement) instead of overflowing, which
// would be undefined behaviour.
template <typename T>
inline T wrap_add(T x, T y) {
  using U = typename std::make_unsigned<T>::type;
  return static_cast<T>(static_cast<U>(x) + static_cast<U>(y));
}
template <typename T>
inline T wrap_sub(T x, T y) {
  using U = typename std::make_unsigned<T>::type;
  return static_cast<T>(static_cast<U>(x) - static_cast<U>(y));
}
template <typename T>
inline T wrap_mul(T x, T y) {
  using U = typename std::make_unsigned<T>::type;
  return static_cast<T>(static_cast<U>(x) * static_cast<U>(y));
}

template <typename T>
inline T int_div(T x, T y) {
  if (y == 0) return 0;
  if (y == -1) return wrap_sub(static_cast<T>(0), x);  // INT_MIN / -1 wraps to INT_MIN
  return x / y;
}

template <typename T>
inline T int_mod(T x, T y) {  // sign of the divisor, as Python and ONNX Mod(fmod=0)
  if (y == 0 || y == -1) return 0;
  const T r = x % y;
  return (r != 0 && ((r < 0) != (y < 0))) ? wrap_add(r, y) : r;
}

template <BinaryKind K, typename T>
inline auto apply(T x, T y) {
  if constexpr (K == BinaryKind::kAdd) {
    if constexpr (std::is_floating_point<T>::value) return x + y;
    else return wrap_add(x, y);
  }
  if constexpr (K == BinaryKind::kSub) {
    if constexpr (std::is_floating_point<T>::value) return x - y;
    else return wrap_sub(x, y);
  }
  if constexpr (K == BinaryKind::kMul) {
    if constexpr (std::is_floating_point<T>::value) return x * y;
    else return wrap_mul(x, y);
  }
  if constexpr (K == BinaryKind::kDiv) {
    if constexpr (std::is_floating_point<T>::value) return x / y;
    else return int_div(x, y);
  }
  if constexpr (K == BinaryKind::kPow) return static_cast<T>(std::pow(x, y));
  if constexpr (K == BinaryKind::kPRelu) return x < T(0) ? static_cast<T>(y * x) : x;
  if constexpr (K == BinaryKind::kMax) {
    if constexpr (std::is_floating_point<T>::value) {
      if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<T>::quiet_NaN();
    }
    return x < y ? y : x;
  }
  if constexpr (K == BinaryKind::kMin) {
    if constexpr (std::is_floating_point<T>::value) {
      if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<T>::quiet_NaN();
    }
    return y < x ? y : x;
  }
  if constexpr (K == BinaryKind::kMod) {
    if constexpr (std::is_floating_point<T>::value) {
      const T r = std::fmod(x, y);
      return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
    } else {
      return int_mod(x, y);
    }
  }
  if constexpr (K == BinaryKind::kFmod) {
    if constexpr (std::is_floating_point<T>::value) return std::fmod(x, y);
    else return (y == 0 || y == -1) ? static_cast<T>(0) : static_cast<T>(x % y);
  }
  if constexpr (K == BinaryKind::kEqual) return static_cast<uint8_t>(x == y);
  if constexpr (K == BinaryKind::kLess) return static_cast<uint8_t>(x < y);
  if constexpr (K == BinaryKind::kGreater) return static_cast<uint8_t>(x > y);
  if constexpr (K == BinaryKind::kLessOrEqual) return static_cast<uint8_t>(x <= y);
  if constexpr (K == BinaryKind::kGreaterOrEqual) return static_cast<uint8_t>(x >= y);
  if constexpr (K == BinaryKind::kAnd) return static_cast<uint8_t>((x != 0) && (y != 0));
  if constexpr (K == BinaryKind::kOr) return static_cast<uint8_t>((x != 0) || (y != 0));
  if constexpr (K == BinaryKind::kXor) return static_cast<uint8_t>((x != 0) != (y != 0));
}

template <BinaryKind K, typename T, typename R>
void inner_loop(const T* a, int64_t sa, const T* b, int64_t sb, R* out, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = apply<K>(a[i], b[i]);
  } else if (sa == 1) {
    const T y = b[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply<K>(a[i], y);
  } else if (sb == 1) {
    const T x = a[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply<K>(x, b[i]);
  } else {
    const R v = apply<K>(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) out[i] = v;
  }
}

// float Add / Sub / Mul / Div, the arithmetic of residuals, scales and
// attention masks, multiversioned (kernels/multiversion.h: the generic code
// is compiled for the baseline ISA). One IEEE operation per element, so every
// variant gives the same bits. False for other kinds (the template loop runs).
SPARSERT_MULTIVERSION bool arith_f32(BinaryKind k, const float* a, int64_t sa, const float* b, int64_t sb,
                                     float* out, int64_t n) {
  if (sa != 1 && sb != 1) return false;
  const float x = a[0], y = b[0];
#define SPARSERT_ARITH(KIND, OP)                                          \
  case BinaryKind::KIND:                                                  \
    if (sa == 1 && sb == 1) {                                             \
      for (int64_t i = 0; i < n; ++i) out[i] = a[i] OP b[i];              \
    } else if (sa == 1) {                                                 \
      for (int64_t i = 0; i < n; ++i) out[i] = a[i] OP y;                 \
    } else {                                                              \
      for (int64_t i = 0; i < n; ++i) out[i] = x OP b[i];                 \
    }                                                                     \
    return true;
  switch (k) {
    SPARSERT_ARITH(kAdd, +)
    SPARSERT_ARITH(kSub, -)
    SPARSERT_ARITH(kMul, *)
    SPARSERT_ARITH(kDiv, /)
    default:
      return false;
  }
#undef SPARSERT_ARITH
}

class BinaryOp final : public Op {
 public:
  BinaryOp(BinaryKind kind, DType dtype) : kind_(kind), dtype_(dtype) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    return {broadcast_or_throw(inputs[0], inputs[1])};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
#define SPARSERT_CASE(K) \
  case BinaryKind::K:    \
    return run_kind<BinaryKind::K, T>(ctx, inputs, outputs[0]);
      if constexpr (std::is_same<T, uint8_t>::value) {  // bool: logic and Equal only
        switch (kind_) {
          SPARSERT_CASE(kEqual) SPARSERT_CASE(kAnd) SPARSERT_CASE(kOr) SPARSERT_CASE(kXor)
          default:
            return;
        }
      } else {
        switch (kind_) {
          SPARSERT_CASE(kAdd) SPARSERT_CASE(kSub) SPARSERT_CASE(kMul) SPARSERT_CASE(kDiv)
          SPARSERT_CASE(kMax) SPARSERT_CASE(kMin) SPARSERT_CASE(kMod) SPARSERT_CASE(kFmod)
          SPARSERT_CASE(kEqual) SPARSERT_CASE(kLess) SPARSERT_CASE(kGreater)
          SPARSERT_CASE(kLessOrEqual) SPARSERT_CASE(kGreaterOrEqual)
          case BinaryKind::kPow:
            if constexpr (std::is_same<T, float>::value) run_kind<BinaryKind::kPow, T>(ctx, inputs, outputs[0]);
            return;
          case BinaryKind::kPRelu:
            if constexpr (std::is_same<T, float>::value) run_kind<BinaryKind::kPRelu, T>(ctx, inputs, outputs[0]);
            return;
          default:
            return;
        }
      }
#undef SPARSERT_CASE
    });
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "eltwise_broadcast";
  }

 private:
  template <BinaryKind K, typename T>
  void run_kind(const RunContext& ctx, const std::vector<InputRef>& inputs, const OutputRef& out) const {
    using R = decltype(apply<K>(T{}, T{}));
    const int64_t total = shape_elements(out.shape);
    if (total == 0) return;
    const BroadcastLoop loop = make_broadcast_loop(out.shape, {inputs[0].shape, inputs[1].shape});
    const int64_t inner = loop.inner(), outer = loop.outer();
    const int64_t sa = loop.inner_stride(0), sb = loop.inner_stride(1);
    const T* a = inputs[0].as<T>();
    const T* b = inputs[1].as<T>();
    R* o = out.as<R>();
    const int64_t rows_per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1));
    const int64_t tasks = (outer + rows_per_task - 1) / rows_per_task;
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t row_end = std::min(outer, (t + 1) * rows_per_task);
      for (int64_t row = t * rows_per_task; row < row_end; ++row) {
        const T* ar = a + loop.offset(0, row);
        const T* br = b + loop.offset(1, row);
        if constexpr (std::is_same<T, float>::value && std::is_same<R, float>::value) {
          if (arith_f32(K, ar, sa, br, sb, o + row * inner, inner)) continue;
        }
        inner_loop<K, T, R>(ar, sa, br, sb, o + row * inner, inner);
      }
    });
  }

  BinaryKind kind_;
  DType dtype_;
};

std::unique_ptr<Op> make_binary(const NodeContext& ctx, BinaryKind kind) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  const DType d = ctx.input_dtype(0);
  if (is_logic(kind)) {
    ctx.require_dtype(0, "operand A", {DType::kBool});
  } else if (kind == BinaryKind::kPow || kind == BinaryKind::kPRelu) {
    ctx.require_dtype(0, "operand A", {DType::kFloat32});
  } else if (is_comparison(kind) && kind == BinaryKind::kEqual) {
    ctx.require_dtype(0, "operand A", {DType::kFloat32, DType::kInt32, DType::kInt64, DType::kBool});
  } else {
    ctx.require_dtype(0, "operand A", {DType::kFloat32, DType::kInt32, DType::kInt64});
  }
  if (ctx.input_dtype(1) != d)
    ctx.fail(std::string("operands have different dtypes (") + dtype_name(d) + " and " +
                 dtype_name(ctx.input_dtype(1)) + "); cast one first",
             ErrorCode::kUnsupported);
  ctx.set_output_dtypes({is_comparison(kind) || is_logic(kind) ? DType::kBool : d});
  return std::make_unique<BinaryOp>(kind, d);
}

}  // namespace

#define SPARSERT_BINARY(name, kind) \
  std::unique_ptr<Op> name(const NodeContext& ctx) { return make_binary(ctx, BinaryKind::kind); }
SPARSERT_BINARY(create_add, kAdd)
SPARSERT_BINARY(create_sub, kSub)
SPARSERT_BINARY(create_mul, kMul)
SPARSERT_BINARY(create_div, kDiv)
SPARSERT_BINARY(create_pow, kPow)
SPARSERT_BINARY(create_prelu, kPRelu)
SPARSERT_BINARY(create_max, kMax)
SPARSERT_BINARY(create_min, kMin)
SPARSERT_BINARY(create_equal, kEqual)
SPARSERT_BINARY(create_less, kLess)
SPARSERT_BINARY(create_greater, kGreater)
SPARSERT_BINARY(create_less_or_equal, kLessOrEqual)
SPARSERT_BINARY(create_greater_or_equal, kGreaterOrEqual)
SPARSERT_BINARY(create_and, kAnd)
SPARSERT_BINARY(create_or, kOr)
SPARSERT_BINARY(create_xor, kXor)
#undef SPARSERT_BINARY

std::unique_ptr<Op> create_mod(const NodeContext& ctx) {
  return make_binary(ctx, ctx.attr_bool("fmod", false) ? BinaryKind::kFmod : BinaryKind::kMod);
}

}  // namespace ops
}  // namespace sparsert
