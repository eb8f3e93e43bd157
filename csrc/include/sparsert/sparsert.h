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
// input shape or dtype, an unsupported op, an I/O error, a request beyond the
// memory or thread limits — throws sparsert::Error, whose code() says which
// kind it is and whose what() names the problem and what to do. No function in
// this header aborts the process on bad input.
//
// Thread safety: a Model is immutable after load. run() may be called from any
// number of threads at once on the same Model; each call gets its own
// activation buffers. Copies of a Model share the loaded weights.
//
// Memory: by default a Model reads its file into private memory, so the file
// may be replaced, truncated or deleted while the model is loaded without any
// effect on it. LoadOptions::mmap = true uses the file's pages in place
// instead (less memory and a faster load for big models), which trusts the
// file not to change while it is loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(_WIN32)
#define SPARSERT_API __declspec(dllexport)
#else
#define SPARSERT_API __attribute__((visibility("default")))
#endif

namespace sparsert {

namespace spr {
struct Node;
struct Value;
}

enum class ErrorCode {
  kFormat,           // the .spr file is malformed, truncated, corrupt or of an unknown version
  kInvalidArgument,  // wrong input count, dtype or shape; bad option
  kUnsupported,      // an op, attribute, dtype or storage kind this build does not implement
  kIO,               // a file could not be opened, mapped or read
  kResource,         // a request would exceed memory or thread limits
  kInternal,         // a bug in sparsert
};

class SPARSERT_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Element types of tensors. kBool is one byte per element, 0 or 1.
enum class DType : uint32_t { kFloat32 = 1, kInt32 = 2, kInt64 = 3, kBool = 4 };
SPARSERT_API const char* dtype_name(DType dtype);  // "float32", "int32", "int64", "bool"
SPARSERT_API size_t dtype_size(DType dtype);       // bytes per element; 0 outside the enum

// The most threads a model may use; more is refused with ErrorCode::kResource.
constexpr int kMaxThreads = 256;

// A tensor in row-major (C) order. It either owns its memory (64-byte aligned)
// or is a view of memory the caller keeps alive.
class SPARSERT_API Tensor {
 public:
  Tensor() = default;
  // Owning, zero-filled.
  explicit Tensor(std::vector<int64_t> shape, DType dtype = DType::kFloat32);
  static Tensor view(float* data, std::vector<int64_t> shape);
  static Tensor view(void* data, std::vector<int64_t> shape, DType dtype);

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t size() const;   // number of elements
  size_t nbytes() const;  // size() * dtype_size(dtype())
  // float32 tensors only (throws ErrorCode::kInvalidArgument for other dtypes).
  float* data();
  const float* data() const;
  void* raw_data() { return data_; }
  const void* raw_data() const { return data_; }
  bool owns_data() const { return static_cast<bool>(storage_); }

 private:
  std::vector<int64_t> shape_;
  DType dtype_ = DType::kFloat32;
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
};

// A graph input or output. A dim of -1 is chosen at run time (a batch or a
// sequence length); dim_names holds the file's name for it ("batch", "seq"),
// or "" for a fixed dim.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // -1 for a dynamic dim
  std::vector<std::string> dim_names;
  // false for an output of a dynamic model whose shape (rank included) is only known
  // once input shapes are (Model::output_shapes); `shape` is then empty.
  bool shape_known = true;
};

