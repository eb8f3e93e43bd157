// A small .spr writer for the runtime tests (test_concurrency.cc,
// test_model_load.cc): enough of docs/spr-format.md to build real models in
// C++ without Python — graph inputs, nodes with INT/FLOAT/STRING/INTS
// attributes, dense constants of every dtype and CSR (16-bit index) float32
// constants. fuzz/fuzz_graph.cc builds its random graphs with it too.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "format/spr_format.h"

namespace sparsert {
namespace testing {

class SprWriter {
 public:
  using Bytes = std::vector<uint8_t>;
  // version 1 files have no dim names and use the version 1 op names.
  explicit SprWriter(uint32_t version = format::kVersion) : version_(version) {}
  struct Attr {
    std::string key;
    uint32_t type;  // 1 INT, 2 FLOAT, 3 STRING, 4 INTS
    int64_t i = 0;
    double f = 0;
    std::string s;
    std::vector<int64_t> ints;
  };
  static Attr int_attr(std::string key, int64_t v) { return {std::move(key), 1, v, 0, {}, {}}; }
  static Attr float_attr(std::string key, double v) { return {std::move(key), 2, 0, v, {}, {}}; }
  static Attr str_attr(std::string key, std::string v) { return {std::move(key), 3, 0, 0, std::move(v), {}}; }
  static Attr ints_attr(std::string key, std::vector<int64_t> v) {
    return {std::move(key), 4, 0, 0, {}, std::move(v)};
  }

  // dtype: the file's code (1 float32, 2 int32, 3 int64, 4 bool).
  void input(const std::string& name, const std::vector<int64_t>& dims, uint32_t dtype = 1) {
    put_str(inputs_, name);
    put_u32(inputs_, dtype);
    put_u32(inputs_, static_cast<uint32_t>(dims.size()));
    for (int64_t d : dims) put_u64(inputs_, static_cast<uint64_t>(d));
    if (version_ >= 2)
      for (size_t i = 0; i < dims.size(); ++i) put_str(inputs_, dims[i] < 0 ? "n" : "");
    ++n_inputs_;
  }
  void output(const std::string& name) {
    put_str(outputs_, name);
    ++n_outputs_;
  }
  void node(const std::string& name, const std::string& op, const std::vector<std::string>& ins,
            const std::vector<std::string>& outs, const std::vector<Attr>& attrs = {}) {
    put_str(nodes_, name);
    put_str(nodes_, op);
    put_u32(nodes_, static_cast<uint32_t>(ins.size()));
    for (const auto& s : ins) put_str(nodes_, s);
    put_u32(nodes_, static_cast<uint32_t>(outs.size()));
    for (const auto& s : outs) put_str(nodes_, s);
    put_u32(nodes_, static_cast<uint32_t>(attrs.size()));
    for (const Attr& a : attrs) {
      put_str(nodes_, a.key);
      put_u32(nodes_, a.type);
      if (a.type == 1) put_u64(nodes_, static_cast<uint64_t>(a.i));
      if (a.type == 2) put_f64(nodes_, a.f);
      if (a.type == 3) put_str(nodes_, a.s);
      if (a.type == 4) {
        put_u64(nodes_, a.ints.size());
        for (int64_t v : a.ints) put_u64(nodes_, static_cast<uint64_t>(v));
      }
    }
    ++n_nodes_;
  }
  void dense(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    dense_bytes(name, dims, 1, v.data(), v.size() * 4);
  }
  // A dense constant of any dtype code from its raw little-endian bytes.
  void dense_bytes(const std::string& name, const std::vector<int64_t>& dims, uint32_t dtype, const void* data,
                   size_t nbytes) {
    tensor_head(name, dims, 0, dtype);
    put_u64(tensors_, place(data, nbytes));
    put_u64(tensors_, nbytes);
  }
  // CSR of a row-major [dims[0], prod(dims[1:])] matrix given densely.
  void csr(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    const int64_t rows = dims[0];
    const int64_t cols = rows == 0 ? 0 : static_cast<int64_t>(v.size()) / rows;
    std::vector<uint32_t> row_ptr{0};
    std::vector<uint16_t> col;
    std::vector<float> values;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        if (v[r * cols + c] != 0.0f) {
          col.push_back(static_cast<uint16_t>(c));
          values.push_back(v[r * cols + c]);
        }
      }
      row_ptr.push_back(static_cast<uint32_t>(values.size()));
    }
    tensor_head(name, dims, 1);
    put_u64(tensors_, values.size());
    put_u32(tensors_, 16);
    put_u64(tensors_, place(row_ptr.data(), row_ptr.size() * 4));
    put_u64(tensors_, place(col.data(), col.size() * 2));
    put_u64(tensors_, place(values.data(), values.size() * 4));
  }

