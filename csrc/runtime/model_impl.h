// Model::Impl and the plan types, shared by the runtime's model.cc (load,
// build, run), plan.cc (planning: shapes, plan-time values, the arena) and
// profile.cc (profile, summary, memory release). Internal: not installed.
#pragma once

#include <algorithm>
#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "ops/op.h"
#include "sparsert/sparsert.h"

namespace sparsert {
namespace runtime {

using ops::Shape;

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
  // per slot: the slot whose bytes contain it (a Concat output its producer
  // writes into directly), or -1; byte offset inside that slot
  std::vector<int> slice_parent;
  std::vector<int64_t> slice_offset;
  std::vector<bool> in_place_node;  // per node: a Concat skipped because its inputs are slices
  std::vector<int64_t> scratch_offset;
  std::vector<size_t> scratch_size;
  uint64_t arena_bytes = 0;

  std::mutex arenas_mutex;
  std::vector<Arena> free_arenas;

  std::mutex profile_mutex;
  std::vector<double> node_ms;  // empty until profiled
};

}  // namespace runtime

// The names model.cc, plan.cc and profile.cc use unqualified.
using ops::Shape;
using runtime::Arena;
using runtime::kIdleArenasPerPlan;
using runtime::kPlanFoldMaxBytes;
using runtime::Plan;
using runtime::Slot;
using runtime::SlotKind;

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
  // LoadOptions::tune's on-disk cache (null without tune or with "off"):
  // saved after the load and after a plan whose ops timed something new.
  std::shared_ptr<ops::TuneCache> tune_cache;
  // "" or why the file could not be written (once per process also on stderr
  // when it happens at run time: not fatal, the next load times again).
  std::string save_tune_cache(bool at_run_time) const;

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

}  // namespace sparsert