struct LoadOptions {
  // Kernel threads for this model; 0 = every core this process may run on
  // (its CPU affinity and cgroup CPU quota). A maximum: more than those cores is
  // capped to them (noted in Model::load_log()); above kMaxThreads is refused.
  // The same rule as Python's threads= (0 or None = every core).
  int threads = 0;
  bool verify_checksum = true;  // CRC-32 of the data section (the body is always checked)
  // Per layer, the runtime picks sparse or dense kernels from a cost model;
  // tune = true times the candidates on this machine for each new input
  // shape instead and keeps the faster.
  bool tune = false;
  // With tune: the file that keeps the measured choices, so that loading the
  // same layers again on this machine does not time them again. "" = the
  // default ($SPARSERT_TUNE_CACHE, else $SPARSERT_CACHE_DIR/tune-v1.tsv, else
  // $XDG_CACHE_HOME/sparsert/tune-v1.tsv, else ~/.cache/sparsert/tune-v1.tsv);
  // "off" = time every load.
  std::string tune_cache;
  // false (default): the file is read into private memory. true: its pages
  // are mapped and used in place; the file must not change while loaded.
  bool mmap = false;
  // Caps the kernels for this model: "" (the best this CPU runs), "scalar",
  // "avx2", "avx512" or "neon". An ISA this build or CPU lacks is an error.
  std::string isa;
  // Load-time rewrite passes to skip, by name (see Model::passes()).
  std::vector<std::string> disabled_passes;
  // Force a kernel family for Linear and Conv layers: "auto", "sparse" or
  // "dense" (where the weight allows it). For tests and benchmarks.
  std::string layer_kernel = "auto";
  // Sparse KxK convolution path: "auto", "direct" or "im2col".
  std::string conv_sparse_path = "auto";
  // Dense 3x3 stride-1 convolution path: "auto", "winograd" (F(4x4, 3x3))
  // or "im2col" (im2col + gemm).
  std::string conv_dense_path = "auto";
  // Execution plans (one per distinct set of input shapes) kept at once.
  int max_cached_plans = 8;
};

// One row of Model::summary(): what a node does and how it runs here.
struct NodeInfo {
  std::string name;
  std::string op;
  std::vector<std::vector<int64_t>> input_shapes;
  std::vector<std::vector<int64_t>> output_shapes;
  std::string weight_storage;   // "dense", "csr", "bsr", or "" for ops without weights
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
  static Model load(const std::string& path, const LoadOptions& options = {});
  // Copies the buffer; the caller may free it after the call.
  static Model load_from_buffer(const void* data, size_t size, const LoadOptions& options = {});

  const std::vector<TensorSpec>& inputs() const;
  const std::vector<TensorSpec>& outputs() const;
  const std::map<std::string, std::string>& metadata() const;  // values rendered as text
  // The metadata as stored: typed values, in file order.
  const std::vector<std::pair<std::string, spr::Value>>& metadata_values() const;
  int threads() const;
  const std::string& isa() const;  // the ISA this model's kernels use
  // Load-time decisions (passes applied, kernels chosen), one line each.
  const std::vector<std::string>& load_log() const;
  // The graph as it runs: the file's nodes after the load-time passes.
  const std::vector<spr::Node>& nodes() const;

  // Inputs in the order of inputs(). Returns new owning tensors.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;
  // Writes into caller-provided outputs: each must already have the output's
  // shape and dtype (an owning or view tensor); otherwise kInvalidArgument.
  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const;
  // Output shapes for the given input shapes (plans if needed). Dtypes are those of outputs().
  std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& input_shapes) const;

  // Per-node information for the given input shapes (or the shapes of the
  // last run when empty, or the declared shapes with -1 read as 1).
  std::vector<NodeInfo> summary(const std::vector<std::vector<int64_t>>& input_shapes = {}) const;
  // Runs `repeats` times recording each node's time; later summary() calls for
  // these shapes report the median per node. Returns the median total in ms.
  double profile(const std::vector<Tensor>& inputs, int repeats = 10) const;
  // Frees cached execution plans and activation buffers (they are rebuilt on
  // the next run). Safe to call while other threads run the model.
  void release_memory() const;
  // Bytes held now by cached activation buffers.
  size_t cached_bytes() const;

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

