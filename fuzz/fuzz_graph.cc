// libFuzzer target, structure-aware: the fuzzer's bytes choose a *valid* .spr
// file (correct layout and checksums) — random inputs of every dtype, rank and
// dim (dynamic ones too), random nodes of every op type this build implements,
// random constants (dense of every dtype, CSR), random attributes with extreme
// values — so that every input reaches the op factories, the planner and the
// kernels instead of stopping at the reader. The model is loaded (with the CRC
// checked: the writer sets it) and, when small enough, run on typed inputs.
//
// Contract under test (csrc/include/sparsert/sparsert.h): every failure is a
// sparsert::Error other than kInternal. Any other exception, a crash, a
// sanitizer report, a leak or a hang is a bug.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "../tests/cpp/model_builder.h"
#include "fuzz_common.h"
#include "sparsert/sparsert.h"

namespace {

using sparsert::testing::SprWriter;

constexpr int64_t kMaxInputElements = int64_t{1} << 16;

const char* const kAttrKeys[] = {
    "activation", "allowzero", "alpha", "approximate", "axes", "axis", "batch_dims", "beta", "bias",
    "ceil_mode", "clip", "coordinate_transformation_mode", "count_include_pad", "detect_negative",
    "detect_positive", "dilations", "direction", "end", "epsilon", "exclusive", "fmod", "group",
    "hidden_size", "input_forget", "keepdims", "kernel_shape", "layout", "linear_before_reset", "mode",
    "nearest_mode", "noop_with_empty_axes", "output_padding", "pads", "perm", "reverse", "scales",
    "select_last_index", "size", "sizes", "split", "start", "storage_order", "strides", "to", "value",
    "min", "max", "activations", "activation_params"};

const char* const kStrings[] = {"relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "nearest", "linear", "forward",
                                "reverse", "bidirectional", "none", "half_pixel", "asymmetric", "align_corners",
                                "pytorch_half_pixel", "round_prefer_floor", "floor", "ceil", "constant",
                                "reflect", "edge", "", "\xff\x01"};

int64_t interesting_int(FuzzedDataProvider& fdp) {
  static const int64_t values[] = {0,  1,  2,  3,  4,  -1, -2, -3, 7, 8, 16, 64, 255, 256, 65535, 65536,
                                   int64_t{1} << 31, (int64_t{1} << 32) + 1, int64_t{1} << 40,
                                   int64_t{1} << 62, 3 * (int64_t{1} << 61),
                                   std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  if (fdp.ConsumeBool()) return fdp.PickValueInArray(values);
  return fdp.ConsumeIntegralInRange<int64_t>(-8, 8);
}

double interesting_float(FuzzedDataProvider& fdp) {
  static const double values[] = {0.0, 1.0, -1.0, 0.5, 2.0, 1e-5, 1e30, -1e30, 1e300,
                                  std::numeric_limits<double>::infinity(),
                                  std::numeric_limits<double>::quiet_NaN(), 6.0, 0.01};
  if (fdp.ConsumeBool()) return fdp.PickValueInArray(values);
  return fdp.ConsumeFloatingPointInRange<double>(-4.0, 4.0);
}

std::vector<int64_t> random_dims(FuzzedDataProvider& fdp, bool allow_dynamic) {
  const int rank = fdp.ConsumeIntegralInRange<int>(0, 5);
  std::vector<int64_t> dims;
  for (int i = 0; i < rank; ++i) {
    if (allow_dynamic && fdp.ConsumeIntegralInRange<int>(0, 7) == 0) {
      dims.push_back(-1);
    } else {
      dims.push_back(fdp.ConsumeIntegralInRange<int64_t>(allow_dynamic ? 1 : 0, 6));
    }
  }
  return dims;
}

int64_t element_count(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d < 0 ? 1 : d;
  return n;
}

// A constant of a random dtype (and, for float32 of rank >= 1, random storage).
void add_constant(FuzzedDataProvider& fdp, SprWriter& w, const std::string& name) {
  std::vector<int64_t> dims = random_dims(fdp, false);
  const int64_t n = element_count(dims);
  const uint32_t dtype = fdp.ConsumeIntegralInRange<uint32_t>(1, 4);
  if (dtype == 1) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = fdp.ConsumeBool() ? 0.0f : static_cast<float>(interesting_float(fdp));
    for (float& x : v)
      if (x != x || x == std::numeric_limits<float>::infinity() || x == -std::numeric_limits<float>::infinity())
        x = 1.0f;  // the writer of a real file refuses NaN/Inf constants; the reader checks too
    if (!dims.empty() && dims[0] > 0 && fdp.ConsumeBool()) {
      w.csr(name, dims, v);
    } else {
      w.dense(name, dims, v);
    }
    return;
  }
  if (dtype == 2) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (int32_t& x : v) x = static_cast<int32_t>(interesting_int(fdp));
    w.dense_bytes(name, dims, dtype, v.data(), v.size() * 4);
  } else if (dtype == 3) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t& x : v) x = interesting_int(fdp);
    w.dense_bytes(name, dims, dtype, v.data(), v.size() * 8);
  } else {
    std::vector<uint8_t> v(static_cast<size_t>(n));
    for (uint8_t& x : v) x = fdp.ConsumeBool() ? 1 : 0;
    w.dense_bytes(name, dims, dtype, v.data(), v.size());
  }
}

