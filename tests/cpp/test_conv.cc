// Every compiled conv kernel (conv.inc) against the conv reference kernel, on
// edge shapes and random ones from a printed seed (SPARSERT_TEST_SEED). Outputs
// are pre-filled with NaN, with guard columns past each row: the kernel must
// write every element of its range and nothing else.
// Tolerance: |y - ref| <= 1e-5 * sqrt(terms + 1) * mag + 1e-30, mag = the sum of
// |products| of that output (as kernel_tester.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/conv/conv.h"
#include "kernels/kernels.h"
#include "ops/layer_weights.h"

namespace sparsert {
namespace {

using kernels::ConvGeometry;
using kernels::ConvKernel;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint64_t base_seed() {
  const char* env = std::getenv("SPARSERT_TEST_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20240611u;
}

struct DirectCase {
  int64_t channels, in_h, in_w, kernel_h, kernel_w, pad, dilation, cout;
  double sparsity;
  uint64_t seed;
  int64_t stride = 1;  // > 1: the phase-split input of conv_pad_input_phases
};

void check_direct(const DirectCase& c, size_t kernel) {
  std::ostringstream what;
  what << "channels=" << c.channels << " in=" << c.in_h << "x" << c.in_w << " k=" << c.kernel_h
       << "x" << c.kernel_w << " pad=" << c.pad << " dilation=" << c.dilation << " cout=" << c.cout
       << " sparsity=" << c.sparsity << " stride=" << c.stride << " seed=" << c.seed;
  SCOPED_TRACE(what.str());
  std::mt19937_64 rng(c.seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  ConvGeometry g;
  g.channels = c.channels;
  g.in_h = c.in_h;
  g.in_w = c.in_w;
  g.kernel_h = c.kernel_h;
  g.kernel_w = c.kernel_w;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = c.pad;
  g.dilation_h = g.dilation_w = c.dilation;
  g.stride_h = g.stride_w = c.stride;
  g.out_h = kernels::conv_output_size(g.in_h, g.kernel_h, c.stride, c.pad, c.pad, c.dilation);
  g.out_w = kernels::conv_output_size(g.in_w, g.kernel_w, c.stride, c.pad, c.pad, c.dilation);
  ASSERT_GE(g.out_h, 1);
  ASSERT_GE(g.out_w, 1);
  const int64_t s = c.stride, hq = g.phase_h(), wq = g.phase_w();  // Hp, Wp at stride 1
  const int64_t khw = g.kernel_h * g.kernel_w;
  std::vector<float> x(static_cast<size_t>(g.channels * g.in_h * g.in_w));
  for (float& v : x) v = uni(rng);
  std::vector<float> xp(static_cast<size_t>(g.channels * s * s * hq * wq), kNaN);
  kernels::conv_pad_input_phases(g, x.data(), 0, g.channels, xp.data());
  for (float v : xp)
    ASSERT_FALSE(std::isnan(v)) << "conv_pad_input_phases left an element unwritten";
  // every phase element against the padded input it stands for
  for (int64_t ch = 0; ch < g.channels; ++ch)
    for (int64_t a = 0; a < s; ++a)
      for (int64_t b = 0; b < s; ++b)
        for (int64_t i = 0; i < hq; ++i)
          for (int64_t j = 0; j < wq; ++j) {
            const int64_t ih = i * s + a - c.pad, iw = j * s + b - c.pad;
            const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
            ASSERT_EQ(xp[(((ch * s + a) * s + b) * hq + i) * wq + j],
                      inside ? x[(ch * g.in_h + ih) * g.in_w + iw] : 0.0f)
                << "phase (" << a << ", " << b << ") of channel " << ch << " at " << i << ", " << j;
          }
  std::vector<uint32_t> row_ptr(1, 0);
  std::vector<float> values;
  std::vector<int32_t> offsets;
  std::vector<int64_t> taps;  // the weight column of each nonzero
  for (int64_t r = 0; r < c.cout; ++r) {
    for (int64_t k = 0; k < g.channels * khw; ++k) {
      if (coin(rng) < c.sparsity) continue;
      values.push_back(uni(rng));
      taps.push_back(k);
      const int64_t ch = k / khw, dy = (k % khw) / g.kernel_w * c.dilation,
                    dx = k % g.kernel_w * c.dilation;
      offsets.push_back(
          static_cast<int32_t>((((ch * s + dy % s) * s + dx % s) * hq + dy / s) * wq + dx / s));
    }
    row_ptr.push_back(static_cast<uint32_t>(values.size()));
  }
  std::vector<float> bias(static_cast<size_t>(c.cout));
  for (float& v : bias) v = uni(rng);
  const int64_t n = (g.out_h - 1) * wq + g.out_w;
  const int64_t ldy = n + 5;
  const int64_t row_begin = c.cout > 2 ? 1 : 0, row_end = c.cout;
  const ConvKernel& ref = kernels::conv_kernels().front();
  std::vector<float> expected(static_cast<size_t>((row_end - row_begin) * ldy), kNaN);
  ref.sparse_direct(values.data(), offsets.data(), row_ptr.data(), nullptr, row_begin, row_end,
                    xp.data(), n, bias.data(), expected.data(), ldy);
  // the reference against a direct double-precision evaluation on the unpadded input
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        double acc = bias[r], mag = std::fabs(bias[r]);
        for (uint32_t j = row_ptr[r]; j < row_ptr[r + 1]; ++j) {
          const int64_t ch = taps[j] / khw, kh = (taps[j] % khw) / g.kernel_w;
          const int64_t kw = taps[j] % g.kernel_w;
          const int64_t ih = oh * s + kh * c.dilation - c.pad,
                        iw = ow * s + kw * c.dilation - c.pad;
          if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
          const double p = static_cast<double>(values[j]) * x[(ch * g.in_h + ih) * g.in_w + iw];
          acc += p;
          mag += std::fabs(p);
        }
        const float got = expected[(r - row_begin) * ldy + oh * wq + ow];
        ASSERT_LE(std::fabs(got - acc), 1e-5 * std::sqrt(g.channels * khw + 1.0) * mag + 1e-30)
            << "reference at row " << r << " (" << oh << ", " << ow << ")";
      }
    }
  }
  // The 4x1 block view of the same weight (built whatever its fill), with an
  // x offset per block: the kernel's result must not change with it.
  std::vector<uint32_t> taps32(taps.begin(), taps.end());
  kernels::CsrMatrix m;
  m.rows = c.cout;
  m.cols = g.channels * khw;
  m.row_ptr = row_ptr.data();
  m.col_idx32 = taps32.data();
  m.values = values.data();
  ops::OwnedBlocks4 owned;
  ops::build_blocks4(m, &owned);
  std::vector<int32_t> block_offsets;
  for (uint32_t k : owned.col) {
    const int64_t ch = k / khw, dy = (k % khw) / g.kernel_w * c.dilation,
                  dx = k % g.kernel_w * c.dilation;
    block_offsets.push_back(
        static_cast<int32_t>((((ch * s + dy % s) * s + dx % s) * hq + dy / s) * wq + dx / s));
  }
  kernels::ConvBlocks4 blocks;
  blocks.block_ptr = owned.ptr.data();
  blocks.block_offsets = block_offsets.data();
  blocks.block_values = owned.values.data();
  blocks.block_count = static_cast<int64_t>(owned.ptr.size()) - 1;
  const kernels::ConvBlocks4* views[] = {nullptr, &blocks};
  for (const kernels::ConvBlocks4* view : views) {
    const ConvKernel& k = kernels::conv_kernels().at(kernel);
    SCOPED_TRACE(std::string(k.sparse_direct_name) + (view != nullptr ? " with the 4x1 block view" : ""));
    std::vector<float> y(expected.size(), kNaN);
    k.sparse_direct(values.data(), offsets.data(), row_ptr.data(), view, row_begin, row_end, xp.data(),
                    n, bias.data(), y.data(), ldy);
    for (int64_t r = 0; r < row_end - row_begin; ++r) {
      double mag = std::fabs(bias[r + row_begin]);
      for (uint32_t j = row_ptr[r + row_begin]; j < row_ptr[r + row_begin + 1]; ++j)
        mag += std::fabs(values[j]);
      for (int64_t p = 0; p < ldy; ++p) {
        const float want = expected[r * ldy + p], got = y[r * ldy + p];
        if (p >= n) {
          ASSERT_TRUE(std::isnan(got)) << "wrote past the row end at row " << r << " col " << p;
          continue;
        }
        ASSERT_LE(std::fabs(got - want), 1e-5 * std::sqrt(g.channels * khw + 1.0) * mag + 1e-30)
            << "row " << r << " col " << p;
      }
    }
  }
}

// One run per conv kernel compiled in and supported here (the reference
// first), named by the kernel: Kernel/ConvSparseDirect.EdgeShapes/conv_sparse_direct_f32_avx2.
class ConvSparseDirect : public ::testing::TestWithParam<size_t> {};
class ConvDepthwise : public ::testing::TestWithParam<size_t> {};
INSTANTIATE_TEST_SUITE_P(Kernel, ConvSparseDirect, ::testing::Range<size_t>(0, kernels::conv_kernels().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kernels::conv_kernels()[info.param].sparse_direct_name);
                         });
