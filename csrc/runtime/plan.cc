// Planning (runtime/model_impl.h): for one set of input shapes, every
// tensor's shape, the values known while planning, aliases, the graph outputs
// written in place, and one arena for the intermediates assigned by liveness
// (runtime/planner.h). Plans are cached per shape, most recent first.
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

#include "runtime/model_impl.h"

namespace sparsert {


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
  save_tune_cache(true);  // ops with tune may have timed kernels for these shapes
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
  plan->slice_parent.assign(n_slots, -1);
  plan->slice_offset.assign(n_slots, 0);
  plan->in_place_node.assign(n_nodes, false);
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

  // Concat in place: when every input of a Concat is a contiguous slice of
  // its output (batch 1 along the channels, DenseNet's and Inception's
  // concats) and each is an intermediate written by exactly one node (not a
  // graph input or output, constant, plan-time value, alias, or a slice of
  // another Concat already), the producers write straight into the output
  // and the Concat is skipped. Slices nest (DenseNet's running concat), so a
  // slot's bytes are found by walking up to its top parent.
  std::vector<int> producer(n_slots, -1);
  for (size_t n = 0; n < n_nodes; ++n)
    for (int s : node_outputs[n]) producer[s] = static_cast<int>(n);
  std::vector<int64_t> element_offsets;
  for (size_t n = 0; n < n_nodes; ++n) {
    if (plan->skip_node[n] || node_outputs[n].size() != 1) continue;
    const int out = node_outputs[n][0];
    if (plan->external_output[out] >= 0 || plan->known[out] != nullptr || plan->alias_source[out] >= 0) continue;
    std::vector<Shape> in_shapes;
    bool eligible = !node_inputs[n].empty();
    for (size_t i = 0; eligible && i < node_inputs[n].size(); ++i) {
      const int s = node_inputs[n][i];
      eligible = s >= 0 && slots[s].kind == SlotKind::kNodeOutput && producer[s] >= 0 &&
                 (!plan->skip_node[producer[s]] || plan->in_place_node[producer[s]]) && plan->known[s] == nullptr && plan->alias_source[s] < 0 &&
                 plan->external_output[s] < 0 && plan->slice_parent[s] < 0 && slots[s].dtype == slots[out].dtype;
      for (size_t j = 0; eligible && j < i; ++j) eligible = node_inputs[n][j] != s;
      if (eligible) in_shapes.push_back(plan->shapes[s]);
    }
    if (!eligible || !ops[n]->inputs_are_slices(in_shapes, plan->shapes[out], &element_offsets)) continue;
    const int64_t esize = static_cast<int64_t>(dtype_size(slots[out].dtype));
    for (size_t i = 0; i < node_inputs[n].size(); ++i) {
      plan->slice_parent[node_inputs[n][i]] = out;
      plan->slice_offset[node_inputs[n][i]] = element_offsets[i] * esize;
    }
    plan->skip_node[n] = true;
    plan->in_place_node[n] = true;
  }
  // the slot whose arena block holds s, and s's byte offset in it
  auto top = [&](int s) {
    while (plan->slice_parent[s] >= 0) s = plan->slice_parent[s];
    return s;
  };
  auto offset_in_top = [&](int s) {
    int64_t at = 0;
    for (; plan->slice_parent[s] >= 0; s = plan->slice_parent[s]) at += plan->slice_offset[s];
    return at;
  };

  // liveness: last node reading each (root) slot; graph outputs live to the
  // end; a Concat output written in place lives as long as any of its slices
  std::vector<int64_t> last_use(n_slots, -1);
  auto root = [&](int s) { return plan->alias_source[s] >= 0 ? plan->alias_source[s] : s; };
  for (size_t n = 0; n < n_nodes; ++n)
    for (int s : node_inputs[n])
      if (s >= 0) last_use[root(s)] = std::max<int64_t>(last_use[root(s)], static_cast<int64_t>(n));
  for (int s : output_slots) last_use[root(s)] = static_cast<int64_t>(n_nodes);
  for (size_t s = 0; s < n_slots; ++s) {
    if (plan->slice_parent[s] < 0) continue;
    const int t = top(static_cast<int>(s));
    last_use[t] = std::max(last_use[t], last_use[s]);
  }

  runtime::ArenaPlanner arena;
  for (size_t n = 0; n < n_nodes; ++n) {
    for (int s : node_outputs[n]) {
      if (plan->alias_source[s] >= 0 || plan->external_output[s] >= 0 || plan->known[s] != nullptr) continue;
      const int t = top(s);
      if (plan->offsets[t] < 0) plan->offsets[t] = arena.allocate(bytes[t]);  // the first slice made allocates
      if (t != s) plan->offsets[s] = plan->offsets[t] + offset_in_top(s);
    }
    if (plan->scratch_size[n] > 0 && !plan->skip_node[n]) {
      plan->scratch_offset[n] = arena.allocate(plan->scratch_size[n]);
      arena.release(plan->scratch_offset[n], plan->scratch_size[n]);
    }
    // free what dies here (its last reader was this node, or nobody reads it)
    auto maybe_free = [&](int s) {
      if (s < 0 || slots[s].kind != SlotKind::kNodeOutput) return;
      s = top(s);
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

}  // namespace sparsert
