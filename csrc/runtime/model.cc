// Model: a validated graph, its weights (zero-copy from the mapped file) and
// execution plans. A plan is made once per set of input shapes: shapes of
// every tensor, one arena of intermediate buffers assigned by liveness
// (buffers are reused as soon as their last reader ran), and per-node
// scratch. Each concurrent run() takes its own arena from the plan's free
// list, so runs on one Model from many threads never share buffers.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <new>
#include <sstream>
#include <unordered_map>

#include <unistd.h>

#include "format/spr_format.h"
#include "kernels/kernels.h"
#include "ops/op.h"
#include "runtime/fusion.h"
#include "runtime/thread_pool.h"
#include "sparsert/sparsert.h"

#ifndef SPARSERT_VERSION_STRING
#define SPARSERT_VERSION_STRING "0.0.0"
#endif

namespace sparsert {

using ops::Shape;

// ---------------------------------------------------------------------------
// Tensor

namespace {
constexpr size_t kAlign = 64;

std::shared_ptr<float> allocate_floats(int64_t count) {
  size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float);
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr)
    throw Error(ErrorCode::kResource, "out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, bytes);
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > INT64_MAX / a) return false;
  *out = a * b;
  return true;
}

int64_t checked_elements(const Shape& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (!checked_mul(n, d, &n) || n > (INT64_MAX / 16))
      throw Error(ErrorCode::kResource, what + " has shape " + ops::shape_string(shape) +
                                            " whose size overflows");
  }
  return n;
}

// Bytes the process may use for activations: physical memory, and never more
// than the address space can index (32-bit builds on boards with >= 4 GiB).
uint64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  uint64_t bytes = (pages <= 0 || page <= 0) ? UINT64_MAX
                                             : static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  return std::min<uint64_t>(bytes, static_cast<uint64_t>(SIZE_MAX));
}
}  // namespace

Tensor::Tensor(std::vector<int64_t> shape) : shape_(std::move(shape)) {
  for (int64_t d : shape_)
    if (d < 0) throw Error(ErrorCode::kInvalidArgument, "Tensor shape has a negative dim");
  int64_t n = checked_elements(shape_, "Tensor");
  if (static_cast<uint64_t>(n) * sizeof(float) > physical_memory_bytes())
    throw Error(ErrorCode::kResource, "Tensor of shape " + ops::shape_string(shape_) +
                                          " needs more memory than this machine has");
  storage_ = allocate_floats(n);
  data_ = storage_.get();
}

Tensor Tensor::view(float* data, std::vector<int64_t> shape) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.data_ = data;
  return t;
}

int64_t Tensor::size() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

const char* version() { return SPARSERT_VERSION_STRING; }

std::string cpu_features() {
  kernels::Isa isa = kernels::best_isa();
#if defined(__x86_64__) || defined(_M_X64)
  std::string arch = "x86-64";
#elif defined(__aarch64__)
  std::string arch = "aarch64";
#elif defined(__arm__)
  std::string arch = "arm";
#else
  std::string arch = "generic";
#endif
  return arch + " " + kernels::isa_name(isa);
}

// ---------------------------------------------------------------------------
// Plans

namespace {

enum class SlotKind { kInput, kConstant, kNodeOutput };

struct Slot {
  std::string name;
  SlotKind kind;
  int index;  // graph input index, tensor index or node index
  Shape constant_shape;
  const float* constant_data = nullptr;  // dense float32 constants only
};

struct Arena {
  std::shared_ptr<float> memory;
  size_t bytes = 0;
};

struct Plan {
  std::vector<Shape> input_shapes;
  std::vector<Shape> shapes;        // per slot
  std::vector<int64_t> offsets;     // per slot: byte offset in the arena, -1 if not in it
  std::vector<int> alias_source;    // per slot: slot whose bytes it shares, or -1
  std::vector<int> external_output; // per slot: graph output index written in place, or -1
  std::vector<bool> skip_node;
  std::vector<int64_t> scratch_offset;
  std::vector<size_t> scratch_size;
  uint64_t arena_bytes = 0;

  std::mutex arenas_mutex;
  std::vector<Arena> free_arenas;

