// Load-time graph rewrites, each a small named pass, listed once and run in
// order by the loader (onnxruntime's graph transformer idea). Every frontend
// (the PyTorch exporter, the ONNX converter, GraphBuilder) writes plain ops
// and relies on these; LoadOptions::disabled_passes skips passes by name.
//
//   fuse_residual    Conv -> Add(conv, r)       => Conv with r as its R input
//                    (r may broadcast to the conv output)
//   fuse_activation  Linear | Conv | ConvTranspose -> activation
//                    => the layer's `activation` attribute
//
// A layer's output is only fused when it feeds exactly one node and is not a
// graph output. Folding that changes weights (BatchNorm, dead channels) is
// done before writing, in Python (sparsert/ir/passes.py), so that files are
// small; nothing is done in both places.
#pragma once

#include <string>
#include <vector>

#include "format/spr_format.h"

namespace sparsert {
namespace runtime {

struct Pass {
  const char* name;
  // Rewrites the graph; returns how many rewrites it made.
  int (*run)(format::ModelFile* file);
};

const std::vector<Pass>& passes();

// Runs every pass not in `disabled` (unknown names are Error(kInvalidArgument));
// appends one line per pass that changed something to `log`.
void run_passes(format::ModelFile* file, const std::vector<std::string>& disabled,
                std::vector<std::string>* log);

}  // namespace runtime
}  // namespace sparsert
