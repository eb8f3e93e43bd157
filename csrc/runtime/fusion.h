// Load-time graph fusion: rewrites the nodes of a parsed .spr file before the
// runtime builds its ops. Only the node list changes (weights are read-only).
//
// Patterns (a fused tensor must have exactly one reader and not be a graph output):
// - Conv2d (activation none, no residual) -> Add(conv, other activation)
//   => Conv2d with residual input R = other (Y = act(conv + B + R)); the Add's
//   broadcasting is kept (Conv2d broadcasts R like Add does).
// - Conv2d / Linear (activation none) -> ReLU, ReLU6, Clip, LeakyReLU, Sigmoid,
//   HardSigmoid, HardSwish, SiLU, Tanh, GELU => fused `activation` attributes,
//   also after the residual fusion (conv -> add -> relu becomes one node).
// The fused node keeps the first node's name, takes the last node's output
// names (so readers and graph outputs are unchanged) and its position in the
// list (every input of the chain is defined before it, so order stays topological).
// BatchNorm is not folded here (exporters fold it; weights cannot be rewritten).
#pragma once

#include "format/spr_format.h"

namespace sparsert {
namespace runtime {

void fuse_graph(format::ModelFile* file);

}  // namespace runtime
}  // namespace sparsert
