// Every compiled + supported eltwise kernel (kernels/eltwise) against double
// precision references, on inputs covering the whole float range: zeros,
// denormals, the approximation thresholds, the overflow / underflow edges,
// +-inf and NaN, sweeps over GELU's and erf's tails, plus random values from a
// printed seed. Lengths 1..67 and
// 4099 exercise the vector tails.
//
// Tolerance: |got - ref| <= 1e-6 * cond(x) * |ref| + 8 * 2^-149 (denormal
// spacing), with ref the double result rounded to float, NaN only where ref is
// NaN. cond is 1 except for GELU-tanh: its float argument 2u = 1.6 (x +
// 0.044715 x^3) carries relative error ~1e-7 that sigmoid(2u) amplifies by
// |2u| (1 - sigmoid(2u)), so cond = 1 + that. SiLU's absolute term is
// scaled by |x| (see kFunctions). Softmax rows: 1e-6 (1 + |x - max|)
// relative (x - max is rounded to float first); LayerNorm rows: 2e-5 (1 + |ref|).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_tester.h"
#include "kernels/eltwise/eltwise.h"

namespace sparsert {
namespace testing {
namespace {

using kernels::EltwiseFn;
using kernels::EltwiseKernel;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kDenormal = 1.4012984643248171e-45;  // 2^-149

double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double one(double) { return 1.0; }

struct Function {
  const char* name;
  EltwiseFn EltwiseKernel::*fn;
  double (*ref)(double);
  double (*cond)(double);
  // SiLU: for x < -87 sigmoid(x) is denormal, so x * sigmoid(x) is known only to
  // |x| denormal spacings; its absolute tolerance is scaled by |x|.
  bool atol_times_x = false;
};

const Function kFunctions[] = {
    {"exp", &EltwiseKernel::exp, [](double x) { return std::exp(x); }, one},
    {"tanh", &EltwiseKernel::tanh, [](double x) { return std::tanh(x); }, one},
    {"erf", &EltwiseKernel::erf, [](double x) { return std::erf(x); }, one},
    {"sigmoid", &EltwiseKernel::sigmoid, sigmoid_d, one},
    {"silu", &EltwiseKernel::silu,
     [](double x) { return x == -INFINITY ? -0.0 : x * sigmoid_d(x); }, one, true},
    {"gelu", &EltwiseKernel::gelu,
     [](double x) {
       if (std::isinf(x)) return x > 0 ? x : -0.0;
       return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
     },
     one},
    {"gelu_tanh", &EltwiseKernel::gelu_tanh,
     [](double x) {
       if (std::isinf(x)) return x > 0 ? x : -0.0;
       const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
       return x * sigmoid_d(2.0 * u);
     },
     [](double x) {
       const double v = 2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x);
       return std::isfinite(v) ? 1.0 + std::fabs(v) * (1.0 - sigmoid_d(v)) : 1.0;
     }},
};

std::vector<float> wide_inputs(uint64_t seed) {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          kInf,
                          -kInf,
                          std::numeric_limits<float>::quiet_NaN(),
                          1e-45f,
                          -1e-45f,
                          1e-40f,
                          -1e-40f,
                          1.17e-38f,
                          -1.17e-38f,
                          1e-20f,
                          -1e-20f,
                          std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(),
                          0.5f,
                          -0.5f,
                          0.625f,
                          -0.625f,
                          0.70710678f,
                          -0.70710678f,
                          88.72f,
                          88.73f,
                          89.0f,
                          95.0f,
                          -87.33f,
                          -87.34f,
                          -100.0f,
                          -103.97f,
                          -104.0f,
                          -110.0f,
                          9.0f,
                          -9.0f,
                          14.0f,
                          -14.0f,
                          19.99f,
                          -19.99f,
                          20.0f,
                          -20.0f,
                          20.01f,
                          -20.01f,
                          200.0f,
                          -200.0f,
                          1e10f,
                          -1e10f,
                          1e30f,
                          -1e30f};
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dense(-12.0f, 12.0f), wide(-120.0f, 100.0f);
  std::uniform_real_distribution<float> expo(-40.0f, 5.0f);
  for (int i = 0; i < 20000; ++i) v.push_back(dense(gen));
  // GELU's tails, swept: below -12.5 its results head for the denormal range
  // (computed scaled and rebuilt from the bits, whole vectors of such lanes
  // here), above 12.44 it returns x; erf saturates from 6 on.
  for (int i = 0; i < 20000; ++i) v.push_back(-21.0f + 0.0005f * static_cast<float>(i));
  for (int i = 0; i < 8000; ++i) v.push_back(5.0f + 0.002f * static_cast<float>(i));
  for (int i = 0; i < 5000; ++i) v.push_back(wide(gen));
  for (int i = 0; i < 5000; ++i) {
    const float m = std::pow(10.0f, expo(gen));
    v.push_back((i % 2) != 0 ? m : -m);
  }
  return v;
}

bool close(float got, double ref_d, double rtol, double atol, double* rel) {
  // rel: the worst relative error seen on results above 1e-30
  const float ref = static_cast<float>(ref_d);
  if (std::isnan(ref)) return std::isnan(got);
  if (std::isinf(ref)) return got == ref;
  if (!std::isfinite(got)) return false;
  const double err = std::fabs(static_cast<double>(got) - ref);
  if (ref != 0.0f && std::fabs(ref) > 1e-30) *rel = std::max(*rel, err / std::fabs(ref));
  return err <= rtol * std::fabs(ref) + atol;
}

// One run per eltwise kernel compiled in and supported here (the reference
// first), named by the kernel: Kernel/Eltwise.TailsWriteExactlyN/eltwise_f32_avx2.
class Eltwise : public ::testing::TestWithParam<size_t> {};
INSTANTIATE_TEST_SUITE_P(Kernel, Eltwise, ::testing::ValuesIn(kernel_indices(kernels::eltwise_kernels())),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kernels::eltwise_kernels()[info.param].name);
                         });

