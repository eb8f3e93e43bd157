// The .spr reader. Every check of docs/spr-format.md happens here, before a
// ModelFile is returned; it is the only validating reader (sparsert/format.py
// reads through it; tests/spr_corruptions.py holds the table of broken files).
//
// Reading discipline: the body is parsed through BodyReader, which refuses to
// read past body_size; every count is bounded by the bytes left divided by the
// smallest encoding of one item *before* anything is reserved; every size sum
// is done with overflow checks. Tensor buffers are never copied again:
// TensorInfo points into the file bytes (read into 64-byte aligned private
// memory by default, or mapped with use_mmap).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "format/spr_format.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sparsert reads .spr files in place and supports little-endian hosts only"
#endif

namespace sparsert {
namespace format {
namespace {

// Smallest encodings of one item, used to bound counts (docs/spr-format.md §4).
constexpr uint64_t kMinValueBytes = 4 + 4;                  // type + empty STRING
constexpr uint64_t kMinMetadataBytes = 4 + kMinValueBytes;  // empty key + value
constexpr uint64_t kMinInputBytes = 4 + 4 + 4;              // name, dtype, rank
constexpr uint64_t kMinOutputBytes = 4;                     // name
constexpr uint64_t kMinNodeBytes = 4 + 4 + 4 + 4 + 4;       // name, op, 3 counts
constexpr uint64_t kMinStringBytes = 4;
constexpr uint64_t kMinAttrBytes = 4 + kMinValueBytes;
constexpr uint64_t kMinTensorBytes = 4 + 4 + 4 + 4 + 16;  // name dtype rank storage + dense
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 46;       // 64 TiB: sizes below never overflow
constexpr uint64_t kMaxU32 = 0xFFFFFFFFull;

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kFormat, message); }

std::string at(const std::string& where, const std::string& message) {
  return where.empty() ? message : where + ": " + message;
}

// A name quoted for a message; control characters escaped as \xNN (the
// same rule as sparsert/format.py).
std::string quote(const std::string& name) {
  std::string out = "'";
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "'";
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Strict UTF-8 (as Python's bytes.decode("utf-8")): no overlong forms, no
// surrogates, nothing above U+10FFFF.
bool valid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

class BodyReader {
 public:
  BodyReader(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}

  uint64_t remaining() const { return size_ - pos_; }

  uint32_t u32(const std::string& where, const char* field) {
    need(4, where, field);
    uint32_t v = load_u32(data_ + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t u64(const std::string& where, const char* field) {
    need(8, where, field);
    uint64_t v = load_u64(data_ + pos_);
    pos_ += 8;
    return v;
  }
  int64_t i64(const std::string& where, const char* field) {
    return static_cast<int64_t>(u64(where, field));
  }
  double f64(const std::string& where, const char* field) {
    uint64_t bits = u64(where, field);
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  std::string str(const std::string& where, const std::string& field) {
    const uint32_t length = u32(where, field.c_str());
    if (length > kMaxStringLength) {
      fail(at(where, field + " string length " + std::to_string(length) + " exceeds the limit " +
                         std::to_string(kMaxStringLength)));
    }
    need(length, where, field.c_str());
    const uint8_t* p = data_ + pos_;
    if (!valid_utf8(p, length)) fail(at(where, field + " is not valid UTF-8"));
    pos_ += length;
    return std::string(reinterpret_cast<const char*>(p), length);
  }
  // A count of items whose smallest encoding is `min_item_bytes`; refused when
  // the rest of the body could not hold that many.
  uint64_t count(uint64_t n, uint64_t min_item_bytes, const std::string& where, const char* field) {
    if (n > remaining() / min_item_bytes) {
      fail(at(where, std::string(field) + " " + std::to_string(n) + " exceeds what the remaining " +
                         std::to_string(remaining()) + " body bytes can hold"));
    }
    return n;
  }

 private:
  void need(uint64_t n, const std::string& where, const char* field) {
    if (n > remaining()) fail(at(where, std::string("body ends before ") + field));
  }

  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

Value read_value(BodyReader& r, const std::string& where) {
  Value v;
  const uint32_t type = r.u32(where, "value type");
  switch (type) {
    case static_cast<uint32_t>(ValueType::kInt):
      v.i = r.i64(where, "INT value");
      break;
    case static_cast<uint32_t>(ValueType::kFloat):
      v.f = r.f64(where, "FLOAT value");
      break;
    case static_cast<uint32_t>(ValueType::kString):
      v.s = r.str(where, "STRING value");
      break;
    case static_cast<uint32_t>(ValueType::kInts): {
      const uint64_t n = r.count(r.u64(where, "INTS count"), 8, where, "INTS count");
      v.ints.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.ints.push_back(r.i64(where, "INTS value"));
      break;
    }
    case static_cast<uint32_t>(ValueType::kFloats): {
      const uint64_t n = r.count(r.u64(where, "FLOATS count"), 8, where, "FLOATS count");
      v.floats.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.floats.push_back(r.f64(where, "FLOATS value"));
      break;
    }
    case static_cast<uint32_t>(ValueType::kStrings): {
      const uint64_t n =
          r.count(r.u64(where, "STRINGS count"), kMinStringBytes, where, "STRINGS count");
      v.strings.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.strings.push_back(r.str(where, "STRINGS value"));
      break;
    }
    default:
      fail(at(where, "unknown value type " + std::to_string(type)));
  }
  v.type = static_cast<ValueType>(type);
  return v;
}

DType read_dtype(BodyReader& r, const std::string& where, uint32_t version) {
  const uint32_t d = r.u32(where, "dtype");
  const uint32_t last = version >= 2 ? 4 : 3;  // bool is new in version 2
  if (d < 1 || d > last) fail(at(where, "unknown dtype " + std::to_string(d)));
  return static_cast<DType>(d);
}

struct Span {
  uint64_t offset;
  uint64_t size;
};

class Parser {
 public:
  Parser(const uint8_t* file, uint64_t file_size, bool verify_data)
      : file_(file), file_size_(file_size), verify_data_(verify_data) {}

  ModelFile parse() {
    ModelFile m;
    parse_header(m);
    BodyReader r(file_ + kHeaderSize, body_size_);
    parse_metadata(r, m);
    parse_graph(r, m);
    parse_tensors(r, m);
    if (r.remaining() != 0) {
      fail("body has " + std::to_string(r.remaining()) + " trailing bytes after the tensor table");
    }
    check_data_padding();
    check_names(m);
    if (m.version == 1) {
      for (Node& node : m.nodes) upgrade_v1_node(&node);
    }
    m.index_tensors();
    return m;
  }

 private:
  void parse_header(ModelFile& m) {
    if (file_size_ < kHeaderSize) {
      fail("file too small: " + std::to_string(file_size_) + " bytes, the header alone is 48");
    }
    if (std::memcmp(file_, kMagic, 4) != 0) {
      if (file_size_ >= 2 && file_[0] == 0x08 && file_[1] < 0x20) {
        fail("bad magic: this looks like an ONNX model, not a .spr file; convert it first with "
             "`sparsert convert model.onnx -o model.spr` (or sparsert.convert)");
      }
      fail("bad magic: not a .spr file (expected \"SPRT\")");
    }
    m.version = load_u32(file_ + 4);
    if (m.version < kOldestVersion || m.version > kVersion) {
      fail("unsupported version " + std::to_string(m.version) + " (this reader knows versions " +
           std::to_string(kOldestVersion) + " to " + std::to_string(kVersion) +
           "; a newer sparsert wrote this file)");
    }
    version_ = m.version;
    alignment_ = load_u32(file_ + 8);
    if (alignment_ < 8 || alignment_ > 65536 || (alignment_ & (alignment_ - 1)) != 0) {
      fail("header alignment " + std::to_string(alignment_) +
           " is not a power of two in [8, 65536]");
    }
    m.alignment = alignment_;
    const uint32_t flags = load_u32(file_ + 12);
    if (flags != 0) fail("header flags " + std::to_string(flags) + " must be 0");
    body_size_ = load_u64(file_ + 16);
    data_offset_ = load_u64(file_ + 24);
    data_size_ = load_u64(file_ + 32);
    if (data_offset_ <= kMaxFileBytes && data_size_ <= kMaxFileBytes &&
        data_offset_ + data_size_ > file_size_) {
      fail("file is truncated: the header says it holds " + std::to_string(data_offset_ + data_size_) +
           " bytes but it has " + std::to_string(file_size_) +
           " (an incomplete download or copy?); get the whole file again");
    }
    if (data_offset_ > file_size_ || data_size_ != file_size_ - data_offset_) {
      fail("header data_offset " + std::to_string(data_offset_) + " + data_size " +
           std::to_string(data_size_) + " != file size " + std::to_string(file_size_));
    }
    if (body_size_ > data_offset_ - kHeaderSize || data_offset_ < kHeaderSize) {
      fail("header body_size " + std::to_string(body_size_) + " does not fit before data_offset " +
           std::to_string(data_offset_));
    }
    if (data_offset_ % alignment_ != 0) {
      fail("header data_offset " + std::to_string(data_offset_) +
           " is not a multiple of alignment " + std::to_string(alignment_));
    }
    for (uint64_t i = kHeaderSize + body_size_; i < data_offset_; ++i) {
      if (file_[i] != 0) {
        fail("nonzero padding byte at offset " + std::to_string(i) + " between body and data");
      }
    }
#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
    // Fuzzing: mutated files must reach the structural checks, not die at the CRC.
    return;
#endif
    const uint32_t body_crc = load_u32(file_ + 40);
    const uint32_t body_actual = crc32(file_ + kHeaderSize, body_size_);
    if (body_crc != body_actual) {
      fail("body checksum mismatch: stored " + hex(body_crc) + ", computed " + hex(body_actual));
    }
    if (verify_data_) {
      const uint32_t data_crc = load_u32(file_ + 44);
      const uint32_t data_actual = crc32(file_ + data_offset_, data_size_);
      if (data_crc != data_actual) {
        fail("data checksum mismatch: stored " + hex(data_crc) + ", computed " + hex(data_actual));
      }
    }
  }

  static std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%08x", v);
    return buf;
  }

  void parse_metadata(BodyReader& r, ModelFile& m) {
    const uint64_t n =
        r.count(r.u64("", "metadata count"), kMinMetadataBytes, "", "metadata count");
    m.metadata.reserve(n);
    std::unordered_set<std::string> keys;
    for (uint64_t i = 0; i < n; ++i) {
      std::string key = r.str("metadata #" + std::to_string(i), "key");
      if (!keys.insert(key).second) fail("duplicate metadata key " + quote(key));
      Value v = read_value(r, "metadata " + quote(key));
      m.metadata.emplace_back(std::move(key), std::move(v));
    }
  }

  void parse_graph(BodyReader& r, ModelFile& m) {
    const uint64_t n_inputs =
        r.count(r.u64("", "graph input count"), kMinInputBytes, "", "graph input count");
    m.inputs.reserve(n_inputs);
    for (uint64_t i = 0; i < n_inputs; ++i) {
      const std::string label = "graph input #" + std::to_string(i);
      ValueInfo in;
      in.name = r.str(label, "name");
      if (in.name.empty()) fail(label + " has an empty name");
      const std::string where = "graph input " + quote(in.name);
      in.dtype = read_dtype(r, where, version_);
      const uint32_t rank = r.u32(where, "rank");
      if (rank > kMaxRank) fail(at(where, "rank " + std::to_string(rank) + " exceeds 8"));
      for (uint32_t j = 0; j < rank; ++j) {
        const int64_t d = r.i64(where, "dim");
        if (d < 1 && d != -1) {
          fail(at(where, "dim " + std::to_string(j) + " is " + std::to_string(d) +
                             " (must be >= 1, or -1 for a size given at run time)"));
        }
        in.dims.push_back(d);
      }
      in.dim_names.assign(rank, std::string());
      if (version_ >= 2) {
        for (uint32_t j = 0; j < rank; ++j) {
          in.dim_names[j] = r.str(where, "dim name");
          if (!in.dim_names[j].empty() && in.dims[j] != -1) {
            fail(at(where, "dim " + std::to_string(j) + " has a name but a fixed size"));
          }
        }
      }
      m.inputs.push_back(std::move(in));
    }

    const uint64_t n_outputs =
        r.count(r.u64("", "graph output count"), kMinOutputBytes, "", "graph output count");
    m.outputs.reserve(n_outputs);
    for (uint64_t i = 0; i < n_outputs; ++i) {
      m.outputs.push_back(r.str("graph output #" + std::to_string(i), "name"));
    }

    const uint64_t n_nodes = r.count(r.u64("", "node count"), kMinNodeBytes, "", "node count");
    m.nodes.reserve(n_nodes);
    for (uint64_t i = 0; i < n_nodes; ++i) {
      Node node;
      const std::string label = "node #" + std::to_string(i);
      node.name = r.str(label, "name");
      const std::string where = node.name.empty() ? label : "node " + quote(node.name);
      node.op_type = r.str(where, "op_type");
      if (node.op_type.empty()) fail(at(where, "empty op_type"));
      const uint64_t n_in =
          r.count(r.u32(where, "input count"), kMinStringBytes, where, "input count");
      node.inputs.reserve(n_in);
      for (uint64_t k = 0; k < n_in; ++k) node.inputs.push_back(r.str(where, "input name"));
      const uint64_t n_out =
          r.count(r.u32(where, "output count"), kMinStringBytes, where, "output count");
      node.outputs.reserve(n_out);
      for (uint64_t k = 0; k < n_out; ++k) {
        node.outputs.push_back(r.str(where, "output name"));
        if (node.outputs.back().empty()) {
          fail(at(where, "output #" + std::to_string(k) + " has an empty name"));
        }
      }
      const uint64_t n_attrs =
          r.count(r.u32(where, "attribute count"), kMinAttrBytes, where, "attribute count");
      node.attrs.reserve(n_attrs);
      std::unordered_set<std::string> keys;
      for (uint64_t k = 0; k < n_attrs; ++k) {
        std::string key = r.str(where, "attribute key");
        if (!keys.insert(key).second) fail(at(where, "duplicate attribute key " + quote(key)));
        Value v = read_value(r, where + " attribute " + quote(key));
        node.attrs.emplace_back(std::move(key), std::move(v));
      }
      m.nodes.push_back(std::move(node));
    }
  }

  // Checks that [offset, offset + size) is an aligned range inside the data
  // section and returns a pointer to it.
  const uint8_t* buffer(const std::string& where, const char* what, uint64_t offset,
                        uint64_t size) {
    if (offset % alignment_ != 0) {
      fail(at(where, std::string(what) + " offset " + std::to_string(offset) +
                         " is not a multiple of alignment " + std::to_string(alignment_)));
    }
    if (offset > data_size_ || size > data_size_ - offset) {
      fail(at(where, std::string(what) + " buffer (offset " + std::to_string(offset) + ", " +
                         std::to_string(size) + " bytes) extends past the data section (" +
                         std::to_string(data_size_) + " bytes)"));
    }
    spans_.push_back({offset, size});
    return file_ + data_offset_ + offset;
  }

  void parse_tensors(BodyReader& r, ModelFile& m) {
    const uint64_t n = r.count(r.u64("", "tensor count"), kMinTensorBytes, "", "tensor count");
    m.tensors.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      TensorInfo t;
      const std::string label = "tensor #" + std::to_string(i);
      t.name = r.str(label, "name");
      if (t.name.empty()) fail(label + " has an empty name");
      const std::string where = "tensor " + quote(t.name);
      t.dtype = read_dtype(r, where, version_);
      const uint32_t rank = r.u32(where, "rank");
      const uint32_t min_rank = version_ >= 2 ? 0 : 1;  // scalars are new in version 2
      if (rank < min_rank || rank > kMaxRank) {
        fail(at(where, "rank " + std::to_string(rank) + " must be in [" + std::to_string(min_rank) +
                           ", 8]"));
      }
      uint64_t elements = 1;
      bool overflow = false;
      for (uint32_t j = 0; j < rank; ++j) {
        const uint64_t d = r.u64(where, "dim");
        if (d > static_cast<uint64_t>(INT64_MAX)) {
          fail(at(where, "dim " + std::to_string(j) + " is " + std::to_string(d) + ", too large"));
        }
        t.dims.push_back(static_cast<int64_t>(d));
        overflow = overflow || mul_overflows(elements, d, &elements);
      }
      if (overflow || elements > static_cast<uint64_t>(INT64_MAX)) {
        fail(at(where, "product of dims overflows"));
      }
      t.elements = static_cast<int64_t>(elements);
      const uint32_t storage = r.u32(where, "storage");
      const uint64_t esize = dtype_size(t.dtype);
      if (storage == static_cast<uint32_t>(Storage::kDense)) {
        t.storage = Storage::kDense;
        const uint64_t offset = r.u64(where, "offset");
        t.nbytes = r.u64(where, "nbytes");
        uint64_t expected = 0;
        if (mul_overflows(elements, esize, &expected) || t.nbytes != expected) {
          fail(at(where, "nbytes " + std::to_string(t.nbytes) + " != " + std::to_string(elements) +
                             " elements x " + std::to_string(esize) + " bytes"));
        }
        t.data = buffer(where, "data", offset, t.nbytes);
        if (t.dtype == DType::kBool) {
          const auto* b = static_cast<const uint8_t*>(t.data);
          for (uint64_t k = 0; k < t.nbytes; ++k) {
            if (b[k] > 1) fail(at(where, "bool element " + std::to_string(k) + " is not 0 or 1"));
          }
        }
      } else if (storage == static_cast<uint32_t>(Storage::kCsr)) {
        t.storage = Storage::kCsr;
        parse_csr(r, where, t, false);
      } else if (storage == static_cast<uint32_t>(Storage::kBsr) && version_ >= 2) {
        t.storage = Storage::kBsr;
        parse_csr(r, where, t, true);
      } else {
        fail(at(where, "unknown storage " + std::to_string(storage)));
      }
      m.tensors.push_back(std::move(t));
    }
  }

  // CSR (blocked = false) or BSR (blocked = true; the block fields follow
  // index_bits). The checks are the same over block rows and block columns.
  void parse_csr(BodyReader& r, const std::string& where, TensorInfo& t, bool blocked) {
    const char* kind = blocked ? "BSR" : "CSR";
    t.nnz = r.u64(where, "nnz");
    t.index_bits = r.u32(where, "index_bits");
    if (blocked) {
      t.block_rows = r.u32(where, "block_rows");
      t.block_cols = r.u32(where, "block_cols");
    }
    const uint64_t row_ptr_offset = r.u64(where, "row_ptr_offset");
    const uint64_t col_idx_offset = r.u64(where, "col_idx_offset");
    const uint64_t values_offset = r.u64(where, "values_offset");
    if (t.dtype != DType::kFloat32) {
      fail(at(where, std::string(kind) + " storage requires float32, got " + dtype_name(t.dtype)));
    }
    if (t.dims.empty()) fail(at(where, std::string(kind) + " storage requires rank >= 1"));
    if (t.index_bits != 16 && t.index_bits != 32) {
      fail(at(where, std::string(kind) + " index_bits " + std::to_string(t.index_bits) +
                         " must be 16 or 32"));
    }
    if (blocked && (t.block_rows < 1 || t.block_rows > kMaxBlockDim || t.block_cols < 1 ||
                    t.block_cols > kMaxBlockDim)) {
      fail(at(where, "BSR block " + std::to_string(t.block_rows) + "x" +
                         std::to_string(t.block_cols) + " must have dims in [1, " +
                         std::to_string(kMaxBlockDim) + "]"));
    }
    if (t.nnz > kMaxU32) {
      fail(at(where, std::string(kind) + " nnz " + std::to_string(t.nnz) +
                         " does not fit in 32 bits"));
    }
    const uint64_t rows = static_cast<uint64_t>(t.dims[0]);
    uint64_t cols = 1;  // product of dims[1:]; checked apart, as dims[0] may be 0
    for (size_t j = 1; j < t.dims.size(); ++j) {
      if (mul_overflows(cols, static_cast<uint64_t>(t.dims[j]), &cols) ||
          cols > static_cast<uint64_t>(INT64_MAX)) {
        fail(at(where, "product of dims overflows"));
      }
    }
    t.rows = static_cast<int64_t>(rows);
    t.cols = static_cast<int64_t>(cols);
    if (rows % t.block_rows != 0 || cols % t.block_cols != 0) {
      fail(at(where, "BSR matrix " + std::to_string(rows) + "x" + std::to_string(cols) +
                         " is not a whole number of " + std::to_string(t.block_rows) + "x" +
                         std::to_string(t.block_cols) + " blocks"));
    }
    const uint64_t brows = rows / t.block_rows;  // block rows and columns (= rows, cols for CSR)
    const uint64_t bcols = cols / t.block_cols;
    if (brows >= kMaxU32) {
      fail(at(where, std::string(kind) + " rows " + std::to_string(rows) + " too large"));
    }
    const uint64_t block = static_cast<uint64_t>(t.block_rows) * t.block_cols;
    uint64_t value_bytes = 0;
    if (mul_overflows(t.nnz, block * 4, &value_bytes)) fail(at(where, "values size overflows"));
    const auto* row_ptr = reinterpret_cast<const uint32_t*>(
        buffer(where, "row_ptr", row_ptr_offset, (brows + 1) * 4));
    const uint8_t* col_idx = buffer(where, "col_idx", col_idx_offset, t.nnz * (t.index_bits / 8));
    t.values = reinterpret_cast<const float*>(buffer(where, "values", values_offset, value_bytes));
    t.row_ptr = row_ptr;
    if (t.index_bits == 16) {
      t.col_idx16 = reinterpret_cast<const uint16_t*>(col_idx);
    } else {
      t.col_idx32 = reinterpret_cast<const uint32_t*>(col_idx);
    }
    if (row_ptr[0] != 0) {
      fail(at(where, std::string(kind) + " row_ptr[0] is " + std::to_string(row_ptr[0]) +
                         ", must be 0"));
    }
    for (uint64_t row = 0; row < brows; ++row) {
      if (row_ptr[row + 1] < row_ptr[row]) {
        fail(at(where, std::string(kind) + " row_ptr decreases at row " + std::to_string(row) +
                           " (" + std::to_string(row_ptr[row]) + " then " +
                           std::to_string(row_ptr[row + 1]) + ")"));
      }
    }
    if (row_ptr[brows] != t.nnz) {
      fail(at(where, std::string(kind) + " row_ptr[rows] is " + std::to_string(row_ptr[brows]) +
                         ", must equal nnz " + std::to_string(t.nnz)));
    }
    for (uint64_t row = 0; row < brows; ++row) {
      uint64_t previous = 0;
      for (uint64_t k = row_ptr[row]; k < row_ptr[row + 1]; ++k) {
        const uint64_t c = t.index_bits == 16 ? t.col_idx16[k] : t.col_idx32[k];
        if (c >= bcols) {
          fail(at(where, std::string(kind) + " column index " + std::to_string(c) +
                             " out of range (cols " + std::to_string(bcols) + ") in row " +
                             std::to_string(row)));
        }
        if (k > row_ptr[row] && c <= previous) {
          fail(at(where, std::string(kind) + " column indices not strictly increasing in row " +
                             std::to_string(row) + " (" + std::to_string(c) + " after " +
                             std::to_string(previous) + ")"));
        }
        previous = c;
      }
    }
  }

  // Bytes of the data section that no tensor buffer covers must be zero.
  void check_data_padding() {
    std::sort(spans_.begin(), spans_.end(),
              [](const Span& a, const Span& b) { return a.offset < b.offset; });
    uint64_t pos = 0;
    auto check_gap = [&](uint64_t end) {
      for (; pos < end; ++pos) {
        if (file_[data_offset_ + pos] != 0) {
          fail("nonzero padding byte at data offset " + std::to_string(pos) +
               " outside every tensor buffer");
        }
      }
    };
    for (const Span& s : spans_) {
      check_gap(s.offset);
      pos = std::max(pos, s.offset + s.size);
    }
    check_gap(data_size_);
  }

  static void check_names(const ModelFile& m) {
    std::unordered_set<std::string> node_names;
    for (const Node& node : m.nodes) {
      if (!node.name.empty() && !node_names.insert(node.name).second) {
        fail("duplicate node name " + quote(node.name));
      }
    }
    std::unordered_set<std::string> all;      // every tensor name
    std::unordered_set<std::string> outputs;  // node outputs only
    auto add = [&](const std::string& name) {
      if (!all.insert(name).second) fail("duplicate tensor name " + quote(name));
    };
    for (const ValueInfo& in : m.inputs) add(in.name);
    for (const TensorInfo& t : m.tensors) add(t.name);
    for (const Node& node : m.nodes) {
      for (const std::string& out : node.outputs) {
        add(out);
        outputs.insert(out);
      }
    }
    std::unordered_set<std::string> available;
    for (const ValueInfo& in : m.inputs) available.insert(in.name);
    for (const TensorInfo& t : m.tensors) available.insert(t.name);
    for (size_t i = 0; i < m.nodes.size(); ++i) {
      const Node& node = m.nodes[i];
      const std::string where =
          node.name.empty() ? "node #" + std::to_string(i) : "node " + quote(node.name);
      for (const std::string& in : node.inputs) {
        if (in.empty() || available.count(in)) continue;
        if (outputs.count(in)) {
          fail(where + " input " + quote(in) +
               " is not produced before it is used (nodes must be in topological order; a cycle "
               "is an error)");
        }
        fail(where + " input " + quote(in) + " is not a graph input, constant or node output");
      }
      for (const std::string& out : node.outputs) available.insert(out);
    }
    std::unordered_set<std::string> inputs;
    for (const ValueInfo& in : m.inputs) inputs.insert(in.name);
    for (const std::string& out : m.outputs) {
      if (!inputs.count(out) && !outputs.count(out)) {
        fail("graph output " + quote(out) + " is not a graph input or node output");
      }
    }
  }

  const uint8_t* file_;
  uint64_t file_size_;
  bool verify_data_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 0;
  uint64_t body_size_ = 0;
  uint64_t data_offset_ = 0;
  uint64_t data_size_ = 0;
  std::vector<Span> spans_;
};

std::string io_message(const std::string& what, const std::string& path, int err) {
  return "cannot " + what + " '" + path + "': " + std::strerror(err);
}

std::shared_ptr<const void> aligned_copy(const void* data, size_t size) {
  // Aligned to the largest alignment a file may use, so tensor buffers
  // (aligned within the file) are aligned in memory too.
  constexpr size_t kBufferAlign = 65536;
  const size_t capacity = std::max<size_t>(size, 1);
  void* copy = ::operator new(capacity, std::align_val_t(kBufferAlign), std::nothrow);
  if (copy == nullptr) {
    throw Error(ErrorCode::kResource,
                "cannot allocate " + std::to_string(size) + " bytes to read the model");
  }
  std::shared_ptr<const void> owner(copy, [](const void* p) {
    ::operator delete(const_cast<void*>(p), std::align_val_t(kBufferAlign));
  });
  if (size != 0 && data != nullptr) std::memcpy(copy, data, size);
  return owner;
}

// Opens a regular file for reading without blocking: a FIFO or device opened
// plainly would wait for a writer forever.
int open_regular(const std::string& path, size_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error(ErrorCode::kIO, io_message("open", path, errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorCode::kIO, io_message("stat", path, err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kIO, "cannot read '" + path +
                                    "': not a regular file (a FIFO, device or socket); give the "
                                    "path of a .spr file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  *size = static_cast<size_t>(st.st_size);
  return fd;
}

ModelFile parse_owned(std::shared_ptr<const void> owner, size_t size, bool verify,
                      const std::string& path) {
  ModelFile m;
  try {
    m = Parser(static_cast<const uint8_t*>(owner.get()), size, verify).parse();
  } catch (const Error& e) {
    if (path.empty()) throw;
    throw Error(e.code(), "'" + path + "': " + e.what());
  }
  m.owner = std::move(owner);
  return m;
}

}  // namespace

}  // namespace format

namespace spr {

ModelFile read_spr_buffer(const void* data, size_t size, bool verify_data_checksum) {
  if (data == nullptr && size != 0) {
    throw Error(ErrorCode::kInvalidArgument, "read_buffer: null data with nonzero size");
  }
  return format::parse_owned(format::aligned_copy(data, size), size, verify_data_checksum, "");
}

ModelFile read_spr_file(const std::string& path, bool verify_data_checksum, bool use_mmap) {
  size_t size = 0;
  const int fd = format::open_regular(path, &size);
  if (size < format::kHeaderSize) {
    ::close(fd);
    throw Error(ErrorCode::kFormat, "'" + path + "': file too small: " + std::to_string(size) +
                                        " bytes, the header alone is 48 (an empty or incomplete file)");
  }
  std::shared_ptr<const void> owner;
  if (use_mmap) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_err = errno;
    ::close(fd);  // the mapping stays valid without the descriptor
    if (map == MAP_FAILED) throw Error(ErrorCode::kIO, format::io_message("mmap", path, map_err));
    owner = std::shared_ptr<const void>(
        map, [size](const void* p) { ::munmap(const_cast<void*>(p), size); });
  } else {
    std::shared_ptr<const void> buffer;
    try {
      buffer = format::aligned_copy(nullptr, size);
    } catch (...) {
      ::close(fd);
      throw;
    }
    auto* dst = static_cast<uint8_t*>(const_cast<void*>(buffer.get()));
    size_t done = 0;
    while (done < size) {
      const ssize_t got = ::read(fd, dst + done, size - done);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        const int err = got < 0 ? errno : 0;
        ::close(fd);
        if (got == 0) {
          throw Error(ErrorCode::kFormat, "'" + path + "': the file shrank while it was read (" +
                                              std::to_string(done) + " of " +
                                              std::to_string(size) + " bytes); try again");
        }
        throw Error(ErrorCode::kIO, format::io_message("read", path, err));
      }
      done += static_cast<size_t>(got);
    }
    ::close(fd);
    owner = std::move(buffer);
  }
  return format::parse_owned(std::move(owner), size, verify_data_checksum, path);
}

}  // namespace spr

namespace format {

void upgrade_v1_node(Node* node) {
  struct Rename {
    const char* v1;
    const char* v2;
  };
  // Version 1 used PyTorch spellings for some ops; version 2 uses ONNX's.
  static const Rename kOps[] = {
      {"Conv2d", "Conv"},          {"ConvTranspose2d", "ConvTranspose"},
      {"BatchNorm", "BatchNormalization"}, {"ReLU", "Relu"},
      {"LeakyReLU", "LeakyRelu"}, {"SiLU", "Silu"},
      {"GELU", "Gelu"},            {"MaxPool2d", "MaxPool"},
      {"AvgPool2d", "AveragePool"}, {"LayerNorm", "LayerNormalization"},
  };
  auto rename_attr = [node](const char* from, const char* to) {
    for (auto& kv : node->attrs) {
      if (kv.first == from) kv.first = to;
    }
  };
  if (node->op_type == "ReLU6") {  // ReLU6 is Clip(0, 6)
    node->op_type = "Clip";
    Value lo, hi;
    lo.type = hi.type = ValueType::kFloat;
    lo.f = 0.0;
    hi.f = 6.0;
    node->attrs.clear();
    node->attrs.emplace_back("min", lo);
    node->attrs.emplace_back("max", hi);
    return;
  }
  for (const Rename& r : kOps) {
    if (node->op_type != r.v1) continue;
    node->op_type = r.v2;
    if (node->op_type == "Conv" || node->op_type == "ConvTranspose") rename_attr("groups", "group");
    if (node->op_type == "MaxPool" || node->op_type == "AveragePool") rename_attr("kernel", "kernel_shape");
    return;
  }
}

}  // namespace format
}  // namespace sparsert
