// Transpose: numpy.transpose(X, perm). Dims of size 1 are dropped and runs
// of input dims that stay adjacent in the output are merged first, so NCHW ->
// NHWC ([0, 2, 3, 1]) becomes a batched 2-D transpose [N][C][HW] -> [N][HW][C],
// as do NHWC -> NCHW and swapping the last two dims; those go through a
// cache-blocked 2-D transpose. Everything else walks the output in order with
// an odometer over the input strides.
#include <algorithm>
#include <cstring>

#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

// The input shape and permutation reduced as described above.
struct ReducedPerm {
  std::vector<int64_t> dims;  // reduced input dims
  std::vector<int64_t> perm;  // output axis i reads reduced input axis perm[i]
};

ReducedPerm reduce_perm(const Shape& in, const std::vector<int64_t>& perm) {
  // keep dims > 1, in output order
  std::vector<int64_t> kept;  // input axes, in output order
  for (int64_t p : perm)
    if (in[p] != 1) kept.push_back(p);
  // merge runs p, p+1, ... that are consecutive in the output order
  std::vector<std::vector<int64_t>> groups;
  for (int64_t p : kept) {
    if (!groups.empty() && groups.back().back() + 1 == p) {
      // adjacent in the input only if every dim between them is dropped: they are consecutive ints
      // here
      groups.back().push_back(p);
    } else {
      groups.push_back({p});
    }
  }
  // order groups by their first input axis to number the reduced input dims
  std::vector<size_t> by_input(groups.size());
  for (size_t i = 0; i < by_input.size(); ++i) by_input[i] = i;
  std::sort(by_input.begin(), by_input.end(),
            [&](size_t a, size_t b) { return groups[a][0] < groups[b][0]; });
  ReducedPerm r;
  r.dims.resize(groups.size());
  r.perm.resize(groups.size());
  std::vector<int64_t> reduced_index(groups.size());
  for (size_t k = 0; k < by_input.size(); ++k) {
    const auto& g = groups[by_input[k]];
    int64_t d = 1;
    for (int64_t p : g) d *= in[p];
    r.dims[k] = d;
    reduced_index[by_input[k]] = static_cast<int64_t>(k);
  }
  for (size_t i = 0; i < groups.size(); ++i) r.perm[i] = reduced_index[i];
  return r;
}

// dst[c][r] = src[r][c] for an R x C matrix, in 32 x 32 tiles; rows of tiles
// [tile_begin, tile_end) of the source.
template <typename T>
void transpose_2d(const T* src, T* dst, int64_t rows, int64_t cols, int64_t tile_begin,
                  int64_t tile_end) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = tile_begin * kTile; r0 < std::min(rows, tile_end * kTile); r0 += kTile) {
    const int64_t r1 = std::min(rows, r0 + kTile);
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
    }
  }
}

