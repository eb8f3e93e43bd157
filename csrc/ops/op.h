// The op interface. One op = one file in csrc/ops/ defining a factory, plus one
// line in csrc/ops/op_list.inc, plus one test, plus one row in the op
// catalogue of docs/spr-format.md.
//
// Life cycle: at load, the factory validates the node (attributes — always
// read through the bounded accessors of NodeContext —, input counts, input
// dtypes, which inputs are constants, weight shapes) and prepares weights
// (e.g. packs them for the chosen kernel). For each new set of input shapes
// the runtime calls infer_shapes() and scratch_bytes() to plan memory. run()
// is then called with planned buffers; it must be safe to call concurrently
// from several threads (an Op is immutable after construction).
//
// Dtypes: an op that does not call NodeContext::set_output_dtypes() takes
// float32 inputs only (the runtime refuses any other dtype at load, naming
// the input) and produces float32 outputs. Constants stored sparse (CSR/BSR)
// reach only inputs for which accepts_sparse_constant() is true.
//
// Plan-time values: inputs whose values are known when planning (constants,
// and outputs of ops computed only from shapes and constants, such as the
// Shape -> Gather -> Concat chains of dynamic-shape exports) are given to
// infer_shapes_with_values(); the runtime evaluates such ops once per plan.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "kernels/kernels.h"
#include "runtime/thread_pool.h"
#include "sparsert/sparsert.h"

namespace sparsert {
namespace ops {

class TuneCache;  // ops/tune_cache.h

using Shape = std::vector<int64_t>;

int64_t shape_elements(const Shape& shape);    // product; 1 for rank 0
std::string shape_string(const Shape& shape);  // "[1, 3, 224, 224]"

// Bounds every attribute accessor enforces unless an op asks for tighter
// ones. Sizes, strides, pads and dilations up to 2^24 keep every product of
// two of them with a tensor dim (itself < 2^40, see the planner) inside int64.
constexpr int64_t kMaxSpatial = int64_t{1} << 24;
constexpr int64_t kMaxDim = int64_t{1} << 40;
constexpr size_t kMaxAttrItems = 4096;  // elements of an INTS / FLOATS attribute an op reads

// Load-time settings every factory may consult (from LoadOptions).
struct LoadConfig {
  // Bytes of weights the loader may still expand beyond their stored size
  // (densifying CSR / BSR, depthwise filters): a small file must not be able
  // to make the loader allocate gigabytes. Shared by the model's ops.
  std::shared_ptr<std::atomic<int64_t>> expand_budget = std::make_shared<std::atomic<int64_t>>(int64_t{1} << 28);
  // Takes `bytes` from the budget, or throws Error(kResource) naming `what`.
  void charge(int64_t bytes, const std::string& what) const;
  bool try_charge(int64_t bytes) const;  // false (and nothing taken) when the budget is short
  // Load-time decisions worth telling the user (Model::load_log), shared by the model's ops.
  std::shared_ptr<std::vector<std::string>> notes = std::make_shared<std::vector<std::string>>();
  void note(std::string message) const { notes->push_back(std::move(message)); }
  bool tune = false;
  // With tune: the on-disk cache of measured choices (null: none) and the
  // machine part of its keys.
  std::shared_ptr<TuneCache> tune_cache;
  std::string tune_machine;
  kernels::Isa isa = kernels::Isa::kScalar;
  enum class LayerKernel { kAuto, kSparse, kDense } layer_kernel = LayerKernel::kAuto;
  enum class ConvSparsePath { kAuto, kDirect, kIm2col } conv_sparse_path = ConvSparsePath::kAuto;
  enum class ConvDensePath { kAuto, kWinograd, kIm2col } conv_dense_path = ConvDensePath::kAuto;
};

// What a factory sees of its node at load time.
class NodeContext {
 public:
  NodeContext(const format::Node& node, const format::ModelFile& file,
              std::vector<DType> input_dtypes, const LoadConfig& config)
      : node_(node), file_(file), input_dtypes_(std::move(input_dtypes)), config_(config) {}

