// What a loaded model says about itself: per-node profiling, the summary
// table, and releasing cached plans and idle arenas (runtime/model_impl.h).
#include <algorithm>
#include <chrono>
#include <mutex>
#include <vector>

#include "runtime/model_impl.h"

namespace sparsert {


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
      info.kernel = out >= 0 && plan->known[out] != nullptr ? "computed while planning"
                    : plan->in_place_node[n]                  ? "in place (inputs written into it)"
                                                              : "alias (no copy)";
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
