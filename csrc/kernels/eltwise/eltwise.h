// The element-wise kernel family: transcendental activations (exp, tanh, erf,
// sigmoid, SiLU, GELU) and the row kernels of Softmax and LayerNorm, which are
// bound by exp and by reductions rather than by memory.
//
// ref.cc calls the C library (std::exp, std::tanh, std::erf) and is the
// reference; the SIMD files evaluate polynomial approximations (eltwise_impl.h
// says which, with their error bounds). Every function accepts in == out.
// Special values follow the C library: NaN in gives NaN out, exp(-inf) = 0,
// exp(+inf) = +inf, tanh / erf / sigmoid saturate, results that underflow are
// denormal or zero. Where the textbook formula gives inf * 0 the limit is
// returned instead: silu(-inf) = gelu(-inf) = gelu_tanh(-inf) = -0.
//
// ISA kernels are listed in eltwise.inc and defined in eltwise/<isa>.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

namespace sparsert {
namespace kernels {

// y[i] = f(x[i]) for i in [0, n).
using EltwiseFn = void (*)(const float* x, float* y, int64_t n);
// One contiguous softmax row: y = exp(x - max x) / sum exp(x - max x). A row of
// only -inf gives NaN (as torch and onnxruntime do).
using SoftmaxRowFn = void (*)(const float* x, float* y, int64_t n);
// One LayerNorm row: y = (x - mean) / sqrt(var + epsilon) * gamma + beta,
// biased variance, statistics accumulated in double. gamma / beta may be null.
using LayerNormRowFn = void (*)(const float* x, float* y, int64_t n, const float* gamma,
                                const float* beta, double epsilon);

struct EltwiseKernel {
  Isa isa;
  const char* name;  // e.g. "eltwise_f32_avx512"
  EltwiseFn exp;
  EltwiseFn tanh;
  EltwiseFn erf;
  EltwiseFn sigmoid;
  EltwiseFn silu;            // x * sigmoid(x)
  EltwiseFn gelu;            // x * (1 + erf(x / sqrt 2)) / 2
  EltwiseFn gelu_tanh;       // x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2
  const char* softmax_name;  // e.g. "softmax_f32_avx512"
  SoftmaxRowFn softmax_row;
  const char* layernorm_name;  // e.g. "layernorm_f32_avx512"
  LayerNormRowFn layernorm_row;
};
// Every eltwise kernel compiled in and supported by this CPU, the reference first.
const std::vector<EltwiseKernel>& eltwise_kernels();
const EltwiseKernel& eltwise_kernel(Isa isa);  // best one not above `isa`
const EltwiseKernel& eltwise_best();           // eltwise_kernel(best_isa()), chosen once

}  // namespace kernels
}  // namespace sparsert
