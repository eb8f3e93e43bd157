#include "ops/broadcast.h"

#include <algorithm>

namespace sparsert {
namespace ops {

bool broadcast_shapes(const std::vector<Shape>& shapes, Shape* out) {
  size_t rank = 0;
  for (const Shape& s : shapes) rank = std::max(rank, s.size());
  Shape result(rank, 1);
  for (const Shape& s : shapes) {
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t at = rank - s.size() + i;
      const int64_t d = s[i];
      if (d == result[at] || d == 1) continue;
      if (result[at] != 1) return false;
      result[at] = d;
    }
  }
  *out = result;
  return true;
}

Shape broadcast_or_throw(const Shape& a, const Shape& b) {
  Shape out;
  if (!broadcast_shapes({a, b}, &out))
    shape_error("shapes " + shape_string(a) + " and " + shape_string(b) + " do not broadcast");
  return out;
}

int64_t BroadcastLoop::outer() const {
  int64_t n = 1;
  for (size_t d = 0; d + 1 < dims.size(); ++d) n *= dims[d];
  return n;
}

int64_t BroadcastLoop::offset(size_t k, int64_t row) const {
  int64_t off = 0;
  for (size_t d = dims.size() - 1; d-- > 0;) {
    off += (row % dims[d]) * strides[k][d];
    row /= dims[d];
  }
  return off;
}

BroadcastLoop make_broadcast_loop(const Shape& out, const std::vector<Shape>& operands) {
  const size_t rank = out.size();
  const size_t n = operands.size();
  // full strides of each operand in the output's index space
  std::vector<std::vector<int64_t>> full(n, std::vector<int64_t>(rank, 0));
  for (size_t k = 0; k < n; ++k) {
    const Shape& s = operands[k];
    int64_t acc = 1;
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t oi = rank - 1 - i;
      const int64_t d = s[s.size() - 1 - i];
      full[k][oi] = d == 1 ? 0 : acc;
      acc *= d;
    }
  }
  BroadcastLoop loop;
  loop.strides.assign(n, {});
  for (size_t i = 0; i < rank; ++i) {
    if (out[i] == 1) continue;
    bool merge = !loop.dims.empty();
    for (size_t k = 0; merge && k < n; ++k) {
      const int64_t prev = loop.strides[k].back();
      merge = prev == full[k][i] * out[i] && (prev == 0) == (full[k][i] == 0);
    }
    if (merge) {
      loop.dims.back() *= out[i];
      for (size_t k = 0; k < n; ++k) loop.strides[k].back() = full[k][i];
      continue;
    }
    loop.dims.push_back(out[i]);
    for (size_t k = 0; k < n; ++k) loop.strides[k].push_back(full[k][i]);
  }
  if (loop.dims.empty()) {
    loop.dims.push_back(1);
    for (size_t k = 0; k < n; ++k) loop.strides[k].push_back(0);
  }
  return loop;
}

}  // namespace ops
}  // namespace sparsert
