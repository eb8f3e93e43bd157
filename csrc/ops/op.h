// The op interface. One op = one file in csrc/ops/ defining a factory, plus one
// line in csrc/ops/op_list.inc, plus one test, plus one row in the op
// catalogue of docs/spr-format.md.
//
// Life cycle: at load, the factory validates the node (attributes, which
// inputs are constants, weight shapes) and prepares weights (e.g. packs them
// for the chosen kernel). For each new set of input shapes the runtime calls
// infer_shapes() and scratch_bytes() to plan memory. run() is then called
// with planned buffers; it must be safe to call concurrently from several
// threads (an Op is immutable after construction).
//
// Tensors: activations are float32, row-major. An input that is absent
// (optional, written as "" in the file) has an empty shape and null data.
// Constants are passed too: dense float32 constants with their data; CSR or
// non-float constants with null data (an op that accepts them captures them
// in its factory through NodeContext::constant()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "runtime/thread_pool.h"
#include "sparsert/sparsert.h"

namespace sparsert {
namespace ops {

using Shape = std::vector<int64_t>;

int64_t shape_elements(const Shape& shape);  // product; 1 for rank 0
std::string shape_string(const Shape& shape);  // "[1, 3, 224, 224]"

// What a factory sees of its node at load time.
class NodeContext {
 public:
  NodeContext(const format::Node& node, const format::ModelFile& file, bool tune = false)
      : node_(node), file_(file), tune_(tune) {}

  const format::Node& node() const { return node_; }
  // LoadOptions::tune: time the candidate kernels now and keep the fastest,
  // instead of choosing from the cost model.
  bool tune() const { return tune_; }
  size_t input_count() const { return node_.inputs.size(); }
  bool has_input(size_t i) const { return i < node_.inputs.size() && !node_.inputs[i].empty(); }
  // The constant behind input i, or nullptr when it is an activation or absent.
  const format::TensorInfo* constant(size_t i) const;
  // Like constant(i), but throws (naming the node and `what`) unless it is a
  // constant of the given dtype.
  const format::TensorInfo& require_constant(size_t i, const char* what,
                                             DType dtype = DType::kFloat32) const;

  bool has_attr(const std::string& key) const { return node_.attr(key) != nullptr; }
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  double attr_float(const std::string& key, double fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, const std::vector<int64_t>& fallback) const;
  std::vector<double> attr_floats(const std::string& key, const std::vector<double>& fallback) const;

  // Throws Error(code, "node '<name>' (<op>): <message>").
  [[noreturn]] void fail(const std::string& message, ErrorCode code = ErrorCode::kFormat) const;
  void check_input_count(size_t min_inputs, size_t max_inputs) const;
  void check_output_count(size_t outputs) const;

 private:
  const format::Node& node_;
  const format::ModelFile& file_;
  bool tune_;
};

struct InputRef {
  const float* data = nullptr;
  Shape shape;
};

struct OutputRef {
  float* data = nullptr;
  Shape shape;
};

class RunContext {
 public:
  RunContext(runtime::ThreadPool& pool, void* scratch, size_t scratch_bytes)
      : pool_(pool), scratch_(scratch), scratch_bytes_(scratch_bytes) {}
  int threads() const { return pool_.threads(); }
  void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn) const {
    pool_.parallel_for(tasks, fn);
  }
  // This node's scratch memory: scratch_bytes() bytes, 64-byte aligned.
  void* scratch() const { return scratch_; }
  size_t scratch_bytes() const { return scratch_bytes_; }

 private:
  runtime::ThreadPool& pool_;
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
  // Scratch needed by run() for these input shapes.
  virtual size_t scratch_bytes(const std::vector<Shape>& inputs, int threads) const { return 0; }
  virtual void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
                   const std::vector<OutputRef>& outputs) const = 0;
  // If output 0 is the bytes of input i unchanged (Reshape, Flatten), return i:
  // the planner may then alias them and skip run(). -1 otherwise.
  virtual int alias_of_input() const { return -1; }
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

}  // namespace ops
}  // namespace sparsert