// "x86-64 avx512", "x86-64 avx2", "aarch64 neon", "scalar": the best kernels this process can use.
SPARSERT_API std::string cpu_features();
// Data cache sizes in bytes that the kernels size their blocks from, read at
// run time (source: "sysconf", "sysfs", or "default" when the system does not
// say: 32 KiB L1d, 1 MiB L2, 32 MiB L3). l3 is the last level (L2 without L3).
struct CacheSizes {
  int64_t l1d = 0;
  int64_t l2 = 0;
  int64_t l3 = 0;
  std::string source;
};
SPARSERT_API CacheSizes cache_sizes();
// ISAs this build and CPU run, best last: e.g. {"scalar", "avx2", "avx512"}.
SPARSERT_API std::vector<std::string> supported_isas();
SPARSERT_API const char* version();
// Op types the runtime implements (docs/spr-format.md, section 5), sorted.
SPARSERT_API std::vector<std::string> supported_ops();
// Names of the load-time rewrite passes, in the order they run.
SPARSERT_API std::vector<std::string> pass_names();
// The threads a model gets with LoadOptions::threads = 0 here.
SPARSERT_API int default_threads();
// Parallel jobs after which the process-wide kernel thread pool ran on the
// calling thread alone for 50 ms, because a worker stalled holding a task
// (descheduled: another process wanted its core). A diagnostic: a count that
// grows on an idle machine means the threads setting is too high for it.
SPARSERT_API int64_t thread_pool_stalls();

// One activation of the catalogue (usable as an op or as a fused `activation`
// attribute of Linear / Conv / ConvTranspose): names and parameter defaults.
struct ActivationInfo {
  std::string op_type;                   // e.g. "LeakyRelu"
  std::string fused_name;                // e.g. "leaky_relu"
  std::vector<std::string> param_names;  // e.g. {"alpha"}
  std::vector<double> param_defaults;
};
SPARSERT_API std::vector<ActivationInfo> activations();

// ---------------------------------------------------------------------------
// The contents of a .spr file as stored, for tools (sparsert inspect, the
// Python reader). read_spr_file validates exactly as Model::load does; the
// pointers in the result point into bytes that `owner` keeps alive.
namespace spr {

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

enum class Storage : uint32_t { kDense = 0, kCsr = 1, kBsr = 2 };

struct TensorInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;
  Storage storage = Storage::kDense;
  int64_t elements = 0;  // product of dims (validated not to overflow)

  // kDense
  const void* data = nullptr;
  uint64_t nbytes = 0;

  // kCsr / kBsr (float32 only): rows = dims[0], cols = product(dims[1..]).
  // BSR: blocks of block_rows x block_cols (rows and cols are multiples);
  // row_ptr has rows / block_rows + 1 entries, col_idx holds block columns,
  // values holds nnz blocks of block_rows * block_cols floats, row-major.
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t nnz = 0;  // stored values (CSR) or stored blocks (BSR)
  uint32_t index_bits = 0;  // 16 or 32
  uint32_t block_rows = 1;
  uint32_t block_cols = 1;
  const uint32_t* row_ptr = nullptr;
  const uint16_t* col_idx16 = nullptr;  // when index_bits == 16
  const uint32_t* col_idx32 = nullptr;  // when index_bits == 32
  const float* values = nullptr;

  uint64_t stored_bytes() const;  // bytes this tensor occupies in the data section
  int64_t stored_values() const;  // nnz for CSR, nnz * block size for BSR, elements for dense
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;            // -1 = given at run time
  std::vector<std::string> dim_names;   // one per dim ("" for fixed dims); v2
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
  uint32_t version = 0;  // as stored; v1 op names are already translated to v2
  uint32_t alignment = 0;
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<ValueInfo> inputs;
  std::vector<std::string> outputs;
  std::vector<Node> nodes;
  std::vector<TensorInfo> tensors;
  std::shared_ptr<const void> owner;  // keeps the bytes behind the pointers alive

  // nullptr if `name` is not a constant. Constant time: the reader indexes
  // the tensors; call index_tensors() after changing `tensors`.
  const TensorInfo* find_tensor(const std::string& name) const;
  void index_tensors();

 private:
  std::shared_ptr<const std::map<std::string, size_t>> tensor_index_;
};

// Parses and validates; throws Error(kFormat) naming the problem, or
// Error(kIO) when the file cannot be opened or read. use_mmap: map the file
// instead of reading it into private memory.
SPARSERT_API ModelFile read_spr_file(const std::string& path, bool verify_data_checksum = true,
                                     bool use_mmap = false);
// Copies `size` bytes into an aligned buffer owned by the result.
SPARSERT_API ModelFile read_spr_buffer(const void* data, size_t size, bool verify_data_checksum = true);

}  // namespace spr

}  // namespace sparsert
