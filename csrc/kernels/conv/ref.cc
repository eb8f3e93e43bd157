// The reference conv kernels: naive loops, never optimised. Every other conv
// kernel is tested against them.
#include "kernels/conv/conv.h"

namespace sparsert {
namespace kernels {

void conv_sparse_direct_f32_ref(const float* values, const int32_t* offsets,
                                const uint32_t* row_ptr, int64_t row_begin, int64_t row_end,
                                const float* x, int64_t n, const float* bias, float* y,
                                int64_t ldy) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float* yr = y + (r - row_begin) * ldy;
    for (int64_t p = 0; p < n; ++p) yr[p] = bias != nullptr ? bias[r] : 0.0f;
    for (uint32_t j = row_ptr[r]; j < row_ptr[r + 1]; ++j) {
      const float* xj = x + offsets[j];
      for (int64_t p = 0; p < n; ++p) yr[p] += values[j] * xj[p];
    }
  }
}

void conv_depthwise_f32_ref(const ConvGeometry& g, const float* x, const float* w, float bias,
                            float out_min, float out_max, float* y) {
  const int64_t wp = g.padded_w();
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      float acc = bias;
      for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
        for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
          acc +=
              w[kh * g.kernel_w + kw] *
              x[(oh * g.stride_h + kh * g.dilation_h) * wp + ow * g.stride_w + kw * g.dilation_w];
        }
      }
      // NaN compares false both ways, so it passes through unchanged
      y[oh * g.out_w + ow] = acc < out_min ? out_min : (acc > out_max ? out_max : acc);
    }
  }
}

}  // namespace kernels
}  // namespace sparsert