class TransposeOp final : public Op {
 public:
  explicit TransposeOp(std::vector<int64_t> perm) : perm_(std::move(perm)) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    const std::vector<int64_t> perm = perm_for(x.size());
    Shape y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[perm[i]];
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    if (shape_elements(inputs[0].shape) == 0) return;
    switch (dtype_size(inputs[0].dtype)) {  // only the element size matters
      case 1:
        return run_typed(ctx, inputs[0].as<uint8_t>(), outputs[0].as<uint8_t>(), inputs[0].shape);
      case 4:
        return run_typed(ctx, inputs[0].as<uint32_t>(), outputs[0].as<uint32_t>(), inputs[0].shape);
      default:
        return run_typed(ctx, inputs[0].as<uint64_t>(), outputs[0].as<uint64_t>(), inputs[0].shape);
    }
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    info->kernel = "transpose_blocked";
  }

 private:
  template <typename T>
  void run_typed(const RunContext& ctx, const T* x, T* y, const Shape& xs) const {
    const int64_t total = shape_elements(xs);
    const ReducedPerm r = reduce_perm(xs, perm_for(xs.size()));
    const size_t rank = r.dims.size();
    if (rank <= 1 || is_identity(r.perm)) {
      copy_all(ctx, x, y, total);
      return;
    }
    if (r.perm[rank - 1] == static_cast<int64_t>(rank) - 2 &&
        r.perm[rank - 2] == static_cast<int64_t>(rank) - 1 &&
        is_identity(std::vector<int64_t>(r.perm.begin(), r.perm.end() - 2))) {
      // batched 2-D transpose
      const int64_t rows = r.dims[rank - 2], cols = r.dims[rank - 1];
      const int64_t batch = total / (rows * cols);
      const int64_t row_tiles = (rows + 31) / 32;
      const int64_t tiles_per_task = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, 32 * cols));
      const int64_t tasks_per_batch = (row_tiles + tiles_per_task - 1) / tiles_per_task;
      ctx.parallel_for(batch * tasks_per_batch, [&](int64_t t) {
        const int64_t b = t / tasks_per_batch, k = t % tasks_per_batch;
        transpose_2d(x + b * rows * cols, y + b * rows * cols, rows, cols, k * tiles_per_task,
                     std::min(row_tiles, (k + 1) * tiles_per_task));
      });
      return;
    }
    // general: out_dims / in_strides in output order; rows of the last output dim
    std::vector<int64_t> in_stride(rank);
    int64_t acc = 1;
    for (size_t d = rank; d-- > 0;) {
      in_stride[d] = acc;
      acc *= r.dims[d];
    }
    std::vector<int64_t> out_dims(rank), strides(rank);
    for (size_t i = 0; i < rank; ++i) {
      out_dims[i] = r.dims[r.perm[i]];
      strides[i] = in_stride[r.perm[i]];
    }
    const int64_t inner = out_dims[rank - 1], inner_stride = strides[rank - 1];
    const int64_t rows = total / inner;
    const int64_t per_task = std::max<int64_t>(1, 16384 / inner);
    ctx.parallel_for((rows + per_task - 1) / per_task, [&](int64_t t) {
      const int64_t row0 = t * per_task, row1 = std::min(rows, row0 + per_task);
      // odometer over the outer output dims, started at row0
      std::vector<int64_t> idx(rank - 1);
      int64_t rem = row0, offset = 0;
      for (size_t d = rank - 1; d-- > 0;) {
        idx[d] = rem % out_dims[d];
        rem /= out_dims[d];
        offset += idx[d] * strides[d];
      }
      for (int64_t row = row0; row < row1; ++row) {
        T* dst = y + row * inner;
        const T* src = x + offset;
        for (int64_t j = 0; j < inner; ++j) dst[j] = src[j * inner_stride];
        for (size_t d = rank - 1; d-- > 0;) {
          offset += strides[d];
          if (++idx[d] < out_dims[d]) break;
          offset -= idx[d] * strides[d];
          idx[d] = 0;
        }
      }
    });
  }

  static bool is_identity(const std::vector<int64_t>& perm) {
    for (size_t i = 0; i < perm.size(); ++i)
      if (perm[i] != static_cast<int64_t>(i)) return false;
    return true;
  }

  template <typename T>
  static void copy_all(const RunContext& ctx, const T* x, T* y, int64_t n) {
    constexpr int64_t kChunk = 65536;
    ctx.parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
      const int64_t begin = c * kChunk;
      std::memcpy(y + begin, x + begin, sizeof(T) * std::min(kChunk, n - begin));
    });
  }

  // perm_ with negative entries resolved; empty perm_ = reversed dims (numpy default).
  std::vector<int64_t> perm_for(size_t rank) const {
    std::vector<int64_t> perm(rank);
    if (perm_.empty()) {
      for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(rank - 1 - i);
      return perm;
    }
    if (perm_.size() != rank)
      shape_error("perm " + shape_string(perm_) + " has " + std::to_string(perm_.size()) +
                  " entries but the input has rank " + std::to_string(rank));
    for (size_t i = 0; i < rank; ++i)
      perm[i] = perm_[i] < 0 ? perm_[i] + static_cast<int64_t>(rank) : perm_[i];
    return perm;
  }

  std::vector<int64_t> perm_;
};

}  // namespace

std::unique_ptr<Op> create_transpose(const NodeContext& ctx) {
  ctx.check_input_count(1, 1);
  ctx.check_output_count(1);
  std::vector<int64_t> perm = ctx.attr_ints("perm", {}, 0, format::kMaxRank, -8, 7);
  // Must be a permutation of 0..n-1 (negative entries count from the end, as numpy).
  const int64_t n = static_cast<int64_t>(perm.size());
  std::vector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    const int64_t a = p < 0 ? p + n : p;
    if (a < 0 || a >= n || seen[a])
      ctx.fail("attribute 'perm' " + shape_string(perm) + " is not a permutation of 0.." +
               std::to_string(n - 1));
    seen[a] = true;
  }
  ctx.set_output_dtypes({ctx.input_dtype(0)});
  return std::make_unique<TransposeOp>(perm);
}

}  // namespace ops
}  // namespace sparsert
