// Helpers shared by the convolution ops (conv2d.cc, conv_transpose2d.cc):
// attribute parsing into a ConvAttributes, and the broadcasting residual
// epilogue.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "kernels/conv/conv.h"
#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/layer_weights.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {

// The spatial attributes of Conv / ConvTranspose (2-D form; a 1-D conv has a
// height of 1), validated and bounded by kMaxSpatial.
struct ConvAttributes {
  int spatial_rank = 2;  // 1 or 2, from the weight's rank
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};
// spatial_rank: the weight's rank - 2. ONNX order for pads: begins, then ends.
ConvAttributes parse_conv_attributes(const NodeContext& ctx, int spatial_rank, int64_t max_groups);

// y = act(a + r) with numpy broadcasting of a and r to y's shape (y may alias a
// when a has y's shape).
void broadcast_add_activation(const float* a, const Shape& a_shape, const float* r,
                              const Shape& r_shape, float* y, const Shape& y_shape,
                              const Activation& act);

}  // namespace ops
}  // namespace sparsert
