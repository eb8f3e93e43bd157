// The .spr reader: parses and validates a whole file before anything uses it.
// docs/spr-format.md is the normative spec; this reader is its one
// implementation (sparsert/format.py writes files and reads them through it).
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
// keeps alive (private memory holding the file, or a read-only mapping).
//
// Version 1 files are read too: their op types and attribute names (PyTorch
// spellings such as Conv2d, ReLU, groups) are translated to the version 2
// names while reading, so nothing after the reader sees version 1.
//
// Fuzzing builds (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) skip both CRC
// checks so that mutated files reach the structural checks and the runtime.
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

using spr::ModelFile;
using spr::Node;
using spr::Storage;
using spr::TensorInfo;
using spr::Value;
using spr::ValueInfo;
using spr::ValueType;

constexpr char kMagic[4] = {'S', 'P', 'R', 'T'};
constexpr uint32_t kVersion = 2;
constexpr uint32_t kOldestVersion = 1;
constexpr size_t kHeaderSize = 48;
constexpr uint32_t kMaxStringLength = 65536;
constexpr uint32_t kMaxRank = 8;
constexpr uint32_t kMaxBlockDim = 64;  // BSR block rows / cols

inline ModelFile read_file(const std::string& path, bool verify = true, bool use_mmap = false) {
  return spr::read_spr_file(path, verify, use_mmap);
}
inline ModelFile read_buffer(const void* data, size_t size, bool verify = true) {
  return spr::read_spr_buffer(data, size, verify);
}

// CRC-32 (ISO-HDLC, as zlib.crc32). `crc` is the running value (start with 0).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

// The version 2 spelling of a version 1 op type and its attributes (in place).
void upgrade_v1_node(Node* node);

}  // namespace format
}  // namespace sparsert
