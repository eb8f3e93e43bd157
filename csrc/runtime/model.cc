// Model: a validated graph, its weights (in the model's private copy of the
// file, or the mapped file with LoadOptions::mmap) and execution plans.
// This file loads, builds and runs; plan.cc makes plans, profile.cc profiles
// and summarises; model_impl.h holds what they share.
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
#include <cstdio>
#include <cstring>
#include <iterator>
#include <list>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "format/spr_format.h"
#include "kernels/kernels.h"
#include "ops/op.h"
#include "ops/tune_cache.h"
#include "runtime/memory.h"
#include "runtime/model_impl.h"
#include "runtime/passes.h"
#include "runtime/planner.h"
#include "runtime/thread_pool.h"
#include "sparsert/sparsert.h"

#ifndef SPARSERT_VERSION_STRING
#define SPARSERT_VERSION_STRING "0.0.0"
#endif

namespace sparsert {


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

CacheSizes cache_sizes() {
  const kernels::CacheSizes& c = kernels::cache_sizes();
  CacheSizes out;
  out.l1d = c.l1d;
  out.l2 = c.l2;
  out.l3 = c.l3;
  out.source = c.source;
  return out;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (kernels::Isa isa : {kernels::Isa::kScalar, kernels::Isa::kNeon, kernels::Isa::kAvx2, kernels::Isa::kAvx512})
    if (kernels::isa_supported(isa)) out.emplace_back(kernels::isa_name(isa));
  return out;
}

std::vector<std::string> supported_ops() { return ops::supported_op_types(); }

int default_threads() { return runtime::ThreadPool::available_cpus(); }

int64_t thread_pool_stalls() { return runtime::ThreadPool::global().stalls(); }

namespace {

ops::LoadConfig make_config(const LoadOptions& options) {
  ops::LoadConfig c;
  c.tune = options.tune;
  c.isa = kernels::isa_from_name(options.isa);
  if (options.tune && options.tune_cache != "off") {
    const std::string path = options.tune_cache.empty() ? ops::TuneCache::default_path() : options.tune_cache;
    if (!path.empty()) {
      c.tune_cache = std::make_shared<ops::TuneCache>(path);
      c.tune_machine = ops::TuneCache::machine_key(c.isa);
    }
  }
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
  if (options.conv_dense_path == "auto") {
    c.conv_dense_path = ops::LoadConfig::ConvDensePath::kAuto;
  } else if (options.conv_dense_path == "winograd") {
    c.conv_dense_path = ops::LoadConfig::ConvDensePath::kWinograd;
  } else if (options.conv_dense_path == "im2col") {
    c.conv_dense_path = ops::LoadConfig::ConvDensePath::kIm2col;
  } else {
    throw Error(ErrorCode::kInvalidArgument,
                "conv_dense_path must be 'auto', 'winograd' or 'im2col', got '" + options.conv_dense_path + "'");
  }
  return c;
}

}  // namespace


std::string Model::Impl::save_tune_cache(bool at_run_time) const {
  if (tune_cache == nullptr) return "";
  const std::string problem = tune_cache->save();
  if (!problem.empty() && at_run_time) {
    static std::once_flag warned;
    std::call_once(warned, [&] { std::fprintf(stderr, "sparsert: tune cache not saved: %s\n", problem.c_str()); });
  }
  return problem;
}

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
  // threads is a maximum: more threads than the cores this process may use only make every
  // node wait for descheduled threads (measured: 130x slower at 1000 threads on 2 cores).
  const int cores = runtime::ThreadPool::available_cpus();
  threads = options.threads == 0 ? cores : std::min(options.threads, cores);
  if (options.threads > cores)
    log.push_back("threads: " + std::to_string(options.threads) + " requested, " + std::to_string(cores) +
                  " used (the cores this process may run on; more would oversubscribe them)");
  runtime::ThreadPool::global().reserve(threads);
  tune_cache = config.tune_cache;
  if (tune_cache != nullptr) {
    log.push_back("tune: " + std::to_string(tune_cache->hits()) + " choices reused and " +
                  std::to_string(tune_cache->recorded()) + " timed (cache " + tune_cache->path() + ")");
    const std::string problem = save_tune_cache(false);
    if (!problem.empty()) log.push_back("tune: cache not saved (the next load times again): " + problem);
  }

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
      // Too big even at the smallest size: no size will do (as for a static model).
      if (e.code() == ErrorCode::kResource && t > 0) break;
      if (e.code() != ErrorCode::kInvalidArgument) throw;
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

}  // namespace sparsert
