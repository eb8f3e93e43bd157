// The reference conv kernels: naive loops, never optimised. Every other conv
// kernel is tested against them.
#include "kernels/conv/conv.h"

namespace sparsert {
namespace kernels {

void conv_sparse_direct_f32_ref(const float* values, const int32_t* offsets,
                                const uint32_t* row_ptr, const ConvBlocks4* /*blocks*/,
                                int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                                const float* bias, float* y, int64_t ldy) {
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

// Winograd transforms as the textbook matrix products B^T d B and A^T M A.
namespace {
const float kBt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                         {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
const float kAt[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
}  // namespace

void winograd_input_f4x4_ref(const float* xp, int64_t wp, int64_t plane, int64_t c_begin,
                             int64_t c_end, int64_t ty_begin, int64_t ty_end, int64_t tiles_w,
                             float* v, int64_t ld_xi, int64_t ld_c) {
  for (int64_t c = c_begin; c < c_end; ++c) {
    for (int64_t ty = ty_begin; ty < ty_end; ++ty) {
      for (int64_t tx = 0; tx < tiles_w; ++tx) {
        const float* d = xp + c * plane + 4 * ty * wp + 4 * tx;
        const int64_t t = (ty - ty_begin) * tiles_w + tx;
        for (int i = 0; i < 6; ++i) {
          for (int j = 0; j < 6; ++j) {
            float acc = 0.0f;
            for (int a = 0; a < 6; ++a)
              for (int b = 0; b < 6; ++b) acc += kBt[i][a] * d[a * wp + b] * kBt[j][b];
            v[(i * 6 + j) * ld_xi + c * ld_c + t] = acc;
          }
        }
      }
    }
  }
}

void winograd_output_f4x4_ref(const float* m, int64_t ld_xi, int64_t ty_begin, int64_t ty_end,
                              int64_t tiles_w, float bias, float* y, int64_t out_h, int64_t out_w) {
  for (int64_t ty = ty_begin; ty < ty_end; ++ty) {
    for (int64_t tx = 0; tx < tiles_w; ++tx) {
      const int64_t t = (ty - ty_begin) * tiles_w + tx;
      for (int i = 0; i < 4; ++i) {
        for (int j = 0; j < 4; ++j) {
          const int64_t oh = 4 * ty + i, ow = 4 * tx + j;
          if (oh >= out_h || ow >= out_w) continue;
          float acc = 0.0f;
          for (int a = 0; a < 6; ++a)
            for (int b = 0; b < 6; ++b) acc += kAt[i][a] * m[(a * 6 + b) * ld_xi + t] * kAt[j][b];
          y[oh * out_w + ow] = acc + bias;
        }
      }
    }
  }
}

}  // namespace kernels
}  // namespace sparsert
