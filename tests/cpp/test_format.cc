// The .spr reader: valid files built byte by byte, and a table of broken
// files that must each be refused with ErrorCode::kFormat and a message naming
// the problem. The cases and messages are those of tests/spr_corruptions.py
// (the Python table); SprBuilder here encodes the same base model as its raw
// builder, byte for byte (checked by size and CRC below).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "format/spr_format.h"

namespace sparsert {
namespace format {
namespace {

using Bytes = std::vector<uint8_t>;

// --- a test-only byte builder -------------------------------------------------

void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_f64(Bytes& b, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_u64(b, bits);
}
void put_f32(Bytes& b, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_u32(b, bits);
}
void put_str(Bytes& b, const std::string& s) {
  put_u32(b, static_cast<uint32_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}
void append(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }

Bytes v_int(int64_t v) {
  Bytes b;
  put_u32(b, 1);
  put_u64(b, static_cast<uint64_t>(v));
  return b;
}
Bytes v_float(double v) {
  Bytes b;
  put_u32(b, 2);
  put_f64(b, v);
  return b;
}
Bytes v_str(const std::string& s) {
  Bytes b;
  put_u32(b, 3);
  put_str(b, s);
  return b;
}
Bytes v_ints(const std::vector<int64_t>& vs, std::optional<uint64_t> count = std::nullopt) {
  Bytes b;
  put_u32(b, 4);
  put_u64(b, count.value_or(vs.size()));
  for (int64_t v : vs) put_u64(b, static_cast<uint64_t>(v));
  return b;
}
Bytes v_floats(const std::vector<double>& vs) {
  Bytes b;
  put_u32(b, 5);
  put_u64(b, vs.size());
  for (double v : vs) put_f64(b, v);
  return b;
}
Bytes v_strs(const std::vector<std::string>& vs) {
  Bytes b;
  put_u32(b, 6);
  put_u64(b, vs.size());
  for (const auto& v : vs) put_str(b, v);
  return b;
}

struct InputSpec {
  std::string name;
  uint32_t dtype = 1;
  std::vector<int64_t> dims;
};

struct NodeSpec {
  std::string name, op_type;
  std::vector<std::string> inputs, outputs;
  std::vector<std::pair<std::string, Bytes>> attrs;
  std::optional<uint32_t> n_inputs;
};

struct TensorSpec {
  std::string name;
  uint32_t dtype = 1;
  std::vector<uint64_t> dims;
  uint32_t storage = 0;
  Bytes data;  // dense
  uint32_t index_bits = 16;
  std::vector<uint32_t> row_ptr, col_idx;
  std::vector<float> values;
  std::optional<uint64_t> offset, nbytes, nnz, row_ptr_offset, col_idx_offset, values_offset;
};

struct FileSpec {
  std::vector<std::pair<std::string, Bytes>> metadata;
  std::vector<InputSpec> inputs;
  std::vector<std::string> outputs;
  std::vector<NodeSpec> nodes;
  std::vector<TensorSpec> tensors;
  std::optional<uint64_t> n_tensors;
  Bytes body_extra;
  size_t body_cut = 0;

  TensorSpec& tensor(const std::string& name) {
    for (auto& t : tensors) {
      if (t.name == name) return t;
    }
    throw std::runtime_error("no tensor " + name);
  }
  NodeSpec& node(const std::string& name) {
    for (auto& n : nodes) {
      if (n.name == name) return n;
    }
    throw std::runtime_error("no node " + name);
  }
};

constexpr uint64_t kAlign = 64;
uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

Bytes f32_bytes(const std::vector<float>& vs) {
  Bytes b;
  for (float v : vs) put_f32(b, v);
  return b;
}

// The base model of tests/spr_corruptions.py: two Linear layers with CSR
// weights (16- and 32-bit indices), a dense bias and an int64 constant.
FileSpec base_spec() {
  FileSpec s;
  s.metadata = {{"sparsert.producer", v_str("tests")},
                {"ints", v_ints({1, -2, 3})},
                {"floats", v_floats({0.5, -1.25})},
                {"strings", v_strs({"a", "bc"})},
                {"pi", v_float(3.25)},
                {"n", v_int(-7)}};
  s.inputs = {{"x", 1, {-1, 4}}};
  s.outputs = {"y"};
  s.nodes = {{"fc1", "Linear", {"x", "w1", "b1"}, {"h"}, {{"activation", v_str("relu")}}, {}},
             {"fc2", "Linear", {"h", "w2", ""}, {"y"}, {}, {}}};
  TensorSpec w1;
  w1.name = "w1";
  w1.dims = {3, 4};
  w1.storage = 1;
  w1.index_bits = 16;
  w1.row_ptr = {0, 2, 2, 3};
  w1.col_idx = {0, 3, 1};
  w1.values = {1.0f, 2.0f, 3.0f};
  TensorSpec b1;
  b1.name = "b1";
  b1.dims = {3};
  b1.data = f32_bytes({0.5f, -0.5f, 1.5f});
  TensorSpec w2 = w1;
  w2.name = "w2";
  w2.dims = {2, 3};
  w2.index_bits = 32;
  w2.row_ptr = {0, 1, 3};
  w2.col_idx = {2, 0, 1};
  w2.values = {4.0f, -5.0f, 6.0f};
  TensorSpec shape;
  shape.name = "shape";
  shape.dtype = 3;
  shape.dims = {2};
  put_u64(shape.data, static_cast<uint64_t>(-1));
  put_u64(shape.data, 3);
  s.tensors = {w1, b1, w2, shape};
  return s;
}

void set_u32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void set_u64(Bytes& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const Bytes& b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

// Recomputes both CRCs from the header's sizes.
Bytes fix_crcs(Bytes b) {
  const uint64_t body_size = get_u64(b, 16), data_offset = get_u64(b, 24);
  set_u32(b, 40, crc32(b.data() + 48, body_size));
  set_u32(b, 44, crc32(b.data() + data_offset, b.size() - data_offset));
  return b;
}

Bytes build(const FileSpec& s) {
  Bytes data;
  auto place = [&](const Bytes& raw) {
    const uint64_t offset = data.size();
    append(data, raw);
    data.resize(align_up(data.size()), 0);
    return offset;
  };
  Bytes body;
  put_u64(body, s.metadata.size());
  for (const auto& kv : s.metadata) {
    put_str(body, kv.first);
    append(body, kv.second);
  }
  put_u64(body, s.inputs.size());
  for (const auto& in : s.inputs) {
    put_str(body, in.name);
    put_u32(body, in.dtype);
    put_u32(body, static_cast<uint32_t>(in.dims.size()));
    for (int64_t d : in.dims) put_u64(body, static_cast<uint64_t>(d));
  }
  put_u64(body, s.outputs.size());
  for (const auto& o : s.outputs) put_str(body, o);
  put_u64(body, s.nodes.size());
  for (const auto& n : s.nodes) {
    put_str(body, n.name);
    put_str(body, n.op_type);
    put_u32(body, n.n_inputs.value_or(static_cast<uint32_t>(n.inputs.size())));
    for (const auto& i : n.inputs) put_str(body, i);
    put_u32(body, static_cast<uint32_t>(n.outputs.size()));
    for (const auto& o : n.outputs) put_str(body, o);
    put_u32(body, static_cast<uint32_t>(n.attrs.size()));
    for (const auto& kv : n.attrs) {
      put_str(body, kv.first);
      append(body, kv.second);
    }
  }
  put_u64(body, s.n_tensors.value_or(s.tensors.size()));
  for (const auto& t : s.tensors) {
    put_str(body, t.name);
    put_u32(body, t.dtype);
    put_u32(body, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put_u64(body, d);
    put_u32(body, t.storage);
    if (t.storage == 0) {
      const uint64_t offset = place(t.data);
      put_u64(body, t.offset.value_or(offset));
      put_u64(body, t.nbytes.value_or(t.data.size()));
    } else {
      Bytes rp, ci;
      for (uint32_t v : t.row_ptr) put_u32(rp, v);
      for (uint32_t v : t.col_idx) {
        if (t.index_bits == 16) {
          ci.push_back(static_cast<uint8_t>(v));
          ci.push_back(static_cast<uint8_t>(v >> 8));
        } else {
          put_u32(ci, v);
        }
      }
      const uint64_t rp_at = place(rp), ci_at = place(ci), va_at = place(f32_bytes(t.values));
      put_u64(body, t.nnz.value_or(t.values.size()));
      put_u32(body, t.index_bits);
      put_u64(body, t.row_ptr_offset.value_or(rp_at));
      put_u64(body, t.col_idx_offset.value_or(ci_at));
      put_u64(body, t.values_offset.value_or(va_at));
    }
  }
  append(body, s.body_extra);
  body.resize(body.size() - s.body_cut);
  const uint64_t data_offset = align_up(48 + body.size());
  Bytes file(48, 0);
  std::memcpy(file.data(), "SPRT", 4);
  set_u32(file, 4, 1);
  set_u32(file, 8, kAlign);
  set_u64(file, 16, body.size());
  set_u64(file, 24, data_offset);
  set_u64(file, 32, data.size());
  append(file, body);
  file.resize(data_offset, 0);
  append(file, data);
  return fix_crcs(file);
}

Bytes valid_bytes() { return build(base_spec()); }

ModelFile read(const Bytes& b, bool verify = true) {
  return read_buffer(b.data(), b.size(), verify);
}

// --- valid files ---------------------------------------------------------------

TEST(FormatCrc32, MatchesZlib) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);  // the standard check value
  EXPECT_EQ(crc32("", 0), 0u);
  std::string text = "The quick brown fox jumps over the lazy dog, slice by eight";
  const uint32_t whole = crc32(text.data(), text.size());
  for (size_t split = 0; split <= text.size(); ++split) {
    EXPECT_EQ(crc32(text.data() + split, text.size() - split, crc32(text.data(), split)), whole);
  }
}

TEST(FormatReader, BuilderMatchesPythonRawBuilder) {
  // Size and CRC of tests/spr_corruptions.py valid_bytes(): both builders
  // encode the same model byte for byte, so the two tables test the same file.
  const Bytes b = valid_bytes();
  EXPECT_EQ(b.size(), 1216u);
  EXPECT_EQ(crc32(b.data(), b.size()), 0x107485f8u);
}

TEST(FormatReader, ReadsValidFile) {
  const Bytes b = valid_bytes();
  const ModelFile m = read(b);
  EXPECT_EQ(m.version, 1u);
  EXPECT_EQ(m.alignment, 64u);
  ASSERT_EQ(m.metadata.size(), 6u);
  EXPECT_EQ(m.metadata[0].first, "sparsert.producer");
  EXPECT_EQ(m.metadata[0].second.s, "tests");
  EXPECT_EQ(m.metadata[1].second.type, ValueType::kInts);
  EXPECT_EQ(m.metadata[1].second.ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(m.metadata[1].second.to_string(), "[1, -2, 3]");
  EXPECT_EQ(m.metadata[2].second.to_string(), "[0.5, -1.25]");
  EXPECT_EQ(m.metadata[3].second.to_string(), "[\"a\", \"bc\"]");
  EXPECT_EQ(m.metadata[4].second.to_string(), "3.25");
  EXPECT_EQ(m.metadata[5].second.i, -7);

  ASSERT_EQ(m.inputs.size(), 1u);
  EXPECT_EQ(m.inputs[0].name, "x");
  EXPECT_EQ(m.inputs[0].dims, (std::vector<int64_t>{-1, 4}));
  EXPECT_EQ(m.outputs, (std::vector<std::string>{"y"}));
  ASSERT_EQ(m.nodes.size(), 2u);
  EXPECT_EQ(m.nodes[0].op_type, "Linear");
  EXPECT_EQ(m.nodes[1].inputs, (std::vector<std::string>{"h", "w2", ""}));
  ASSERT_NE(m.nodes[0].attr("activation"), nullptr);
  EXPECT_EQ(m.nodes[0].attr("activation")->s, "relu");
  EXPECT_EQ(m.nodes[0].attr("missing"), nullptr);

  ASSERT_EQ(m.tensors.size(), 4u);
  const TensorInfo* w1 = m.find_tensor("w1");
  ASSERT_NE(w1, nullptr);
  EXPECT_EQ(w1->storage, Storage::kCsr);
  EXPECT_EQ(w1->rows, 3);
  EXPECT_EQ(w1->cols, 4);
  EXPECT_EQ(w1->nnz, 3u);
  EXPECT_EQ(w1->index_bits, 16u);
  EXPECT_EQ(w1->row_ptr[3], 3u);
  EXPECT_EQ(w1->col_idx16[1], 3);
  EXPECT_EQ(w1->values[2], 3.0f);
  EXPECT_EQ(w1->stored_bytes(), 4u * 4 + 3 * 2 + 3 * 4);
  const TensorInfo* w2 = m.find_tensor("w2");
  ASSERT_NE(w2, nullptr);
  EXPECT_EQ(w2->index_bits, 32u);
  EXPECT_EQ(w2->col_idx32[0], 2u);
  EXPECT_EQ(w2->values[1], -5.0f);
  const TensorInfo* b1 = m.find_tensor("b1");
  ASSERT_NE(b1, nullptr);
  EXPECT_EQ(b1->storage, Storage::kDense);
  EXPECT_EQ(b1->nbytes, 12u);
  EXPECT_EQ(static_cast<const float*>(b1->data)[1], -0.5f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b1->data) % 64, 0u);  // aligned in memory
  const TensorInfo* shape = m.find_tensor("shape");
  ASSERT_NE(shape, nullptr);
  EXPECT_EQ(shape->dtype, DType::kInt64);
  EXPECT_EQ(static_cast<const int64_t*>(shape->data)[0], -1);
  EXPECT_EQ(m.find_tensor("x"), nullptr);
  EXPECT_STREQ(dtype_name(shape->dtype), "int64");
  EXPECT_EQ(dtype_size(DType::kInt64), 8u);
  EXPECT_EQ(dtype_size(DType::kFloat32), 4u);
}

TEST(FormatReader, UnknownOpTypesAndEmptyRowsAreStructurallyValid) {
  FileSpec s = base_spec();
  s.node("fc2").op_type = "NoSuchOp";
  auto& w1 = s.tensor("w1");
  w1.row_ptr = {0, 0, 0, 0};  // 100% sparse: every row empty
  w1.col_idx.clear();
  w1.values.clear();
  const ModelFile m = read(build(s));
  EXPECT_EQ(m.nodes[1].op_type, "NoSuchOp");
  EXPECT_EQ(m.find_tensor("w1")->nnz, 0u);
}

TEST(FormatReader, ZeroSizeTensors) {
  FileSpec s = base_spec();
  TensorSpec empty_dense;
  empty_dense.name = "empty";
  empty_dense.dims = {0, 5};
  TensorSpec empty_csr = s.tensor("w1");
  empty_csr.name = "empty_csr";
  empty_csr.dims = {0, 7};
  empty_csr.row_ptr = {0};
  empty_csr.col_idx.clear();
  empty_csr.values.clear();
  s.tensors.push_back(empty_dense);
  s.tensors.push_back(empty_csr);
  const ModelFile m = read(build(s));
  EXPECT_EQ(m.find_tensor("empty")->elements, 0);
  EXPECT_EQ(m.find_tensor("empty_csr")->rows, 0);
  EXPECT_EQ(m.find_tensor("empty_csr")->cols, 7);
}

TEST(FormatReader, ReadFileMapsAndReportsIoErrors) {
  char path[] = "/tmp/sparsert_test_format_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const Bytes b = valid_bytes();
  ASSERT_EQ(::write(fd, b.data(), b.size()), static_cast<ssize_t>(b.size()));
  ::close(fd);
  {
    const ModelFile m = read_file(path);
    EXPECT_EQ(m.tensors.size(), 4u);
    EXPECT_EQ(m.find_tensor("w2")->values[2], 6.0f);
  }
  ::unlink(path);

  try {
    read_file("/nonexistent/dir/model.spr");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIO);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.spr"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(std::strerror(ENOENT)), std::string::npos);
  }
  try {
    read_file("/tmp");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIO);
  }
}

// --- the corrupt-file table -----------------------------------------------------

using Corrupt = std::function<Bytes(Bytes)>;

Corrupt edit(std::function<void(FileSpec&)> change) {
  return [change](Bytes) {
    FileSpec s = base_spec();
    change(s);
    return build(s);
  };
}

Corrupt header_u32(size_t at, uint32_t v) {
  return [at, v](Bytes b) {
    set_u32(b, at, v);
    return b;
  };
}

Corrupt header_u64(size_t at, uint64_t v) {
  return [at, v](Bytes b) {
    set_u64(b, at, v);
    return b;
  };
}

struct Case {
  const char* name;
  Corrupt corrupt;
  std::string expected;
};

std::vector<Case> corruptions() {
  const uint64_t kU64Max = ~0ull;
  return {
      // header
      {"empty_file", [](Bytes) { return Bytes{}; }, "file too small: 0 bytes"},
      {"header_only_47", [](Bytes b) { return Bytes(b.begin(), b.begin() + 47); },
       "file too small: 47 bytes"},
      {"bad_magic",
       [](Bytes b) {
         std::memcpy(b.data(), "GGUF", 4);
         return b;
       },
       "bad magic"},
      {"version_3", header_u32(4, 3), "unsupported version 3"},
      {"version_0", header_u32(4, 0), "unsupported version 0"},
      {"alignment_3", header_u32(8, 3), "header alignment 3 is not a power of two"},
      {"alignment_4", header_u32(8, 4), "header alignment 4 is not a power of two"},
      {"alignment_0", header_u32(8, 0), "header alignment 0 is not a power of two"},
      {"alignment_2_17", header_u32(8, 1u << 17), "header alignment 131072"},
      {"flags_nonzero", header_u32(12, 1), "header flags 1 must be 0"},
      {"truncated_data",
       [](Bytes b) {
         b.pop_back();
         return b;
       },
       "file is truncated"},
      {"truncated_in_body",
       [](Bytes b) {
         b.resize(100);
         return b;
       },
       "file is truncated"},
      {"trailing_garbage",
       [](Bytes b) {
         b.push_back(0);
         return b;
       },
       "!= file size"},
      {"data_offset_past_end",
       [](Bytes b) {
         set_u64(b, 24, b.size() + 64);
         return b;
       },
       "file is truncated"},
      {"data_size_overflow", header_u64(32, kU64Max), "!= file size"},
      {"body_size_past_data", header_u64(16, kU64Max - 7),
       "header body_size 18446744073709551608 does not fit before data_offset"},
      {"data_offset_unaligned", header_u32(8, 65536), "is not a multiple of alignment 65536"},
      {"nonzero_body_padding",
       [](Bytes b) {
         b[48 + get_u64(b, 16)] = 1;
         return b;
       },
       "between body and data"},
      {"nonzero_data_padding",
       [](Bytes b) {
         b.back() = 1;
         return fix_crcs(b);
       },
       "nonzero padding byte at data offset"},
      {"body_crc_mismatch",
       [](Bytes b) {
         b[60] = 'X';
         return b;
       },
       "body checksum mismatch"},
      {"data_crc_mismatch",
       [](Bytes b) {
         // b1's first float (0.5 -> 0.75): still a valid value, but the stored CRC is stale.
         const Bytes needle = f32_bytes({0.5f, -0.5f, 1.5f});
         auto it = std::search(b.begin() + get_u64(b, 24), b.end(), needle.begin(), needle.end());
         const Bytes v = f32_bytes({0.75f});
         std::copy(v.begin(), v.end(), it);
         return b;
       },
       "data checksum mismatch"},
      // counts and strings
      {"huge_metadata_count",
       [](Bytes b) {
         set_u64(b, 48, 1ull << 62);
         return fix_crcs(b);
       },
       "metadata count 4611686018427387904 exceeds what the remaining"},
      {"huge_tensor_count", edit([](FileSpec& s) { s.n_tensors = 1ull << 40; }),
       "tensor count 1099511627776 exceeds"},
      {"huge_ints_count", edit([](FileSpec& s) { s.metadata[1].second = v_ints({1}, 1ull << 60); }),
       "metadata 'ints': INTS count 1152921504606846976 exceeds"},
      {"huge_node_input_count", edit([](FileSpec& s) { s.node("fc1").n_inputs = 1u << 31; }),
       "node 'fc1': input count 2147483648 exceeds"},
      {"string_too_long",
       [](Bytes b) {
         set_u32(b, 56, 70000);
         return fix_crcs(b);
       },
       "metadata #0: key string length 70000 exceeds the limit 65536"},
      {"string_past_body", edit([](FileSpec& s) {
         put_u32(s.body_extra, 100);
         s.n_tensors = 5;
       }),
       "tensor #4: body ends before name"},
      {"invalid_utf8", edit([](FileSpec& s) { s.metadata[0].first = "\xff\xfe"; }),
       "metadata #0: key is not valid UTF-8"},
      {"unknown_value_type", edit([](FileSpec& s) {
         Bytes v;
         put_u32(v, 9);
         put_u64(v, 0);
         s.metadata[5].second = v;
       }),
       "metadata 'n': unknown value type 9"},
      {"duplicate_metadata_key", edit([](FileSpec& s) {
         s.metadata.push_back({"ints", v_int(1)});
       }),
       "duplicate metadata key 'ints'"},
      {"body_trailing_bytes", edit([](FileSpec& s) { s.body_extra.assign(8, 0); }),
       "body has 8 trailing bytes"},
      {"body_cut_short", edit([](FileSpec& s) { s.body_cut = 8; }),
       "tensor 'shape': body ends before nbytes"},
      // graph inputs
      {"input_empty_name", edit([](FileSpec& s) { s.inputs[0].name = ""; }),
       "graph input #0 has an empty name"},
      {"input_unknown_dtype", edit([](FileSpec& s) { s.inputs[0].dtype = 7; }),
       "graph input 'x': unknown dtype 7"},
      {"input_rank_9", edit([](FileSpec& s) { s.inputs[0].dims.assign(9, 1); }),
       "graph input 'x': rank 9 exceeds 8"},
      {"input_dim_0", edit([](FileSpec& s) {
         s.inputs[0].dims = {-1, 0};
       }),
       "graph input 'x': dim 1 is 0"},
      {"input_dim_minus_2", edit([](FileSpec& s) {
         s.inputs[0].dims = {-2, 4};
       }),
       "graph input 'x': dim 0 is -2"},
      // tensors
      {"tensor_empty_name", edit([](FileSpec& s) { s.tensor("b1").name = ""; }),
       "tensor #1 has an empty name"},
      {"tensor_unknown_dtype", edit([](FileSpec& s) { s.tensor("b1").dtype = 9; }),
       "tensor 'b1': unknown dtype 9"},
      {"tensor_rank_0", edit([](FileSpec& s) { s.tensor("b1").dims.clear(); }),
       "tensor 'b1': rank 0 must be in [1, 8]"},
      {"tensor_rank_9", edit([](FileSpec& s) { s.tensor("b1").dims.assign(9, 1); }),
       "tensor 'b1': rank 9 must be in [1, 8]"},
      {"tensor_dim_too_large", edit([](FileSpec& s) { s.tensor("b1").dims = {1ull << 63}; }),
       "tensor 'b1': dim 0 is 9223372036854775808, too large"},
      {"dims_overflow_u64", edit([](FileSpec& s) {
         s.tensor("b1").dims = {1ull << 32, 1ull << 32, 3};
       }),
       "tensor 'b1': product of dims overflows"},
      {"dims_overflow_i64", edit([](FileSpec& s) {
         s.tensor("b1").dims = {1ull << 62, 2};
       }),
       "tensor 'b1': product of dims overflows"},
      {"csr_cols_overflow", edit([](FileSpec& s) {
         s.tensor("w1").dims = {0, 1ull << 32, 1ull << 32};
       }),
       "tensor 'w1': product of dims overflows"},
      {"unknown_storage", edit([](FileSpec& s) { s.tensor("b1").storage = 2; }),
       "tensor 'b1': unknown storage 2"},
      {"dense_nbytes_mismatch", edit([](FileSpec& s) { s.tensor("b1").nbytes = 8; }),
       "tensor 'b1': nbytes 8 != 3 elements x 4 bytes"},
      {"dense_nbytes_overflow", edit([](FileSpec& s) {
         s.tensor("b1").dims = {(1ull << 62) + 1};
         s.tensor("b1").nbytes = 4;
       }),
       "tensor 'b1': nbytes 4 !="},
      {"unaligned_buffer", edit([](FileSpec& s) { s.tensor("b1").offset = 196; }),
       "tensor 'b1': data offset 196 is not a multiple of alignment 64"},
      {"buffer_past_end", edit([](FileSpec& s) { s.tensor("b1").offset = 1 << 20; }),
       "tensor 'b1': data buffer (offset 1048576"},
      {"buffer_offset_overflow", edit([=](FileSpec& s) { s.tensor("b1").offset = kU64Max - 63; }),
       "extends past the data section"},
      {"csr_values_past_end", edit([](FileSpec& s) { s.tensor("w2").values_offset = 512; }),
       "tensor 'w2': values buffer (offset 512, 12 bytes) extends past the data section (512 "
       "bytes)"},
      {"csr_not_float32", edit([](FileSpec& s) { s.tensor("w1").dtype = 2; }),
       "tensor 'w1': CSR storage requires float32, got int32"},
      {"csr_index_bits_8", edit([](FileSpec& s) { s.tensor("w1").index_bits = 8; }),
       "tensor 'w1': CSR index_bits 8 must be 16 or 32"},
      {"csr_nnz_2_32", edit([](FileSpec& s) { s.tensor("w1").nnz = 1ull << 32; }),
       "tensor 'w1': CSR nnz 4294967296 does not fit in 32 bits"},
      {"csr_row_ptr_start", edit([](FileSpec& s) {
         s.tensor("w1").row_ptr = {1, 2, 2, 3};
       }),
       "tensor 'w1': CSR row_ptr[0] is 1, must be 0"},
      {"csr_row_ptr_not_monotone", edit([](FileSpec& s) {
         s.tensor("w1").row_ptr = {0, 2, 1, 3};
       }),
       "tensor 'w1': CSR row_ptr decreases at row 1 (2 then 1)"},
      {"csr_row_ptr_wrong_end", edit([](FileSpec& s) {
         s.tensor("w1").row_ptr = {0, 2, 2, 2};
       }),
       "tensor 'w1': CSR row_ptr[rows] is 2, must equal nnz 3"},
      {"csr_column_out_of_range", edit([](FileSpec& s) {
         s.tensor("w1").col_idx = {0, 4, 1};
       }),
       "tensor 'w1': CSR column index 4 out of range (cols 4) in row 0"},
      {"csr_column_out_of_range_32", edit([](FileSpec& s) {
         s.tensor("w2").col_idx = {70000, 0, 1};
       }),
       "tensor 'w2': CSR column index 70000 out of range (cols 3) in row 0"},
      {"csr_columns_unsorted", edit([](FileSpec& s) {
         s.tensor("w1").col_idx = {3, 0, 1};
       }),
       "tensor 'w1': CSR column indices not strictly increasing in row 0 (0 after 3)"},
      {"csr_columns_duplicate", edit([](FileSpec& s) {
         s.tensor("w2").col_idx = {2, 1, 1};
       }),
       "tensor 'w2': CSR column indices not strictly increasing in row 1 (1 after 1)"},
      // names and references
      {"duplicate_tensor_name", edit([](FileSpec& s) { s.tensor("b1").name = "w1"; }),
       "duplicate tensor name 'w1'"},
      {"constant_named_like_input", edit([](FileSpec& s) { s.tensor("b1").name = "x"; }),
       "duplicate tensor name 'x'"},
      {"duplicate_node_output", edit([](FileSpec& s) { s.node("fc2").outputs = {"h"}; }),
       "duplicate tensor name 'h'"},
      {"duplicate_node_name", edit([](FileSpec& s) { s.node("fc2").name = "fc1"; }),
       "duplicate node name 'fc1'"},
      {"dangling_reference", edit([](FileSpec& s) {
         s.node("fc1").inputs = {"x", "nope", "b1"};
       }),
       "node 'fc1' input 'nope' is not a graph input, constant or node output"},
      {"forward_reference", edit([](FileSpec& s) { std::swap(s.nodes[0], s.nodes[1]); }),
       "node 'fc2' input 'h' is not produced before it is used"},
      {"cycle", edit([](FileSpec& s) {
         s.node("fc1").inputs = {"h", "w1", "b1"};
       }),
       "node 'fc1' input 'h' is not produced before it is used (nodes must be in topological "
       "order"},
      {"graph_output_missing", edit([](FileSpec& s) { s.outputs = {"z"}; }),
       "graph output 'z' is not a graph input"},
      {"duplicate_attribute_key", edit([](FileSpec& s) {
         s.node("fc1").attrs = {{"activation", v_str("relu")}, {"activation", v_str("none")}};
       }),
       "node 'fc1': duplicate attribute key 'activation'"},
      {"empty_op_type", edit([](FileSpec& s) { s.node("fc1").op_type = ""; }),
       "node 'fc1': empty op_type"},
      {"empty_node_output", edit([](FileSpec& s) { s.node("fc1").outputs = {""}; }),
       "node 'fc1': output #0 has an empty name"},
  };
}

// Returns the kFormat message, or fails the test for any other outcome.
std::string refusal(const Bytes& b, bool verify) {
  try {
    read(b, verify);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
    return e.what();
  }
  return "";
}

class CorruptFile : public ::testing::TestWithParam<Case> {};

TEST_P(CorruptFile, IsRefusedWithANamedProblem) {
  const Case& c = GetParam();
  const Bytes valid = valid_bytes();
  const Bytes bad = c.corrupt(valid);
  ASSERT_NE(bad, valid);
  const std::string message = refusal(bad, true);
  ASSERT_FALSE(message.empty()) << c.name << " was accepted";
  EXPECT_NE(message.find(c.expected), std::string::npos)
      << c.name << ": got \"" << message << "\", expected to contain \"" << c.expected << "\"";
  if (std::string(c.name) == "data_crc_mismatch") {
    EXPECT_NO_THROW(read(bad, false));  // only the data checksum notices this one
    EXPECT_EQ(read(bad, false).find_tensor("b1")->data != nullptr, true);
  } else {
    EXPECT_FALSE(refusal(bad, false).empty()) << c.name << " accepted with verify=false";
  }
}

INSTANTIATE_TEST_SUITE_P(Table, CorruptFile, ::testing::ValuesIn(corruptions()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(FormatReader, CorruptionNamesAreUnique) {
  std::vector<std::string> names;
  for (const Case& c : corruptions()) names.push_back(c.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
  EXPECT_GE(names.size(), 70u);
}

TEST(FormatReader, EveryTruncationIsRefused) {
  const Bytes valid = valid_bytes();
  for (size_t n = 0; n < valid.size(); ++n) {
    // An exact-size heap copy, so AddressSanitizer sees any read past the end.
    const Bytes prefix(valid.begin(), valid.begin() + n);
    EXPECT_FALSE(refusal(prefix, true).empty()) << "prefix of " << n << " bytes accepted";
  }
}

TEST(FormatReader, EveryByteFlipIsRefusedOrValid) {
  // Each byte inverted; past the header the CRCs are recomputed so the body
  // and tensor checks see the damage. The reader must refuse (kFormat) or
  // accept a structurally valid file — never crash or read out of bounds.
  const Bytes valid = valid_bytes();
  size_t refused = 0;
  for (size_t i = 0; i < valid.size(); ++i) {
    Bytes bad = valid;
    bad[i] ^= 0xFF;
    if (i >= 48) bad = fix_crcs(bad);
    try {
      const ModelFile m = read(bad);
      for (const TensorInfo& t : m.tensors) EXPECT_LE(t.stored_bytes(), bad.size());
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, valid.size() / 2);
}

}  // namespace
}  // namespace format
}  // namespace sparsert
