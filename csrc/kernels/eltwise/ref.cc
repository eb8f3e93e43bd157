// Reference eltwise kernels: the C library functions, one element at a time,
// and the textbook Softmax / LayerNorm rows. Never optimised: the SIMD kernels
// are tested against these.
#include <cmath>
#include <cstdint>
#include <limits>

namespace sparsert {
namespace kernels {
namespace {

float sigmoid_ref(float x) {
  // exp(-|x|) never overflows, so negative x keeps its (denormal) precision
  const float e = std::exp(-std::fabs(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

}  // namespace

void eltwise_exp_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

void eltwise_tanh_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void eltwise_erf_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
}

void eltwise_sigmoid_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_ref(x[i]);
}

void eltwise_silu_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = v == -std::numeric_limits<float>::infinity() ? -0.0f : v * sigmoid_ref(v);
  }
}

void eltwise_gelu_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    // in double, and through erfc so x < 0 has no cancellation (1 + erf(x) would)
    const double v = x[i];
    y[i] = std::isinf(v) ? (v > 0 ? x[i] : -0.0f)
                         : static_cast<float>(0.5 * v * std::erfc(-v * 0.70710678118654752));
  }
}

void eltwise_gelu_tanh_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    // in double; (1 + tanh(u)) / 2 = sigmoid(2u) keeps precision for u << 0
    const double v = x[i];
    const double u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    y[i] =
        std::isinf(v) ? (v > 0 ? x[i] : -0.0f) : static_cast<float>(v / (1.0 + std::exp(-2.0 * u)));
  }
}

void softmax_row_f32_ref(const float* x, float* y, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  if (std::isinf(m) && m < 0) m = 0.0f;  // all -inf: 0 / 0 = NaN like the references
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - m);
    y[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

void layernorm_row_f32_ref(const float* x, float* y, int64_t n, const float* gamma,
                           const float* beta, double epsilon) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / static_cast<double>(n);
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    sq += d * d;
  }
  const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(n) + epsilon));
  // mean = m_hi + m_lo: x - m_hi is exact for x near the mean, so rows with a
  // large mean and a small spread keep their precision
  const float m_hi = static_cast<float>(mean);
  const float m_lo = static_cast<float>(mean - m_hi);
  for (int64_t i = 0; i < n; ++i) {
    float v = ((x[i] - m_hi) - m_lo) * rstd;
    if (gamma != nullptr) v *= gamma[i];
    if (beta != nullptr) v += beta[i];
    y[i] = v;
  }
}

}  // namespace kernels
}  // namespace sparsert
