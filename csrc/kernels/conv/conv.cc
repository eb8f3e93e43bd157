// The conv kernel list (from conv.inc) and the generic helpers of conv.h:
// padding, im2col and col2im. Generic code: compiled without ISA flags.
#include "kernels/conv/conv.h"

#include <algorithm>
#include <cstring>

#include "kernels/multiversion.h"

namespace sparsert {
namespace kernels {

#define SPARSERT_CONV_KERNEL(isa, direct, depthwise, suffix)                                       \
  void direct(const float* values, const int32_t* offsets, const uint32_t* row_ptr,                \
              const ConvBlocks4* blocks, int64_t row_begin, int64_t row_end, const float* x,       \
              int64_t n, const float* bias, float* y, int64_t ldy);                                \
  void depthwise(const ConvGeometry& g, const float* x, const float* w, float bias, float out_min, \
                 float out_max, float* y);                                                         \
  void winograd_input_f4x4_##suffix(const float* xp, int64_t wp, int64_t plane, int64_t c_begin,   \
                                    int64_t c_end, int64_t ty_begin, int64_t ty_end,               \
                                    int64_t tiles_w, float* v, int64_t ld_xi, int64_t ld_c);       \
  void winograd_output_f4x4_##suffix(const float* m, int64_t ld_xi, int64_t ty_begin,              \
                                     int64_t ty_end, int64_t tiles_w, float bias, float* y,        \
                                     int64_t out_h, int64_t out_w);
#include "kernels/conv/conv.inc"
#undef SPARSERT_CONV_KERNEL

namespace {

std::vector<ConvKernel> make_conv_kernels() {
  std::vector<ConvKernel> list;
#define SPARSERT_CONV_KERNEL(isa, direct, depthwise, suffix)                                   \
  if (isa_supported(Isa::isa))                                                                \
    list.push_back(ConvKernel{Isa::isa, #direct, &direct, #depthwise, &depthwise,              \
                              "winograd_f4x4_3x3_" #suffix, &winograd_input_f4x4_##suffix, \
                              &winograd_output_f4x4_##suffix});
#include "kernels/conv/conv.inc"
#undef SPARSERT_CONV_KERNEL
  return list;
}


}  // namespace

const std::vector<ConvKernel>& conv_kernels() {
  static const std::vector<ConvKernel> list = make_conv_kernels();
  return list;
}

const ConvKernel& conv_kernel(Isa isa) { return pick_kernel(conv_kernels(), isa); }

const ConvKernel& conv_best() {
  static const ConvKernel& best = conv_kernel(best_isa());
  return best;
}

int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                         int64_t pad_end, int64_t dilation) {
  // Dims and attributes come from untrusted files: a product or sum that
  // overflows is treated like a window that does not fit (-1).
  int64_t span, padded;
  if (__builtin_mul_overflow(dilation, kernel - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
      __builtin_add_overflow(in, pad_begin, &padded) || __builtin_add_overflow(padded, pad_end, &padded))
    return -1;
  if (padded < span) return -1;
  return (padded - span) / stride + 1;
}

void conv_pad_input(const ConvGeometry& g, const float* x, int64_t c_begin, int64_t c_end,
                    float* xp) {
  const int64_t hp = g.padded_h(), wp = g.padded_w();
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float* src = x + c * g.in_h * g.in_w;
    float* dst = xp + c * hp * wp;
    std::fill(dst, dst + g.pad_top * wp, 0.0f);
    for (int64_t h = 0; h < g.in_h; ++h) {
      float* row = dst + (g.pad_top + h) * wp;
      std::fill(row, row + g.pad_left, 0.0f);
      std::memcpy(row + g.pad_left, src + h * g.in_w, sizeof(float) * g.in_w);
      std::fill(row + g.pad_left + g.in_w, row + wp, 0.0f);
    }
    std::fill(dst + (g.pad_top + g.in_h) * wp, dst + hp * wp, 0.0f);
  }
}

void conv_pad_input_phases(const ConvGeometry& g, const float* x, int64_t c_begin, int64_t c_end,
                           float* xq) {
  if (g.stride_h == 1 && g.stride_w == 1) {
    conv_pad_input(g, x, c_begin, c_end, xq);
    return;
  }
  const int64_t hq = g.phase_h(), wq = g.phase_w();
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float* src = x + c * g.in_h * g.in_w;
    for (int64_t a = 0; a < g.stride_h; ++a) {
      for (int64_t b = 0; b < g.stride_w; ++b) {
        float* dst = xq + ((c * g.stride_h + a) * g.stride_w + b) * hq * wq;
        // columns j with 0 <= j*sw + b - pad_left < in_w
        const int64_t shift = b - g.pad_left;
        const int64_t lo = std::min(wq, shift >= 0 ? 0 : (-shift + g.stride_w - 1) / g.stride_w);
        const int64_t hi = std::max(
            lo,
            std::min(wq, g.in_w - shift <= 0 ? 0 : (g.in_w - shift + g.stride_w - 1) / g.stride_w));
        for (int64_t i = 0; i < hq; ++i) {
          float* row = dst + i * wq;
          const int64_t ih = i * g.stride_h + a - g.pad_top;
          if (ih < 0 || ih >= g.in_h) {
            std::fill(row, row + wq, 0.0f);
            continue;
          }
          const float* s = src + ih * g.in_w + shift;
          std::fill(row, row + lo, 0.0f);
          for (int64_t j = lo; j < hi; ++j) row[j] = s[j * g.stride_w];
          std::fill(row + hi, row + wq, 0.0f);
        }
      }
    }
  }
}

