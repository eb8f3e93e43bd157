// The .spr reader: parses and validates a whole file before anything uses it.
// docs/spr-format.md is the normative spec; this reader and sparsert/format.py
// implement it field for field.
//
//  offset 0                       48            data_offset (aligned)
//  +------------------------------+-------------+-----+-------------------------------+
//  | header: "SPRT" version align | body:       | pad | data: tensor buffers, each    |
//  | flags body_size data_offset  |  metadata   |     | aligned to `alignment`        |
//  | data_size body_crc data_crc  |  graph      |     |                               |
//  |                              |  tensors    |     |                               |
//  +------------------------------+-------------+-----+-------------------------------+
//
// Every failure throws sparsert::Error(ErrorCode::kFormat, "<what>: <where>").
// Pointers in TensorInfo point into the file's bytes, which ModelFile::owner
// keeps alive (a read-only mmap or an aligned copy of a caller's buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sparsert/sparsert.h"

namespace sparsert {
namespace format {

constexpr char kMagic[4] = {'S', 'P', 'R', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 48;
constexpr uint32_t kMaxStringLength = 65536;
constexpr uint32_t kMaxRank = 8;

enum class ValueType : uint32_t { kInt = 1, kFloat = 2, kString = 3, kInts = 4, kFloats = 5, kStrings = 6 };

struct Value {
  ValueType type = ValueType::kInt;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  std::string to_string() const;  // for messages and metadata display
};

enum class Storage : uint32_t { kDense = 0, kCsr = 1 };

struct TensorInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
  Storage storage = Storage::kDense;
  int64_t elements = 0;  // product of dims (validated not to overflow)

  // kDense
  const void* data = nullptr;
  uint64_t nbytes = 0;

  // kCsr (float32 only): rows = dims[0], cols = product(dims[1..])
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t nnz = 0;
  uint32_t index_bits = 0;  // 16 or 32
  const uint32_t* row_ptr = nullptr;  // rows + 1
  const uint16_t* col_idx16 = nullptr;  // when index_bits == 16
  const uint32_t* col_idx32 = nullptr;  // when index_bits == 32
  const float* values = nullptr;

  uint64_t stored_bytes() const;  // bytes this tensor occupies in the data section
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;  // -1 = given at run time
};

struct Node {
  std::string name;
  std::string op_type;
  std::vector<std::string> inputs;   // "" = absent optional input
  std::vector<std::string> outputs;
  std::vector<std::pair<std::string, Value>> attrs;  // keys unique, file order

  const Value* attr(const std::string& key) const;
};

struct ModelFile {
  uint32_t version = 0;
  uint32_t alignment = 0;
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<ValueInfo> inputs;
  std::vector<std::string> outputs;
  std::vector<Node> nodes;
  std::vector<TensorInfo> tensors;
  std::shared_ptr<const void> owner;  // keeps the bytes behind the pointers alive

  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr if not a constant
};

// Parses and validates; throws Error(kFormat) naming the problem, or
// Error(kIO) when the file cannot be opened or mapped.
ModelFile read_file(const std::string& path, bool verify_data_checksum = true);
// Copies `size` bytes into an aligned buffer owned by the result.
ModelFile read_buffer(const void* data, size_t size, bool verify_data_checksum = true);

// Bytes of one element of `dtype` (4 or 8); 0 for a value outside the enum.
size_t dtype_size(DType dtype);

// CRC-32 (ISO-HDLC, as zlib.crc32). `crc` is the running value (start with 0).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace format
}  // namespace sparsert