  std::mutex profile_mutex;
  std::vector<double> node_ms;  // empty until profiled
};

// First-fit allocator over one arena with coalescing of freed blocks.
class ArenaPlanner {
 public:
  int64_t allocate(uint64_t bytes) {
    bytes = std::max<uint64_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second >= bytes) {
        int64_t offset = it->first;
        if (it->second == bytes) {
          free_.erase(it);
        } else {
          it->first += bytes;
          it->second -= bytes;
        }
        return offset;
      }
    }
    // grow: reuse a free block at the end if there is one
    if (!free_.empty() && free_.back().first + static_cast<int64_t>(free_.back().second) == end_) {
      int64_t offset = free_.back().first;
      free_.pop_back();
      end_ = offset + static_cast<int64_t>(bytes);
      return offset;
    }
    int64_t offset = end_;
    end_ += static_cast<int64_t>(bytes);
    return offset;
  }

  void release(int64_t offset, uint64_t bytes) {
    bytes = std::max<uint64_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    auto it = free_.begin();
    while (it != free_.end() && it->first < offset) ++it;
    it = free_.insert(it, {offset, bytes});
    // merge with next
    auto next = std::next(it);
    if (next != free_.end() && it->first + static_cast<int64_t>(it->second) == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + static_cast<int64_t>(prev->second) == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }

  uint64_t size() const { return static_cast<uint64_t>(end_); }

 private:
  std::list<std::pair<int64_t, uint64_t>> free_;
  int64_t end_ = 0;
};

}  // namespace

struct Model::Impl {
  format::ModelFile file;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::map<std::string, std::string> metadata;
  std::vector<std::unique_ptr<ops::Op>> ops;
  std::vector<Slot> slots;
  std::vector<std::vector<int>> node_inputs;   // slot ids, -1 = absent
  std::vector<std::vector<int>> node_outputs;  // slot ids
  std::vector<int> output_slots;
  std::unique_ptr<runtime::ThreadPool> pool;

  mutable std::mutex plans_mutex;
  mutable std::list<std::shared_ptr<Plan>> plans;  // most recent first
  mutable std::vector<Shape> last_shapes;

  void build(const LoadOptions& options);
  std::shared_ptr<Plan> get_plan(const std::vector<Shape>& input_shapes) const;
  std::shared_ptr<Plan> make_plan(const std::vector<Shape>& input_shapes) const;
  std::vector<Shape> check_inputs(const std::vector<Tensor>& inputs) const;
  void execute(Plan& plan, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
               std::vector<double>* node_ms) const;
  std::string node_label(size_t n) const {
    return "node '" + file.nodes[n].name + "' (" + file.nodes[n].op_type + ")";
  }
};

