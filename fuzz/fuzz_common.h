// What both libFuzzer targets share: the cost cap that keeps a valid but huge
// model from becoming an out-of-memory or timeout report of the harness, the
// typed input filler, the output checks, and the error contract
// (csrc/include/sparsert/sparsert.h): every failure is a sparsert::Error other
// than kInternal; anything else aborts, which libFuzzer reports as a crash.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "sparsert/sparsert.h"

namespace fuzz_common {

constexpr int64_t kMaxTensorElements = int64_t{1} << 20;
constexpr int64_t kMaxFlops = int64_t{1} << 24;

// True when every tensor of the planned model has at most kMaxTensorElements
// elements and the whole run at most kMaxFlops.
inline bool small_enough(const std::vector<sparsert::NodeInfo>& nodes) {
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

// Fills t from a linear congruential sequence (advancing `seed`): floats in
// [-1000, 1000] / scale, integers in [-4, 4], bools 0/1.
inline void fill_input(sparsert::Tensor& t, uint32_t& seed, float scale) {
  for (int64_t i = 0; i < t.size(); ++i) {
    seed = seed * 1664525u + 1013904223u;
    const int32_t v = static_cast<int32_t>(seed >> 8) % 2001 - 1000;
    switch (t.dtype()) {
      case sparsert::DType::kFloat32: t.data()[i] = static_cast<float>(v) / scale; break;
      case sparsert::DType::kInt32: static_cast<int32_t*>(t.raw_data())[i] = v % 9 - 4; break;
      case sparsert::DType::kInt64: static_cast<int64_t*>(t.raw_data())[i] = v % 9 - 4; break;
      case sparsert::DType::kBool: static_cast<uint8_t*>(t.raw_data())[i] = v & 1; break;
    }
  }
}

// A run must return one output per declared output, of the declared dtype.
inline void check_outputs(const sparsert::Model& model, const std::vector<sparsert::Tensor>& outputs) {
  if (outputs.size() != model.outputs().size()) {
    std::fprintf(stderr, "run returned %zu outputs, the model declares %zu\n", outputs.size(),
                 model.outputs().size());
    std::abort();
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].dtype() != model.outputs()[i].dtype) {
      std::fprintf(stderr, "output %zu has dtype %s, the model declares %s\n", i,
                   sparsert::dtype_name(outputs[i].dtype()), sparsert::dtype_name(model.outputs()[i].dtype));
      std::abort();
    }
  }
}

// Runs fn under the error contract.
template <typename Fn>
void under_contract(Fn&& fn) {
  try {
    fn();
  } catch (const sparsert::Error& e) {
    if (e.code() == sparsert::ErrorCode::kInternal) {
      std::fprintf(stderr, "internal error: %s\n", e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exception other than sparsert::Error: %s\n", e.what());
    std::abort();
  }
}

}  // namespace fuzz_common