namespace {

// Rows [oh0, oh1) of one im2col row k = (c, kh, kw), written at out (row
// stride out_w): zeros where the tap falls in the padding, the input row
// (at stride sw) elsewhere. The valid column range [lo, hi) depends only on
// kw, so it is computed once per k rather than per output row; for the
// 7x7 and 14x14 maps of ResNet / DenseNet a row is 7-14 floats, and the
// per-row divisions and memcpy calls of the general loop cost more than the
// copy (DenseNet's 128 -> 32 3x3 at 14x14 spent half its time in im2col).
// Multiversioned: plain loops the compiler vectorises (stride 2 with
// permutes).
SPARSERT_MULTIVERSION void im2col_whole_rows(const float* xc, int64_t in_h, int64_t in_w, int64_t ih0,
                                             int64_t sh, int64_t sw, int64_t shift, int64_t lo, int64_t hi,
                                             int64_t oh0, int64_t oh1, int64_t out_w, float* out) {
  for (int64_t oh = oh0; oh < oh1; ++oh, out += out_w) {
    const int64_t ih = ih0 + oh * sh;
    if (ih < 0 || ih >= in_h) {
      for (int64_t j = 0; j < out_w; ++j) out[j] = 0.0f;
      continue;
    }
    const float* xrow = xc + ih * in_w + shift;
    for (int64_t j = 0; j < lo; ++j) out[j] = 0.0f;
    if (sw == 1) {
      for (int64_t j = lo; j < hi; ++j) out[j] = xrow[j];
    } else if (sw == 2) {
      for (int64_t j = lo; j < hi; ++j) out[j] = xrow[2 * j];
    } else {
      for (int64_t j = lo; j < hi; ++j) out[j] = xrow[j * sw];
    }
    for (int64_t j = hi; j < out_w; ++j) out[j] = 0.0f;
  }
}

// out[i] = src[2 * i]: the stride-2 im2col rows (ResNet's 7x7 stem, the
// strided 3x3 layers), vectorised with permutes.
SPARSERT_MULTIVERSION void gather_stride2(float* out, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = src[2 * i];
}

}  // namespace

