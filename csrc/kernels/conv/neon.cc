// NEON conv kernels (conv_impl.h), aarch64 and armv7 with -mfpu=neon: sparse
// direct in 16-column tiles (4 Q registers per accumulator set), depthwise
// over 4-wide output vectors. NEON has no masked loads nor gathers: column
// tails go through the zero-padded stack buffer of NeonOps, and a strided
// input row is read lane by lane (vld1q_lane_f32), touching only the lanes
// in the tail, so no byte past the last needed element is read (vld2q/vld3q
// would read up to stride - 1 floats past it, beyond the end of the plane).
#include <arm_neon.h>

#include <cstdint>

#include "kernels/conv/conv.h"
#include "kernels/simd_neon.h"

namespace sparsert {
namespace kernels {
namespace {

struct NeonConvOps : NeonOps {
  static Tail full_tail() { return kLanes; }
  static V gather_stride(const float* p, int64_t stride, Tail t) {
    V v = vdupq_n_f32(0.0f);
    v = vld1q_lane_f32(p, v, 0);
    if (t > 1) v = vld1q_lane_f32(p + stride, v, 1);
    if (t > 2) v = vld1q_lane_f32(p + 2 * stride, v, 2);
    if (t > 3) v = vld1q_lane_f32(p + 3 * stride, v, 3);
    return v;
  }
};

}  // namespace
}  // namespace kernels
}  // namespace sparsert

#include "kernels/conv/conv_impl.h"
#include "kernels/conv/winograd_impl.h"
#include "kernels/spmm/block4_impl.h"

namespace sparsert {
namespace kernels {

void conv_sparse_direct_f32_neon(const float* values, const int32_t* offsets,
                                 const uint32_t* row_ptr, const ConvBlocks4* blocks,
                                 int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                                 const float* bias, float* y, int64_t ldy) {
  block4_conv<NeonConvOps, 4>(blocks, row_begin, row_end, x, n, bias, y, ldy,
                             [&](int64_t rb, int64_t re, float* yb) {
                               conv_sparse_direct_run<NeonConvOps>(values, offsets, row_ptr, rb, re, x, n,
                                                                bias, yb, ldy);
                             });
}

void conv_depthwise_f32_neon(const ConvGeometry& g, const float* x, const float* w, float bias,
                             float out_min, float out_max, float* y) {
  conv_depthwise_run<NeonConvOps>(g, x, w, bias, out_min, out_max, y);
}

void winograd_input_f4x4_neon(const float* xp, int64_t wp, int64_t plane, int64_t c_begin,
                              int64_t c_end, int64_t ty_begin, int64_t ty_end, int64_t tiles_w,
                              float* v, int64_t ld_xi, int64_t ld_c) {
  winograd_input_run(xp, wp, plane, c_begin, c_end, ty_begin, ty_end, tiles_w, v, ld_xi, ld_c);
}

void winograd_output_f4x4_neon(const float* m, int64_t ld_xi, int64_t ty_begin, int64_t ty_end,
                               int64_t tiles_w, float bias, float* y, int64_t out_h,
                               int64_t out_w) {
  winograd_output_run(m, ld_xi, ty_begin, ty_end, tiles_w, bias, y, out_h, out_w);
}

}  // namespace kernels
}  // namespace sparsert
