// Winograd F(4x4, 3x3) input and output transforms (conv.h), written once as
// plain loops over a chunk of kWinogradChunk tiles: every arithmetic loop has
// a constant trip count and unit stride, so each ISA file's compiler flags
// turn it into that ISA's vector code (AVX2, AVX-512, NEON) without
// intrinsics. Gathering a tile row's 6x6 windows into the chunk layout and
// scattering the 4x4 results back are scalar copies (a small share next to
// the 36 GEMMs between the two transforms).
//
// Chunk layout: a[(i * cols + j) * kWinogradChunk + t] is element (i, j) of
// tile t's matrix.
#pragma once

#include <cstdint>

namespace sparsert {
namespace kernels {
namespace {

constexpr int kWinogradChunk = 16;

// out[i] = (B^T in)[i] for i < 6 over the chunk (in / out rows at strides si / so).
inline void winograd_bt(const float* __restrict in, int64_t si, float* __restrict out, int64_t so) {
  for (int t = 0; t < kWinogradChunk; ++t) {
    const float d0 = in[t], d1 = in[si + t], d2 = in[2 * si + t];
    const float d3 = in[3 * si + t], d4 = in[4 * si + t], d5 = in[5 * si + t];
    out[t] = 4.0f * d0 - 5.0f * d2 + d4;
    out[so + t] = d3 + d4 - 4.0f * (d1 + d2);
    out[2 * so + t] = d4 - d3 + 4.0f * (d1 - d2);
    out[3 * so + t] = d4 - d2 + 2.0f * (d3 - d1);
    out[4 * so + t] = d4 - d2 + 2.0f * (d1 - d3);
    out[5 * so + t] = 4.0f * d1 - 5.0f * d3 + d5;
  }
}

// out[i] = (A^T in)[i] for i < 4.
inline void winograd_at(const float* __restrict in, int64_t si, float* __restrict out, int64_t so) {
  for (int t = 0; t < kWinogradChunk; ++t) {
    const float m0 = in[t], m1 = in[si + t], m2 = in[2 * si + t];
    const float m3 = in[3 * si + t], m4 = in[4 * si + t], m5 = in[5 * si + t];
    const float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
    out[t] = m0 + a + c;
    out[so + t] = b + 2.0f * d;
    out[2 * so + t] = a + 4.0f * c;
    out[3 * so + t] = b + 8.0f * d + m5;
  }
}

void winograd_input_run(const float* xp, int64_t wp, int64_t plane, int64_t c_begin, int64_t c_end,
                        int64_t ty_begin, int64_t ty_end, int64_t tiles_w, float* v, int64_t ld_xi,
                        int64_t ld_c) {
  constexpr int C = kWinogradChunk;
  alignas(64) float d[36 * C];
  alignas(64) float rows[36 * C];
  alignas(64) float out[36 * C];
  for (int64_t c = c_begin; c < c_end; ++c) {
    const float* xc = xp + c * plane;
    for (int64_t ty = ty_begin; ty < ty_end; ++ty) {
      for (int64_t tx0 = 0; tx0 < tiles_w; tx0 += C) {
        const int n = static_cast<int>(tiles_w - tx0 < C ? tiles_w - tx0 : C);
        for (int i = 0; i < 6; ++i) {
          const float* row = xc + (4 * ty + i) * wp + 4 * tx0;
          for (int j = 0; j < 6; ++j) {
            float* dst = d + (i * 6 + j) * C;
            for (int t = 0; t < n; ++t) dst[t] = row[4 * t + j];
            for (int t = n; t < C; ++t) dst[t] = 0.0f;
          }
        }
        for (int i = 0; i < 6; ++i) winograd_bt(d + i * 6 * C, C, rows + i * 6 * C, C);  // along j
        for (int j = 0; j < 6; ++j) winograd_bt(rows + j * C, 6 * C, out + j * C, 6 * C);  // along i
        float* vt = v + c * ld_c + (ty - ty_begin) * tiles_w + tx0;
        for (int xi = 0; xi < 36; ++xi) {
          const float* s = out + xi * C;
          float* dst = vt + xi * ld_xi;
          for (int t = 0; t < n; ++t) dst[t] = s[t];
        }
      }
    }
  }
}

void winograd_output_run(const float* m, int64_t ld_xi, int64_t ty_begin, int64_t ty_end,
                         int64_t tiles_w, float bias, float* y, int64_t out_h, int64_t out_w) {
  constexpr int C = kWinogradChunk;
  alignas(64) float mm[36 * C];
  alignas(64) float rows[24 * C];
  alignas(64) float o[16 * C];
  for (int64_t ty = ty_begin; ty < ty_end; ++ty) {
    for (int64_t tx0 = 0; tx0 < tiles_w; tx0 += C) {
      const int n = static_cast<int>(tiles_w - tx0 < C ? tiles_w - tx0 : C);
      const float* mt = m + (ty - ty_begin) * tiles_w + tx0;
      for (int xi = 0; xi < 36; ++xi) {
        const float* s = mt + xi * ld_xi;
        float* dst = mm + xi * C;
        for (int t = 0; t < n; ++t) dst[t] = s[t];
        for (int t = n; t < C; ++t) dst[t] = 0.0f;
      }
      for (int i = 0; i < 6; ++i) winograd_at(mm + i * 6 * C, C, rows + i * 4 * C, C);  // along j
      for (int j = 0; j < 4; ++j) winograd_at(rows + j * C, 4 * C, o + j * C, 4 * C);  // along i
      for (int i = 0; i < 4; ++i) {
        const int64_t oh = 4 * ty + i;
        if (oh >= out_h) break;
        float* yr = y + oh * out_w + 4 * tx0;
        const int64_t cols = out_w - 4 * tx0 < 4 * n ? out_w - 4 * tx0 : 4 * n;
        for (int64_t col = 0; col < cols; ++col)
          yr[col] = o[(i * 4 + (col & 3)) * C + (col >> 2)] + bias;
      }
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace sparsert
