// Element-wise activations, used on their own (ReLU, Sigmoid, ... ops) and
// fused into Linear / Conv2d epilogues through the `activation` and
// `activation_params` attributes (docs/spr-format.md, section 5).
#pragma once

#include <cstdint>
#include <string>

#include "ops/op.h"

namespace sparsert {
namespace ops {

enum class ActivationKind {
  kNone,
  kRelu,
  kRelu6,
  kClip,         // a = min, b = max
  kLeakyRelu,    // a = alpha
  kSigmoid,
  kHardSigmoid,  // max(0, min(1, a*x + b))
  kHardSwish,    // x * relu6(x + 3) / 6
  kSilu,
  kTanh,
  kGelu,      // exact (erf)
  kGeluTanh,  // tanh approximation
};

struct Activation {
  ActivationKind kind = ActivationKind::kNone;
  float a = 0.0f;
  float b = 0.0f;
  const char* name() const;
};

// Parses the fused-activation attributes of a node; throws naming the node.
Activation parse_fused_activation(const NodeContext& ctx);
// Parses an activation by name with parameters (the same names as the attribute).
bool activation_from_name(const std::string& name, const std::vector<double>& params, Activation* out,
                          std::string* error);

// In place on n contiguous floats.
void apply_activation(const Activation& act, float* data, int64_t n);
// out[i] = act(in[i])
void apply_activation(const Activation& act, const float* in, float* out, int64_t n);

}  // namespace ops
}  // namespace sparsert