INSTANTIATE_TEST_SUITE_P(Kernel, ConvDepthwise, ::testing::Range<size_t>(0, kernels::conv_kernels().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kernels::conv_kernels()[info.param].depthwise_name);
                         });

TEST_P(ConvSparseDirect, EdgeShapes) {
  const uint64_t seed = base_seed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const DirectCase cases[] = {
      {1, 1, 1, 1, 1, 0, 1, 1, 0.0, seed + 1},    // one output, one weight
      {3, 1, 1, 3, 3, 1, 1, 5, 0.5, seed + 2},    // 1x1 spatial, padded
      {5, 7, 9, 3, 3, 1, 1, 17, 0.0, seed + 3},   // odd sizes, dense
      {4, 13, 11, 3, 3, 1, 2, 9, 0.9, seed + 4},  // dilation
      {2, 20, 70, 5, 3, 2, 1, 6, 0.5, seed + 5},  // several full tiles + tail
      {6, 9, 9, 3, 3, 1, 1, 8, 1.0, seed + 6},    // all rows empty
      {16, 12, 12, 1, 1, 0, 1, 33, 0.99, seed + 7},
      {3, 1, 1, 3, 3, 1, 1, 5, 0.5, seed + 8, 2},     // stride 2, 1x1 spatial
      {5, 13, 70, 3, 3, 1, 1, 9, 0.5, seed + 9, 2},   // stride 2, odd sizes, tiles + tail
      {4, 12, 17, 3, 3, 2, 2, 7, 0.3, seed + 10, 2},  // stride 2, dilation 2
      {3, 11, 19, 5, 4, 2, 1, 6, 0.0, seed + 11, 3},  // stride 3
      {8, 8, 8, 1, 1, 0, 1, 10, 0.7, seed + 12, 2},   // strided 1x1
  };
  for (const DirectCase& c : cases) check_direct(c, GetParam());
}

