// CPU feature detection and the kernel lists. Detection runs once per process
// (function-local statics). Ops ask for spmm_best() / gemm_best(); tests walk
// spmm_kernels() / gemm_kernels().
//
// ISA files (avx2.cc, avx512.cc, neon.cc) are compiled with their ISA flags,
// so they use only raw pointers, intrinsics and file-local functions: an
// inline function or template from a shared header instantiated there could
// be the copy the linker keeps, and would then run AVX-512 code on a CPU
// without it. That is why the gemm kernels take raw pointers and the wrappers
// that unpack PackedGemmWeights live here, in generic code.
#include <cstdio>
#include <cstring>
#include <string>

#include "kernels/kernels.h"
#include "sparsert/sparsert.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define SPARSERT_X86 1
#include <cpuid.h>
#elif defined(__arm__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace sparsert {
namespace kernels {

// --- kernel declarations (from the .inc lists) -------------------------------
#define SPARSERT_SPMM_KERNEL(isa, fn)                                                          \
  void fn(const CsrMatrix& w, int64_t row_begin, int64_t row_end, const float* x, int64_t ldx, \
          int64_t n, const float* bias, float* y, int64_t ldy);
#include "kernels/spmm/spmm.inc"
#undef SPARSERT_SPMM_KERNEL

#define SPARSERT_GEMM_KERNEL(isa, fn, mr)                                                      \
  void fn##_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, float* packed);      \
  void fn(const float* packed, int64_t rows, int64_t cols, int64_t row_begin, int64_t row_end, \
          const float* x, int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy);
#include "kernels/gemm/gemm.inc"
#undef SPARSERT_GEMM_KERNEL

namespace {

// --- CPU detection --------------------------------------------------------------
struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C, and the OS saves YMM state
  bool avx512 = false;  // AVX-512 F/BW/DQ/VL, and the OS saves ZMM + opmask state
  bool neon = false;
};

#if defined(SPARSERT_X86)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  // xgetbv with ecx = 0, as raw bytes so no -mxsave flag is needed.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect_cpu() {
  CpuFeatures f;
#if defined(SPARSERT_X86)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return f;
  const unsigned max_leaf = eax;
  __cpuid(1, eax, ebx, ecx, edx);
  const bool osxsave = (ecx >> 27) & 1;
  const bool avx = (ecx >> 28) & 1;
  const bool fma = (ecx >> 12) & 1;
  const bool f16c = (ecx >> 29) & 1;
  if (!osxsave || !avx || max_leaf < 7) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // XMM | YMM
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // XMM | YMM | opmask | ZMM_Hi256 | Hi16_ZMM
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = (ebx >> 5) & 1;
  const bool avx512f = (ebx >> 16) & 1;
  const bool avx512dq = (ebx >> 17) & 1;
  const bool avx512bw = (ebx >> 30) & 1;
  const bool avx512vl = (ebx >> 31) & 1;
  f.avx2 = os_ymm && avx2 && fma && f16c;
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory in ARMv8-A
#elif defined(__arm__) && defined(__linux__)
  // armv7: this file is built without -mfpu=neon, so ask the kernel (HWCAP_NEON = bit 12).
  f.neon = (getauxval(AT_HWCAP) & (1ul << 12)) != 0;
#endif
  return f;
}

const CpuFeatures& cpu() {
  static const CpuFeatures features = detect_cpu();
  return features;
}

bool compiled(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
#if defined(SPARSERT_HAVE_AVX2)
      return true;
#else
      return false;
#endif
    case Isa::kAvx512:
#if defined(SPARSERT_HAVE_AVX512)
      return true;
#else
      return false;
#endif
    case Isa::kNeon:
#if defined(SPARSERT_HAVE_NEON)
      return true;
#else
      return false;
#endif
  }
  return false;
}

Isa detect_best() {
  Isa best = Isa::kScalar;
  if (isa_supported(Isa::kNeon)) best = Isa::kNeon;
  if (isa_supported(Isa::kAvx2)) best = Isa::kAvx2;
  if (isa_supported(Isa::kAvx512)) best = Isa::kAvx512;
  return best;
}

// --- gemm wrappers: unpack PackedGemmWeights for the raw ISA functions -----------
using GemmRawPack = void (*)(const float*, int64_t, int64_t, int64_t, float*);
using GemmRawRun = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                            int64_t, const float*, float*, int64_t);

template <Isa kIsa, GemmRawPack kPack, int64_t kRowBlock>
void gemm_pack(const float* w, int64_t rows, int64_t cols, int64_t ldw, PackedGemmWeights* out) {
  if (rows < 0 || cols < 0 || ldw < cols || (rows > 0 && cols > 0 && w == nullptr)) {
    throw Error(ErrorCode::kInvalidArgument,
                "gemm pack: bad weight matrix (rows " + std::to_string(rows) + ", cols " +
                    std::to_string(cols) + ", ldw " + std::to_string(ldw) + ")");
  }
  const int64_t panels = (rows + kRowBlock - 1) / kRowBlock;
  out->isa = kIsa;
  out->rows = rows;
  out->cols = cols;
  out->row_block = kRowBlock;
  out->data = AlignedFloats(static_cast<size_t>(panels * kRowBlock * cols));
  if (rows > 0 && cols > 0) kPack(w, rows, cols, ldw, out->data.data());
}

