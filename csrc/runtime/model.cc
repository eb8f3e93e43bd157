// Model: a validated graph, its weights (in the model's private copy of the
// file, or the mapped file with LoadOptions::mmap) and execution plans.
//
// Load: the rewrite passes run (runtime/passes.h), every op type must be
// known (all unknown types are reported at once), then each node's factory
// validates it with the dtypes of its inputs (graph inputs as declared,
// constants as stored, node outputs as their producer declared them).
//
// A plan is made once per set of input shapes: shapes of every tensor, the
// values of every tensor that is known while planning (constants, and ops
// whose inputs are all known, such as the Shape -> Gather -> Concat chains
// that dynamic-shape exports compute target shapes with: those ops run once
// here and are skipped at run time), one arena of intermediate buffers
// assigned by liveness, and per-node scratch. Each concurrent run() takes its
// own arena from the plan's free list, so runs on one Model from many
// threads never share buffers. Idle arenas are bounded per plan and in total,
// and release_memory() frees them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iterator>
#include <list>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "format/spr_format.h"
#include "kernels/kernels.h"
#include "ops/op.h"
#include "runtime/memory.h"
#include "runtime/passes.h"
#include "runtime/planner.h"
#include "runtime/thread_pool.h"
#include "sparsert/sparsert.h"

#ifndef SPARSERT_VERSION_STRING
#define SPARSERT_VERSION_STRING "0.0.0"
#endif

namespace sparsert {

using ops::Shape;

const char* version() { return SPARSERT_VERSION_STRING; }

std::string cpu_features() {
  const kernels::Isa isa = kernels::best_isa();
#if defined(__x86_64__) || defined(_M_X64)
  const std::string arch = "x86-64";
#elif defined(__aarch64__)
  const std::string arch = "aarch64";
#elif defined(__arm__)
  const std::string arch = "arm";
#else
  const std::string arch = "generic";
#endif
  return arch + " " + kernels::isa_name(isa);
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (kernels::Isa isa : {kernels::Isa::kScalar, kernels::Isa::kNeon, kernels::Isa::kAvx2, kernels::Isa::kAvx512})
    if (kernels::isa_supported(isa)) out.emplace_back(kernels::isa_name(isa));
  return out;
}

std::vector<std::string> supported_ops() { return ops::supported_op_types(); }

int default_threads() { return runtime::ThreadPool::available_cpus(); }

namespace {

// Values computed while planning are kept only when this small (shape
// computations); bigger constant subgraphs run at run time.
constexpr int64_t kPlanFoldMaxBytes = 1 << 20;
// Idle activation arenas kept per plan, and in total per model.
constexpr size_t kIdleArenasPerPlan = 2;

enum class SlotKind { kInput, kConstant, kNodeOutput };

struct Slot {
  std::string name;
  SlotKind kind;
  int index;  // graph input index, tensor index or node index
  DType dtype = DType::kFloat32;
  Shape constant_shape;
  const void* constant_data = nullptr;  // dense constants
};

struct Arena {
  std::shared_ptr<void> memory;
  uint64_t bytes = 0;
};

struct Plan {
  std::vector<Shape> input_shapes;
  std::vector<Shape> shapes;         // per slot
  std::vector<int64_t> offsets;      // per slot: byte offset in the arena, -1 if not in it
  std::vector<int> alias_source;     // per slot: slot whose bytes it shares, or -1
  std::vector<int> external_output;  // per slot: graph output index written in place, or -1
  std::vector<const void*> known;    // per slot: values known while planning, or null
  std::vector<std::shared_ptr<void>> owned;  // memory behind plan-time values
  std::vector<bool> skip_node;       // aliased, or computed while planning
  std::vector<int64_t> scratch_offset;
  std::vector<size_t> scratch_size;
  uint64_t arena_bytes = 0;

  std::mutex arenas_mutex;
  std::vector<Arena> free_arenas;