TEST_P(ConvSparseDirect, RandomShapes) {
  std::mt19937_64 rng(base_seed() + 100);
  const double sparsities[] = {0.0, 0.5, 0.9, 0.99, 1.0};
  for (int i = 0; i < 40; ++i) {
    DirectCase c;
    c.channels = 1 + static_cast<int64_t>(rng() % 8);
    c.kernel_h = 1 + static_cast<int64_t>(rng() % 4);
    c.kernel_w = 1 + static_cast<int64_t>(rng() % 4);
    c.dilation = 1 + static_cast<int64_t>(rng() % 2);
    c.pad = static_cast<int64_t>(rng() % 3);
    c.in_h = std::max<int64_t>(1, c.dilation * (c.kernel_h - 1) + 1 - 2 * c.pad) +
             static_cast<int64_t>(rng() % 12);
    c.in_w = std::max<int64_t>(1, c.dilation * (c.kernel_w - 1) + 1 - 2 * c.pad) +
             static_cast<int64_t>(rng() % 40);
    c.cout = 1 + static_cast<int64_t>(rng() % 10);
    c.sparsity = sparsities[rng() % 5];
    c.seed = base_seed() + 1000 + static_cast<uint64_t>(i);
    c.stride = 1 + static_cast<int64_t>(rng() % 3);
    check_direct(c, GetParam());
  }
}