TEST_P(Eltwise, FunctionsMatchDoubleReference) {
  const uint64_t seed = base_seed() * 1000003u + 71;
  const std::vector<float> x = wide_inputs(seed);
  const int64_t n = static_cast<int64_t>(x.size());
  {
    const EltwiseKernel& k = kernels::eltwise_kernels().at(GetParam());
    for (const Function& f : kFunctions) {
      std::vector<float> y(x.size(), std::numeric_limits<float>::quiet_NaN());
      (k.*(f.fn))(x.data(), y.data(), n);
      double worst = 0.0;
      int failures = 0;
      for (int64_t i = 0; i < n && failures < 5; ++i) {
        const double atol =
            8 * kDenormal * (f.atol_times_x ? std::max(1.0f, std::fabs(x[i])) : 1.0f);
        if (!close(y[i], f.ref(x[i]), 1e-6 * f.cond(x[i]), atol, &worst)) {
          ++failures;
          ADD_FAILURE() << k.name << " " << f.name << "(" << x[i] << ") = " << y[i] << ", want "
                        << static_cast<float>(f.ref(x[i])) << " (seed " << seed << ")";
        }
      }
      std::printf("%s %-9s worst relative error %.3g\n", k.name, f.name, worst);
      // in place (x == y) gives the same result
      std::vector<float> z = x;
      (k.*(f.fn))(z.data(), z.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(z[i] == y[i] || (std::isnan(z[i]) && std::isnan(y[i])))
            << k.name << " " << f.name << " in place differs at " << x[i];
      }
    }
  }
}

TEST_P(Eltwise, TailsWriteExactlyN) {
  {
    const EltwiseKernel& k = kernels::eltwise_kernels().at(GetParam());
    for (int64_t n = 0; n <= 67; ++n) {
      std::vector<float> x(n + 16, 0.25f), y(n + 16, -7.0f);
      k.gelu(x.data(), y.data(), n);
      for (int64_t i = 0; i < n + 16; ++i) {
        if (i < n) {
          ASSERT_NEAR(y[i], 0.25 * 0.5 * (1.0 + std::erf(0.25 / std::sqrt(2.0))), 1e-7)
              << k.name << " n " << n;
        } else {
          ASSERT_EQ(y[i], -7.0f) << k.name << " wrote past n = " << n;
        }
      }
    }
  }
}