void Model::Impl::build(const LoadOptions& options) {
  runtime::fuse_graph(&file);
  if (options.threads < 0)
    throw Error(ErrorCode::kInvalidArgument, "threads must be >= 0 (0 = one per core)");
  // Every op type must be known: report all unknown types at once.
  {
    std::vector<std::pair<std::string, std::string>> unknown;
    for (const auto& node : file.nodes) {
      if (ops::find_op_factory(node.op_type) != nullptr) continue;
      bool seen = false;
      for (const auto& u : unknown) seen |= u.first == node.op_type;
      if (!seen) unknown.emplace_back(node.op_type, node.name);
    }
    if (!unknown.empty()) {
      std::ostringstream s;
      s << "unsupported op type" << (unknown.size() > 1 ? "s" : "") << ": ";
      for (size_t i = 0; i < unknown.size(); ++i)
        s << (i ? ", " : "") << unknown[i].first << " (first at node '" << unknown[i].second << "')";
      throw Error(ErrorCode::kUnsupported, s.str());
    }
  }
  for (const auto& in : file.inputs) {
    if (in.dtype != DType::kFloat32)
      throw Error(ErrorCode::kUnsupported, "graph input '" + in.name + "' has dtype " +
                                               dtype_name(in.dtype) + "; only float32 inputs are supported");
    inputs.push_back(TensorSpec{in.name, in.dtype, in.dims});
  }
  for (const auto& kv : file.metadata) metadata[kv.first] = kv.second.to_string();

  std::unordered_map<std::string, int> slot_of;
  for (size_t i = 0; i < file.inputs.size(); ++i) {
    slot_of[file.inputs[i].name] = static_cast<int>(slots.size());
    slots.push_back(Slot{file.inputs[i].name, SlotKind::kInput, static_cast<int>(i), {}, nullptr});
  }
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    const auto& t = file.tensors[i];
    Slot s{t.name, SlotKind::kConstant, static_cast<int>(i), t.dims, nullptr};
    if (t.storage == format::Storage::kDense && t.dtype == DType::kFloat32)
      s.constant_data = static_cast<const float*>(t.data);
    slot_of[t.name] = static_cast<int>(slots.size());
    slots.push_back(std::move(s));
  }
  ops.reserve(file.nodes.size());
  for (size_t n = 0; n < file.nodes.size(); ++n) {
    const auto& node = file.nodes[n];
    std::vector<int> ins;
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        ins.push_back(-1);
        continue;
      }
      auto it = slot_of.find(name);
      if (it == slot_of.end())  // the reader guarantees this never happens
        throw Error(ErrorCode::kFormat, node_label(n) + ": unknown input '" + name + "'");
      ins.push_back(it->second);
    }
    node_inputs.push_back(std::move(ins));
    ops::NodeContext ctx(node, file, options.tune);
    ops.push_back(ops::find_op_factory(node.op_type)(ctx));
    std::vector<int> outs;
    for (const auto& name : node.outputs) {
      slot_of[name] = static_cast<int>(slots.size());
      outs.push_back(static_cast<int>(slots.size()));
      slots.push_back(Slot{name, SlotKind::kNodeOutput, static_cast<int>(n), {}, nullptr});
    }
    node_outputs.push_back(std::move(outs));
  }
  for (const auto& name : file.outputs) {
    auto it = slot_of.find(name);
    if (it == slot_of.end() || slots[it->second].kind == SlotKind::kConstant)
      throw Error(ErrorCode::kFormat, "graph output '" + name + "' is not produced by the graph");
    output_slots.push_back(it->second);
  }
  int threads = options.threads == 0 ? runtime::ThreadPool::hardware_threads() : options.threads;
  pool = std::make_unique<runtime::ThreadPool>(threads);

  // Plan once for the declared shapes (-1 read as 1): a graph whose shapes do
  // not fit together is refused at load rather than at the first run.
  std::vector<Shape> declared;
  bool dynamic = false;
  for (const auto& in : inputs) {
    Shape s = in.shape;
    for (auto& d : s)
      if (d < 0) {
        d = 1;
        dynamic = true;
      }
    declared.push_back(s);
  }
  try {
    auto plan = get_plan(declared);
    outputs.clear();
    for (size_t i = 0; i < output_slots.size(); ++i) {
      Shape s = plan->shapes[output_slots[i]];
      outputs.push_back(TensorSpec{file.outputs[i], DType::kFloat32, s});
    }
    if (dynamic) {
      // Mark output dims that follow a dynamic input dim: plan again with 2.
      std::vector<Shape> twos;
      for (const auto& in : inputs) {
        Shape s = in.shape;
        for (auto& d : s)
          if (d < 0) d = 2;
        twos.push_back(s);
      }
      try {
        auto plan2 = make_plan(twos);
        for (size_t i = 0; i < output_slots.size(); ++i) {
          const Shape& s2 = plan2->shapes[output_slots[i]];
          for (size_t d = 0; d < s2.size() && d < outputs[i].shape.size(); ++d)
            if (s2[d] != outputs[i].shape[d]) outputs[i].shape[d] = -1;
        }
      } catch (const Error&) {
      }
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kInvalidArgument)
      throw Error(ErrorCode::kFormat, std::string("model does not run on its declared input shapes: ") + e.what());
    throw;
  }
}

std::shared_ptr<Plan> Model::Impl::get_plan(const std::vector<Shape>& input_shapes) const {
  {
    std::lock_guard<std::mutex> lock(plans_mutex);
    for (auto it = plans.begin(); it != plans.end(); ++it) {
      if ((*it)->input_shapes == input_shapes) {
        auto plan = *it;
        plans.erase(it);
        plans.push_front(plan);
        last_shapes = input_shapes;
        return plan;
      }
    }
  }
  auto plan = make_plan(input_shapes);
  std::lock_guard<std::mutex> lock(plans_mutex);
  plans.push_front(plan);
  while (plans.size() > 8) plans.pop_back();
  last_shapes = input_shapes;
  return plan;
}