constexpr float kInf = std::numeric_limits<float>::infinity();

// Every depthwise kernel against the reference, the reference against im2col;
// the output clamp [out_min, out_max] is the fused activation.
void check_depthwise(size_t kernel, const ConvGeometry& g0, uint64_t seed, float out_min = -kInf,
                     float out_max = kInf) {
  ConvGeometry g = g0;
  g.channels = 1;
  g.out_h = kernels::conv_output_size(g.in_h, g.kernel_h, g.stride_h, g.pad_top, g.pad_bottom,
                                      g.dilation_h);
  g.out_w = kernels::conv_output_size(g.in_w, g.kernel_w, g.stride_w, g.pad_left, g.pad_right,
                                      g.dilation_w);
  std::ostringstream what;
  what << "in=" << g.in_h << "x" << g.in_w << " k=" << g.kernel_h << "x" << g.kernel_w
       << " stride=" << g.stride_h << "," << g.stride_w << " dilation=" << g.dilation_h << ","
       << g.dilation_w << " pads=" << g.pad_top << "," << g.pad_left << "," << g.pad_bottom << ","
       << g.pad_right << " clamp=" << out_min << "," << out_max << " seed=" << seed;
  SCOPED_TRACE(what.str());
  ASSERT_GE(g.out_h, 1);
  ASSERT_GE(g.out_w, 1);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(g.in_h * g.in_w));
  for (float& v : x) v = uni(rng);
  std::vector<float> xp(static_cast<size_t>(g.padded_h() * g.padded_w()));
  kernels::conv_pad_input(g, x.data(), 0, 1, xp.data());
  std::vector<float> w(static_cast<size_t>(g.kernel_h * g.kernel_w));
  for (float& v : w) v = uni(rng);
  const float bias = uni(rng);
  const int64_t outputs = g.out_h * g.out_w, guard = 19;
  std::vector<float> expected(static_cast<size_t>(outputs + guard), kNaN);
  kernels::conv_kernels().front().depthwise(g, xp.data(), w.data(), bias, out_min, out_max,
                                            expected.data());
  // reference vs im2col of the unpadded input (a separate implementation of the geometry)
  std::vector<float> col(static_cast<size_t>(g.kernel_h * g.kernel_w * outputs));
  kernels::conv_im2col(g, x.data(), 0, g.kernel_h * g.kernel_w, 0, outputs, col.data(), outputs);
  for (int64_t p = 0; p < outputs; ++p) {
    double acc = bias, mag = std::fabs(bias);
    for (int64_t k = 0; k < g.kernel_h * g.kernel_w; ++k) {
      acc += static_cast<double>(w[k]) * col[k * outputs + p];
      mag += std::fabs(static_cast<double>(w[k]) * col[k * outputs + p]);
    }
    acc = std::min<double>(std::max<double>(acc, out_min), out_max);
    ASSERT_LE(std::fabs(expected[p] - acc),
              1e-5 * std::sqrt(g.kernel_h * g.kernel_w + 1.0) * mag + 1e-30)
        << "reference at " << p;
  }
  {
    const ConvKernel& k = kernels::conv_kernels().at(kernel);
    SCOPED_TRACE(k.depthwise_name);
    std::vector<float> y(expected.size(), kNaN);
    k.depthwise(g, xp.data(), w.data(), bias, out_min, out_max, y.data());
    for (int64_t p = 0; p < outputs + guard; ++p) {
      if (p >= outputs) {
        ASSERT_TRUE(std::isnan(y[p])) << "wrote past the plane at " << p;
        continue;
      }
      double mag = std::fabs(bias);
      for (float v : w) mag += std::fabs(v);
      ASSERT_LE(std::fabs(y[p] - expected[p]),
                1e-5 * std::sqrt(g.kernel_h * g.kernel_w + 1.0) * mag + 1e-30)
          << "output " << p;
    }
  }
}

