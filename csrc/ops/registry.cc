// The op registry (from op_list.inc), the NodeContext accessors — the one
// place where every attribute is type-checked and bounded before an op sees
// it — and the overflow-checked size helpers shared by the ops.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "ops/op.h"

namespace sparsert {
namespace ops {

#define SPARSERT_OP(type, factory) std::unique_ptr<Op> factory(const NodeContext& ctx);
#include "ops/op_list.inc"
#undef SPARSERT_OP
std::unique_ptr<Op> create_unary(const NodeContext& ctx);  // unary.cc: every op of activations.inc

namespace {
struct Registration {
  const char* type;
  OpFactory factory;
};
const Registration kOps[] = {
#define SPARSERT_OP(type, factory) {type, &factory},
#include "ops/op_list.inc"
#undef SPARSERT_OP
#define SPARSERT_ACTIVATION(kind, op, fused, n, p0, d0, p1, d1) {op, &create_unary},
#include "ops/activations.inc"
#undef SPARSERT_ACTIVATION
};
}  // namespace

OpFactory find_op_factory(const std::string& op_type) {
  if (op_type.empty()) return nullptr;
  for (const auto& r : kOps)
    if (op_type == r.type) return r.factory;
  return nullptr;
}

std::vector<std::string> supported_op_types() {
  std::vector<std::string> out;
  for (const auto& r : kOps)
    if (r.type[0] != '\0') out.emplace_back(r.type);
  std::sort(out.begin(), out.end());
  return out;
}

int64_t shape_elements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

void shape_error(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  if (axis < -rank || axis >= rank)
    shape_error(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " +
                std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t out = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out))
    shape_error(std::string(what) + " overflows");
  return out;
}

int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) shape_error(std::string(what) + " overflows");
  return out;
}

int64_t checked_elements(const Shape& shape, const char* what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) shape_error(std::string(what) + " has a negative dim: " + shape_string(shape));
    n = checked_mul(n, d, what);
  }
  return n;
}

std::vector<int64_t> known_ints(const TensorMeta& t, const char* what) {
  if (t.value == nullptr && shape_elements(t.shape) > 0)
    shape_error(std::string(what) +
                " must be known while planning (a constant, or computed from input shapes and "
                "constants only)");
  const int64_t n = shape_elements(t.shape);
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::kInt64:
        out[i] = t.as<int64_t>()[i];
        break;
      case DType::kInt32:
        out[i] = t.as<int32_t>()[i];
        break;
      case DType::kBool:
        out[i] = t.as<uint8_t>()[i];
        break;
      default:
        shape_error(std::string(what) + " must be an integer tensor, got " + dtype_name(t.dtype));
    }
  }
  return out;
}

std::vector<Shape> Op::infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const {
  std::vector<Shape> shapes;
  shapes.reserve(inputs.size());
  for (const auto& t : inputs) shapes.push_back(t.shape);
  return infer_shapes(shapes);
}

void LoadConfig::charge(int64_t bytes, const std::string& what) const {
  if (bytes <= 0) return;
  const int64_t left = expand_budget->fetch_sub(bytes) - bytes;
  if (left < 0) {
    expand_budget->fetch_add(bytes);
    throw Error(ErrorCode::kResource,
                what + " would expand " + std::to_string(bytes >> 20) +
                    " MiB of weights at load, beyond this model's budget (256 MiB or 8x the file size); "
                    "store the weight dense in the file instead");
  }
}

bool LoadConfig::try_charge(int64_t bytes) const {
  if (bytes <= 0) return true;
  if (expand_budget->fetch_sub(bytes) - bytes >= 0) return true;
  expand_budget->fetch_add(bytes);
  return false;
}

// --- NodeContext ---------------------------------------------------------------

const format::TensorInfo* NodeContext::constant(size_t i) const {
  if (!has_input(i)) return nullptr;
  return file_.find_tensor(node_.inputs[i]);
}

const format::TensorInfo& NodeContext::require_constant(size_t i, const char* what,
                                                         DType dtype) const {
  if (!has_input(i)) fail(std::string("missing input ") + std::to_string(i) + " (" + what + ")");
  const format::TensorInfo* t = constant(i);
  if (t == nullptr)
    fail(std::string(what) + " '" + node_.inputs[i] +
             "' must be a constant (weights computed at run time are not supported)",
         ErrorCode::kUnsupported);
  if (t->dtype != dtype)
    fail(std::string(what) + " '" + t->name + "' has dtype " + dtype_name(t->dtype) + ", expected " +
         dtype_name(dtype));
  return *t;
}

void NodeContext::require_dtype(size_t i, const char* what,
                                std::initializer_list<DType> allowed) const {
  if (!has_input(i)) fail(std::string("missing input ") + std::to_string(i) + " (" + what + ")");
  const DType d = input_dtype(i);
  for (DType a : allowed)
    if (a == d) return;
  std::string names;
  for (DType a : allowed) names += std::string(names.empty() ? "" : " or ") + dtype_name(a);
  fail(std::string(what) + " '" + node_.inputs[i] + "' has dtype " + dtype_name(d) + "; this op takes " +
           names,
       ErrorCode::kUnsupported);
}

void NodeContext::fail(const std::string& message, ErrorCode code) const {
  throw Error(code, "node '" + node_.name + "' (" + node_.op_type + "): " + message);
}