  std::mutex profile_mutex;
  std::vector<double> node_ms;  // empty until profiled
};

ops::LoadConfig make_config(const LoadOptions& options) {
  ops::LoadConfig c;
  c.tune = options.tune;
  c.isa = kernels::isa_from_name(options.isa);
  if (options.layer_kernel == "auto") {
    c.layer_kernel = ops::LoadConfig::LayerKernel::kAuto;
  } else if (options.layer_kernel == "sparse") {
    c.layer_kernel = ops::LoadConfig::LayerKernel::kSparse;
  } else if (options.layer_kernel == "dense") {
    c.layer_kernel = ops::LoadConfig::LayerKernel::kDense;
  } else {
    throw Error(ErrorCode::kInvalidArgument,
                "layer_kernel must be 'auto', 'sparse' or 'dense', got '" + options.layer_kernel + "'");
  }
  if (options.conv_sparse_path == "auto") {
    c.conv_sparse_path = ops::LoadConfig::ConvSparsePath::kAuto;
  } else if (options.conv_sparse_path == "direct") {
    c.conv_sparse_path = ops::LoadConfig::ConvSparsePath::kDirect;
  } else if (options.conv_sparse_path == "im2col") {
    c.conv_sparse_path = ops::LoadConfig::ConvSparsePath::kIm2col;
  } else {
    throw Error(ErrorCode::kInvalidArgument,
                "conv_sparse_path must be 'auto', 'direct' or 'im2col', got '" + options.conv_sparse_path + "'");
  }
  return c;
}

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
  int threads = 1;
  std::string isa;
  std::vector<std::string> log;
  size_t max_plans = 8;

  mutable std::mutex plans_mutex;
  mutable std::list<std::shared_ptr<Plan>> plans;  // most recent first
  mutable std::vector<Shape> last_shapes;
  mutable std::atomic<uint64_t> idle_bytes{0};

