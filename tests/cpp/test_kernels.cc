// Every compiled + supported spmm and gemm kernel against the reference on
// edge-case shapes (kernel_tester.h states the tolerance), plus dispatch.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <random>
#include <string>

#include "kernel_tester.h"
#include "kernels/kernels.h"
#include "sparsert/sparsert.h"

namespace sparsert {
namespace testing {
namespace {

using kernels::Isa;

const int64_t kRows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 31, 33, 63, 65};
const int64_t kN[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 31, 33, 63, 64, 65, 127, 200};
const double kSparsity[] = {0.0, 0.5, 0.9, 0.99, 1.0};

uint64_t case_seed(uint64_t salt) { return base_seed() * 1000003u + salt; }

using CaseFn = std::function<void(const KernelCase&)>;

// rows x n over the edge-case lists, K = 64, half the weights zero.
void rows_and_n(CaseFn run, uint64_t salt) {
  uint64_t i = 0;
  for (int64_t rows : kRows) {
    for (int64_t n : kN) {
      KernelCase c;
      c.rows = rows;
      c.cols = 64;
      c.n = n;
      c.sparsity = 0.5;
      c.bias = (i % 2) == 0;
      c.seed = case_seed(salt + i++);
      run(c);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// K and sparsity sweep, including all-zero weights (every row empty).
void cols_and_sparsity(CaseFn run, uint64_t salt) {
  uint64_t i = 0;
  for (int64_t cols : {1, 7, 64, 257, 300}) {
    for (double s : kSparsity) {
      for (int64_t rows : {1, 17, 65}) {
        for (int64_t n : {1, 7, 16, 65, 200}) {
          KernelCase c;
          c.rows = rows;
          c.cols = cols;
          c.n = n;
          c.sparsity = s;
          c.bias = (i % 3) != 0;
          c.seed = case_seed(salt + i++);
          run(c);
          if (::testing::Test::HasFailure()) return;
        }
      }
    }
  }
}

// Random combinations of sub-ranges, strides, column offsets, empty rows and bias.
void randomized(CaseFn run, uint64_t salt, int count, int64_t row_align) {
  std::mt19937_64 rng(case_seed(salt));
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int i = 0; i < count; ++i) {
    KernelCase c;
    c.rows = pick(1, 70);
    c.cols = pick(1, 130);
    c.n = kN[pick(0, sizeof(kN) / sizeof(kN[0]) - 1)];
    c.sparsity = kSparsity[pick(0, 4)];
    c.empty_rows = pick(0, 2) * 0.25;
    c.bias = pick(0, 1) == 1;
    c.row_begin = pick(0, c.rows) / row_align * row_align;
    c.row_end = pick(c.row_begin, c.rows);
    c.ldx_pad = pick(0, 1) * pick(1, 19);
    c.ldy_pad = pick(0, 1) * pick(1, 19);
    c.c0 = pick(0, 1) * pick(1, 17);
    c.index32 = pick(0, 3) == 0;
    c.seed = case_seed(salt + 1000 + i);
    run(c);
    if (::testing::Test::HasFailure()) return;
  }
}

// Each kernel family's edge-case tests run once per kernel compiled in and
// supported here (reference first), named by the kernel.
class Spmm : public ::testing::TestWithParam<size_t> {};
class Gemm : public ::testing::TestWithParam<size_t> {};
INSTANTIATE_TEST_SUITE_P(Kernel, Spmm, ::testing::ValuesIn(kernel_indices(kernels::spmm_kernels())),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kernels::spmm_kernels()[info.param].name);
                         });
INSTANTIATE_TEST_SUITE_P(Kernel, Gemm, ::testing::ValuesIn(kernel_indices(kernels::gemm_kernels())),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return std::string(kernels::gemm_kernels()[info.param].name);
                         });

// 4x1 block view: tile widths around every ISA's tile (1..4 vectors and
// masked tails), rows that are not whole blocks, row ranges that start and end
// inside a block, SpMV (n = 1), full and partly filled blocks, empty block
// rows, 100% sparsity, strided X / Y, and K deep enough for K blocks.
TEST_P(Spmm, Block4View) {
  uint64_t i = 0;
  for (int64_t n : {1, 3, 8, 17, 24, 40, 64, 100}) {
    for (double fill : {1.0, 0.6}) {
      KernelCase c;
      c.rows = 4 * (3 + static_cast<int64_t>(i % 5)) + static_cast<int64_t>(i % 4);
      c.cols = 37 + 29 * static_cast<int64_t>(i % 3);
      c.n = n;
      c.sparsity = i % 7 == 3 ? 1.0 : 0.85;
      c.block4_fill = fill;
      c.empty_rows = i % 3 == 1 ? 0.2 : 0.0;
      c.bias = i % 2 == 0;
      if (i % 2 == 1) {
        c.row_begin = 1 + static_cast<int64_t>(i % 3);
        c.row_end = c.rows - static_cast<int64_t>(i % 4);
        c.ldx_pad = 3;
        c.ldy_pad = 2;
        c.c0 = 1;
      }
      c.seed = case_seed(2100 + i++);
      test_spmm_block_case(c, GetParam());
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST_P(Spmm, Block4ViewDeepK) {
  uint64_t i = 0;
  for (int64_t n : {24, 40, 130}) {
    KernelCase c;
    c.rows = 66;
    c.cols = 5000;
    c.n = n;
    c.sparsity = 0.9;
    c.block4_fill = 1.0;
    c.index32 = n == 40;
    c.row_begin = n == 130 ? 2 : 0;
    c.seed = case_seed(2200 + i++);
    test_spmm_block_case(c, GetParam());
    if (::testing::Test::HasFailure()) return;
  }
}

// The view built from a CSR matrix: block count, and fill decides nothing here.
TEST(Block4View, CountsMergedColumns) {
  // rows 0..3: columns {0, 2}, {2}, {}, {5} -> blocks at 0, 2, 5; row 4 (not a whole block) ignored
  const std::vector<uint32_t> row_ptr = {0, 2, 3, 3, 4, 6};
  const std::vector<uint16_t> col = {0, 2, 2, 5, 1, 3};
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  kernels::CsrMatrix m;
  m.rows = 5;
  m.cols = 6;
  m.row_ptr = row_ptr.data();
  m.col_idx16 = col.data();
  m.values = values.data();
  EXPECT_EQ(ops::count_blocks4(m), 3);
  ops::OwnedBlocks4 b;
  ops::build_blocks4(m, &b);
  EXPECT_EQ(b.ptr, (std::vector<uint32_t>{0, 3}));
  EXPECT_EQ(b.col, (std::vector<uint32_t>{0, 2, 5}));
  EXPECT_EQ(b.values, (std::vector<float>{1, 0, 0, 0, 2, 3, 0, 0, 0, 0, 0, 4}));
}

// ---------------------------------------------------------------------------
TEST(Dispatch, ListsStartWithReferenceAndAreSupported) {
  ASSERT_FALSE(kernels::spmm_kernels().empty());
  ASSERT_FALSE(kernels::gemm_kernels().empty());
  EXPECT_EQ(kernels::spmm_kernels().front().isa, Isa::kScalar);
  EXPECT_EQ(kernels::gemm_kernels().front().isa, Isa::kScalar);
  for (const auto& k : kernels::spmm_kernels())
    EXPECT_TRUE(kernels::isa_supported(k.isa)) << k.name;
  for (const auto& k : kernels::gemm_kernels())
    EXPECT_TRUE(kernels::isa_supported(k.isa)) << k.name;
  EXPECT_TRUE(kernels::isa_supported(Isa::kScalar));
  EXPECT_TRUE(kernels::isa_supported(kernels::best_isa()));
  EXPECT_EQ(kernels::spmm_kernel(Isa::kScalar).isa, Isa::kScalar);
  EXPECT_EQ(kernels::gemm_kernel(Isa::kScalar).isa, Isa::kScalar);
  EXPECT_EQ(kernels::spmm_best().isa, kernels::spmm_kernel(kernels::best_isa()).isa);
  EXPECT_EQ(kernels::gemm_best().isa, kernels::gemm_kernel(kernels::best_isa()).isa);
  // Without a SPARSERT_ISA cap the best ISA has kernels in both families.
  if (std::getenv("SPARSERT_ISA") == nullptr) {
    EXPECT_EQ(kernels::spmm_best().isa, kernels::best_isa());
    EXPECT_EQ(kernels::gemm_best().isa, kernels::best_isa());
  }
  std::string names;
  for (const auto& k : kernels::spmm_kernels()) names += std::string(k.name) + " ";
  for (const auto& k : kernels::gemm_kernels()) names += std::string(k.name) + " ";
  std::printf("best isa: %s; kernels: %s\n", kernels::isa_name(kernels::best_isa()), names.c_str());
}

TEST(Dispatch, IsaNames) {
  EXPECT_STREQ(kernels::isa_name(Isa::kScalar), "scalar");
  EXPECT_STREQ(kernels::isa_name(Isa::kAvx2), "avx2");
  EXPECT_STREQ(kernels::isa_name(Isa::kAvx512), "avx512");
  EXPECT_STREQ(kernels::isa_name(Isa::kNeon), "neon");
}

TEST(AlignedFloats, AlignedAndZeroed) {
  kernels::AlignedFloats a(1000);
  ASSERT_EQ(a.size(), 1000u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a.data()[i], 0.0f);
  kernels::AlignedFloats empty;
  EXPECT_EQ(empty.size(), 0u);
}

TEST(GemmContract, RejectsMismatchedWeightsAndRanges) {
  const auto& list = kernels::gemm_kernels();
  const float w[6] = {1, 2, 3, 4, 5, 6};
  float x[3] = {1, 1, 1};
  float y[2] = {0, 0};
  kernels::PackedGemmWeights packed;
  list.front().pack(w, 2, 3, 3, &packed);
  EXPECT_THROW(list.front().fn(packed, 0, 3, x, 1, 1, nullptr, y, 1), Error);
  EXPECT_THROW(list.front().pack(w, 2, 3, 2, &packed), Error);
  for (size_t i = 1; i < list.size(); ++i) {
    EXPECT_THROW(list[i].fn(packed, 0, 2, x, 1, 1, nullptr, y, 1), Error) << list[i].name;
    kernels::PackedGemmWeights own;
    list[i].pack(w, 2, 3, 3, &own);
    if (own.row_block > 1) {
      EXPECT_THROW(list[i].fn(own, 1, 2, x, 1, 1, nullptr, y, 1), Error) << list[i].name;
    }
  }
}

// ---------------------------------------------------------------------------
TEST_P(Spmm, RowsAndN) {
  rows_and_n([this](const KernelCase& c) { test_spmm_case(c, GetParam()); }, 100);
}
TEST_P(Spmm, ColsAndSparsity) {
  cols_and_sparsity([this](const KernelCase& c) { test_spmm_case(c, GetParam()); }, 200);
}
TEST_P(Spmm, Randomized) {
  randomized([this](const KernelCase& c) { test_spmm_case(c, GetParam()); }, 300, 400, 1);
}

TEST_P(Spmm, BothIndexWidthsAgree) {
  for (int64_t n : {1, 5, 64, 65}) {
    KernelCase c;
    c.rows = 33;
    c.cols = 100;
    c.n = n;
    c.sparsity = 0.7;
    c.seed = case_seed(400 + n);
    test_spmm_case(c, GetParam());
    c.index32 = true;
    test_spmm_case(c, GetParam());
  }
}

// cols > 65536 forces 32-bit indices; with n >= the tile width the X panel
// exceeds the L2 budget, so this also runs the K-blocked path with many blocks.
TEST_P(Spmm, HugeKThirtyTwoBitIndices) {
  uint64_t i = 0;
  for (int64_t rows : {1, 5, 17}) {
    for (int64_t n : {1, 3, 17, 64, 65}) {
      KernelCase c;
      c.rows = rows;
      c.cols = 65537;
      c.n = n;
      c.sparsity = 0.995;
      c.bias = (i % 2) == 0;
      c.seed = case_seed(500 + i++);
      test_spmm_case(c, GetParam());
    }
  }
}

// Deep K (4608: the X panel is packed in ~19 K blocks for a 64-column tile)
// with 16-bit indices, empty rows, a sub-range and strides.
TEST_P(Spmm, KBlockedRowChunks) {
  for (int64_t n : {33, 64, 200}) {
    KernelCase c;
    c.rows = 300;
    c.cols = 4608;
    c.n = n;
    c.sparsity = 0.95;
    c.empty_rows = 0.1;
    c.row_begin = 3;
    c.row_end = 299;
    c.ldx_pad = 5;
    c.ldy_pad = 3;
    c.c0 = 1;
    c.seed = case_seed(600 + n);
    test_spmm_case(c, GetParam());
  }
}

// X panels packed per K block into the kernel's stack buffer (panel above
// 16 KB and nnz >= K): one and several K blocks, more rows than one pass's
// split table holds, sub-ranges, strides, column offsets, tails, both index widths.
TEST_P(Spmm, PackedPanelsManyRowsAndBlocks) {
  uint64_t i = 0;
  for (int64_t cols : {200, 768, 2500}) {
    for (int64_t n : {17, 64, 65, 130}) {
      KernelCase c;
      c.rows = cols == 2500 ? 420 : 1100;
      c.cols = cols;
      c.n = n;
      c.sparsity = 0.9;
      c.empty_rows = 0.05;
      c.bias = (i % 2) == 0;
      c.row_begin = 5;
      c.row_end = c.rows - 2;
      c.ldx_pad = 3;
      c.ldy_pad = 1;
      c.c0 = 2;
      c.index32 = (i % 3) == 1;
      c.seed = case_seed(800 + i++);
      test_spmm_case(c, GetParam());
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// More packed K blocks than the kernel allows (K x tile > 64 blocks of 64 KB)
// with enough nonzeros to want packing: the in-place K-blocked path.
TEST_P(Spmm, TooManyPackedBlocksFallsBackInPlace) {
  for (int64_t n : {16, 64}) {
    KernelCase c;
    c.rows = 40;
    c.cols = 20000;
    c.n = n;
    c.sparsity = 0.9;
    c.seed = case_seed(900 + n);
    test_spmm_case(c, GetParam());
  }
}

// The block sizes follow the cache sizes read at run time, within their bounds.
TEST(CacheSizes, ParseAndBlocking) {
  EXPECT_EQ(kernels::parse_cache_size("48K"), 48 * 1024);
  EXPECT_EQ(kernels::parse_cache_size("1024K\n"), 1024 * 1024);
  EXPECT_EQ(kernels::parse_cache_size("32M"), 32 << 20);
  EXPECT_EQ(kernels::parse_cache_size("65536"), 65536);
  for (const char* bad : {"", "K", "12", "4096G", "99999999999999K", "3.5M", "-32K", "32KB"}) {
    EXPECT_EQ(kernels::parse_cache_size(bad), 0) << bad;
  }
  const kernels::CacheSizes& c = kernels::cache_sizes();
  EXPECT_GE(c.l1d, 1024);
  EXPECT_GE(c.l2, 1024);
  EXPECT_GE(c.l3, 1024);
  const std::string source = c.source;
  EXPECT_TRUE(source == "sysconf" || source == "sysfs" || source == "default") << source;
  // {L1d, L2} -> {pack, direct panel, L2 panel, 4x1 pack}, KiB
  struct Case {
    int64_t l1d_kib, l2_kib, pack, direct, l2_panel, block4;
  };
  const Case cases[] = {
      {32, 1024, 64, 16, 384, 24},       // Zen 4: the sizes the constants were measured at
      {16, 128, 32, 8, 128, 12},         // e.g. a Cortex-A53 with a 16 KiB L1d and a 128 KiB L2
      {1024, 65536, 64, 32, 1024, 48},   // bounded by the kernels' stack buffers
      {48, 2048, 64, 24, 768, 36},       // a 48 KiB L1d (Zen 5, Golden Cove), 2 MiB L2
  };
  for (const Case& k : cases) {
    kernels::CacheSizes sizes;
    sizes.l1d = k.l1d_kib * 1024;
    sizes.l2 = k.l2_kib * 1024;
    const kernels::SpmmBlocking b = kernels::spmm_blocking_for(sizes);
    EXPECT_EQ(b.pack_bytes, k.pack * 1024) << k.l1d_kib;
    EXPECT_EQ(b.direct_panel_bytes, k.direct * 1024) << k.l1d_kib;
    EXPECT_EQ(b.l2_panel_bytes, k.l2_panel * 1024) << k.l1d_kib;
    EXPECT_EQ(b.block4_pack_bytes, k.block4 * 1024) << k.l1d_kib;
  }
}

// The packed, in-place and K-blocked paths under the smallest and largest
// block sizes the cache sizes can give (every kernel against the reference).
TEST_P(Spmm, EveryCacheSizeBlocking) {
  kernels::CacheSizes small, large;
  small.l1d = 8 * 1024;
  small.l2 = 64 * 1024;
  large.l1d = 1 << 20;
  large.l2 = 64 << 20;
  struct Restore {
    ~Restore() { kernels::set_spmm_blocking_for_testing(nullptr); }
  } restore;
  uint64_t i = 0;
  for (const kernels::CacheSizes* caches : {&small, &large}) {
    const kernels::SpmmBlocking blocking = kernels::spmm_blocking_for(*caches);
    kernels::set_spmm_blocking_for_testing(&blocking);
    for (int64_t cols : {100, 768, 4608}) {
      for (int64_t n : {17, 64, 130}) {
        KernelCase c;
        c.rows = 70;
        c.cols = cols;
        c.n = n;
        c.sparsity = cols == 4608 ? 0.97 : 0.8;
        c.empty_rows = 0.05;
        c.bias = (i % 2) == 0;
        c.row_begin = 1;
        c.row_end = c.rows - 1;
        c.ldx_pad = 3;
        c.c0 = 1;
        c.seed = case_seed(2900 + i++);
        test_spmm_case(c, GetParam());
        c.rows = 4 * 17;
        c.row_end = c.rows - 1;
        c.block4_fill = 0.7;
        c.seed = case_seed(2900 + i++);
        test_spmm_block_case(c, GetParam());
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

// SpMV rows of every length around the 16-nonzero step, all in one matrix.
TEST_P(Spmm, SpmvRowLengths) {
  for (bool index32 : {false, true}) {
    KernelCase c;
    c.rows = 300;
    c.cols = 64;
    c.n = 1;
    c.sparsity = 0.6;
    c.empty_rows = 0.1;
    c.index32 = index32;
    c.seed = case_seed(950 + index32);
    test_spmm_case(c, GetParam());
    c.ldx_pad = 4;  // x with a stride
    c.ldy_pad = 2;
    test_spmm_case(c, GetParam());
  }
}

TEST_P(Spmm, EmptyRowsWriteBiasOrZero) {
  for (bool bias : {false, true}) {
    for (int64_t n : {1, 16, 70}) {
      KernelCase c;
      c.rows = 40;
      c.cols = 50;
      c.n = n;
      c.sparsity = 0.5;
      c.empty_rows = 0.5;
      c.bias = bias;
      c.seed = case_seed(700 + n + bias);
      test_spmm_case(c, GetParam());
    }
  }
}

// ---------------------------------------------------------------------------
TEST_P(Gemm, RowsAndN) {
  rows_and_n([this](const KernelCase& c) { test_gemm_case(c, GetParam()); }, 1100);
}
TEST_P(Gemm, ColsAndSparsity) {
  cols_and_sparsity([this](const KernelCase& c) { test_gemm_case(c, GetParam()); }, 1200);
}
// Row ranges start anywhere; test_gemm_case rounds them down to each kernel's row block.
TEST_P(Gemm, Randomized) {
  randomized([this](const KernelCase& c) { test_gemm_case(c, GetParam()); }, 1300, 300, 1);
}

// K beyond the K blocks (256 / 512) of the microkernels, several blocks and a remainder.
TEST_P(Gemm, DeepK) {
  uint64_t i = 0;
  for (int64_t cols : {511, 513, 1100}) {
    for (int64_t n : {1, 16, 33}) {
      KernelCase c;
      c.rows = 19;
      c.cols = cols;
      c.n = n;
      c.sparsity = 0.0;
      c.ldy_pad = 2;
      c.seed = case_seed(1400 + i++);
      test_gemm_case(c, GetParam());
    }
  }
}

TEST_P(Gemm, ZeroK) {
  KernelCase c;
  c.rows = 9;
  c.cols = 0;
  c.n = 5;
  c.seed = case_seed(1500);
  test_gemm_case(c, GetParam());
}

// Deep K with more than 4 packed K blocks: at 97% (~8 nonzeros per row and
// block) spmm_run uses the in-place L2 blocks, at 85% it packs; both index
// widths, empty rows, sub-ranges, strides and n tails, NaN-prefilled outputs.
TEST_P(Spmm, SparseDeepKChoosesInPlaceBlocks) {
  uint64_t i = 0;
  for (double sparsity : {0.85, 0.97, 1.0}) {
    for (int64_t n : {64, 65, 100}) {
      KernelCase c;
      c.rows = 130;
      c.cols = 5000;
      c.n = n;
      c.sparsity = sparsity;
      c.empty_rows = 0.1;
      c.bias = (i % 2) == 0;
      c.row_begin = 1;
      c.row_end = 129;
      c.ldx_pad = 2;
      c.ldy_pad = 3;
      c.c0 = 1;
      c.index32 = (i % 3) == 2;
      c.seed = case_seed(2000 + i++);
      test_spmm_case(c, GetParam());
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// SpMV rows of 0 .. 40 nonzeros (the 16-wide blocks plus the 4-way and single
// tail steps), dense rows so each length occurs, both index widths.
TEST_P(Spmm, SpmvTailLengths) {
  for (int64_t cols = 1; cols <= 40; ++cols) {
    KernelCase c;
    c.rows = 9;
    c.cols = cols;
    c.n = 1;
    c.sparsity = 0.0;
    c.empty_rows = 0.2;
    c.bias = (cols % 2) == 0;
    c.index32 = (cols % 3) == 0;
    c.ldx_pad = cols % 2;
    c.seed = case_seed(2100 + cols);
    test_spmm_case(c, GetParam());
    if (::testing::Test::HasFailure()) return;
  }
}

// Weights above the SIMD kernels' L2 budget (rows x K > 2^20 floats) take the
// column-blocked path: each K block of W is streamed once for up to 128
// columns (several strips), rows in chunks of 128, K blocks with a remainder.
// n covers one strip with a narrow tail (40 = 32 + 8, 49 = 32 + 17), several
// strips (130), and balanced column blocks (257 -> 3 blocks); sub-ranges,
// strides and column offsets too.
TEST_P(Gemm, LargeWeightsColumnBlocked) {
  uint64_t i = 0;
  for (int64_t n : {1, 8, 40, 49, 130, 257}) {
    KernelCase c;
    c.rows = 264;
    c.cols = 4100;
    c.n = n;
    c.sparsity = 0.0;
    c.bias = (i % 2) == 0;
    if (i % 3 == 1) {
      c.row_begin = 5;
      c.row_end = 263;
      c.ldx_pad = 3;
      c.ldy_pad = 5;
      c.c0 = 2;
    }
    c.seed = case_seed(1600 + i++);
    test_gemm_case(c, GetParam());
    if (::testing::Test::HasFailure()) return;
  }
}

// Row ranges that are not whole 128-row chunks and end mid-panel in the
// column-blocked path (K below one block, so only the row chunking varies).
TEST_P(Gemm, LargeWeightsRowChunks) {
  uint64_t i = 0;
  for (int64_t rows : {4500, 4700}) {
    for (int64_t n : {17, 33}) {
      KernelCase c;
      c.rows = rows;
      c.cols = 250;
      c.n = n;
      c.sparsity = 0.5;
      c.row_begin = i % 2 == 0 ? 0 : 130;
      c.row_end = rows - static_cast<int64_t>(i);
      c.seed = case_seed(1700 + i++);
      test_gemm_case(c, GetParam());
      if (::testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace testing
}  // namespace sparsert
