// sparsert — sparse neural-network inference runtime. This is the only header
// a C++ application includes; everything else in the library is internal and
// its symbols are hidden.
//
// Usage (in the style of ncnn / onnxruntime):
//
//   sparsert::Model model = sparsert::Model::load("model.spr");
//   sparsert::Tensor x({1, 784});            // float32, zero-filled
//   std::vector<sparsert::Tensor> y = model.run({x});
//
// Error policy, stated once: every failure — a bad or corrupt file, a wrong
// input shape, an unsupported op, an I/O error — throws sparsert::Error, whose
// code() says which kind it is and whose what() names the problem. No function
// in this header aborts the process on bad input.
//
// Thread safety: a Model is immutable after load. run() may be called from any
// number of threads at once on the same Model; each call gets its own
// activation buffers. Copies of a Model share the loaded weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(_WIN32)
#define SPARSERT_API __declspec(dllexport)
#else
#define SPARSERT_API __attribute__((visibility("default")))
#endif

namespace sparsert {

enum class ErrorCode {
  kFormat,           // the .spr file is malformed, truncated, corrupt or of an unknown version
  kInvalidArgument,  // wrong input count, dtype or shape; bad option
  kUnsupported,      // an op, attribute or storage kind this build does not implement
  kIO,               // a file could not be opened, mapped or read
  kResource,         // a request would exceed memory limits
  kInternal,         // a bug in sparsert
};

class SPARSERT_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

enum class DType : uint32_t { kFloat32 = 1, kInt32 = 2, kInt64 = 3 };
SPARSERT_API const char* dtype_name(DType dtype);

// A float32 tensor in row-major (C) order. It either owns its memory (64-byte
// aligned) or is a view of memory the caller keeps alive.
class SPARSERT_API Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape);  // owning, zero-filled
  static Tensor view(float* data, std::vector<int64_t> shape);

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t size() const;  // number of elements
  float* data() { return data_; }
  const float* data() const { return data_; }
  bool owns_data() const { return static_cast<bool>(storage_); }

 private:
  std::vector<int64_t> shape_;
  std::shared_ptr<float> storage_;
  float* data_ = nullptr;
};

// A graph input or output. A dim of -1 is chosen at run time (e.g. the batch).
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
};

struct LoadOptions {
  int threads = 0;              // 0: one per hardware core
  bool verify_checksum = true;  // CRC-32 of the data section (the body is always checked)
  // Per layer, the runtime picks sparse or dense kernels from a cost model
  // measured on x86 and ARM; tune = true times both on this machine at load
  // and keeps the faster (load takes longer).
  bool tune = false;
};

// One row of Model::summary(): what a node does and how it runs here.
struct NodeInfo {
  std::string name;
  std::string op;
  std::vector<std::vector<int64_t>> input_shapes;
  std::vector<std::vector<int64_t>> output_shapes;
  std::string weight_storage;   // "dense", "csr", or "" for ops without weights
  std::vector<int64_t> weight_shape;
  int64_t weight_elements = 0;  // product of weight_shape
  int64_t weight_nnz = 0;       // stored nonzeros (equals weight_elements for dense)
  int64_t weight_bytes = 0;     // bytes the weights occupy in the file
  int64_t flops = 0;            // multiply-adds x 2 actually executed, for the planned shapes
  int64_t dense_flops = 0;      // the same op with dense weights
  std::string kernel;           // e.g. "spmm_f32_avx512", "gemm_f32_avx2", "ref"
  double time_ms = -1.0;        // median per-run time from the last profile(), -1 if never profiled
};

class SPARSERT_API Model {
 public:
  // Memory-maps the file read-only; aligned weights are used in place.
  static Model load(const std::string& path, const LoadOptions& options = {});
  // Copies the buffer; the caller may free it after the call.
  static Model load_from_buffer(const void* data, size_t size, const LoadOptions& options = {});

  const std::vector<TensorSpec>& inputs() const;
  const std::vector<TensorSpec>& outputs() const;
  const std::map<std::string, std::string>& metadata() const;  // values rendered as text
  int threads() const;

  // Inputs in the order of inputs(). Returns new owning tensors.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;
  // Writes into caller-provided outputs: each must already have the output's
  // shape (an owning or view tensor); otherwise kInvalidArgument.
  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const;
  // Output shapes for the given input shapes (plans if needed).
  std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& input_shapes) const;

  // Per-node information for the given input shapes (or the shapes of the
  // last run when empty, or the declared shapes with -1 read as 1).
  std::vector<NodeInfo> summary(const std::vector<std::vector<int64_t>>& input_shapes = {}) const;
  // Runs `repeats` times recording each node's time; later summary() calls for
  // these shapes report the median per node. Returns the median total in ms.
  double profile(const std::vector<Tensor>& inputs, int repeats = 10) const;

  Model(const Model&) = default;
  Model& operator=(const Model&) = default;
  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;
  ~Model();

  struct Impl;

 private:
  explicit Model(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// "x86-64 avx512", "x86-64 avx2", "aarch64 neon", "scalar": the kernels this process uses.
SPARSERT_API std::string cpu_features();
SPARSERT_API const char* version();

}  // namespace sparsert