TEST_P(ConvDepthwise, EdgeAndRandomShapes) {
  const uint64_t seed = base_seed();
  ConvGeometry g;
  g.in_h = g.in_w = 1;  // 1x1 plane, 3x3 kernel, pad 1
  g.kernel_h = g.kernel_w = 3;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
  check_depthwise(GetParam(), g, seed + 1);
  g.in_h = 9;
  g.in_w = 67;  // wide rows: 2-vector blocks + masked tail
  g.stride_h = g.stride_w = 2;
  check_depthwise(GetParam(), g, seed + 2);
  g.stride_w = 1;
  g.in_w = 32;  // exact multiple of both vector widths
  g.pad_left = g.pad_right = 0;
  g.kernel_w = 1;
  check_depthwise(GetParam(), g, seed + 3);
  std::mt19937_64 rng(seed + 200);
  for (int i = 0; i < 60; ++i) {
    ConvGeometry r;
    r.kernel_h = 1 + static_cast<int64_t>(rng() % 5);
    r.kernel_w = 1 + static_cast<int64_t>(rng() % 5);
    r.stride_h = 1 + static_cast<int64_t>(rng() % 3);
    r.stride_w = 1 + static_cast<int64_t>(rng() % 3);
    r.dilation_h = 1 + static_cast<int64_t>(rng() % 2);
    r.dilation_w = 1 + static_cast<int64_t>(rng() % 2);
    r.pad_top = static_cast<int64_t>(rng() % 3);
    r.pad_left = static_cast<int64_t>(rng() % 3);
    r.pad_bottom = static_cast<int64_t>(rng() % 3);
    r.pad_right = static_cast<int64_t>(rng() % 3);
    r.in_h = std::max<int64_t>(1, r.dilation_h * (r.kernel_h - 1) + 1 - r.pad_top - r.pad_bottom) +
             static_cast<int64_t>(rng() % 10);
    r.in_w = std::max<int64_t>(1, r.dilation_w * (r.kernel_w - 1) + 1 - r.pad_left - r.pad_right) +
             static_cast<int64_t>(rng() % 70);
    check_depthwise(GetParam(), r, seed + 300 + static_cast<uint64_t>(i));
  }
}

