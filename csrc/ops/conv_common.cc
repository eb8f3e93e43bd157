#include "ops/conv_common.h"

#include <algorithm>

#include "ops/broadcast.h"

namespace sparsert {
namespace ops {

ConvAttributes parse_conv_attributes(const NodeContext& ctx, int spatial_rank, int64_t max_groups) {
  ConvAttributes a;
  const size_t r = static_cast<size_t>(spatial_rank);
  a.spatial_rank = spatial_rank;
  const std::vector<int64_t> strides = ctx.attr_ints("strides", std::vector<int64_t>(r, 1), r, r, 1, kMaxSpatial);
  const std::vector<int64_t> pads =
      ctx.attr_ints("pads", std::vector<int64_t>(2 * r, 0), 2 * r, 2 * r, 0, kMaxSpatial);
  const std::vector<int64_t> dilations =
      ctx.attr_ints("dilations", std::vector<int64_t>(r, 1), r, r, 1, kMaxSpatial);
  a.groups = ctx.attr_int("group", 1, 1, std::max<int64_t>(1, max_groups));
  if (spatial_rank == 1) {  // [W] as [1, W]
    a.stride_w = strides[0];
    a.pad_left = pads[0];
    a.pad_right = pads[1];
    a.dilation_w = dilations[0];
    return a;
  }
  a.stride_h = strides[0];
  a.stride_w = strides[1];
  a.pad_top = pads[0];
  a.pad_left = pads[1];
  a.pad_bottom = pads[2];
  a.pad_right = pads[3];
  a.dilation_h = dilations[0];
  a.dilation_w = dilations[1];
  return a;
}

void broadcast_add_activation(const float* a, const Shape& a_shape, const float* r,
                              const Shape& r_shape, float* y, const Shape& y_shape,
                              const Activation& act) {
  const int64_t total = shape_elements(y_shape);
  if (total == 0) return;
  const BroadcastLoop loop = make_broadcast_loop(y_shape, {a_shape, r_shape});
  const int64_t inner = loop.inner(), outer = loop.outer();
  const int64_t sa = loop.inner_stride(0), sr = loop.inner_stride(1);
  for (int64_t row = 0; row < outer; ++row) {
    const float* ar = a + loop.offset(0, row);
    const float* rr = r + loop.offset(1, row);
    float* yr = y + row * inner;
    for (int64_t i = 0; i < inner; ++i) yr[i] = ar[i * sa] + rr[i * sr];
  }
  apply_activation(act, y, total);
}

}  // namespace ops
}  // namespace sparsert
