#include "ops/activation.h"

#include <algorithm>

#include "kernels/eltwise/eltwise.h"

namespace sparsert {
namespace ops {

const char* Activation::name() const {
  switch (kind) {
    case ActivationKind::kNone: return "none";
    case ActivationKind::kRelu: return "relu";
    case ActivationKind::kRelu6: return "relu6";
    case ActivationKind::kClip: return "clip";
    case ActivationKind::kLeakyRelu: return "leaky_relu";
    case ActivationKind::kSigmoid: return "sigmoid";
    case ActivationKind::kHardSigmoid: return "hardsigmoid";
    case ActivationKind::kHardSwish: return "hardswish";
    case ActivationKind::kSilu: return "silu";
    case ActivationKind::kTanh: return "tanh";
    case ActivationKind::kGelu: return "gelu";
    case ActivationKind::kGeluTanh: return "gelu_tanh";
  }
  return "?";
}

bool activation_from_name(const std::string& name, const std::vector<double>& params, Activation* out,
                          std::string* error) {
  struct Entry {
    const char* name;
    ActivationKind kind;
    size_t n_params;  // required count; defaults used when 0 given and defaults exist
  };
  static const Entry kTable[] = {
      {"none", ActivationKind::kNone, 0},          {"relu", ActivationKind::kRelu, 0},
      {"relu6", ActivationKind::kRelu6, 0},        {"clip", ActivationKind::kClip, 2},
      {"leaky_relu", ActivationKind::kLeakyRelu, 1}, {"sigmoid", ActivationKind::kSigmoid, 0},
      {"hardsigmoid", ActivationKind::kHardSigmoid, 2}, {"hardswish", ActivationKind::kHardSwish, 0},
      {"silu", ActivationKind::kSilu, 0},          {"tanh", ActivationKind::kTanh, 0},
      {"gelu", ActivationKind::kGelu, 0},          {"gelu_tanh", ActivationKind::kGeluTanh, 0},
  };
  for (const auto& e : kTable) {
    if (name != e.name) continue;
    Activation act;
    act.kind = e.kind;
    if (e.kind == ActivationKind::kLeakyRelu) {
      act.a = params.empty() ? 0.01f : static_cast<float>(params[0]);
      if (params.size() > 1) break;
    } else if (e.kind == ActivationKind::kHardSigmoid) {
      if (params.empty()) {
        act.a = 0.2f;
        act.b = 0.5f;
      } else if (params.size() == 2) {
        act.a = static_cast<float>(params[0]);
        act.b = static_cast<float>(params[1]);
      } else {
        *error = "activation 'hardsigmoid' takes 2 params [alpha, beta]";
        return false;
      }
    } else if (e.kind == ActivationKind::kClip) {
      if (params.size() != 2) {
        *error = "activation 'clip' takes 2 params [min, max]";
        return false;
      }
      act.a = static_cast<float>(params[0]);
      act.b = static_cast<float>(params[1]);
      if (!(act.a <= act.b)) {
        *error = "activation 'clip' needs min <= max";
        return false;
      }
    } else if (!params.empty()) {
      *error = std::string("activation '") + e.name + "' takes no params";
      return false;
    }
    *out = act;
    return true;
  }
  *error = "unknown activation '" + name +
           "' (known: none, relu, relu6, clip, leaky_relu, sigmoid, hardsigmoid, hardswish, silu, "
           "tanh, gelu, gelu_tanh)";
  return false;
}

Activation parse_fused_activation(const NodeContext& ctx) {
  Activation act;
  std::string error;
  if (!activation_from_name(ctx.attr_string("activation", "none"), ctx.attr_floats("activation_params", {}),
                            &act, &error))
    ctx.fail(error);
  return act;
}

namespace {

template <typename F>
inline void map(const float* in, float* out, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
}

}  // namespace

// The transcendental activations run on the eltwise kernels of the best ISA,
// chosen once per process (kernels/eltwise/eltwise.h).
void apply_activation(const Activation& act, const float* in, float* out, int64_t n) {
  const float a = act.a, b = act.b;
  switch (act.kind) {
    case ActivationKind::kNone:
      if (in != out) std::copy(in, in + n, out);
      return;
    case ActivationKind::kRelu:
      // (x > 0 ? x : 0) keeps NaN as NaN in neither branch order; use the select form
      map(in, out, n, [](float x) { return x < 0.0f ? 0.0f : x; });
      return;
    case ActivationKind::kRelu6:
      map(in, out, n, [](float x) { return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x); });
      return;
    case ActivationKind::kClip:
      map(in, out, n, [a, b](float x) { return x < a ? a : (x > b ? b : x); });
      return;
    case ActivationKind::kLeakyRelu:
      map(in, out, n, [a](float x) { return x < 0.0f ? a * x : x; });
      return;
    case ActivationKind::kSigmoid:
      kernels::eltwise_best().sigmoid(in, out, n);
      return;
    case ActivationKind::kHardSigmoid:
      map(in, out, n, [a, b](float x) {
        float y = a * x + b;
        return y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y);
      });
      return;
    case ActivationKind::kHardSwish:
      map(in, out, n, [](float x) {
        float y = x + 3.0f;
        y = y < 0.0f ? 0.0f : (y > 6.0f ? 6.0f : y);
        return x * y * (1.0f / 6.0f);
      });
      return;
    case ActivationKind::kSilu:
      kernels::eltwise_best().silu(in, out, n);
      return;
    case ActivationKind::kTanh:
      kernels::eltwise_best().tanh(in, out, n);
      return;
    case ActivationKind::kGelu:
      kernels::eltwise_best().gelu(in, out, n);
      return;
    case ActivationKind::kGeluTanh:
      kernels::eltwise_best().gelu_tanh(in, out, n);
      return;
  }
}

void apply_activation(const Activation& act, float* data, int64_t n) {
  if (act.kind == ActivationKind::kNone) return;
  apply_activation(act, data, data, n);
}

}  // namespace ops
}  // namespace sparsert
