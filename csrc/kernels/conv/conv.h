// The convolution kernel family: the kernels that are specific to
// convolutions (the 1x1 and im2col paths reuse spmm / gemm from kernels.h),
// plus the generic data-movement helpers the conv ops share.
//
// Both kernels read a zero-padded input, so they never test borders:
//
// - sparse direct (CSR weights, stride 1): the input of one group is padded
//   into Cg planes of Hp x Wp (Hp = H + top + bottom, Wp = W + left + right).
//   For the nonzero j at (c, kh, kw) of a CSR row, offsets[j] = c*Hp*Wp +
//   kh*dh*Wp + kw*dw. Output pixel (oh, ow) then reads x[offsets[j] + oh*Wp + ow],
//   so over the flattened index p = oh*Wp + ow the whole convolution is
//       Y[i, p] = bias[r] + sum_j values[j] * x[offsets[j] + p],  p in [0, n)
//   with n = (Hout - 1)*Wp + Wout: an spmm whose rows read shifted windows of
//   one buffer. Columns with p % Wp >= Wout are computed and then dropped by
//   the op (a waste of (kW-1)*dw / Wp), in exchange for one contiguous span
//   that vectorises like spmm (register accumulation, masked tail).
//   Stride s > 1 becomes the same stride-1 form by splitting each padded plane
//   into sh x sw phase planes of Hq x Wq (Hq = ceil(Hp / sh), Wq = ceil(Wp / sw);
//   phase (a, b) holds the padded rows a, a + sh, ... and columns b, b + sw, ...,
//   see conv_pad_input_phases): tap (kh, kw) reads phase (kh*dh % sh, kw*dw % sw)
//   shifted by (kh*dh / sh, kw*dw / sw), so offsets[j] = ((c*sh + kh*dh % sh)*sw +
//   kw*dw % sw)*Hq*Wq + (kh*dh / sh)*Wq + kw*dw / sw, p = oh*Wq + ow and
//   n = (Hout - 1)*Wq + Wout. The kernel is the same; only the op's copy differs.
// - depthwise (one channel, any kernel / stride / dilation): reads a padded
//   plane of width Wp = in_w + pad_left + pad_right and writes out_h x out_w,
//   vectorised over the output width (strided loads become gathers). 3x3 and
//   5x5 with stride 1 or 2 and no dilation have a specialised kernel: weights
//   in registers, several output rows per input load, the clamp fused.
// - Winograd F(4x4, 3x3) (dense 3x3, stride 1, dilation 1, one group): the
//   output is cut into 4x4 tiles, tile (ty, tx) reading the 6x6 window of the
//   padded input at (4*ty, 4*tx); the plane is padded to 4*tiles + 2 in both
//   dims so every window is inside. With B, G, A the F(4x4, 3x3) matrices of
//   Lavin & Gray (2016), per tile Y = A^T [sum_c (G g_kc G^T) . (B^T d_c B)] A:
//   the transformed input V[xi][c][t] = (B^T d_c,t B)[xi] (xi < 36 the 6x6
//   element), then for every xi one GEMM M[xi] = U[xi] V[xi] with the
//   transformed weights U[xi][k][c] = (G g_kc G^T)[xi] (Cout x Cin, packed for
//   the gemm kernels), then Y = A^T M A per output channel and tile. 36 GEMMs
//   of Cin multiply-adds per 16 outputs instead of 9*Cin per output: 2.25x
//   fewer, plus the two transforms.
//
// ISA kernels are listed in conv.inc and defined in conv/<isa>.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

namespace sparsert {
namespace kernels {

// Geometry of one group of a 2-D convolution (all fields >= 0, strides and
// dilations >= 1). `channels` is the group's input channel count.
struct ConvGeometry {
  int64_t channels = 1;
  int64_t in_h = 1, in_w = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 1, out_w = 1;

