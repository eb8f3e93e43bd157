#include "ops/activation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/multiversion.h"

namespace sparsert {
namespace ops {
namespace {

struct Entry {
  ActivationKind kind;
  const char* op_type;
  const char* fused_name;
  int n_params;
  const char* param_names[2];
  double defaults[2];
};

const Entry kEntries[] = {
#define SPARSERT_ACTIVATION(kind, op, fused, n, p0, d0, p1, d1) \
  {ActivationKind::kind, op, fused, n, {p0, p1}, {d0, d1}},
#include "ops/activations.inc"
#undef SPARSERT_ACTIVATION
};

const Entry* entry_by_name(const std::string& name) {
  for (const Entry& e : kEntries)
    if (name == e.fused_name) return &e;
  return nullptr;
}

const Entry* entry_by_op(const std::string& op) {
  for (const Entry& e : kEntries)
    if (e.op_type[0] != '\0' && op == e.op_type) return &e;
  return nullptr;
}

std::string known_names() {
  std::string out = "none";
  for (const Entry& e : kEntries) out += std::string(", ") + e.fused_name;
  return out;
}

bool finish(const Entry& e, const double* params, Activation* out, std::string* error) {
  Activation act;
  act.kind = e.kind;
  for (int i = 0; i < e.n_params; ++i) {
    if (!std::isfinite(params[i]) && !(e.kind == ActivationKind::kClip && std::isinf(params[i]))) {
      *error = std::string("activation '") + e.fused_name + "' parameter '" + e.param_names[i] +
               "' must be finite";
      return false;
    }
  }
  const float lim = std::numeric_limits<float>::max();
  auto to_float = [lim](double v) { return static_cast<float>(std::max(-1.0 * lim, std::min(1.0 * lim, v))); };
  if (e.n_params > 0) act.a = to_float(params[0]);
  if (e.n_params > 1) act.b = to_float(params[1]);
  if (e.kind == ActivationKind::kClip) {
    if (std::isinf(params[0]) && params[0] < 0) act.a = -std::numeric_limits<float>::infinity();
    if (std::isinf(params[1]) && params[1] > 0) act.b = std::numeric_limits<float>::infinity();
    if (!(act.a <= act.b)) {
      *error = "activation 'clip' needs min <= max";
      return false;
    }
  }
  *out = act;
  return true;
}

template <typename F>
inline void map(const float* in, float* out, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
}

// The piecewise-linear activations that conv / linear epilogues apply most
// (ReLU, ReLU6 / Clip, LeakyReLU, HardSwish), multiversioned so that the
// AVX-512 / AVX2 builds of the loop run on CPUs that have them (the generic
// code is compiled for the baseline ISA; as SSE2 loops a ReLU6 epilogue took
// a third of MobileNetV2's 16 -> 96 1x1 convolution).
SPARSERT_MULTIVERSION void map_relu(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

SPARSERT_MULTIVERSION void map_clip(const float* in, float* out, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    out[i] = x < a ? a : (x > b ? b : x);
  }
}

SPARSERT_MULTIVERSION void map_leaky_relu(const float* in, float* out, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] < 0.0f ? a * in[i] : in[i];
}

SPARSERT_MULTIVERSION void map_hardswish(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    float y = x + 3.0f;
    y = y < 0.0f ? 0.0f : (y > 6.0f ? 6.0f : y);
    out[i] = x * y * (1.0f / 6.0f);
  }
}

}  // namespace

const char* Activation::name() const {
  for (const Entry& e : kEntries)
    if (e.kind == kind) return e.fused_name;
  return "none";
}

bool Activation::as_clamp(float* lo, float* hi) const {
  *lo = -std::numeric_limits<float>::infinity();
  *hi = std::numeric_limits<float>::infinity();
  switch (kind) {
    case ActivationKind::kNone:
      return true;
    case ActivationKind::kRelu:
      *lo = 0.0f;
      return true;
    case ActivationKind::kClip:
      *lo = a;
      *hi = b;
      return true;
    default:
      return false;
  }
}

