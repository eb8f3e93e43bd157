// Helpers shared by the convolution ops (conv2d.cc, conv_transpose2d.cc):
// attribute parsing into a ConvGeometry, CSR densification, and the
// broadcasting residual epilogue.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "kernels/conv/conv.h"
#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {

// The spatial attributes of Conv2d / ConvTranspose2d, validated.
struct ConvAttributes {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};
ConvAttributes parse_conv_attributes(const NodeContext& ctx);

// The weight as dense row-major floats (a copy when it is CSR).
kernels::AlignedFloats densify_weight(const format::TensorInfo& w);

// A CSR copy of a dense row-major rows x cols weight (Linear and Conv2d build
// one when a weight stored dense is mostly zero). `view` points into the
// owned arrays; column indices are 16-bit when cols <= 65536.
struct OwnedCsr {
  std::vector<uint32_t> row_ptr;
  std::vector<uint16_t> col16;
  std::vector<uint32_t> col32;
  std::vector<float> values;
  kernels::CsrMatrix view;
};
void build_owned_csr(const float* data, int64_t rows, int64_t cols, OwnedCsr* out);

// numpy broadcasting of two shapes; false when they do not broadcast.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out);

// y = act(a + r) with numpy broadcasting of a and r to y's shape (y may alias a
// when a has y's shape).
void broadcast_add_activation(const float* a, const Shape& a_shape, const float* r,
                              const Shape& r_shape, float* y, const Shape& y_shape,
                              const Activation& act);

}  // namespace ops
}  // namespace sparsert