template <Isa kIsa, GemmRawRun kRun, int64_t kRowBlock>
void gemm_run(const PackedGemmWeights& w, int64_t row_begin, int64_t row_end, const float* x,
              int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) {
  if (w.isa != kIsa || w.row_block != kRowBlock) {
    throw Error(ErrorCode::kInternal, std::string("gemm: weights packed for ") + isa_name(w.isa) +
                                          " run with the " + isa_name(kIsa) + " kernel");
  }
  if (row_begin < 0 || row_end > w.rows || row_begin > row_end || row_begin % kRowBlock != 0) {
    throw Error(ErrorCode::kInternal, "gemm: bad row range [" + std::to_string(row_begin) + ", " +
                                          std::to_string(row_end) + ") for " +
                                          std::to_string(w.rows) + " rows, row block " +
                                          std::to_string(kRowBlock));
  }
  if (row_begin == row_end || n <= 0) return;
  kRun(w.data.data(), w.rows, w.cols, row_begin, row_end, x, ldx, n, bias, y, ldy);
}

std::vector<SpmmKernel> make_spmm_kernels() {
  std::vector<SpmmKernel> list;
#define SPARSERT_SPMM_KERNEL(isa, fn) \
  if (isa_supported(Isa::isa)) list.push_back(SpmmKernel{Isa::isa, #fn, &fn});
#include "kernels/spmm/spmm.inc"
#undef SPARSERT_SPMM_KERNEL
  return list;
}

std::vector<GemmKernel> make_gemm_kernels() {
  std::vector<GemmKernel> list;
#define SPARSERT_GEMM_KERNEL(isa, fn, mr)                                            \
  if (isa_supported(Isa::isa)) {                                                     \
    list.push_back(GemmKernel{Isa::isa, #fn, &gemm_pack<Isa::isa, &fn##_pack, (mr)>, \
                              &gemm_run<Isa::isa, &fn, (mr)>});                      \
  }
#include "kernels/gemm/gemm.inc"
#undef SPARSERT_GEMM_KERNEL
  return list;
}

}  // namespace

bool isa_supported(Isa isa) {
  if (!compiled(isa)) return false;
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return cpu().avx2;
    case Isa::kAvx512:
      return cpu().avx512;
    case Isa::kNeon:
      return cpu().neon;
  }
  return false;
}

// A short text naming the CPU model ("AuthenticAMD 25/17/1", "arm 0x41/0xd08/r0p3"), for
// keys of measured choices that hold for one CPU model only; "unknown" when
// the CPU does not say.
std::string cpu_signature() {
#if defined(SPARSERT_X86)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return "unknown";
  char vendor[13];
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  vendor[12] = '\0';
  for (char& c : vendor)
    if (c != '\0' && (c < '!' || c > '~')) c = '?';
  __cpuid(1, eax, ebx, ecx, edx);
  const unsigned base_family = (eax >> 8) & 0xf, base_model = (eax >> 4) & 0xf;
  const unsigned family = base_family == 0xf ? base_family + ((eax >> 20) & 0xff) : base_family;
  const unsigned model = base_family == 0x6 || base_family == 0xf ? (((eax >> 16) & 0xf) << 4) | base_model : base_model;
  return std::string(vendor) + " " + std::to_string(family) + "/" + std::to_string(model) + "/" +
         std::to_string(eax & 0xf);
#elif defined(__linux__) && (defined(__aarch64__) || defined(__arm__))
  // /proc/cpuinfo's first "CPU implementer" / "CPU part" / "CPU revision" lines (bounded read).
  std::string implementer, part, revision;
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[256];
    for (int i = 0; i < 4096 && std::fgets(line, sizeof line, f) != nullptr; ++i) {
      std::string l(line);
      const size_t colon = l.find(':');
      if (colon == std::string::npos) continue;
      std::string value = l.substr(colon + 1);
      while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (value.size() > 16) value.resize(16);
      if (implementer.empty() && l.rfind("CPU implementer", 0) == 0) implementer = value;
      if (part.empty() && l.rfind("CPU part", 0) == 0) part = value;
      if (revision.empty() && l.rfind("CPU revision", 0) == 0) revision = value;
      if (!implementer.empty() && !part.empty() && !revision.empty()) break;
    }
    std::fclose(f);
  }
  if (implementer.empty() && part.empty()) return "unknown";
  return "arm " + implementer + "/" + part + "/r" + revision;
#else
  return "unknown";
#endif
}

Isa best_isa() {
  static const Isa best = detect_best();
  return best;
}

Isa isa_from_name(const std::string& name) {
  if (name.empty()) return best_isa();
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon}) {
    if (name != isa_name(isa)) continue;
    if (!isa_supported(isa)) {
      throw Error(ErrorCode::kUnsupported,
                  "isa '" + name + "' is not available here (" +
                      (compiled(isa) ? "this CPU lacks it" : "this build has no such kernels") +
                      "); the best available is '" + isa_name(best_isa()) + "'");
    }
    return isa;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown isa '" + name + "'; use one of scalar, avx2, avx512, neon (or none for the best)");
}

const std::vector<SpmmKernel>& spmm_kernels() {
  static const std::vector<SpmmKernel> list = make_spmm_kernels();
  return list;
}
const SpmmKernel& spmm_kernel(Isa isa) { return pick_kernel(spmm_kernels(), isa); }
const SpmmKernel& spmm_best() {
  static const SpmmKernel& best = spmm_kernel(best_isa());
  return best;
}

const std::vector<GemmKernel>& gemm_kernels() {
  static const std::vector<GemmKernel> list = make_gemm_kernels();
  return list;
}
const GemmKernel& gemm_kernel(Isa isa) { return pick_kernel(gemm_kernels(), isa); }
const GemmKernel& gemm_best() {
  static const GemmKernel& best = gemm_kernel(best_isa());
  return best;
}

}  // namespace kernels
}  // namespace sparsert