// The specialised 3x3 / 5x5, stride 1 / 2 kernels: output heights around the
// row blocking (4 rows at stride 1, 2 at stride 2), widths around the vector
// widths (4, 8, 16), asymmetric pads, and the fused clamps (none, ReLU, ReLU6).
TEST_P(ConvDepthwise, SpecialisedKernels) {
  const uint64_t seed = base_seed();
  std::mt19937_64 rng(seed + 500);
  const int64_t widths[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 67};
  const float clamps[][2] = {{-kInf, kInf}, {0.0f, kInf}, {0.0f, 0.5f}};
  uint64_t n = 0;
  for (int64_t k : {3, 5}) {
    for (int64_t s : {1, 2}) {
      for (int64_t in_w : widths) {
        ConvGeometry g;
        g.kernel_h = g.kernel_w = k;
        g.stride_h = g.stride_w = s;
        g.pad_top = static_cast<int64_t>(rng() % 3);
        g.pad_left = static_cast<int64_t>(rng() % 3);
        g.pad_bottom = static_cast<int64_t>(rng() % 3);
        g.pad_right = k - 1 - g.pad_left > 0 ? k - 1 - g.pad_left : static_cast<int64_t>(rng() % 2);
        g.in_w = std::max<int64_t>(in_w, k - g.pad_left - g.pad_right);
        g.in_h =
            std::max<int64_t>(1 + static_cast<int64_t>(rng() % 11), k - g.pad_top - g.pad_bottom);
        const float* clamp = clamps[n % 3];
        check_depthwise(GetParam(), g, seed + 600 + n, clamp[0], clamp[1]);
        ++n;
      }
    }
  }
  // the generic path with a clamp (dilation 2)
  ConvGeometry g;
  g.in_h = 11;
  g.in_w = 21;
  g.kernel_h = g.kernel_w = 3;
  g.dilation_h = g.dilation_w = 2;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 2;
  check_depthwise(GetParam(), g, seed + 700, 0.0f, 6.0f);
}

// --- Winograd F(4x4, 3x3) ----------------------------------------------------
// Each kernel's input and output transforms against the reference ones (NaN
// pre-filled outputs with guards: every element of the range written, nothing
// else), then the whole F(4x4, 3x3) pipeline of the reference (weights, 36
// products, transforms) against a direct 3x3 convolution in double.
class ConvWinograd : public ::testing::TestWithParam<size_t> {};
INSTANTIATE_TEST_SUITE_P(Kernel, ConvWinograd, ::testing::Range<size_t>(0, kernels::conv_kernels().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kernels::conv_kernels()[info.param].winograd_name);
                         });

TEST_P(ConvWinograd, TransformsMatchReference) {
  const uint64_t seed = base_seed() + 900;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const ConvKernel& k = kernels::conv_kernels().at(GetParam());
  const ConvKernel& ref = kernels::conv_kernels().front();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  // (channels, tiles_h, tiles_w): one tile, chunk edges (15, 16, 17, 33 tiles a row), odd sizes
  const int64_t cases[][3] = {{1, 1, 1}, {3, 2, 15}, {2, 1, 16}, {5, 3, 17}, {1, 2, 33}, {4, 4, 5}};
  for (const auto& c : cases) {
    const int64_t channels = c[0], tiles_h = c[1], tiles_w = c[2];
    const int64_t hp = 4 * tiles_h + 2, wp = 4 * tiles_w + 2, plane = hp * wp;
    std::vector<float> xp(static_cast<size_t>(channels * plane));
    for (float& v : xp) v = dist(rng);
    // input: tile rows [1, tiles_h) when there are several (an offset block)
    const int64_t ty0 = tiles_h > 1 ? 1 : 0, nt = (tiles_h - ty0) * tiles_w;
    const int64_t ld_c = nt + 3, ld_xi = channels * ld_c + 5;  // padded strides: guards between rows
    std::vector<float> v(static_cast<size_t>(36 * ld_xi), kNaN), v_ref(v.size(), kNaN);
    k.winograd_input(xp.data(), wp, plane, 0, channels, ty0, tiles_h, tiles_w, v.data(), ld_xi, ld_c);
    ref.winograd_input(xp.data(), wp, plane, 0, channels, ty0, tiles_h, tiles_w, v_ref.data(), ld_xi, ld_c);
    for (size_t i = 0; i < v.size(); ++i) {
      if (std::isnan(v_ref[i])) {
        ASSERT_TRUE(std::isnan(v[i])) << "input transform wrote outside its range at " << i;
      } else {
        ASSERT_NEAR(v[i], v_ref[i], 1e-4f * (1.0f + std::fabs(v_ref[i])))
            << "input transform, case " << channels << "x" << tiles_h << "x" << tiles_w << " at " << i;
      }
    }
    // output: one channel of M for the same tiles, into a plane cut short of
    // the last tile row / column (out = 4 * tiles - 3) with a guard row below
    std::vector<float> m(static_cast<size_t>(36 * ld_c));
    for (float& e : m) e = dist(rng);
    const int64_t out_h = 4 * tiles_h - 3 + (tiles_h > 2 ? 2 : 0), out_w = 4 * tiles_w - 3;
    std::vector<float> y(static_cast<size_t>((out_h + 1) * out_w), kNaN), y_ref(y.size(), kNaN);
    k.winograd_output(m.data(), ld_c, ty0, tiles_h, tiles_w, 0.25f, y.data(), out_h, out_w);
    ref.winograd_output(m.data(), ld_c, ty0, tiles_h, tiles_w, 0.25f, y_ref.data(), out_h, out_w);
    for (size_t i = 0; i < y.size(); ++i) {
      if (std::isnan(y_ref[i])) {
        ASSERT_TRUE(std::isnan(y[i])) << "output transform wrote outside its range at " << i;
      } else {
        ASSERT_NEAR(y[i], y_ref[i], 1e-4f * (1.0f + std::fabs(y_ref[i])))
            << "output transform, case " << channels << "x" << tiles_h << "x" << tiles_w << " at " << i;
      }
    }
  }
}