std::shared_ptr<Plan> Model::Impl::make_plan(const std::vector<Shape>& input_shapes) const {
  auto plan = std::make_shared<Plan>();
  plan->input_shapes = input_shapes;
  const size_t n_slots = slots.size();
  const size_t n_nodes = file.nodes.size();
  plan->shapes.assign(n_slots, {});
  plan->offsets.assign(n_slots, -1);
  plan->alias_source.assign(n_slots, -1);
  plan->external_output.assign(n_slots, -1);
  plan->skip_node.assign(n_nodes, false);
  plan->scratch_offset.assign(n_nodes, -1);
  plan->scratch_size.assign(n_nodes, 0);

  // Input sizes first: ops multiply dims freely, so a (declared or given)
  // shape whose element count overflows must never reach them.
  for (size_t i = 0; i < input_shapes.size() && i < inputs.size(); ++i)
    checked_elements(input_shapes[i], "input '" + inputs[i].name + "'");
  for (size_t s = 0; s < n_slots; ++s) {
    if (slots[s].kind == SlotKind::kInput) plan->shapes[s] = input_shapes[slots[s].index];
    if (slots[s].kind == SlotKind::kConstant) plan->shapes[s] = slots[s].constant_shape;
  }
  // graph outputs produced by a node are written straight into the result
  for (size_t i = 0; i < output_slots.size(); ++i) {
    int s = output_slots[i];
    if (slots[s].kind == SlotKind::kNodeOutput && plan->external_output[s] < 0)
      plan->external_output[s] = static_cast<int>(i);
  }

  // shapes
  std::vector<uint64_t> bytes(n_slots, 0);
  for (size_t n = 0; n < n_nodes; ++n) {
    std::vector<Shape> in_shapes;
    for (int s : node_inputs[n]) in_shapes.push_back(s < 0 ? Shape{} : plan->shapes[s]);
    std::vector<Shape> out_shapes;
    try {
      out_shapes = ops[n]->infer_shapes(in_shapes);
    } catch (const Error& e) {
      throw Error(e.code(), node_label(n) + ": " + e.what());
    }
    if (out_shapes.size() != node_outputs[n].size())
      throw Error(ErrorCode::kInternal, node_label(n) + ": op returned the wrong number of outputs");
    for (size_t o = 0; o < out_shapes.size(); ++o) {
      int s = node_outputs[n][o];
      for (int64_t d : out_shapes[o])
        if (d < 0)
          throw Error(ErrorCode::kInvalidArgument, node_label(n) + ": output shape " +
                                                       ops::shape_string(out_shapes[o]) + " is invalid");
      int64_t elements = checked_elements(out_shapes[o], node_label(n) + " output '" + slots[s].name + "'");
      plan->shapes[s] = out_shapes[o];
      bytes[s] = static_cast<uint64_t>(elements) * sizeof(float);
      if (bytes[s] > physical_memory_bytes())
        throw Error(ErrorCode::kResource, node_label(n) + ": output '" + slots[s].name + "' of shape " +
                                              ops::shape_string(out_shapes[o]) +
                                              " needs more memory than this machine has; use a smaller batch");
    }
    int alias = ops[n]->alias_of_input();
    if (alias >= 0 && node_outputs[n].size() == 1 && alias < static_cast<int>(node_inputs[n].size())) {
      int out = node_outputs[n][0];
      int src = node_inputs[n][alias];
      if (src >= 0 && plan->external_output[out] < 0 &&
          (slots[src].kind != SlotKind::kConstant || slots[src].constant_data != nullptr)) {
        plan->alias_source[out] = plan->alias_source[src] >= 0 ? plan->alias_source[src] : src;
        plan->skip_node[n] = true;
      }
    }
    size_t scratch = ops[n]->scratch_bytes(in_shapes, pool->threads());
    plan->scratch_size[n] = scratch;
  }

  // liveness: last node reading each (root) slot; graph outputs live to the end
  std::vector<int64_t> last_use(n_slots, -1);
  auto root = [&](int s) { return plan->alias_source[s] >= 0 ? plan->alias_source[s] : s; };
  for (size_t n = 0; n < n_nodes; ++n)
    for (int s : node_inputs[n])
      if (s >= 0) last_use[root(s)] = std::max<int64_t>(last_use[root(s)], static_cast<int64_t>(n));
  for (int s : output_slots) last_use[root(s)] = static_cast<int64_t>(n_nodes);

  ArenaPlanner arena;
  for (size_t n = 0; n < n_nodes; ++n) {
    for (int s : node_outputs[n]) {
      if (plan->alias_source[s] >= 0 || plan->external_output[s] >= 0) continue;
      plan->offsets[s] = arena.allocate(bytes[s]);
    }
    if (plan->scratch_size[n] > 0) {
      plan->scratch_offset[n] = arena.allocate(plan->scratch_size[n]);
      arena.release(plan->scratch_offset[n], plan->scratch_size[n]);
    }
    // free what dies here (its last reader was this node, or nobody reads it)
    auto maybe_free = [&](int s) {
      if (s < 0 || slots[s].kind != SlotKind::kNodeOutput) return;
      if (plan->alias_source[s] >= 0 || plan->offsets[s] < 0) return;
      if (last_use[s] <= static_cast<int64_t>(n)) {
        arena.release(plan->offsets[s], bytes[s]);
        last_use[s] = INT64_MAX;  // freed once
      }
    };
    for (int s : node_inputs[n]) maybe_free(s >= 0 ? root(s) : -1);
    for (int s : node_outputs[n]) maybe_free(s);
  }
  plan->arena_bytes = arena.size();
  uint64_t outputs_bytes = 0;
  for (int s : output_slots) outputs_bytes += bytes[s];
  if (plan->arena_bytes + outputs_bytes > physical_memory_bytes() / 4 * 3)
    throw Error(ErrorCode::kResource,
                "running with these input shapes needs " + std::to_string((plan->arena_bytes + outputs_bytes) >> 20) +
                    " MiB of activations, more than this machine's memory allows; use a smaller batch");
  return plan;
}