void conv_im2col(const ConvGeometry& g, const float* x, int64_t k_begin, int64_t k_end,
                 int64_t p_begin, int64_t p_end, float* col, int64_t ldcol) {
  const int64_t khw = g.kernel_h * g.kernel_w;
  if (p_begin % g.out_w == 0 && (p_end % g.out_w == 0 || p_end == g.out_h * g.out_w)) {
    // whole output rows (every pixel block but a budget-limited one)
    const int64_t oh0 = p_begin / g.out_w, oh1 = (p_end + g.out_w - 1) / g.out_w;
    for (int64_t k = k_begin; k < k_end; ++k) {
      const int64_t c = k / khw;
      const int64_t kh = (k % khw) / g.kernel_w;
      const int64_t kw = k % g.kernel_w;
      const int64_t shift = kw * g.dilation_w - g.pad_left;  // iw = ow*sw + shift
      int64_t lo = shift >= 0 ? 0 : (-shift + g.stride_w - 1) / g.stride_w;
      int64_t hi = g.in_w - shift <= 0 ? 0 : (g.in_w - shift + g.stride_w - 1) / g.stride_w;
      lo = std::min(lo, g.out_w);
      hi = std::max(lo, std::min(hi, g.out_w));
      im2col_whole_rows(x + c * g.in_h * g.in_w, g.in_h, g.in_w, kh * g.dilation_h - g.pad_top, g.stride_h,
                        g.stride_w, shift, lo, hi, oh0, oh1, g.out_w, col + (k - k_begin) * ldcol);
    }
    return;
  }
  for (int64_t k = k_begin; k < k_end; ++k) {
    const int64_t c = k / khw;
    const int64_t kh = (k % khw) / g.kernel_w;
    const int64_t kw = k % g.kernel_w;
    const float* xc = x + c * g.in_h * g.in_w;
    float* dst = col + (k - k_begin) * ldcol - p_begin;
    int64_t p = p_begin;
    while (p < p_end) {
      const int64_t oh = p / g.out_w;
      const int64_t ow_begin = p % g.out_w;
      const int64_t ow_end = std::min(g.out_w, ow_begin + (p_end - p));
      const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
      float* out = dst + oh * g.out_w;
      if (ih < 0 || ih >= g.in_h) {
        std::fill(out + ow_begin, out + ow_end, 0.0f);
      } else {
        const float* xrow = xc + ih * g.in_w;
        const int64_t shift = kw * g.dilation_w - g.pad_left;  // iw = ow*sw + shift
        // valid ow: 0 <= ow*sw + shift < in_w
        int64_t lo = shift >= 0 ? 0 : (-shift + g.stride_w - 1) / g.stride_w;
        int64_t hi = g.in_w - shift <= 0 ? 0 : (g.in_w - shift + g.stride_w - 1) / g.stride_w;
        // clamp both ends into this block: with padding wider than the block, the
        // first valid ow can lie past ow_end (then the whole span is padding)
        lo = std::min(std::max(lo, ow_begin), ow_end);
        hi = std::min(hi, ow_end);
        if (hi < lo) hi = lo;
        std::fill(out + ow_begin, out + lo, 0.0f);
        if (g.stride_w == 1) {
          if (hi > lo) std::memcpy(out + lo, xrow + lo + shift, sizeof(float) * (hi - lo));
        } else if (g.stride_w == 2) {
          if (hi > lo) gather_stride2(out + lo, xrow + lo * 2 + shift, hi - lo);
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) out[ow] = xrow[ow * g.stride_w + shift];
        }
        std::fill(out + hi, out + ow_end, 0.0f);
      }
      p += ow_end - ow_begin;
    }
  }
}

void conv_col2im(const ConvGeometry& g, const float* cols, int64_t o_begin, int64_t o_end,
                 float* y) {
  const int64_t hw_in = g.in_h * g.in_w;
  for (int64_t o = o_begin; o < o_end; ++o) {
    float* yo = y + o * g.out_h * g.out_w;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        const float* src = cols + ((o * g.kernel_h + kh) * g.kernel_w + kw) * hw_in;
        const int64_t shift_w = kw * g.dilation_w - g.pad_left;  // ow = iw*sw + shift_w
        int64_t lo = shift_w >= 0 ? 0 : (-shift_w + g.stride_w - 1) / g.stride_w;
        int64_t hi = g.out_w - shift_w <= 0 ? 0 : (g.out_w - shift_w + g.stride_w - 1) / g.stride_w;
        hi = std::min(hi, g.in_w);
        if (hi <= lo) continue;
        for (int64_t ih = 0; ih < g.in_h; ++ih) {
          const int64_t oh = ih * g.stride_h - g.pad_top + kh * g.dilation_h;
          if (oh < 0 || oh >= g.out_h) continue;
          const float* s = src + ih * g.in_w;
          float* d = yo + oh * g.out_w + shift_w;
          for (int64_t iw = lo; iw < hi; ++iw) d[iw * g.stride_w] += s[iw];
        }
      }
    }
  }
}

void conv_winograd_weights(const float* w, int64_t cout, int64_t cin, float* u) {
  static const double kG[6][3] = {{1.0 / 4, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};
  for (int64_t k = 0; k < cout; ++k) {
    for (int64_t c = 0; c < cin; ++c) {
      const float* g = w + (k * cin + c) * 9;
      double gg[6][3];  // G g
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 3; ++j)
          gg[i][j] = kG[i][0] * g[j] + kG[i][1] * g[3 + j] + kG[i][2] * g[6 + j];
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 6; ++j)
          u[(i * 6 + j) * cout * cin + k * cin + c] =
              static_cast<float>(gg[i][0] * kG[j][0] + gg[i][1] * kG[j][1] + gg[i][2] * kG[j][2]);
    }
  }
}

}  // namespace kernels
}  // namespace sparsert
