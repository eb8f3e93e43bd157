#include "runtime/fusion.h"

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace sparsert {
namespace runtime {
namespace {

const format::Value* find_attr(const format::Node& node, const char* key) { return node.attr(key); }

double number(const format::Value* v, double fallback) {
  if (v == nullptr) return fallback;
  if (v->type == format::ValueType::kFloat) return v->f;
  if (v->type == format::ValueType::kInt) return static_cast<double>(v->i);
  return fallback;
}

// The fused-activation attributes equivalent to an activation node, or false
// when the node is not a fusable activation (or has unexpected attributes).
bool activation_of(const format::Node& node, std::string* name, std::vector<double>* params) {
  if (node.inputs.size() != 1 || node.outputs.size() != 1) return false;
  params->clear();
  const std::string& op = node.op_type;
  if (op == "ReLU") {
    *name = "relu";
  } else if (op == "ReLU6") {
    *name = "relu6";
  } else if (op == "Sigmoid") {
    *name = "sigmoid";
  } else if (op == "HardSwish") {
    *name = "hardswish";
  } else if (op == "SiLU") {
    *name = "silu";
  } else if (op == "Tanh") {
    *name = "tanh";
  } else if (op == "Clip") {
    *name = "clip";
    *params = {number(find_attr(node, "min"), -3.4028234663852886e38),
               number(find_attr(node, "max"), 3.4028234663852886e38)};
    if (!((*params)[0] <= (*params)[1])) return false;  // the Clip op reports it
  } else if (op == "LeakyReLU") {
    *name = "leaky_relu";
    *params = {number(find_attr(node, "alpha"), 0.01)};
  } else if (op == "HardSigmoid") {
    *name = "hardsigmoid";
    *params = {number(find_attr(node, "alpha"), 0.2), number(find_attr(node, "beta"), 0.5)};
  } else if (op == "GELU") {
    const format::Value* a = find_attr(node, "approximate");
    const std::string approx =
        a != nullptr && a->type == format::ValueType::kString ? a->s : "none";
    if (a != nullptr && a->type != format::ValueType::kString) return false;
    if (approx == "none") {
      *name = "gelu";
    } else if (approx == "tanh") {
      *name = "gelu_tanh";
    } else {
      return false;  // the GELU op reports it
    }
  } else {
    return false;
  }
  return true;
}

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

}  // namespace

void fuse_graph(format::ModelFile* file) {
  std::vector<format::Node>& nodes = file->nodes;
  const size_t count = nodes.size();
  // readers of each tensor: (node index, input slot); positions stay valid
  // because a fused node takes the position of the chain's last node.
  std::unordered_map<std::string, std::vector<size_t>> readers;
  for (size_t n = 0; n < count; ++n)
    for (const auto& name : nodes[n].inputs)
      if (!name.empty()) readers[name].push_back(n);
  const std::unordered_set<std::string> graph_outputs(file->outputs.begin(), file->outputs.end());
  std::vector<bool> removed(count, false);

  // The single reader of `tensor`, or -1.
  auto sole_reader = [&](const std::string& tensor) -> long {
    if (graph_outputs.count(tensor) != 0) return -1;
    auto it = readers.find(tensor);
    if (it == readers.end() || it->second.size() != 1) return -1;
    return static_cast<long>(it->second[0]);
  };
  // Moves node `from` into position `to` (replacing the node there), keeping
  // the replaced node's outputs.
  auto absorb = [&](size_t from, size_t to) {
    std::vector<std::string> outputs = std::move(nodes[to].outputs);
    nodes[to] = std::move(nodes[from]);
    nodes[to].outputs = std::move(outputs);
    removed[from] = true;
  };

  int fused = 0;
  for (size_t n = 0; n < count; ++n) {
    if (removed[n]) continue;
    const std::string op = nodes[n].op_type;
    if ((op != "Conv2d" && op != "Linear") || nodes[n].outputs.size() != 1 ||
        !has_no_activation(nodes[n]))
      continue;
    size_t at = n;
    // Conv2d -> Add
    const bool has_residual = nodes[at].inputs.size() > 3 && !nodes[at].inputs[3].empty();
    if (op == "Conv2d" && !has_residual && nodes[at].inputs.size() >= 2) {
      const std::string t = nodes[at].outputs[0];
      const long r = sole_reader(t);
      if (r >= 0) {
        const format::Node& add = nodes[r];
        if (add.op_type == "Add" && add.inputs.size() == 2 && add.outputs.size() == 1 &&
            add.attrs.empty()) {
          const std::string& other = add.inputs[0] == t ? add.inputs[1] : add.inputs[0];
          if (other != t && !other.empty() && file->find_tensor(other) == nullptr) {
            std::string residual = other;
            nodes[at].inputs.resize(4);
            nodes[at].inputs[3] = residual;
            absorb(at, static_cast<size_t>(r));
            at = static_cast<size_t>(r);
            ++fused;
          }
        }
      }
    }
    // -> activation
    {
      const std::string t = nodes[at].outputs[0];
      const long r = sole_reader(t);
      std::string name;
      std::vector<double> params;
      if (r >= 0 && activation_of(nodes[r], &name, &params)) {
        format::Value v;
        v.type = format::ValueType::kString;
        v.s = name;
        set_attr(&nodes[at], "activation", v);
        if (!params.empty()) {
          format::Value p;
          p.type = format::ValueType::kFloats;
          p.floats = params;
          set_attr(&nodes[at], "activation_params", p);
        }
        absorb(at, static_cast<size_t>(r));
        ++fused;
      }
    }
  }
  if (fused == 0) return;
  std::vector<format::Node> kept;
  kept.reserve(count);
  for (size_t n = 0; n < count; ++n)
    if (!removed[n]) kept.push_back(std::move(nodes[n]));
  nodes = std::move(kept);
}

}  // namespace runtime
}  // namespace sparsert
