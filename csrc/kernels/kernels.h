// Kernel families and their dispatch. Ops call only the functions declared
// here; they never name an ISA-specific kernel. Each family lives in its own
// folder with ref.cc (the naive reference, never optimised) and one file per
// ISA, and one list (<family>.inc) naming every kernel of the family.
//
// Layout convention shared by every family: the weight is the left operand
// (rows = output features / channels), activations are "feature-major":
// X is K x n with row stride ldx, Y is M x n with row stride ldy. For NCHW
// convolutions n is H*W; for a batched Linear the runtime transposes the
// batch so that n is the batch. Work is split across threads by row ranges
// (output features) or by column ranges (offset x and y by the first column).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sparsert {
namespace kernels {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };
const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512", "neon"
// True if the kernels for `isa` were compiled into this build and this CPU runs them.
bool isa_supported(Isa isa);
// The CPU model as text ("AuthenticAMD 25/17/1", "arm 0x41/0xd08/r3"), or
// "unknown": part of the keys of choices measured on this machine.
std::string cpu_signature();
// The best supported ISA, detected once per process. A model may be capped
// lower with LoadOptions::isa (isa_from_name).
Isa best_isa();
// The ISA for a LoadOptions::isa value: "" is best_isa(); an unknown name is
// Error(kInvalidArgument), one this build or CPU lacks Error(kUnsupported).
Isa isa_from_name(const std::string& name);
// True if kernels for `isa` may run when the choice is capped at `cap`
// (AVX-512 includes AVX2; NEON is its own line above scalar).
inline bool isa_within(Isa isa, Isa cap) {
  return isa == Isa::kScalar || isa == cap || (isa == Isa::kAvx2 && cap == Isa::kAvx512);
}
// The fastest kernel of a family's list (reference first) within `cap`.
template <typename Kernel>
const Kernel& pick_kernel(const std::vector<Kernel>& list, Isa cap) {
  const Kernel* chosen = &list.front();
  for (const Kernel& k : list) {
    if (isa_within(k.isa, cap)) chosen = &k;
  }
  return *chosen;
}

// Data cache sizes of the CPU this process runs on, read once at run time:
// sysconf (glibc reads CPUID or the kernel's tables), else Linux sysfs
// (/sys/devices/system/cpu/cpu0/cache), else the defaults below for any
// level the system does not report (qemu, containers without sysfs, other
// OSes). Kernels size their blocks from these, not from one machine's constants.
struct CacheSizes {
  static constexpr int64_t kDefaultL1d = 32 * 1024;
  static constexpr int64_t kDefaultL2 = 1024 * 1024;
  static constexpr int64_t kDefaultL3 = 32 * 1024 * 1024;
  int64_t l1d = kDefaultL1d;
  int64_t l2 = kDefaultL2;
  int64_t l3 = kDefaultL3;  // last level; the L2 size when there is no L3
  const char* source = "default";  // "sysconf", "sysfs" or "default" (first level found)
};
const CacheSizes& cache_sizes();
// A sysfs cache size ("48K", "1024K", "32M", "65536"): bytes, or 0 when it
// does not parse or is outside [1 KiB, 4 GiB].
int64_t parse_cache_size(const std::string& text);
// spmm block sizes from the cache sizes (spmm_impl.h says what each is for):
// the X panel copied per K block: twice L1d (a block and its Y rows stream
// through L1 and L2), in [16, 64] KiB; X panels read in place: half of L1d, in
// [8, 32] KiB; in-place K blocks kept in L2: 3/8 of L2, in [128 KiB, 1 MiB];
// the 4x1 block kernel's packed X block: 3/4 of L1d, in [12, 48] KiB.
struct SpmmBlocking {
  int64_t pack_bytes;
  int64_t block4_pack_bytes;
  int64_t direct_panel_bytes;
  int64_t l2_panel_bytes;
};
SpmmBlocking spmm_blocking_for(const CacheSizes& caches);
const SpmmBlocking& spmm_blocking();  // for cache_sizes(), computed once
// Tests only: the spmm kernels use `blocking` instead (nullptr: the detected
// sizes again). Not to be called while a kernel runs.
void set_spmm_blocking_for_testing(const SpmmBlocking* blocking);

// 64-byte aligned, zero-initialised float storage.
class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(size_t count);
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------
// spmm: Y = W X with W in CSR (see docs/spr-format.md for the CSR fields).
// For r in [row_begin, row_end):  Y[r, 0:n] = bias[r] + sum_k W[r,k] * X[k, 0:n]
// (bias may be null: then 0). An empty row writes bias (or zeros). n may be 1
// (SpMV). Exactly one of col_idx16 / col_idx32 is non-null.
struct CsrMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  const uint32_t* row_ptr = nullptr;
  const uint16_t* col_idx16 = nullptr;
  const uint32_t* col_idx32 = nullptr;
  const float* values = nullptr;
  // Optional 4x1 block view of rows [0, 4 * block_count) (block_ptr null:
  // none), built at load when the nonzeros come in groups of four consecutive
  // rows sharing a column (block pruning, block=(4, 1)); see
  // kernels/spmm/block4_impl.h. Block row b holds blocks [block_ptr[b],
  // block_ptr[b + 1]); block j is column block_col[j] with the four row values
  // block_values[4j .. 4j + 3] (explicit zeros where a row has none). The SIMD
  // kernels run the whole blocks of their row range from it and the other
  // rows from the CSR arrays, which stay complete; the reference ignores it.
  const uint32_t* block_ptr = nullptr;
  const uint32_t* block_col = nullptr;
  const float* block_values = nullptr;
  int64_t block_count = 0;
};

using SpmmFn = void (*)(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
                        int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy);

struct SpmmKernel {
  Isa isa;
  const char* name;  // e.g. "spmm_f32_avx512"
  SpmmFn fn;
};
// Every spmm kernel compiled in and supported by this CPU, the reference first.
const std::vector<SpmmKernel>& spmm_kernels();
const SpmmKernel& spmm_kernel(Isa isa);  // best one not above `isa`
const SpmmKernel& spmm_best();           // spmm_kernel(best_isa())

// ---------------------------------------------------------------------------
// gemm: Y = W X with W dense, packed once at load into the layout the chosen
// ISA's microkernel wants. For r in [row_begin, row_end):
//   Y[r, 0:n] = bias[r] + sum_k W[r,k] * X[k, 0:n]
// row_begin must be a multiple of PackedGemmWeights::row_block (row_end may be
// rows). The kernel needs no other scratch memory.
struct PackedGemmWeights {
  Isa isa = Isa::kScalar;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_block = 1;  // rows per packed panel (the microkernel's MR)
  AlignedFloats data;
};

using GemmFn = void (*)(const PackedGemmWeights& w, int64_t row_begin, int64_t row_end,
                        const float* x, int64_t ldx, int64_t n, const float* bias, float* y,
                        int64_t ldy);
using GemmPackFn = void (*)(const float* w, int64_t rows, int64_t cols, int64_t ldw,
                            PackedGemmWeights* out);

struct GemmKernel {
  Isa isa;
  const char* name;  // e.g. "gemm_f32_avx512"
  GemmPackFn pack;
  GemmFn fn;
};
const std::vector<GemmKernel>& gemm_kernels();
const GemmKernel& gemm_kernel(Isa isa);
const GemmKernel& gemm_best();

}  // namespace kernels
}  // namespace sparsert
