// Element-wise activations, used on their own (the unary ops of unary.cc) and
// fused into Linear / Conv / ConvTranspose epilogues through the `activation`
// and `activation_params` attributes (docs/spr-format.md, section 5). The
// list lives in activations.inc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/eltwise/eltwise.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {

enum class ActivationKind {
  kNone,
#define SPARSERT_ACTIVATION(kind, op, fused, n, p0, d0, p1, d1) kind,
#include "ops/activations.inc"
#undef SPARSERT_ACTIVATION
};

struct Activation {
  ActivationKind kind = ActivationKind::kNone;
  float a = 0.0f;  // parameters in list order
  float b = 0.0f;
  const kernels::EltwiseKernel* eltwise = nullptr;  // the model's ISA; best when null
  const char* name() const;  // the fused name ("none" for kNone)
  // Clamp bounds when the activation is a clamp (none, relu, clip): kernels
  // may then fuse it as their output clamp. False otherwise.
  bool as_clamp(float* lo, float* hi) const;
};

// Parses the fused-activation attributes of a node; throws naming the node.
Activation parse_fused_activation(const NodeContext& ctx);
// An activation by fused name with parameters ("relu6" is read as clip 0..6).
bool activation_from_name(const std::string& name, const std::vector<double>& params, Activation* out,
                          std::string* error);
// The activation an op type of the list stands for, with parameters from
// the node's attributes; false when op_type is not in the list.
bool activation_from_op(const NodeContext& ctx, Activation* out);
// The fused name and parameters equivalent to an activation node (read from
// its attributes without throwing); false when it is not one or its
// attributes are not usable (the op itself then reports them at load).
bool fusable_activation(const format::Node& node, std::string* name, std::vector<double>* params);

// In place on n contiguous floats.
// y[i] += r[i] (a conv's fused residual), multiversioned like the activations.
void add_inplace(float* y, const float* r, int64_t n);
void apply_activation(const Activation& act, float* data, int64_t n);
// out[i] = act(in[i])
void apply_activation(const Activation& act, const float* in, float* out, int64_t n);

}  // namespace ops
}  // namespace sparsert
