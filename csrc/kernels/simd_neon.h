// Vector operations for the NEON kernel files (the `Ops` of spmm_impl.h and
// gemm_impl.h), for aarch64 and for armv7 with -mfpu=neon (which has no fused
// multiply-add: vmlaq_f32 is used there, and the tests' tolerance covers the
// extra rounding). NEON has no masked loads, so a column tail goes through a
// small zero-padded stack buffer. The struct lives in an anonymous namespace
// so each kernel file owns its copy.
#pragma once

#include <arm_neon.h>

namespace sparsert {
namespace kernels {
namespace {

struct NeonOps {
  using V = float32x4_t;
  using Tail = int;  // number of valid lanes, 1..3
  static constexpr int kLanes = 4;
  static V zero() { return vdupq_n_f32(0.0f); }
  static V set1(float f) { return vdupq_n_f32(f); }
  static V load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static V fma(V a, V b, V c) {
#if defined(__aarch64__)
    return vfmaq_f32(c, a, b);
#else
    return vmlaq_f32(c, a, b);
#endif
  }
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static Tail tail(int count) { return count; }
  static V load_tail(const float* p, Tail t) {
    float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < t; ++i) buf[i] = p[i];
    return vld1q_f32(buf);
  }
  static void store_tail(float* p, V v, Tail t) {
    float buf[4];
    vst1q_f32(buf, v);
    for (int i = 0; i < t; ++i) p[i] = buf[i];
  }
};

}  // namespace
}  // namespace kernels
}  // namespace sparsert