  int64_t padded_h() const { return in_h + pad_top + pad_bottom; }
  int64_t padded_w() const { return in_w + pad_left + pad_right; }
  // one phase plane of the strided sparse direct input (see above)
  int64_t phase_h() const { return (padded_h() + stride_h - 1) / stride_h; }
  int64_t phase_w() const { return (padded_w() + stride_w - 1) / stride_w; }
};

// Rows [row_begin, row_end) of the sparse direct convolution (see above).
// Row r is written at y + (r - row_begin) * ldy, columns [0, n). bias may be
// null (then 0); bias is indexed by r.
// `blocks` (may be null): a 4x1 block view of the same weight (kernels.h
// CsrMatrix::block_*, with a precomputed x offset per block instead of a
// column); the SIMD kernels run the whole blocks of [row_begin, row_end) from
// it, the reference ignores it.
struct ConvBlocks4 {
  const uint32_t* block_ptr = nullptr;
  const int32_t* block_offsets = nullptr;
  const float* block_values = nullptr;
  int64_t block_count = 0;
};
using ConvSparseDirectFn = void (*)(const float* values, const int32_t* offsets,
                                    const uint32_t* row_ptr, const ConvBlocks4* blocks,
                                    int64_t row_begin, int64_t row_end, const float* x, int64_t n,
                                    const float* bias, float* y, int64_t ldy);

// One depthwise channel: x is the padded plane (padded_h() x padded_w()), w the
// kernel_h x kernel_w filter; y (out_h x out_w, contiguous) =
// clamp(bias + conv, out_min, out_max), the clamp being the fused
// ReLU / ReLU6 / Clip (-inf / +inf for none). NaN results stay NaN.
using ConvDepthwiseFn = void (*)(const ConvGeometry& g, const float* x, const float* w, float bias,
                                 float out_min, float out_max, float* y);

// Winograd input transform of channels [c_begin, c_end) and tile rows
// [ty_begin, ty_end) (tiles_w tiles each) of xp (channels planes of `plane`
// floats, rows of wp floats, padded as above): V of tile t = (ty - ty_begin) *
// tiles_w + tx goes to v[xi * ld_xi + c * ld_c + t].
using ConvWinogradInputFn = void (*)(const float* xp, int64_t wp, int64_t plane, int64_t c_begin,
                                     int64_t c_end, int64_t ty_begin, int64_t ty_end,
                                     int64_t tiles_w, float* v, int64_t ld_xi, int64_t ld_c);
// Winograd output transform of one output channel: M of tile t at m[xi * ld_xi
// + t] (t counted from tile row ty_begin as above); writes bias + A^T M A into
// the out_h x out_w plane y, dropping the tile parts past its edges.
using ConvWinogradOutputFn = void (*)(const float* m, int64_t ld_xi, int64_t ty_begin,
                                      int64_t ty_end, int64_t tiles_w, float bias, float* y,
                                      int64_t out_h, int64_t out_w);

struct ConvKernel {
  Isa isa;
  const char* sparse_direct_name;  // e.g. "conv_sparse_direct_f32_avx512"
  ConvSparseDirectFn sparse_direct;
  const char* depthwise_name;  // e.g. "conv_depthwise_f32_avx512"
  ConvDepthwiseFn depthwise;
  const char* winograd_name;  // e.g. "winograd_f4x4_3x3_avx512" (the transforms)
  ConvWinogradInputFn winograd_input;
  ConvWinogradOutputFn winograd_output;
};
// Every conv kernel compiled in and supported by this CPU, the reference first.
const std::vector<ConvKernel>& conv_kernels();
const ConvKernel& conv_kernel(Isa isa);  // best one not above `isa`
const ConvKernel& conv_best();           // conv_kernel(best_isa())

// --- generic helpers (conv/conv.cc) -----------------------------------------
// Output size of one spatial dim; -1 when the (padded) input is smaller than
// the dilated kernel.
int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                         int64_t pad_end, int64_t dilation);

// Copies channels [c_begin, c_end) of x (channels x in_h x in_w) into xp
// (channels x padded_h x padded_w) with zero borders.
void conv_pad_input(const ConvGeometry& g, const float* x, int64_t c_begin, int64_t c_end,
                    float* xp);

// Copies channels [c_begin, c_end) of x into xq (channels x stride_h x stride_w
// phase planes of phase_h() x phase_w()): phase (a, b) of channel c holds the
// zero-padded x at padded row i*stride_h + a, column j*stride_w + b (0 past the
// padded plane). With stride 1 this is conv_pad_input.
void conv_pad_input_phases(const ConvGeometry& g, const float* x, int64_t c_begin, int64_t c_end,
                           float* xq);

// im2col: the K x P matrix (K = channels*kernel_h*kernel_w, row (c*kH + kh)*kW + kw;
// P = out_h*out_w) restricted to rows [k_begin, k_end) and pixels [p_begin, p_end),
// written at col + (k - k_begin) * ldcol + (p - p_begin); padding reads as 0.
void conv_im2col(const ConvGeometry& g, const float* x, int64_t k_begin, int64_t k_end,
                 int64_t p_begin, int64_t p_end, float* col, int64_t ldcol);

// The Winograd F(4x4, 3x3) weights: w is Cout x Cin x 3 x 3; writes
// u[xi * cout * cin + k * cin + c] = (G w[k][c] G^T)[xi] (computed in double).
void conv_winograd_weights(const float* w, int64_t cout, int64_t cin, float* u);

// Transposed convolution scatter for output channels [o_begin, o_end) of one
// group: y[o, ih*sh - top + kh*dh, iw*sw - left + kw*dw] += cols[(o*kH + kh)*kW + kw, ih*W + iw]
// (cols rows are indexed by the group-local o). Here `g` describes the
// transposed conv: in_h/in_w are the input (X) sizes, out_h/out_w the output.
void conv_col2im(const ConvGeometry& g, const float* cols, int64_t o_begin, int64_t o_end,
                 float* y);

}  // namespace kernels
}  // namespace sparsert