  const format::Node& node() const { return node_; }
  const LoadConfig& config() const { return config_; }
  bool tune() const { return config_.tune; }
  kernels::Isa isa() const { return config_.isa; }

  size_t input_count() const { return node_.inputs.size(); }
  bool has_input(size_t i) const { return i < node_.inputs.size() && !node_.inputs[i].empty(); }
  // The dtype of input i (present inputs only).
  DType input_dtype(size_t i) const { return input_dtypes_.at(i); }
  // The constant behind input i, or nullptr when it is an activation or absent.
  const format::TensorInfo* constant(size_t i) const;
  // Like constant(i), but throws (naming the node and `what`) unless it is a
  // constant of the given dtype.
  const format::TensorInfo& require_constant(size_t i, const char* what,
                                             DType dtype = DType::kFloat32) const;
  // Throws unless input i is present and its dtype is one of `allowed`.
  void require_dtype(size_t i, const char* what, std::initializer_list<DType> allowed) const;

  // --- attributes: each accessor checks the type and the bounds ---
  bool has_attr(const std::string& key) const { return node_.attr(key) != nullptr; }
  int64_t attr_int(const std::string& key, int64_t fallback, int64_t min, int64_t max) const;
  bool attr_bool(const std::string& key, bool fallback) const;
  // Finite unless the bounds are infinite.
  double attr_float(const std::string& key, double fallback,
                    double min = -std::numeric_limits<double>::max(),
                    double max = std::numeric_limits<double>::max()) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  // One of `choices` (the message lists them).
  std::string attr_choice(const std::string& key, const std::string& fallback,
                          std::initializer_list<const char*> choices) const;
  std::vector<int64_t> attr_ints(const std::string& key, const std::vector<int64_t>& fallback,
                                 size_t min_count, size_t max_count, int64_t min, int64_t max) const;
  std::vector<double> attr_floats(const std::string& key, const std::vector<double>& fallback,
                                  size_t min_count, size_t max_count,
                                  double min = -std::numeric_limits<double>::max(),
                                  double max = std::numeric_limits<double>::max()) const;
  // An axis attribute in [-kMaxRank, kMaxRank - 1]; normalised against the
  // actual rank at plan time with normalize_axis().
  int64_t attr_axis(const std::string& key, int64_t fallback) const;

  // Throws Error(code, "node '<name>' (<op>): <message>").
  [[noreturn]] void fail(const std::string& message, ErrorCode code = ErrorCode::kFormat) const;
  void check_input_count(size_t min_inputs, size_t max_inputs) const;
  void check_output_count(size_t outputs) const;
  void check_output_count(size_t min_outputs, size_t max_outputs) const;

  // Called by factories of ops that take or produce other dtypes than float32.
  void set_output_dtypes(std::vector<DType> dtypes) const { output_dtypes_ = std::move(dtypes); }
  const std::vector<DType>& output_dtypes() const { return output_dtypes_; }

 private:
  const format::Node& node_;
  const format::ModelFile& file_;
  std::vector<DType> input_dtypes_;
  const LoadConfig& config_;
  mutable std::vector<DType> output_dtypes_;
};

// A tensor as the planner knows it: dtype, shape and, when known while
// planning, its values (constants, shape computations).
struct TensorMeta {
  DType dtype = DType::kFloat32;
  Shape shape;
  const void* value = nullptr;
  bool present = true;  // false for an absent optional input

  template <typename T>
  const T* as() const {
    return static_cast<const T*>(value);
  }
};

struct InputRef {
  const void* raw = nullptr;
  Shape shape;
  DType dtype = DType::kFloat32;

  const float* f32() const { return static_cast<const float*>(raw); }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(raw);
  }
};

struct OutputRef {
  void* raw = nullptr;
  Shape shape;
  DType dtype = DType::kFloat32;