std::vector<Shape> Model::Impl::check_inputs(const std::vector<Tensor>& given) const {
  if (given.size() != inputs.size()) {
    std::ostringstream s;
    s << "model takes " << inputs.size() << " input" << (inputs.size() == 1 ? "" : "s") << " (";
    for (size_t i = 0; i < inputs.size(); ++i) s << (i ? ", " : "") << "'" << inputs[i].name << "'";
    s << "), got " << given.size();
    throw Error(ErrorCode::kInvalidArgument, s.str());
  }
  std::vector<Shape> shapes;
  for (size_t i = 0; i < given.size(); ++i) {
    const Shape& shape = given[i].shape();
    const Shape& want = inputs[i].shape;
    bool ok = shape.size() == want.size();
    for (size_t d = 0; ok && d < shape.size(); ++d) ok = shape[d] >= 0 && (want[d] < 0 || want[d] == shape[d]);
    if (!ok)
      throw Error(ErrorCode::kInvalidArgument, "input '" + inputs[i].name + "' has shape " +
                                                   ops::shape_string(shape) + ", expected " +
                                                   ops::shape_string(want) + " (-1 = any size)");
    if (given[i].data() == nullptr && given[i].size() > 0)
      throw Error(ErrorCode::kInvalidArgument, "input '" + inputs[i].name + "' has no data");
    shapes.push_back(shape);
  }
  return shapes;
}

