// Small accessors of the parsed file: typed values rendered as text, lookups,
// and the dtype table shared with the runtime.
#include <charconv>
#include <map>
#include <string>

#include "format/spr_format.h"

namespace sparsert {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
  }
  return "unknown";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kBool:
      return 1;
  }
  return 0;
}

namespace spr {
namespace {

// Shortest text that reads back to the same double (as Python's repr).
std::string double_text(double v) {
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, result.ptr);
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

template <typename T, typename F>
std::string join(const std::vector<T>& items, F&& render) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += render(items[i]);
  }
  return out + "]";
}

}  // namespace

std::string Value::to_string() const {
  switch (type) {
    case ValueType::kInt:
      return std::to_string(i);
    case ValueType::kFloat:
      return double_text(f);
    case ValueType::kString:
      return s;
    case ValueType::kInts:
      return join(ints, [](int64_t v) { return std::to_string(v); });
    case ValueType::kFloats:
      return join(floats, double_text);
    case ValueType::kStrings:
      return join(strings, quoted);
  }
  return "?";
}

const Value* Node::attr(const std::string& key) const {
  for (const auto& kv : attrs) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

void ModelFile::index_tensors() {
  auto index = std::make_shared<std::map<std::string, size_t>>();
  for (size_t i = 0; i < tensors.size(); ++i) index->emplace(tensors[i].name, i);
  tensor_index_ = std::move(index);
}

const TensorInfo* ModelFile::find_tensor(const std::string& name) const {
  if (tensor_index_ && tensor_index_->size() == tensors.size()) {
    auto it = tensor_index_->find(name);
    if (it == tensor_index_->end() || it->second >= tensors.size()) return nullptr;
    const TensorInfo& t = tensors[it->second];
    if (t.name == name) return &t;
  }
  for (const TensorInfo& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t TensorInfo::stored_bytes() const {
  // Validated at load: row count + 1 and nnz are < 2^32 and the buffers fit
  // in the file, so no overflow here.
  const uint64_t block = static_cast<uint64_t>(block_rows) * block_cols;
  switch (storage) {
    case Storage::kDense:
      return nbytes;
    case Storage::kCsr:
      return (static_cast<uint64_t>(rows) + 1) * 4 + nnz * (index_bits / 8) + nnz * 4;
    case Storage::kBsr:
      return (static_cast<uint64_t>(rows / block_rows) + 1) * 4 + nnz * (index_bits / 8) +
             nnz * block * 4;
  }
  return 0;
}

int64_t TensorInfo::stored_values() const {
  switch (storage) {
    case Storage::kDense:
      return elements;
    case Storage::kCsr:
      return static_cast<int64_t>(nnz);
    case Storage::kBsr:
      return static_cast<int64_t>(nnz) * block_rows * block_cols;
  }
  return 0;
}

}  // namespace spr
}  // namespace sparsert