SprWriter::Attr random_attr(FuzzedDataProvider& fdp) {
  std::string key = fdp.PickValueInArray(kAttrKeys);
  switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return SprWriter::int_attr(key, interesting_int(fdp));
    case 1:
      return SprWriter::float_attr(key, interesting_float(fdp));
    case 2:
      return SprWriter::str_attr(key, fdp.PickValueInArray(kStrings));
    default: {
      std::vector<int64_t> v(fdp.ConsumeIntegralInRange<size_t>(0, 9));
      for (int64_t& x : v) x = interesting_int(fdp);
      return SprWriter::ints_attr(key, v);
    }
  }
}

std::vector<uint8_t> build_graph(FuzzedDataProvider& fdp, const std::vector<std::string>& ops) {
  SprWriter w;
  std::vector<std::string> names;
  const int n_inputs = fdp.ConsumeIntegralInRange<int>(1, 3);
  for (int i = 0; i < n_inputs; ++i) {
    const std::string name = "in" + std::to_string(i);
    // mostly float32 inputs, so most graphs get past the first op's dtype check
    const uint32_t dtype = fdp.ConsumeIntegralInRange<int>(0, 3) ? 1 : fdp.ConsumeIntegralInRange<uint32_t>(2, 4);
    w.input(name, random_dims(fdp, true), dtype);
    names.push_back(name);
  }
  int constants = 0;
  const int n_nodes = fdp.ConsumeIntegralInRange<int>(1, 6);
  std::vector<std::string> outputs;
  for (int k = 0; k < n_nodes; ++k) {
    const std::string op = ops[fdp.ConsumeIntegralInRange<size_t>(0, ops.size() - 1)];
    std::vector<std::string> ins;
    const int n_in = fdp.ConsumeIntegralInRange<int>(1, 4);
    for (int i = 0; i < n_in; ++i) {
      const int pick = fdp.ConsumeIntegralInRange<int>(0, 9);
      if (pick < 6) {
        ins.push_back(names[fdp.ConsumeIntegralInRange<size_t>(0, names.size() - 1)]);
      } else if (pick < 9) {
        const std::string c = "c" + std::to_string(constants++);
        add_constant(fdp, w, c);
        ins.push_back(c);
      } else {
        ins.emplace_back();  // an absent optional input
      }
    }
    if (ins[0].empty()) ins[0] = names.back();
    std::vector<SprWriter::Attr> attrs;
    const int n_attrs = fdp.ConsumeIntegralInRange<int>(0, 5);
    for (int i = 0; i < n_attrs; ++i) {
      SprWriter::Attr a = random_attr(fdp);
      bool dup = false;
      for (const auto& b : attrs) dup |= b.key == a.key;
      if (!dup) attrs.push_back(a);
    }
    std::vector<std::string> outs;
    const int n_out = fdp.ConsumeIntegralInRange<int>(1, 3);
    for (int i = 0; i < n_out; ++i) outs.push_back("t" + std::to_string(k) + "_" + std::to_string(i));
    w.node("n" + std::to_string(k), op, ins, outs, attrs);
    for (const auto& o : outs) names.push_back(o);
    outputs.push_back(outs[0]);
  }
  w.output(outputs.back());
  if (outputs.size() > 1 && fdp.ConsumeBool()) w.output(outputs[fdp.ConsumeIntegralInRange<size_t>(0, outputs.size() - 2)]);
  return w.bytes();
}

void fill(sparsert::Tensor& t, FuzzedDataProvider& fdp) {
  uint32_t seed = fdp.ConsumeIntegral<uint32_t>();
  fuzz_common::fill_input(t, seed, 250.0f);
}

void load_and_run(FuzzedDataProvider& fdp) {
  static const std::vector<std::string> ops = sparsert::supported_ops();
  const std::vector<uint8_t> file = build_graph(fdp, ops);
  sparsert::LoadOptions options;
  options.threads = fdp.ConsumeBool() ? 1 : 2;  // both the serial and the pooled paths
  options.tune = fdp.ConsumeIntegralInRange<int>(0, 15) == 0;
  sparsert::Model model = sparsert::Model::load_from_buffer(file.data(), file.size(), options);

  std::vector<std::vector<int64_t>> shapes;
  for (const auto& spec : model.inputs()) {
    std::vector<int64_t> shape = spec.shape;
    int64_t n = 1;
    for (auto& d : shape) {
      if (d < 0) d = fdp.ConsumeIntegralInRange<int64_t>(0, 3);
      if (d != 0 && n > kMaxInputElements / d) return;
      n *= d;
    }
    shapes.push_back(shape);
  }
  if (!fuzz_common::small_enough(model.summary(shapes))) return;
  std::vector<sparsert::Tensor> inputs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    inputs.emplace_back(shapes[i], model.inputs()[i].dtype);
    fill(inputs.back(), fdp);
  }
  fuzz_common::check_outputs(model, model.run(inputs));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  fuzz_common::under_contract([&] { load_and_run(fdp); });
  return 0;
}