bool activation_from_name(const std::string& name, const std::vector<double>& params, Activation* out,
                          std::string* error) {
  if (name == "none") {
    if (!params.empty()) {
      *error = "activation 'none' takes no params";
      return false;
    }
    *out = Activation();
    return true;
  }
  if (name == "relu6") {  // version 1 name of clip(0, 6)
    if (!params.empty()) {
      *error = "activation 'relu6' takes no params";
      return false;
    }
    const double p[2] = {0.0, 6.0};
    return finish(*entry_by_name("clip"), p, out, error);
  }
  const Entry* e = entry_by_name(name);
  if (e == nullptr) {
    *error = "unknown activation '" + name + "' (known: " + known_names() + ")";
    return false;
  }
  double p[2] = {e->defaults[0], e->defaults[1]};
  if (!params.empty()) {
    if (static_cast<int>(params.size()) != e->n_params) {
      *error = std::string("activation '") + e->fused_name + "' takes " + std::to_string(e->n_params) +
               " params, got " + std::to_string(params.size());
      return false;
    }
    for (int i = 0; i < e->n_params; ++i) p[i] = params[i];
  } else if (e->kind == ActivationKind::kClip) {
    *error = "activation 'clip' takes 2 params [min, max]";
    return false;
  }
  return finish(*e, p, out, error);
}

Activation parse_fused_activation(const NodeContext& ctx) {
  Activation act;
  std::string error;
  const std::vector<double> params = ctx.attr_floats(
      "activation_params", {}, 0, 2, -std::numeric_limits<double>::infinity(),
      std::numeric_limits<double>::infinity());
  if (!activation_from_name(ctx.attr_string("activation", "none"), params, &act, &error))
    ctx.fail(error);
  act.eltwise = &kernels::eltwise_kernel(ctx.isa());
  return act;
}

bool activation_from_op(const NodeContext& ctx, Activation* out) {
  const Entry* e = entry_by_op(ctx.node().op_type);
  if (e == nullptr) return false;
  double p[2] = {e->defaults[0], e->defaults[1]};
  for (int i = 0; i < e->n_params; ++i) {
    const bool clip = e->kind == ActivationKind::kClip;
    p[i] = ctx.attr_float(e->param_names[i], e->defaults[i],
                          clip ? -std::numeric_limits<double>::infinity() : -1e30,
                          clip ? std::numeric_limits<double>::infinity() : 1e30);
  }
  const Entry* chosen = e;
  if (e->kind == ActivationKind::kGelu &&
      ctx.attr_choice("approximate", "none", {"none", "tanh"}) == "tanh")
    chosen = entry_by_name("gelu_tanh");
  std::string error;
  if (!finish(*chosen, p, out, &error)) ctx.fail(error);
  out->eltwise = &kernels::eltwise_kernel(ctx.isa());
  return true;
}

bool fusable_activation(const format::Node& node, std::string* name, std::vector<double>* params) {
  if (node.inputs.size() != 1 || node.outputs.size() != 1) return false;
  const Entry* e = entry_by_op(node.op_type);
  if (e == nullptr) return false;
  params->clear();
  for (int i = 0; i < e->n_params; ++i) {
    const format::Value* v = node.attr(e->param_names[i]);
    double value = e->defaults[i];
    if (v != nullptr) {
      if (v->type == format::ValueType::kFloat) {
        value = v->f;
      } else if (v->type == format::ValueType::kInt) {
        value = static_cast<double>(v->i);
      } else {
        return false;
      }
    }
    params->push_back(value);
  }
  *name = e->fused_name;
  if (e->kind == ActivationKind::kGelu) {
    const format::Value* a = node.attr("approximate");
    if (a != nullptr && (a->type != format::ValueType::kString || (a->s != "none" && a->s != "tanh")))
      return false;
    if (a != nullptr && a->s == "tanh") *name = "gelu_tanh";
  }
  Activation check;
  std::string error;
  return activation_from_name(*name, *params, &check, &error);
}

