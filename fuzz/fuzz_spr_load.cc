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
#include "sparsert/sparsert.h"

namespace {

// Caps on what one run may cost, so a valid but huge model (a 16k x 16k
// Resize, a deep conv) does not turn into an out-of-memory or timeout report
// of the harness itself. Loading and planning are always fuzzed in full.
constexpr int64_t kMaxInputElements = int64_t{1} << 18;
constexpr int64_t kMaxTensorElements = int64_t{1} << 20;
constexpr int64_t kMaxFlops = int64_t{1} << 24;

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

bool small_enough(const std::vector<sparsert::NodeInfo>& nodes) {
  int64_t flops = 0;
  for (const auto& node : nodes) {
    if (node.flops < 0 || node.flops > kMaxFlops) return false;
    flops += node.flops;
    if (flops > kMaxFlops) return false;
    for (const auto& shapes : {node.input_shapes, node.output_shapes}) {
      for (const auto& shape : shapes) {
        int64_t n = 1;
        for (int64_t d : shape) {
          if (d < 0 || (d != 0 && n > kMaxTensorElements / d)) return false;
          n *= d;
        }
      }
    }
  }
  return true;
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
  if (!small_enough(model.summary(shapes))) return;
  std::vector<sparsert::Tensor> inputs;
  uint32_t seed = 12345;
  for (size_t k = 0; k < shapes.size(); ++k) {
    sparsert::Tensor t(shapes[k], model.inputs()[k].dtype);
    for (int64_t i = 0; i < t.size(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      const int32_t v = static_cast<int32_t>(seed >> 8) % 2001 - 1000;
      switch (t.dtype()) {
        case sparsert::DType::kFloat32: t.data()[i] = static_cast<float>(v) / 500.0f; break;
        case sparsert::DType::kInt32: static_cast<int32_t*>(t.raw_data())[i] = v % 9 - 4; break;
        case sparsert::DType::kInt64: static_cast<int64_t*>(t.raw_data())[i] = v % 9 - 4; break;
        case sparsert::DType::kBool: static_cast<uint8_t*>(t.raw_data())[i] = v & 1; break;
      }
    }
    inputs.push_back(std::move(t));
  }
  std::vector<sparsert::Tensor> outputs = model.run(inputs);
  if (outputs.size() != model.outputs().size()) {
    std::fprintf(stderr, "run returned %zu outputs, the model declares %zu\n", outputs.size(),
                 model.outputs().size());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    load_and_run(data, size);
  } catch (const sparsert::Error& e) {
    if (e.code() == sparsert::ErrorCode::kInternal) {
      std::fprintf(stderr, "internal error: %s\n", e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exception other than sparsert::Error: %s\n", e.what());
    std::abort();
  }
  return 0;
}