void NodeContext::check_input_count(size_t min_inputs, size_t max_inputs) const {
  size_t n = node_.inputs.size();
  // trailing absent inputs do not count
  while (n > 0 && node_.inputs[n - 1].empty()) --n;
  if (n < min_inputs || n > max_inputs) {
    std::ostringstream s;
    s << "expects " << min_inputs;
    if (max_inputs != min_inputs) s << " to " << max_inputs;
    s << " inputs, got " << n;
    fail(s.str());
  }
  for (size_t i = 0; i < min_inputs; ++i)
    if (node_.inputs[i].empty()) fail("required input " + std::to_string(i) + " is absent");
}

void NodeContext::check_output_count(size_t outputs) const { check_output_count(outputs, outputs); }

void NodeContext::check_output_count(size_t min_outputs, size_t max_outputs) const {
  const size_t n = node_.outputs.size();
  if (n < min_outputs || n > max_outputs) {
    std::string want = std::to_string(min_outputs);
    if (max_outputs != min_outputs) want += " to " + std::to_string(max_outputs);
    fail("expects " + want + " outputs, got " + std::to_string(n));
  }
}

namespace {

const format::Value* typed_attr(const NodeContext& ctx, const std::string& key,
                                format::ValueType type, const char* type_name) {
  const format::Value* v = ctx.node().attr(key);
  if (v == nullptr) return nullptr;
  if (v->type != type) {
    // an INT is accepted where a FLOAT is expected, and an empty INTS where FLOATS are
    if (type == format::ValueType::kFloat && v->type == format::ValueType::kInt) return v;
    if (type == format::ValueType::kFloats && v->type == format::ValueType::kInts) return v;
    ctx.fail("attribute '" + key + "' must be " + type_name);
  }
  return v;
}

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

void check_count(const NodeContext& ctx, const std::string& key, size_t n, size_t min_count,
                 size_t max_count) {
  if (n >= min_count && n <= max_count) return;
  std::string want = std::to_string(min_count);
  if (max_count != min_count) want += " to " + std::to_string(max_count);
  ctx.fail("attribute '" + key + "' must have " + want + " values, got " + std::to_string(n));
}

}  // namespace

int64_t NodeContext::attr_int(const std::string& key, int64_t fallback, int64_t min,
                              int64_t max) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kInt, "an INT");
  if (v == nullptr) return fallback;
  if (v->i < min || v->i > max)
    fail("attribute '" + key + "' is " + std::to_string(v->i) + "; it must be in [" +
         std::to_string(min) + ", " + std::to_string(max) + "]");
  return v->i;
}

bool NodeContext::attr_bool(const std::string& key, bool fallback) const {
  return attr_int(key, fallback ? 1 : 0, 0, 1) != 0;
}

double NodeContext::attr_float(const std::string& key, double fallback, double min,
                               double max) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kFloat, "a FLOAT");
  if (v == nullptr) return fallback;
  const double f = v->type == format::ValueType::kInt ? static_cast<double>(v->i) : v->f;
  if (!(f >= min && f <= max))  // also refuses NaN
    fail("attribute '" + key + "' is " + number_text(f) + "; it must be in [" + number_text(min) +
         ", " + number_text(max) + "]");
  return f;
}

std::string NodeContext::attr_string(const std::string& key, const std::string& fallback) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kString, "a STRING");
  return v ? v->s : fallback;
}

std::string NodeContext::attr_choice(const std::string& key, const std::string& fallback,
                                     std::initializer_list<const char*> choices) const {
  const std::string s = attr_string(key, fallback);
  std::string list;
  for (const char* c : choices) {
    if (s == c) return s;
    list += std::string(list.empty() ? "" : ", ") + "'" + c + "'";
  }
  fail("attribute '" + key + "' is '" + s + "'; it must be one of " + list, ErrorCode::kUnsupported);
}

std::vector<int64_t> NodeContext::attr_ints(const std::string& key,
                                            const std::vector<int64_t>& fallback, size_t min_count,
                                            size_t max_count, int64_t min, int64_t max) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kInts, "INTS");
  if (v == nullptr) return fallback;
  check_count(*this, key, v->ints.size(), min_count, std::min(max_count, kMaxAttrItems));
  for (int64_t x : v->ints)
    if (x < min || x > max)
      fail("attribute '" + key + "' has the value " + std::to_string(x) + "; values must be in [" +
           std::to_string(min) + ", " + std::to_string(max) + "]");
  return v->ints;
}

std::vector<double> NodeContext::attr_floats(const std::string& key,
                                             const std::vector<double>& fallback, size_t min_count,
                                             size_t max_count, double min, double max) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kFloats, "FLOATS");
  if (v == nullptr) return fallback;
  std::vector<double> out;
  if (v->type == format::ValueType::kInts) {
    out.assign(v->ints.begin(), v->ints.end());
  } else {
    out = v->floats;
  }
  check_count(*this, key, out.size(), min_count, std::min(max_count, kMaxAttrItems));
  for (double x : out)
    if (!(x >= min && x <= max))
      fail("attribute '" + key + "' has the value " + number_text(x) + "; values must be in [" +
           number_text(min) + ", " + number_text(max) + "]");
  return out;
}

int64_t NodeContext::attr_axis(const std::string& key, int64_t fallback) const {
  return attr_int(key, fallback, -static_cast<int64_t>(format::kMaxRank),
                  static_cast<int64_t>(format::kMaxRank) - 1);
}

}  // namespace ops
}  // namespace sparsert