  void build(const LoadOptions& options);
  std::shared_ptr<Plan> get_plan(const std::vector<Shape>& input_shapes) const;
  std::shared_ptr<Plan> make_plan(const std::vector<Shape>& input_shapes) const;
  std::vector<Shape> check_inputs(const std::vector<Tensor>& inputs) const;
  std::vector<Shape> check_shapes(const std::vector<Shape>& shapes) const;
  void execute(Plan& plan, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
               std::vector<double>* node_ms) const;
  void give_back(Plan& plan, Arena arena) const;
  std::string node_label(size_t n) const {
    return "node '" + file.nodes[n].name + "' (" + file.nodes[n].op_type + ")";
  }
  // Idle arena memory a model may keep: twice its largest plan, at most 1 GiB.
  uint64_t idle_budget(const Plan& plan) const {
    return std::min<uint64_t>(uint64_t{1} << 30, 2 * plan.arena_bytes);
  }
};

void Model::Impl::build(const LoadOptions& options) {
  if (options.threads < 0 || options.threads > kMaxThreads)
    throw Error(ErrorCode::kInvalidArgument, "threads must be 0 (every core) or in [1, " +
                                                 std::to_string(kMaxThreads) + "], got " +
                                                 std::to_string(options.threads));
  if (options.max_cached_plans < 1 || options.max_cached_plans > 1024)
    throw Error(ErrorCode::kInvalidArgument, "max_cached_plans must be in [1, 1024]");
  max_plans = static_cast<size_t>(options.max_cached_plans);
  ops::LoadConfig config = make_config(options);
  uint64_t file_bytes = 0;
  for (const auto& t : file.tensors) file_bytes += t.stored_bytes();
  config.expand_budget->store(static_cast<int64_t>(std::max<uint64_t>(uint64_t{1} << 28, 8 * file_bytes)));
  isa = kernels::isa_name(config.isa);
  runtime::run_passes(&file, options.disabled_passes, &log);
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
      s << "; this sparsert implements " << ops::supported_op_types().size()
        << " op types (sparsert.supported_ops()), a newer version may have these";
      throw Error(ErrorCode::kUnsupported, s.str());
    }
  }
  for (const auto& in : file.inputs) inputs.push_back(TensorSpec{in.name, in.dtype, in.dims, in.dim_names});
  for (const auto& kv : file.metadata) metadata[kv.first] = kv.second.to_string();

  std::unordered_map<std::string, int> slot_of;
  for (size_t i = 0; i < file.inputs.size(); ++i) {
    slot_of[file.inputs[i].name] = static_cast<int>(slots.size());
    slots.push_back(Slot{file.inputs[i].name, SlotKind::kInput, static_cast<int>(i), file.inputs[i].dtype, {}, nullptr});
  }
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    const auto& t = file.tensors[i];
    Slot s{t.name, SlotKind::kConstant, static_cast<int>(i), t.dtype, t.dims, nullptr};
    if (t.storage == format::Storage::kDense) s.constant_data = t.data;
    slot_of[t.name] = static_cast<int>(slots.size());
    slots.push_back(std::move(s));
  }
  ops.reserve(file.nodes.size());
  for (size_t n = 0; n < file.nodes.size(); ++n) {
    const auto& node = file.nodes[n];
    std::vector<int> ins;
    std::vector<DType> dtypes;
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        ins.push_back(-1);
        dtypes.push_back(DType::kFloat32);
        continue;
      }
      auto it = slot_of.find(name);
      if (it == slot_of.end())  // the reader guarantees this never happens
        throw Error(ErrorCode::kFormat, node_label(n) + ": unknown input '" + name + "'");
      ins.push_back(it->second);
      dtypes.push_back(slots[it->second].dtype);
    }
    ops::NodeContext ctx(node, file, dtypes, config);
    ops.push_back(ops::find_op_factory(node.op_type)(ctx));
    for (auto& note : *config.notes) log.push_back(node_label(n) + ": " + note);
    config.notes->clear();
    const ops::Op& op = *ops.back();
    // Sparse constants only where the op takes them; float32 only unless the op said otherwise.
    for (size_t i = 0; i < ins.size(); ++i) {
      if (ins[i] < 0 || slots[ins[i]].kind != SlotKind::kConstant) continue;
      const auto& t = file.tensors[slots[ins[i]].index];
      if (t.storage != format::Storage::kDense && !op.accepts_sparse_constant(i))
        ctx.fail("input " + std::to_string(i) + " '" + t.name +
                 "' is stored sparse; only Linear and Conv weights may be (store it dense)");
    }
    std::vector<DType> out_dtypes = ctx.output_dtypes();
    if (out_dtypes.empty()) {
      for (size_t i = 0; i < ins.size(); ++i) {
        if (ins[i] >= 0 && dtypes[i] != DType::kFloat32)
          ctx.fail("input " + std::to_string(i) + " '" + node.inputs[i] + "' has dtype " + dtype_name(dtypes[i]) +
                       "; this op takes float32 (add a Cast)",
                   ErrorCode::kUnsupported);
      }
      out_dtypes.assign(node.outputs.size(), DType::kFloat32);
    }
    if (out_dtypes.size() != node.outputs.size())
      throw Error(ErrorCode::kInternal, node_label(n) + ": op declared the wrong number of outputs");
    node_inputs.push_back(std::move(ins));
    std::vector<int> outs;
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      slot_of[node.outputs[o]] = static_cast<int>(slots.size());
      outs.push_back(static_cast<int>(slots.size()));
      slots.push_back(Slot{node.outputs[o], SlotKind::kNodeOutput, static_cast<int>(n), out_dtypes[o], {}, nullptr});
    }
    node_outputs.push_back(std::move(outs));
  }
  for (const auto& name : file.outputs) {
    auto it = slot_of.find(name);
    if (it == slot_of.end() || slots[it->second].kind == SlotKind::kConstant)
      throw Error(ErrorCode::kFormat, "graph output '" + name + "' is not produced by the graph");
    output_slots.push_back(it->second);
  }
  threads = options.threads == 0 ? runtime::ThreadPool::available_cpus() : options.threads;
  runtime::ThreadPool::global().reserve(threads);

  // Plan once for the declared shapes: a graph whose shapes do not fit together is
  // refused at load rather than at the first run. Dynamic dims (-1) are tried at
  // several sizes: a model may only run at some (a sequence length that must match
  // a position table, an image size a reshape needs), and the first size that plans
  // gives the output shapes. When none does, the model still loads (every run is
  // planned and checked for its real shapes) and its outputs' shapes are unknown.
  bool dynamic = false;
  for (const auto& in : inputs)
    for (int64_t d : in.shape) dynamic |= d < 0;
  auto shapes_at = [&](int64_t size) {
    std::vector<Shape> shapes;
    for (const auto& in : inputs) {
      Shape s = in.shape;
      for (auto& d : s)
        if (d < 0) d = size;
      shapes.push_back(s);
    }
    return shapes;
  };
  static const int64_t kTrySizes[] = {1, 2, 3, 4, 8, 16};
  std::shared_ptr<Plan> plan;
  size_t planned_at = 0;
  for (size_t t = 0; t < (dynamic ? std::size(kTrySizes) : 1) && !plan; ++t) {
    try {
      plan = get_plan(shapes_at(kTrySizes[t]));
      planned_at = t;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInvalidArgument && !(dynamic && e.code() == ErrorCode::kResource)) throw;
      if (!dynamic)
        throw Error(ErrorCode::kFormat, std::string("model does not run on its declared input shapes: ") + e.what());
    }
  }
  outputs.clear();
  if (!plan) {
    for (size_t i = 0; i < output_slots.size(); ++i)
      outputs.push_back(TensorSpec{file.outputs[i], slots[output_slots[i]].dtype, {}, {}, false});
    return;
  }
  for (size_t i = 0; i < output_slots.size(); ++i) {
    const Shape& s = plan->shapes[output_slots[i]];
    outputs.push_back(TensorSpec{file.outputs[i], slots[output_slots[i]].dtype, s, std::vector<std::string>(s.size())});
  }
  if (dynamic) {
    // Mark output dims that follow a dynamic input dim: plan again at the next size that plans.
    for (size_t t = planned_at + 1; t < std::size(kTrySizes); ++t) {
      try {
        auto plan2 = make_plan(shapes_at(kTrySizes[t]));
        for (size_t i = 0; i < output_slots.size(); ++i) {
          const Shape& s2 = plan2->shapes[output_slots[i]];
          for (size_t d = 0; d < s2.size() && d < outputs[i].shape.size(); ++d)
            if (s2[d] != outputs[i].shape[d]) outputs[i].shape[d] = -1;
        }
        break;
      } catch (const Error&) {
      }
    }
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
  while (plans.size() > max_plans) {
    std::lock_guard<std::mutex> arenas(plans.back()->arenas_mutex);
    for (const Arena& a : plans.back()->free_arenas) idle_bytes -= a.bytes;
    plans.back()->free_arenas.clear();
    plans.pop_back();
  }
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
  plan->known.assign(n_slots, nullptr);
  plan->skip_node.assign(n_nodes, false);
  plan->scratch_offset.assign(n_nodes, -1);
  plan->scratch_size.assign(n_nodes, 0);

  // Input sizes first: ops multiply dims freely, so a (declared or given)
  // shape whose size overflows must never reach them.
  for (size_t i = 0; i < input_shapes.size() && i < inputs.size(); ++i)
    runtime::checked_bytes(input_shapes[i], inputs[i].dtype, "input '" + inputs[i].name + "'");
  for (size_t s = 0; s < n_slots; ++s) {
    if (slots[s].kind == SlotKind::kInput) plan->shapes[s] = input_shapes[slots[s].index];
    if (slots[s].kind == SlotKind::kConstant) {
      plan->shapes[s] = slots[s].constant_shape;
      plan->known[s] = slots[s].constant_data;
    }
  }
  // graph outputs produced by a node are written straight into the result
  for (size_t i = 0; i < output_slots.size(); ++i) {
    const int s = output_slots[i];
    if (slots[s].kind == SlotKind::kNodeOutput && plan->external_output[s] < 0)
      plan->external_output[s] = static_cast<int>(i);
  }

  std::vector<uint64_t> bytes(n_slots, 0);
  for (size_t n = 0; n < n_nodes; ++n) {
    const ops::Op& op = *ops[n];
    std::vector<ops::TensorMeta> metas;
    std::vector<Shape> in_shapes;
    bool all_known = true;
    for (int s : node_inputs[n]) {
      if (s < 0) {
        metas.push_back(ops::TensorMeta{DType::kFloat32, {}, nullptr, false});
        in_shapes.emplace_back();
        continue;
      }
      const int root = plan->alias_source[s] >= 0 ? plan->alias_source[s] : s;
      const void* value = plan->known[root];
      if (value == nullptr && runtime::checked_elements(plan->shapes[s], "tensor") > 0) all_known = false;
      metas.push_back(ops::TensorMeta{slots[s].dtype, plan->shapes[s], value, true});
      in_shapes.push_back(plan->shapes[s]);
    }
    std::vector<Shape> out_shapes;
    try {
      out_shapes = op.infer_shapes_with_values(metas);
    } catch (const Error& e) {
      throw Error(e.code(), node_label(n) + ": " + e.what());
    }
    if (out_shapes.size() != node_outputs[n].size())
      throw Error(ErrorCode::kInternal, node_label(n) + ": op returned the wrong number of outputs");
    uint64_t out_bytes = 0;
    for (size_t o = 0; o < out_shapes.size(); ++o) {
      const int s = node_outputs[n][o];
      if (out_shapes[o].size() > format::kMaxRank)
        throw Error(ErrorCode::kInvalidArgument, node_label(n) + ": output rank " +
                                                     std::to_string(out_shapes[o].size()) + " exceeds 8");
      for (int64_t d : out_shapes[o])
        if (d < 0)
          throw Error(ErrorCode::kInvalidArgument, node_label(n) + ": output shape " +
                                                       ops::shape_string(out_shapes[o]) + " is invalid");
      plan->shapes[s] = out_shapes[o];
      bytes[s] = runtime::checked_bytes(out_shapes[o], slots[s].dtype,
                                        node_label(n) + " output '" + slots[s].name + "'");
      out_bytes += bytes[s];
    }
    const size_t scratch = op.scratch_bytes(in_shapes, threads);
    plan->scratch_size[n] = scratch;

    // Computed now when every input is known (and the result is small), or
    // when the op needs only shapes.
    const bool fold = (op.shape_only() || (all_known && op.foldable())) && out_bytes <= kPlanFoldMaxBytes &&
                      scratch <= static_cast<size_t>(kPlanFoldMaxBytes);
    if (fold) {
      std::vector<ops::InputRef> in_refs;
      for (size_t i = 0; i < metas.size(); ++i)
        in_refs.push_back(ops::InputRef{metas[i].value, metas[i].shape, metas[i].dtype});
      std::vector<ops::OutputRef> out_refs;
      for (size_t o = 0; o < out_shapes.size(); ++o) {
        const int s = node_outputs[n][o];
        plan->owned.push_back(runtime::allocate_bytes(bytes[s]));
        plan->known[s] = plan->owned.back().get();
        out_refs.push_back(ops::OutputRef{plan->owned.back().get(), out_shapes[o], slots[s].dtype});
      }
      std::shared_ptr<void> scratch_memory = runtime::allocate_bytes(scratch);
      ops::RunContext ctx(runtime::ThreadPool::global(), 1, scratch_memory.get(), scratch);
      try {
        op.run(ctx, in_refs, out_refs);
      } catch (const Error& e) {
        throw Error(e.code(), node_label(n) + ": " + e.what());
      }
      plan->skip_node[n] = true;
      continue;
    }
    const int alias = op.alias_of_input();
    if (alias >= 0 && node_outputs[n].size() == 1 && alias < static_cast<int>(node_inputs[n].size())) {
      const int out = node_outputs[n][0];
      const int src = node_inputs[n][alias];
      if (src >= 0 && plan->external_output[out] < 0 && slots[src].dtype == slots[out].dtype &&
          (slots[src].kind != SlotKind::kConstant || slots[src].constant_data != nullptr)) {
        plan->alias_source[out] = plan->alias_source[src] >= 0 ? plan->alias_source[src] : src;
        plan->skip_node[n] = true;
      }
    }
  }

  // liveness: last node reading each (root) slot; graph outputs live to the end
  std::vector<int64_t> last_use(n_slots, -1);
  auto root = [&](int s) { return plan->alias_source[s] >= 0 ? plan->alias_source[s] : s; };
  for (size_t n = 0; n < n_nodes; ++n)
    for (int s : node_inputs[n])
      if (s >= 0) last_use[root(s)] = std::max<int64_t>(last_use[root(s)], static_cast<int64_t>(n));
  for (int s : output_slots) last_use[root(s)] = static_cast<int64_t>(n_nodes);

  runtime::ArenaPlanner arena;
  for (size_t n = 0; n < n_nodes; ++n) {
    for (int s : node_outputs[n]) {
      if (plan->alias_source[s] >= 0 || plan->external_output[s] >= 0 || plan->known[s] != nullptr) continue;
      plan->offsets[s] = arena.allocate(bytes[s]);
    }
    if (plan->scratch_size[n] > 0 && !plan->skip_node[n]) {
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
  if (plan->arena_bytes + outputs_bytes > runtime::physical_memory_bytes() / 4 * 3)
    throw Error(ErrorCode::kResource,
                "running with these input shapes needs " + std::to_string((plan->arena_bytes + outputs_bytes) >> 20) +
                    " MiB of activations, more than this machine's memory allows; use a smaller batch");
  return plan;
}

std::vector<Shape> Model::Impl::check_shapes(const std::vector<Shape>& shapes) const {
  if (shapes.size() != inputs.size()) {
    std::ostringstream s;
    s << "model takes " << inputs.size() << " input" << (inputs.size() == 1 ? "" : "s") << " (";
    for (size_t i = 0; i < inputs.size(); ++i) s << (i ? ", " : "") << "'" << inputs[i].name << "'";
    s << "), got " << shapes.size();
    throw Error(ErrorCode::kInvalidArgument, s.str());
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& shape = shapes[i];
    const Shape& want = inputs[i].shape;
    bool ok = shape.size() == want.size();
    for (size_t d = 0; ok && d < shape.size(); ++d) ok = shape[d] >= 0 && (want[d] < 0 || want[d] == shape[d]);
    if (!ok)
      throw Error(ErrorCode::kInvalidArgument, "input '" + inputs[i].name + "' has shape " +
                                                   ops::shape_string(shape) + ", expected " +
                                                   ops::shape_string(want) + " (-1 = any size)");
  }
  return shapes;
}

std::vector<Shape> Model::Impl::check_inputs(const std::vector<Tensor>& given) const {
  std::vector<Shape> shapes;
  for (const Tensor& t : given) shapes.push_back(t.shape());
  check_shapes(shapes);
  for (size_t i = 0; i < given.size(); ++i) {
    if (given[i].dtype() != inputs[i].dtype)
      throw Error(ErrorCode::kInvalidArgument, "input '" + inputs[i].name + "' has dtype " +
                                                   dtype_name(given[i].dtype()) + ", expected " +
                                                   dtype_name(inputs[i].dtype));
    if (given[i].raw_data() == nullptr && given[i].size() > 0)
      throw Error(ErrorCode::kInvalidArgument, "input '" + inputs[i].name + "' has no data");
  }
  return shapes;
}

void Model::Impl::give_back(Plan& plan, Arena arena) const {
  if (!arena.memory) return;
  std::lock_guard<std::mutex> lock(plan.arenas_mutex);
  if (plan.free_arenas.size() < kIdleArenasPerPlan && idle_bytes.load() + arena.bytes <= idle_budget(plan)) {
    idle_bytes += arena.bytes;
    plan.free_arenas.push_back(std::move(arena));
  }
}

void Model::Impl::execute(Plan& plan, const std::vector<Tensor>& given, std::vector<Tensor>& outs,
                          std::vector<double>* node_ms) const {
  Arena arena;
  {
    std::lock_guard<std::mutex> lock(plan.arenas_mutex);
    if (!plan.free_arenas.empty()) {
      arena = std::move(plan.free_arenas.back());
      plan.free_arenas.pop_back();
      idle_bytes -= arena.bytes;
    }
  }
  if (!arena.memory && plan.arena_bytes > 0) {
    arena.memory = runtime::allocate_bytes(plan.arena_bytes);
    arena.bytes = plan.arena_bytes;
  }
  char* base = static_cast<char*>(arena.memory.get());

  const size_t n_slots = slots.size();
  std::vector<const void*> data(n_slots, nullptr);
  for (size_t s = 0; s < n_slots; ++s) {
    if (plan.known[s] != nullptr) {
      data[s] = plan.known[s];
      continue;
    }
    switch (slots[s].kind) {
      case SlotKind::kInput:
        data[s] = given[slots[s].index].raw_data();
        break;
      case SlotKind::kConstant:
        data[s] = slots[s].constant_data;
        break;
      case SlotKind::kNodeOutput:
        if (plan.external_output[s] >= 0)
          data[s] = outs[plan.external_output[s]].raw_data();
        else if (plan.offsets[s] >= 0)
          data[s] = base + plan.offsets[s];
        break;
    }
  }
  for (size_t s = 0; s < n_slots; ++s)
    if (plan.alias_source[s] >= 0) data[s] = data[plan.alias_source[s]];

  std::vector<ops::InputRef> in_refs;
  std::vector<ops::OutputRef> out_refs;
  for (size_t n = 0; n < file.nodes.size(); ++n) {
    if (plan.skip_node[n]) continue;
    const auto start = std::chrono::steady_clock::now();
    in_refs.clear();
    out_refs.clear();
    for (int s : node_inputs[n]) {
      if (s < 0)
        in_refs.push_back(ops::InputRef{nullptr, {}, DType::kFloat32});
      else
        in_refs.push_back(ops::InputRef{data[s], plan.shapes[s], slots[s].dtype});
    }
    for (int s : node_outputs[n])
      out_refs.push_back(ops::OutputRef{const_cast<void*>(data[s]), plan.shapes[s], slots[s].dtype});
    void* scratch = plan.scratch_offset[n] >= 0 ? base + plan.scratch_offset[n] : nullptr;
    ops::RunContext ctx(runtime::ThreadPool::global(), threads, scratch, plan.scratch_size[n]);
    try {
      ops[n]->run(ctx, in_refs, out_refs);
    } catch (const Error& e) {
      give_back(plan, std::move(arena));
      throw Error(e.code(), node_label(n) + ": " + e.what());
    }
    if (node_ms)
      (*node_ms)[n] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  // outputs not written in place (graph inputs, aliases, plan-time values, repeated outputs)
  for (size_t i = 0; i < output_slots.size(); ++i) {
    const int s = output_slots[i];
    if (plan.external_output[s] == static_cast<int>(i) && plan.known[s] == nullptr) continue;
    if (outs[i].nbytes() > 0) std::memcpy(outs[i].raw_data(), data[s], outs[i].nbytes());
  }
  give_back(plan, std::move(arena));
}

// ---------------------------------------------------------------------------
// Model

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

Model Model::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_shared<Impl>();
  impl->file = format::read_file(path, options.verify_checksum, options.mmap);
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
int Model::threads() const { return impl_->threads; }
const std::string& Model::isa() const { return impl_->isa; }
const std::vector<std::string>& Model::load_log() const { return impl_->log; }
const std::vector<spr::Node>& Model::nodes() const { return impl_->file.nodes; }
const std::vector<std::pair<std::string, spr::Value>>& Model::metadata_values() const {
  return impl_->file.metadata;
}

std::vector<std::vector<int64_t>> Model::output_shapes(const std::vector<std::vector<int64_t>>& input_shapes) const {
  impl_->check_shapes(input_shapes);
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
  for (int s : impl_->output_slots) outs.emplace_back(plan->shapes[s], impl_->slots[s].dtype);
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
    const int s = impl_->output_slots[i];
    const Shape& want = plan->shapes[s];
    if (outputs[i].shape() != want || outputs[i].dtype() != impl_->slots[s].dtype ||
        (outputs[i].raw_data() == nullptr && outputs[i].size() > 0))
      throw Error(ErrorCode::kInvalidArgument, "output '" + impl_->file.outputs[i] + "' must be " +
                                                   dtype_name(impl_->slots[s].dtype) + " of shape " +
                                                   ops::shape_string(want) + ", got " +
                                                   dtype_name(outputs[i].dtype()) + " " +
                                                   ops::shape_string(outputs[i].shape()));
  }
  impl_->execute(*plan, inputs, outputs, nullptr);
}

double Model::profile(const std::vector<Tensor>& inputs, int repeats) const {
  if (repeats < 1 || repeats > 1000000) throw Error(ErrorCode::kInvalidArgument, "repeats must be in [1, 10^6]");
  auto shapes = impl_->check_inputs(inputs);
  auto plan = impl_->get_plan(shapes);
  const size_t n_nodes = impl_->file.nodes.size();
  std::vector<std::vector<double>> times(n_nodes);
  std::vector<double> totals;
  std::vector<Tensor> outs;
  for (int s : impl_->output_slots) outs.emplace_back(plan->shapes[s], impl_->slots[s].dtype);
  impl_->execute(*plan, inputs, outs, nullptr);  // warm up
  std::vector<double> node_ms(n_nodes, 0.0);
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    impl_->execute(*plan, inputs, outs, &node_ms);
    totals.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    for (size_t n = 0; n < n_nodes; ++n) times[n].push_back(node_ms[n]);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
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
  impl_->check_shapes(shapes);
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
    if (plan->skip_node[n]) {
      const int out = impl_->node_outputs[n].empty() ? -1 : impl_->node_outputs[n][0];
      info.kernel = out >= 0 && plan->known[out] != nullptr ? "computed while planning" : "alias (no copy)";
    }
    if (!node_ms.empty()) info.time_ms = plan->skip_node[n] ? 0.0 : node_ms[n];
    rows.push_back(std::move(info));
  }
  return rows;
}

void Model::release_memory() const {
  std::lock_guard<std::mutex> lock(impl_->plans_mutex);
  for (auto& plan : impl_->plans) {
    std::lock_guard<std::mutex> arenas(plan->arenas_mutex);
    for (const Arena& a : plan->free_arenas) impl_->idle_bytes -= a.bytes;
    plan->free_arenas.clear();
  }
  // keep the most recent plan's shapes only (its plan is rebuilt on demand)
  impl_->plans.clear();
}

size_t Model::cached_bytes() const { return static_cast<size_t>(impl_->idle_bytes.load()); }

}  // namespace sparsert