  Bytes bytes() const {
    Bytes body;
    put_u64(body, 0);  // metadata count
    put_u64(body, n_inputs_);
    append(body, inputs_);
    put_u64(body, n_outputs_);
    append(body, outputs_);
    put_u64(body, n_nodes_);
    append(body, nodes_);
    put_u64(body, n_tensors_);
    append(body, tensors_);
    const uint64_t data_offset = align(format::kHeaderSize + body.size());
    Bytes file(format::kMagic, format::kMagic + 4);
    put_u32(file, version_);
    put_u32(file, kAlign);
    put_u32(file, 0);
    put_u64(file, body.size());
    put_u64(file, data_offset);
    put_u64(file, data_.size());
    put_u32(file, format::crc32(body.data(), body.size()));
    put_u32(file, format::crc32(data_.data(), data_.size()));
    append(file, body);
    file.resize(data_offset, 0);
    append(file, data_);
    return file;
  }

 private:
  static constexpr uint32_t kAlign = 64;
  static uint64_t align(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
  static void put_u32(Bytes& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  static void put_u64(Bytes& b, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  static void put_f64(Bytes& b, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    put_u64(b, bits);
  }
  static void put_str(Bytes& b, const std::string& s) {
    put_u32(b, static_cast<uint32_t>(s.size()));
    for (char c : s) b.push_back(static_cast<uint8_t>(c));
  }
  static void append(Bytes& b, const Bytes& more) {
    b.reserve(b.size() + more.size());
    for (uint8_t c : more) b.push_back(c);
  }
  void tensor_head(const std::string& name, const std::vector<int64_t>& dims, uint32_t storage,
                   uint32_t dtype = 1) {
    put_str(tensors_, name);
    put_u32(tensors_, dtype);
    put_u32(tensors_, static_cast<uint32_t>(dims.size()));
    for (int64_t d : dims) put_u64(tensors_, static_cast<uint64_t>(d));
    put_u32(tensors_, storage);
    ++n_tensors_;
  }
  uint64_t place(const void* p, size_t n) {
    data_.resize(align(data_.size()), 0);
    const uint64_t offset = data_.size();
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) data_.push_back(b[i]);
    return offset;
  }

  uint32_t version_;
  Bytes inputs_, outputs_, nodes_, tensors_, data_;
  uint64_t n_inputs_ = 0, n_outputs_ = 0, n_nodes_ = 0, n_tensors_ = 0;
};

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float zero_share = 0.0f) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_real_distribution<float> coin(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = coin(rng) < zero_share ? 0.0f : value(rng);
  return v;
}

// x [-1, 64] -> Linear (CSR 48x64, ~70% zeros, bias, relu) -> Linear (dense
// 10x48, bias) -> Softmax -> y [-1, 10].
inline std::vector<uint8_t> mlp_model(uint32_t seed) {
  std::mt19937 rng(seed);
  SprWriter w;
  w.input("x", {-1, 64});
  w.csr("w1", {48, 64}, random_floats(48 * 64, rng, 0.7f));
  w.dense("b1", {48}, random_floats(48, rng));
  w.dense("w2", {10, 48}, random_floats(10 * 48, rng));
  w.dense("b2", {10}, random_floats(10, rng));
  w.node("fc1", "Linear", {"x", "w1", "b1"}, {"h"}, {SprWriter::str_attr("activation", "relu")});
  w.node("fc2", "Linear", {"h", "w2", "b2"}, {"logits"});
  w.node("softmax", "Softmax", {"logits"}, {"y"}, {SprWriter::int_attr("axis", -1)});
  w.output("y");
  return w.bytes();
}

// x [-1, 3, 12, 12] -> Conv (CSR 8x3x3x3, pad 1, relu) -> MaxPool 2x2 ->
// Conv (dense 4x8x3x3, stride 2) -> GlobalAveragePool -> y [-1, 4, 1, 1].
// version 1 writes the same model with the version 1 op names.
inline std::vector<uint8_t> cnn_model(uint32_t seed, uint32_t version = format::kVersion) {
  std::mt19937 rng(seed);
  SprWriter w(version);
  const bool v1 = version == 1;
  w.input("x", {-1, 3, 12, 12});
  w.csr("k1", {8, 3, 3, 3}, random_floats(8 * 27, rng, 0.6f));
  w.dense("c1", {8}, random_floats(8, rng));
  w.dense("k2", {4, 8, 3, 3}, random_floats(4 * 72, rng));
  w.node("conv1", v1 ? "Conv2d" : "Conv", {"x", "k1", "c1"}, {"h1"},
         {SprWriter::ints_attr("pads", {1, 1, 1, 1}), SprWriter::str_attr("activation", "relu")});
  w.node("pool", v1 ? "MaxPool2d" : "MaxPool", {"h1"}, {"h2"},
         {SprWriter::ints_attr(v1 ? "kernel" : "kernel_shape", {2, 2})});
  w.node("conv2", v1 ? "Conv2d" : "Conv", {"h2", "k2"}, {"h3"}, {SprWriter::ints_attr("strides", {2, 2})});
  w.node("gap", "GlobalAveragePool", {"h3"}, {"y"});
  w.output("y");
  return w.bytes();
}

}  // namespace testing
}  // namespace sparsert