TEST_P(Eltwise, SoftmaxRowMatchesReference) {
  const uint64_t seed = base_seed() * 1000003u + 72;
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const int64_t lengths[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 65, 128, 1000, 4099};
  {
    const EltwiseKernel& k = kernels::eltwise_kernels().at(GetParam());
    for (int64_t n : lengths) {
      std::vector<float> x(n);
      for (float& v : x) v = normal(gen);
      if (n > 2) x[n / 2] = -kInf;  // a masked position gives 0
      std::vector<float> y(n + 1, 123.0f);
      k.softmax_row(x.data(), y.data(), n);
      double m = -INFINITY, sum = 0.0;
      for (float v : x) m = std::max(m, static_cast<double>(v));
      for (float v : x) sum += std::exp(v - m);
      for (int64_t i = 0; i < n; ++i) {
        if (x[i] == -kInf) {
          ASSERT_EQ(y[i], 0.0f) << k.name << " n " << n;
          continue;
        }
        const double ref = std::exp(x[i] - m) / sum;
        ASSERT_NEAR(y[i], ref, 1e-6 * (1.0 + std::fabs(x[i] - m)) * ref + 1e-30)
            << k.name << " n " << n << " i " << i << " seed " << seed;
      }
      ASSERT_EQ(y[n], 123.0f) << k.name << " wrote past n = " << n;
    }
    // a row of only -inf is NaN (as torch / onnxruntime); one +inf or NaN makes it NaN
    for (float special : {-kInf, kInf, std::numeric_limits<float>::quiet_NaN()}) {
      std::vector<float> x(19, special), y(19, 0.0f);
      if (special != -kInf) std::fill(x.begin(), x.begin() + 10, 1.0f);
      k.softmax_row(x.data(), y.data(), 19);
      for (float v : y) ASSERT_TRUE(std::isnan(v)) << k.name << " special " << special;
    }
  }
}

TEST_P(Eltwise, LayerNormRowMatchesReference) {
  const uint64_t seed = base_seed() * 1000003u + 73;
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t lengths[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 768, 1001};
  {
    const EltwiseKernel& k = kernels::eltwise_kernels().at(GetParam());
    for (int64_t n : lengths) {
      for (int affine = 0; affine < 2; ++affine) {
        std::vector<float> x(n), g(n), b(n);
        for (float& v : x) v = 100.0f + 3.0f * normal(gen);  // a large mean on purpose
        for (float& v : g) v = 1.0f + 0.1f * normal(gen);
        for (float& v : b) v = normal(gen);
        std::vector<float> y(n + 1, 123.0f);
        const float* gp = affine != 0 ? g.data() : nullptr;
        const float* bp = affine != 0 ? b.data() : nullptr;
        k.layernorm_row(x.data(), y.data(), n, gp, bp, 1e-5);
        double mean = 0.0, var = 0.0;
        for (float v : x) mean += v;
        mean /= static_cast<double>(n);
        for (float v : x) var += (v - mean) * (v - mean);
        var /= static_cast<double>(n);
        for (int64_t i = 0; i < n; ++i) {
          double ref = (x[i] - mean) / std::sqrt(var + 1e-5);
          if (affine != 0) ref = ref * g[i] + b[i];
          ASSERT_NEAR(y[i], ref, 2e-5 * (1.0 + std::fabs(ref)))
              << k.name << " n " << n << " i " << i << " seed " << seed;
        }
        ASSERT_EQ(y[n], 123.0f) << k.name << " wrote past n = " << n;
      }
    }
  }
}

TEST(EltwiseDispatch, PicksTheBestIsa) {
  EXPECT_EQ(kernels::eltwise_best().isa, kernels::eltwise_kernel(kernels::best_isa()).isa);
  EXPECT_EQ(kernels::eltwise_kernels().front().isa, kernels::Isa::kScalar);
}

}  // namespace
}  // namespace testing
}  // namespace sparsert
