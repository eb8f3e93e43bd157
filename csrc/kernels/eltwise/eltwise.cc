// The eltwise kernel list (from eltwise.inc) and its dispatch. Generic code:
// compiled without ISA flags.
#include "kernels/eltwise/eltwise.h"

namespace sparsert {
namespace kernels {

#define SPARSERT_ELTWISE_KERNEL(isa, suffix)                                               \
  void eltwise_exp_f32_##suffix(const float* x, float* y, int64_t n);                      \
  void eltwise_tanh_f32_##suffix(const float* x, float* y, int64_t n);                     \
  void eltwise_erf_f32_##suffix(const float* x, float* y, int64_t n);                      \
  void eltwise_sigmoid_f32_##suffix(const float* x, float* y, int64_t n);                  \
  void eltwise_silu_f32_##suffix(const float* x, float* y, int64_t n);                     \
  void eltwise_gelu_f32_##suffix(const float* x, float* y, int64_t n);                     \
  void eltwise_gelu_tanh_f32_##suffix(const float* x, float* y, int64_t n);                \
  void softmax_row_f32_##suffix(const float* x, float* y, int64_t n);                      \
  void layernorm_row_f32_##suffix(const float* x, float* y, int64_t n, const float* gamma, \
                                  const float* beta, double epsilon);
#include "kernels/eltwise/eltwise.inc"
#undef SPARSERT_ELTWISE_KERNEL

namespace {

std::vector<EltwiseKernel> make_eltwise_kernels() {
  std::vector<EltwiseKernel> list;
#define SPARSERT_ELTWISE_KERNEL(isa, suffix)                                                     \
  if (isa_supported(Isa::isa)) {                                                                 \
    list.push_back(EltwiseKernel{                                                                \
        Isa::isa, "eltwise_f32_" #suffix, &eltwise_exp_f32_##suffix, &eltwise_tanh_f32_##suffix, \
        &eltwise_erf_f32_##suffix, &eltwise_sigmoid_f32_##suffix, &eltwise_silu_f32_##suffix,    \
        &eltwise_gelu_f32_##suffix, &eltwise_gelu_tanh_f32_##suffix, "softmax_f32_" #suffix,     \
        &softmax_row_f32_##suffix, "layernorm_f32_" #suffix, &layernorm_row_f32_##suffix});      \
  }
#include "kernels/eltwise/eltwise.inc"
#undef SPARSERT_ELTWISE_KERNEL
  return list;
}


}  // namespace

const std::vector<EltwiseKernel>& eltwise_kernels() {
  static const std::vector<EltwiseKernel> list = make_eltwise_kernels();
  return list;
}

const EltwiseKernel& eltwise_kernel(Isa isa) { return pick_kernel(eltwise_kernels(), isa); }

const EltwiseKernel& eltwise_best() {
  static const EltwiseKernel& best = eltwise_kernel(best_isa());
  return best;
}

}  // namespace kernels
}  // namespace sparsert
