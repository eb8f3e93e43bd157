#include "runtime/passes.h"

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ops/activation.h"

namespace sparsert {
namespace runtime {
namespace {

bool has_no_activation(const format::Node& node) {
  const format::Value* a = node.attr("activation");
  if (a != nullptr && !(a->type == format::ValueType::kString && a->s == "none")) return false;
  return node.attr("activation_params") == nullptr;
}

void set_attr(format::Node* node, const std::string& key, format::Value value) {
  for (auto& kv : node->attrs) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  node->attrs.emplace_back(key, std::move(value));
}

// Readers of every tensor and the graph outputs, for "does this output feed
// exactly one node" questions; node positions are stable during a pass
// (a fused node takes the position of the chain's last node and the others
// are marked removed, then compacted).
class Rewriter {
 public:
  explicit Rewriter(format::ModelFile* file) : file_(file), removed_(file->nodes.size(), false) {
    for (size_t n = 0; n < file->nodes.size(); ++n)
      for (const auto& name : file->nodes[n].inputs)
        if (!name.empty()) readers_[name].push_back(n);
    outputs_.insert(file->outputs.begin(), file->outputs.end());
  }

  std::vector<format::Node>& nodes() { return file_->nodes; }
  const format::ModelFile& file() const { return *file_; }
  bool removed(size_t n) const { return removed_[n]; }

  // The single reader of `tensor`, or -1.
  long sole_reader(const std::string& tensor) const {
    if (outputs_.count(tensor) != 0) return -1;
    auto it = readers_.find(tensor);
    if (it == readers_.end() || it->second.size() != 1) return -1;
    return static_cast<long>(it->second[0]);
  }

  // Moves node `from` into position `to` (replacing the node there), keeping
  // the replaced node's outputs and name.
  void absorb(size_t from, size_t to) {
    auto& nodes = file_->nodes;
    std::vector<std::string> outputs = std::move(nodes[to].outputs);
    nodes[to] = std::move(nodes[from]);
    nodes[to].outputs = std::move(outputs);
    removed_[from] = true;
  }

  void compact() {
    std::vector<format::Node> kept;
    kept.reserve(file_->nodes.size());
    for (size_t n = 0; n < file_->nodes.size(); ++n)
      if (!removed_[n]) kept.push_back(std::move(file_->nodes[n]));
    file_->nodes = std::move(kept);
  }

 private:
  format::ModelFile* file_;
  std::vector<bool> removed_;
  std::unordered_map<std::string, std::vector<size_t>> readers_;
  std::unordered_set<std::string> outputs_;
};

int fuse_residual(format::ModelFile* file) {
  Rewriter g(file);
  int fused = 0;
  for (size_t n = 0; n < g.nodes().size(); ++n) {
    if (g.removed(n)) continue;
    const format::Node& conv = g.nodes()[n];
    if (conv.op_type != "Conv" || conv.outputs.size() != 1 || !has_no_activation(conv)) continue;
    if (conv.inputs.size() < 2 || (conv.inputs.size() > 3 && !conv.inputs[3].empty())) continue;
    const std::string t = conv.outputs[0];
    const long r = g.sole_reader(t);
    if (r < 0) continue;
    const format::Node& add = g.nodes()[r];
    if (add.op_type != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1 || !add.attrs.empty()) continue;
    const std::string& other = add.inputs[0] == t ? add.inputs[1] : add.inputs[0];
    if (other == t || other.empty() || g.file().find_tensor(other) != nullptr) continue;
    std::string residual = other;
    g.nodes()[n].inputs.resize(4);
    g.nodes()[n].inputs[3] = residual;
    g.absorb(n, static_cast<size_t>(r));
    ++fused;
  }
  if (fused > 0) g.compact();
  return fused;
}

int fuse_activation(format::ModelFile* file) {
  Rewriter g(file);
  int fused = 0;
  for (size_t n = 0; n < g.nodes().size(); ++n) {
    if (g.removed(n)) continue;
    const format::Node& layer = g.nodes()[n];
    const std::string& op = layer.op_type;
    if ((op != "Conv" && op != "Linear" && op != "ConvTranspose" && op != "BatchNormalization") ||
        layer.outputs.size() != 1 ||
        !has_no_activation(layer))
      continue;
    const long r = g.sole_reader(layer.outputs[0]);
    std::string name;
    std::vector<double> params;
    if (r < 0 || !ops::fusable_activation(g.nodes()[r], &name, &params)) continue;
    format::Value v;
    v.type = format::ValueType::kString;
    v.s = name;
    set_attr(&g.nodes()[n], "activation", v);
    if (!params.empty()) {
      format::Value p;
      p.type = format::ValueType::kFloats;
      p.floats = params;
      set_attr(&g.nodes()[n], "activation_params", p);
    }
    g.absorb(n, static_cast<size_t>(r));
    ++fused;
  }
  if (fused > 0) g.compact();
  return fused;
}

}  // namespace

const std::vector<Pass>& passes() {
  static const std::vector<Pass> list = {
      {"fuse_residual", &fuse_residual},
      {"fuse_activation", &fuse_activation},
  };
  return list;
}

void run_passes(format::ModelFile* file, const std::vector<std::string>& disabled,
                std::vector<std::string>* log) {
  for (const std::string& name : disabled) {
    bool known = false;
    for (const Pass& p : passes()) known |= name == p.name;
    if (!known) {
      std::string names;
      for (const Pass& p : passes()) names += std::string(names.empty() ? "" : ", ") + p.name;
      throw Error(ErrorCode::kInvalidArgument, "unknown pass '" + name + "' in disabled_passes (passes: " + names + ")");
    }
  }
  for (const Pass& p : passes()) {
    bool skip = false;
    for (const std::string& name : disabled) skip |= name == p.name;
    if (skip) {
      log->push_back(std::string("pass ") + p.name + ": disabled");
      continue;
    }
    const int changed = p.run(file);
    if (changed > 0) log->push_back(std::string("pass ") + p.name + ": " + std::to_string(changed) + " rewrite(s)");
  }
}

}  // namespace runtime

std::vector<std::string> pass_names() {
  std::vector<std::string> out;
  for (const auto& p : runtime::passes()) out.emplace_back(p.name);
  return out;
}

}  // namespace sparsert