void Model::Impl::execute(Plan& plan, const std::vector<Tensor>& given, std::vector<Tensor>& outs,
                          std::vector<double>* node_ms) const {
  Arena arena;
  {
    std::lock_guard<std::mutex> lock(plan.arenas_mutex);
    if (!plan.free_arenas.empty()) {
      arena = std::move(plan.free_arenas.back());
      plan.free_arenas.pop_back();
    }
  }
  if (!arena.memory && plan.arena_bytes > 0) {
    arena.memory = allocate_floats(static_cast<int64_t>(plan.arena_bytes / sizeof(float)) + 1);
    arena.bytes = plan.arena_bytes;
  }
  char* base = reinterpret_cast<char*>(arena.memory.get());

  const size_t n_slots = slots.size();
  std::vector<const float*> data(n_slots, nullptr);
  for (size_t s = 0; s < n_slots; ++s) {
    switch (slots[s].kind) {
      case SlotKind::kInput: data[s] = given[slots[s].index].data(); break;
      case SlotKind::kConstant: data[s] = slots[s].constant_data; break;
      case SlotKind::kNodeOutput:
        if (plan.external_output[s] >= 0)
          data[s] = outs[plan.external_output[s]].data();
        else if (plan.offsets[s] >= 0)
          data[s] = reinterpret_cast<const float*>(base + plan.offsets[s]);
        break;
    }
  }
  for (size_t s = 0; s < n_slots; ++s)
    if (plan.alias_source[s] >= 0) data[s] = data[plan.alias_source[s]];

  std::vector<ops::InputRef> in_refs;
  std::vector<ops::OutputRef> out_refs;
  for (size_t n = 0; n < file.nodes.size(); ++n) {
    if (plan.skip_node[n]) continue;
    auto start = std::chrono::steady_clock::now();
    in_refs.clear();
    out_refs.clear();
    for (int s : node_inputs[n]) {
      if (s < 0)
        in_refs.push_back(ops::InputRef{nullptr, {}});
      else
        in_refs.push_back(ops::InputRef{data[s], plan.shapes[s]});
    }
    for (int s : node_outputs[n]) out_refs.push_back(ops::OutputRef{const_cast<float*>(data[s]), plan.shapes[s]});
    void* scratch = plan.scratch_offset[n] >= 0 ? base + plan.scratch_offset[n] : nullptr;
    ops::RunContext ctx(*pool, scratch, plan.scratch_size[n]);
    try {
      ops[n]->run(ctx, in_refs, out_refs);
    } catch (const Error& e) {
      std::lock_guard<std::mutex> lock(plan.arenas_mutex);
      plan.free_arenas.push_back(std::move(arena));
      throw Error(e.code(), node_label(n) + ": " + e.what());
    }
    if (node_ms)
      (*node_ms)[n] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  // outputs not written in place (graph inputs, aliases, repeated outputs)
  for (size_t i = 0; i < output_slots.size(); ++i) {
    int s = output_slots[i];
    if (plan.external_output[s] == static_cast<int>(i)) continue;
    std::memcpy(outs[i].data(), data[s], sizeof(float) * static_cast<size_t>(outs[i].size()));
  }
  std::lock_guard<std::mutex> lock(plan.arenas_mutex);
  if (plan.free_arenas.size() < 16) plan.free_arenas.push_back(std::move(arena));
}

// ---------------------------------------------------------------------------
// Model

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

Model Model::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_shared<Impl>();
  impl->file = format::read_file(path, options.verify_checksum);
  impl->build(options);
  return Model(std::move(impl));
}

Model Model::load_from_buffer(const void* data, size_t size, const LoadOptions& options) {
  if (data == nullptr && size > 0) throw Error(ErrorCode::kInvalidArgument, "load_from_buffer: null data");
  auto impl = std::make_shared<Impl>();
  impl->file = format::read_buffer(data, size, options.verify_checksum);
  impl->build(options);
  return Model(std::move(impl));
}

const std::vector<TensorSpec>& Model::inputs() const { return impl_->inputs; }
const std::vector<TensorSpec>& Model::outputs() const { return impl_->outputs; }
const std::map<std::string, std::string>& Model::metadata() const { return impl_->metadata; }
int Model::threads() const { return impl_->pool->threads(); }

std::vector<std::vector<int64_t>> Model::output_shapes(const std::vector<std::vector<int64_t>>& input_shapes) const {
  std::vector<Tensor> views;
  for (const auto& s : input_shapes) views.push_back(Tensor::view(nullptr, s));
  for (const auto& s : input_shapes)
    for (int64_t d : s)
      if (d < 0) throw Error(ErrorCode::kInvalidArgument, "input shapes must not have negative dims");
  std::vector<Shape> checked;
  {
    // same checks as run(), without data
    if (views.size() != impl_->inputs.size())
      throw Error(ErrorCode::kInvalidArgument, "expected " + std::to_string(impl_->inputs.size()) +
                                                   " input shapes, got " + std::to_string(views.size()));
    for (size_t i = 0; i < views.size(); ++i) {
      const Shape& want = impl_->inputs[i].shape;
      const Shape& got = views[i].shape();
      bool ok = got.size() == want.size();
      for (size_t d = 0; ok && d < got.size(); ++d) ok = want[d] < 0 || want[d] == got[d];
      if (!ok)
        throw Error(ErrorCode::kInvalidArgument, "input '" + impl_->inputs[i].name + "' has shape " +
                                                     ops::shape_string(got) + ", expected " +
                                                     ops::shape_string(want) + " (-1 = any size)");
    }
  }
  auto plan = impl_->get_plan(input_shapes);
  std::vector<std::vector<int64_t>> out;
  for (int s : impl_->output_slots) out.push_back(plan->shapes[s]);
  return out;
}

