// libFuzzer target: the .spr reader, graph building (op factories, fusion)
// and planning, on arbitrary bytes; and one run when the model loads.
//
// Contract under test (csrc/include/sparsert/sparsert.h): every failure is a
// sparsert::Error. Any other exception, a crash, a sanitizer report, a leak
// or a hang is a bug.
//
// The CRC-32 fields of the header are recomputed before loading (when the
// header's sizes are in range) so that mutations reach the parser and the
// runtime instead of stopping at the checksum; the checksum check itself is
// covered by tests/test_robustness.py (every byte of a data section flipped).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include "format/spr_format.h"
#include "fuzz_common.h"
#include "sparsert/sparsert.h"

namespace {

// Caps on what one run may cost, so a valid but huge model (a 16k x 16k
// Resize, a deep conv) does not turn into an out-of-memory or timeout report
// of the harness itself. Loading and planning are always fuzzed in full.
constexpr int64_t kMaxInputElements = int64_t{1} << 18;

uint64_t read_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

void fix_checksums(std::vector<uint8_t>& file) {
  if (file.size() < sparsert::format::kHeaderSize) return;
  const uint64_t body_size = read_u64(file.data() + 16);
  const uint64_t data_offset = read_u64(file.data() + 24);
  const uint64_t data_size = read_u64(file.data() + 32);
  const uint64_t size = file.size();
  if (body_size <= size - sparsert::format::kHeaderSize) {
    const uint32_t crc = sparsert::format::crc32(file.data() + 48, body_size);
    std::memcpy(file.data() + 40, &crc, 4);
  }
  if (data_offset <= size && data_size <= size - data_offset) {
    const uint32_t crc = sparsert::format::crc32(file.data() + data_offset, data_size);
    std::memcpy(file.data() + 44, &crc, 4);
  }
}

void load_and_run(const uint8_t* data, size_t size) {
  std::vector<uint8_t> file(data, data + size);
  fix_checksums(file);
  sparsert::LoadOptions options;
  options.threads = 1 + static_cast<int>(size % 2);  // both the serial and the pooled paths
  sparsert::Model model = sparsert::Model::load_from_buffer(file.data(), file.size(), options);

  std::vector<std::vector<int64_t>> shapes;
  for (const auto& spec : model.inputs()) {
    std::vector<int64_t> shape = spec.shape;
    int64_t n = 1;
    for (auto& d : shape) {
      if (d < 0) d = 1;
      if (n > kMaxInputElements / d) return;
      n *= d;
    }
    shapes.push_back(shape);
  }
  if (!fuzz_common::small_enough(model.summary(shapes))) return;
  std::vector<sparsert::Tensor> inputs;
  uint32_t seed = 12345;
  for (size_t k = 0; k < shapes.size(); ++k) {
    sparsert::Tensor t(shapes[k], model.inputs()[k].dtype);
    fuzz_common::fill_input(t, seed, 500.0f);
    inputs.push_back(std::move(t));
  }
  fuzz_common::check_outputs(model, model.run(inputs));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_common::under_contract([&] { load_and_run(data, size); });
  return 0;
}