  float* f32() const { return static_cast<float*>(raw); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(raw);
  }
};

class RunContext {
 public:
  RunContext(runtime::ThreadPool& pool, int threads, void* scratch, size_t scratch_bytes)
      : pool_(pool), threads_(threads), scratch_(scratch), scratch_bytes_(scratch_bytes) {}
  int threads() const { return threads_; }
  void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn) const {
    pool_.parallel_for(tasks, fn, threads_);
  }
  // This node's scratch memory: scratch_bytes() bytes, 64-byte aligned.
  void* scratch() const { return scratch_; }
  size_t scratch_bytes() const { return scratch_bytes_; }

 private:
  runtime::ThreadPool& pool_;
  int threads_;
  void* scratch_;
  size_t scratch_bytes_;
};

class Op {
 public:
  virtual ~Op() = default;
  // Output shapes for these input shapes (constants included). Throws
  // Error(kInvalidArgument) with a message naming the mismatch; the runtime
  // prefixes the node name.
  virtual std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const = 0;
  // The same with plan-time values: override where output shapes depend on
  // input values (Reshape's shape input, Range, Expand, Slice, ...).
  virtual std::vector<Shape> infer_shapes_with_values(const std::vector<TensorMeta>& inputs) const;
  // Scratch needed by run() for these input shapes.
  virtual size_t scratch_bytes(const std::vector<Shape>& inputs, int threads) const { return 0; }
  virtual void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
                   const std::vector<OutputRef>& outputs) const = 0;
  // If output 0 is the bytes of input i unchanged (Reshape, Flatten), return i:
  // the planner may then alias them and skip run(). -1 otherwise.
  virtual int alias_of_input() const { return -1; }
  // True when, for these shapes, input i is exactly the bytes
  // [offsets[i], offsets[i] + its size) of output 0 (offsets in elements)
  // and the op does nothing but copy them (Concat along an axis with only
  // 1s before it): the planner may then have each input's producer write
  // straight into the output and skip the op.
  virtual bool inputs_are_slices(const std::vector<Shape>& inputs, const Shape& output,
                                 std::vector<int64_t>* offsets) const {
    return false;
  }
  // True when the outputs depend only on input shapes, never on input values
  // (Shape): the planner always computes such ops while planning.
  virtual bool shape_only() const { return false; }
  // True when the op may be computed while planning once all its inputs are
  // known (every op without side effects or randomness).
  virtual bool foldable() const { return true; }
  // Constants stored CSR / BSR are accepted at input i.
  virtual bool accepts_sparse_constant(size_t input) const { return false; }
  // Fills the weight and FLOP fields of a summary row.
  virtual void describe(const std::vector<Shape>& inputs, const std::vector<Shape>& outputs,
                        NodeInfo* info) const {}
};

using OpFactory = std::unique_ptr<Op> (*)(const NodeContext& ctx);

// nullptr when `op_type` is unknown.
OpFactory find_op_factory(const std::string& op_type);
std::vector<std::string> supported_op_types();

// Throws Error(kInvalidArgument, message) — for infer_shapes.
[[noreturn]] void shape_error(const std::string& message);

// axis in [-rank, rank) -> [0, rank); otherwise a shape error naming `what`.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* what);
// a * b and a + b, or a shape error naming `what` when they overflow int64
// (or are negative).
int64_t checked_mul(int64_t a, int64_t b, const char* what);
int64_t checked_add(int64_t a, int64_t b, const char* what);
// Product of dims with overflow checks (a shape error naming `what`).
int64_t checked_elements(const Shape& shape, const char* what);

// A plan-time value of an integer input (int32 or int64) as int64s; throws a
// shape error naming `what` when the value is not known while planning.
std::vector<int64_t> known_ints(const TensorMeta& t, const char* what);

}  // namespace ops
}  // namespace sparsert