std::vector<Tensor> Model::run(const std::vector<Tensor>& inputs) const {
  auto shapes = impl_->check_inputs(inputs);
  auto plan = impl_->get_plan(shapes);
  std::vector<Tensor> outs;
  outs.reserve(impl_->output_slots.size());
  for (int s : impl_->output_slots) outs.emplace_back(plan->shapes[s]);
  impl_->execute(*plan, inputs, outs, nullptr);
  return outs;
}

void Model::run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  auto shapes = impl_->check_inputs(inputs);
  auto plan = impl_->get_plan(shapes);
  if (outputs.size() != impl_->output_slots.size())
    throw Error(ErrorCode::kInvalidArgument, "expected " + std::to_string(impl_->output_slots.size()) +
                                                 " output tensors, got " + std::to_string(outputs.size()));
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Shape& want = plan->shapes[impl_->output_slots[i]];
    if (outputs[i].shape() != want || (outputs[i].data() == nullptr && outputs[i].size() > 0))
      throw Error(ErrorCode::kInvalidArgument, "output '" + impl_->file.outputs[i] + "' must have shape " +
                                                   ops::shape_string(want) + ", got " +
                                                   ops::shape_string(outputs[i].shape()));
  }
  impl_->execute(*plan, inputs, outputs, nullptr);
}

double Model::profile(const std::vector<Tensor>& inputs, int repeats) const {
  if (repeats < 1) throw Error(ErrorCode::kInvalidArgument, "repeats must be >= 1");
  auto shapes = impl_->check_inputs(inputs);
  auto plan = impl_->get_plan(shapes);
  const size_t n_nodes = impl_->file.nodes.size();
  std::vector<std::vector<double>> times(n_nodes);
  std::vector<double> totals;
  std::vector<Tensor> outs;
  for (int s : impl_->output_slots) outs.emplace_back(plan->shapes[s]);
  impl_->execute(*plan, inputs, outs, nullptr);  // warm up
  std::vector<double> node_ms(n_nodes, 0.0);
  for (int r = 0; r < repeats; ++r) {
    auto start = std::chrono::steady_clock::now();
    impl_->execute(*plan, inputs, outs, &node_ms);
    totals.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    for (size_t n = 0; n < n_nodes; ++n) times[n].push_back(node_ms[n]);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
  };
  std::vector<double> med(n_nodes);
  for (size_t n = 0; n < n_nodes; ++n) med[n] = median(times[n]);
  {
    std::lock_guard<std::mutex> lock(plan->profile_mutex);
    plan->node_ms = med;
  }
  return median(totals);
}

std::vector<NodeInfo> Model::summary(const std::vector<std::vector<int64_t>>& input_shapes) const {
  std::vector<Shape> shapes = input_shapes;
  if (shapes.empty()) {
    std::lock_guard<std::mutex> lock(impl_->plans_mutex);
    shapes = impl_->last_shapes;
  }
  if (shapes.size() != impl_->inputs.size())
    throw Error(ErrorCode::kInvalidArgument, "summary: expected " + std::to_string(impl_->inputs.size()) +
                                                 " input shapes");
  auto plan = impl_->get_plan(shapes);
  std::vector<double> node_ms;
  {
    std::lock_guard<std::mutex> lock(plan->profile_mutex);
    node_ms = plan->node_ms;
  }
  std::vector<NodeInfo> rows;
  for (size_t n = 0; n < impl_->file.nodes.size(); ++n) {
    NodeInfo info;
    info.name = impl_->file.nodes[n].name;
    info.op = impl_->file.nodes[n].op_type;
    std::vector<Shape> ins, outs;
    for (int s : impl_->node_inputs[n]) {
      ins.push_back(s < 0 ? Shape{} : plan->shapes[s]);
      if (s >= 0 && impl_->slots[s].kind != SlotKind::kConstant) info.input_shapes.push_back(plan->shapes[s]);
    }
    for (int s : impl_->node_outputs[n]) {
      outs.push_back(plan->shapes[s]);
      info.output_shapes.push_back(plan->shapes[s]);
    }
    impl_->ops[n]->describe(ins, outs, &info);
    if (plan->skip_node[n]) info.kernel = "alias (no copy)";
    if (!node_ms.empty()) info.time_ms = plan->skip_node[n] ? 0.0 : node_ms[n];
    rows.push_back(std::move(info));
  }
  return rows;
}

}  // namespace sparsert