// The transcendental activations run on the model's eltwise kernels
// (kernels/eltwise/eltwise.h); the rest are loops the compiler vectorises.
void apply_activation(const Activation& act, const float* in, float* out, int64_t n) {
  const kernels::EltwiseKernel& k = act.eltwise != nullptr ? *act.eltwise : kernels::eltwise_best();
  const float a = act.a, b = act.b;
  switch (act.kind) {
    case ActivationKind::kNone:
      if (in != out) std::copy(in, in + n, out);
      return;
    case ActivationKind::kRelu:
      // keeps NaN as NaN
      map_relu(in, out, n);
      return;
    case ActivationKind::kClip:
      map_clip(in, out, n, a, b);
      return;
    case ActivationKind::kLeakyRelu:
      map_leaky_relu(in, out, n, a);
      return;
    case ActivationKind::kSigmoid:
      k.sigmoid(in, out, n);
      return;
    case ActivationKind::kHardSigmoid:
      map(in, out, n, [a, b](float x) {
        const float y = a * x + b;
        return y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y);
      });
      return;
    case ActivationKind::kHardSwish:
      map_hardswish(in, out, n);
      return;
    case ActivationKind::kSilu:
      k.silu(in, out, n);
      return;
    case ActivationKind::kTanh:
      k.tanh(in, out, n);
      return;
    case ActivationKind::kGelu:
      k.gelu(in, out, n);
      return;
    case ActivationKind::kGeluTanh:
      k.gelu_tanh(in, out, n);
      return;
    case ActivationKind::kElu:
      map(in, out, n, [a](float x) { return x < 0.0f ? a * std::expm1(x) : x; });
      return;
    case ActivationKind::kSelu:
      map(in, out, n, [a, b](float x) { return x <= 0.0f ? b * (a * std::expm1(x)) : b * x; });
      return;
    case ActivationKind::kCelu:
      map(in, out, n, [a](float x) {
        return std::max(0.0f, x) + std::min(0.0f, a * std::expm1(x / a));
      });
      return;
    case ActivationKind::kSoftplus:
      // log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)
      map(in, out, n, [](float x) { return std::max(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); });
      return;
    case ActivationKind::kSoftsign:
      map(in, out, n, [](float x) { return x / (1.0f + std::fabs(x)); });
      return;
    case ActivationKind::kMish:
      map(in, out, n, [](float x) {
        const float sp = std::max(x, 0.0f) + std::log1p(std::exp(-std::fabs(x)));
        return x * std::tanh(sp);
      });
      return;
    case ActivationKind::kThresholdedRelu:
      map(in, out, n, [a](float x) { return x > a ? x : 0.0f; });
      return;
    case ActivationKind::kExp:
      k.exp(in, out, n);
      return;
    case ActivationKind::kLog:
      map(in, out, n, [](float x) { return std::log(x); });
      return;
    case ActivationKind::kSqrt:
      map(in, out, n, [](float x) { return std::sqrt(x); });
      return;
    case ActivationKind::kAbs:
      map(in, out, n, [](float x) { return std::fabs(x); });
      return;
    case ActivationKind::kNeg:
      map(in, out, n, [](float x) { return -x; });
      return;
    case ActivationKind::kReciprocal:
      map(in, out, n, [](float x) { return 1.0f / x; });
      return;
    case ActivationKind::kErf:
      k.erf(in, out, n);
      return;
    case ActivationKind::kFloor:
      map(in, out, n, [](float x) { return std::floor(x); });
      return;
    case ActivationKind::kCeil:
      map(in, out, n, [](float x) { return std::ceil(x); });
      return;
    case ActivationKind::kRound:  // half to even, as ONNX
      map(in, out, n, [](float x) { return std::nearbyint(x); });
      return;
    case ActivationKind::kSign:
      map(in, out, n, [](float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x); });
      return;
    case ActivationKind::kSin:
      map(in, out, n, [](float x) { return std::sin(x); });
      return;
    case ActivationKind::kCos:
      map(in, out, n, [](float x) { return std::cos(x); });
      return;
  }
}

SPARSERT_MULTIVERSION void add_inplace(float* y, const float* r, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += r[i];
}

void apply_activation(const Activation& act, float* data, int64_t n) {
  if (act.kind == ActivationKind::kNone) return;
  apply_activation(act, data, data, n);
}

}  // namespace ops

std::vector<ActivationInfo> activations() {
  std::vector<ActivationInfo> out;
#define SPARSERT_ACTIVATION(kind, op, fused, n, p0, d0, p1, d1)          \
  {                                                                      \
    ActivationInfo info;                                                 \
    info.op_type = op;                                                   \
    info.fused_name = fused;                                             \
    const char* names[2] = {p0, p1};                                     \
    const double defaults[2] = {d0, d1};                                 \
    for (int i = 0; i < (n); ++i) {                                      \
      info.param_names.emplace_back(names[i]);                           \
      info.param_defaults.push_back(defaults[i]);                        \
    }                                                                    \
    out.push_back(std::move(info));                                      \
  }
#include "ops/activations.inc"
#undef SPARSERT_ACTIVATION
  return out;
}

}  // namespace sparsert