TEST(ConvWinogradMath, MatchesDirectConvolution) {
  const uint64_t seed = base_seed() + 950;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const ConvKernel& ref = kernels::conv_kernels().front();
  const int64_t cin = 3, cout = 2, tiles_h = 2, tiles_w = 3;
  const int64_t hp = 4 * tiles_h + 2, wp = 4 * tiles_w + 2, plane = hp * wp, nt = tiles_h * tiles_w;
  const int64_t out_h = hp - 2, out_w = wp - 2;
  std::vector<float> x(static_cast<size_t>(cin * plane)), w(static_cast<size_t>(cout * cin * 9));
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng);
  std::vector<float> u(static_cast<size_t>(36 * cout * cin)), v(static_cast<size_t>(36 * cin * nt));
  std::vector<float> m(static_cast<size_t>(36 * cout * nt), 0.0f);
  kernels::conv_winograd_weights(w.data(), cout, cin, u.data());
  ref.winograd_input(x.data(), wp, plane, 0, cin, 0, tiles_h, tiles_w, v.data(), cin * nt, nt);
  for (int64_t xi = 0; xi < 36; ++xi)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t c = 0; c < cin; ++c)
        for (int64_t t = 0; t < nt; ++t)
          m[(xi * cout + o) * nt + t] += u[(xi * cout + o) * cin + c] * v[(xi * cin + c) * nt + t];
  for (int64_t o = 0; o < cout; ++o) {
    std::vector<float> y(static_cast<size_t>(out_h * out_w));
    ref.winograd_output(m.data() + o * nt, cout * nt, 0, tiles_h, tiles_w, 0.5f, y.data(), out_h, out_w);
    for (int64_t oh = 0; oh < out_h; ++oh) {
      for (int64_t ow = 0; ow < out_w; ++ow) {
        double acc = 0.5, mag = 0.5;
        for (int64_t c = 0; c < cin; ++c)
          for (int64_t kh = 0; kh < 3; ++kh)
            for (int64_t kw = 0; kw < 3; ++kw) {
              const double p = static_cast<double>(w[((o * cin + c) * 3 + kh) * 3 + kw]) *
                               x[c * plane + (oh + kh) * wp + ow + kw];
              acc += p;
              mag += std::fabs(p);
            }
        ASSERT_NEAR(y[oh * out_w + ow], acc, 1e-5 * 16 * mag) << "output " << o << " at " << oh << "," << ow;
      }
    }
  }
}

}  // namespace
}  // namespace sparsert
