// Generic (ISA-free) helpers of the kernel layer: ISA names, the aligned
// float storage that packed weights live in, and the CPU's cache sizes.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#include <unistd.h>

#include "kernels/kernels.h"

namespace sparsert {
namespace kernels {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kNeon:
      return "neon";
  }
  return "unknown";
}

AlignedFloats::AlignedFloats(size_t count) : size_(count) {
  if (count == 0) return;
  constexpr size_t kAlign = 64;
  if (count > (static_cast<size_t>(-1) - kAlign) / sizeof(float)) throw std::bad_alloc();
  // aligned_alloc wants a size that is a multiple of the alignment.
  size_t bytes = (count * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<float*>(p));
}

void AlignedFloats::Free::operator()(float* p) const { std::free(p); }

int64_t parse_cache_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  int64_t value = 0;
  size_t digits = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 12; ++i, ++digits) {
    value = value * 10 + (text[i] - '0');
  }
  if (digits == 0 || digits >= 12) return 0;
  int64_t scale = 1;
  if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) {
    scale = 1024, ++i;
  } else if (i < text.size() && (text[i] == 'M' || text[i] == 'm')) {
    scale = 1024 * 1024, ++i;
  } else if (i < text.size() && (text[i] == 'G' || text[i] == 'g')) {
    scale = int64_t{1024} * 1024 * 1024, ++i;
  }
  while (i < text.size() && (text[i] == '\n' || text[i] == ' ' || text[i] == '\r')) ++i;
  if (i != text.size()) return 0;
  const int64_t bytes = value * scale;  // value < 10^12, scale <= 2^30: no overflow
  return bytes >= 1024 && bytes <= (int64_t{4} << 30) ? bytes : 0;
}

namespace {

std::string read_small_file(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (f) std::getline(f, line);
  return line;
}

CacheSizes detect_cache_sizes() {
  CacheSizes c;
  int64_t found[4] = {0, 0, 0, 0};  // by level; [1] is the L1 data cache
  const char* source = nullptr;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
  const long sc[3] = {sysconf(_SC_LEVEL1_DCACHE_SIZE), sysconf(_SC_LEVEL2_CACHE_SIZE),
                      sysconf(_SC_LEVEL3_CACHE_SIZE)};
  for (int level = 1; level <= 3; ++level) {
    const long v = sc[level - 1];
    if (v >= 1024 && v <= (long{1} << 30)) found[level] = v;
  }
  if (found[1] || found[2] || found[3]) source = "sysconf";
#endif
  if (!found[1] || !found[2]) {
    for (int index = 0; index < 8; ++index) {
      const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
      const std::string level = read_small_file(dir + "level");
      if (level.empty()) continue;
      const std::string type = read_small_file(dir + "type");
      if (type == "Instruction") continue;
      const int lv = level == "1" ? 1 : level == "2" ? 2 : level == "3" ? 3 : 0;
      const int64_t bytes = parse_cache_size(read_small_file(dir + "size"));
      if (lv && bytes && !found[lv]) {
        found[lv] = bytes;
        if (source == nullptr) source = "sysfs";
      }
    }
  }
  if (found[1]) c.l1d = found[1];
  if (found[2]) c.l2 = found[2];
  c.l3 = found[3] ? found[3] : found[2] ? found[2] : c.l3;
  c.source = source != nullptr ? source : "default";
  return c;
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = detect_cache_sizes();
  return sizes;
}

SpmmBlocking spmm_blocking_for(const CacheSizes& caches) {
  SpmmBlocking b;
  b.pack_bytes = std::clamp<int64_t>(2 * caches.l1d, 16 * 1024, 64 * 1024);
  b.direct_panel_bytes = std::clamp<int64_t>(caches.l1d / 2, 8 * 1024, 32 * 1024);
  b.l2_panel_bytes = std::clamp<int64_t>(caches.l2 / 8 * 3, 128 * 1024, 1024 * 1024);
  b.block4_pack_bytes = std::clamp<int64_t>(caches.l1d / 4 * 3, 12 * 1024, 48 * 1024);
  return b;
}

namespace {
std::atomic<const SpmmBlocking*> g_spmm_blocking_override{nullptr};
}  // namespace

const SpmmBlocking& spmm_blocking() {
  static const SpmmBlocking blocking = spmm_blocking_for(cache_sizes());
  const SpmmBlocking* forced = g_spmm_blocking_override.load(std::memory_order_relaxed);
  return forced != nullptr ? *forced : blocking;
}

void set_spmm_blocking_for_testing(const SpmmBlocking* blocking) {
  g_spmm_blocking_override.store(blocking, std::memory_order_relaxed);
}

}  // namespace kernels
}  // namespace sparsert
