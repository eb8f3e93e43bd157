#include <algorithm>
#include <cstring>
#include <sstream>

#include "ops/op.h"

namespace sparsert {
namespace ops {

#define SPARSERT_OP(type, factory) std::unique_ptr<Op> factory(const NodeContext& ctx);
#include "ops/op_list.inc"
#undef SPARSERT_OP

namespace {
struct Registration {
  const char* type;
  OpFactory factory;
};
const Registration kOps[] = {
#define SPARSERT_OP(type, factory) {type, &factory},
#include "ops/op_list.inc"
#undef SPARSERT_OP
};
}  // namespace

OpFactory find_op_factory(const std::string& op_type) {
  for (const auto& r : kOps)
    if (op_type == r.type) return r.factory;
  return nullptr;
}

std::vector<std::string> supported_op_types() {
  std::vector<std::string> out;
  for (const auto& r : kOps) out.emplace_back(r.type);
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

void NodeContext::check_output_count(size_t outputs) const {
  if (node_.outputs.size() != outputs)
    fail("expects " + std::to_string(outputs) + " outputs, got " +
         std::to_string(node_.outputs.size()));
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
}  // namespace

int64_t NodeContext::attr_int(const std::string& key, int64_t fallback) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kInt, "an INT");
  return v ? v->i : fallback;
}

double NodeContext::attr_float(const std::string& key, double fallback) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kFloat, "a FLOAT");
  if (!v) return fallback;
  return v->type == format::ValueType::kInt ? static_cast<double>(v->i) : v->f;
}

std::string NodeContext::attr_string(const std::string& key, const std::string& fallback) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kString, "a STRING");
  return v ? v->s : fallback;
}

std::vector<int64_t> NodeContext::attr_ints(const std::string& key,
                                            const std::vector<int64_t>& fallback) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kInts, "INTS");
  return v ? v->ints : fallback;
}

std::vector<double> NodeContext::attr_floats(const std::string& key,
                                             const std::vector<double>& fallback) const {
  const format::Value* v = typed_attr(*this, key, format::ValueType::kFloats, "FLOATS");
  if (!v) return fallback;
  if (v->type == format::ValueType::kInts) {
    std::vector<double> out(v->ints.begin(), v->ints.end());
    return out;
  }
  return v->floats;
}

}  // namespace ops
}  // namespace sparsert
