// MatMul: numpy.matmul of two operands of rank >= 2, batch dims broadcast.
// Either operand may be a dense float32 constant.
//
// Each product C_b = A_b B_b (M x K times K x N) runs on the dense gemm
// kernel with A_b as the kernel's "weight" and B_b as its feature-major X
// (kernels.h: Y = W X, X is K x n with row stride ldx), so B and C are used in
// place and only A is packed, per run. A task packs the rows of A it owns and
// computes those rows of C. When B has no batch dims, the batch of A is
// folded into M (one gemm over all of A's rows).
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {
namespace {

struct MatMulDims {
  Shape batch;  // broadcast batch shape
  int64_t m = 0, k = 0, n = 0;
  int64_t batches = 1;  // product of batch
};

// numpy.matmul's 1-D rule: a vector A is [1, K], a vector B is [K, 1], and the
// added dim is dropped from the result. Same bytes, so only the shapes change.
struct MatMulShapes {
  Shape a, b;
  bool vec_a = false, vec_b = false;
};

MatMulShapes promote_vectors(const Shape& a, const Shape& b) {
  if (a.empty() || b.empty())
    shape_error("MatMul operands must have rank >= 1, got " + shape_string(a) + " and " + shape_string(b));
  MatMulShapes s{a, b};
  if (a.size() == 1) s.a = {1, a[0]}, s.vec_a = true;
  if (b.size() == 1) s.b = {b[0], 1}, s.vec_b = true;
  return s;
}

MatMulDims matmul_dims(const Shape& a, const Shape& b) {
  MatMulDims d;
  d.m = a[a.size() - 2];
  d.k = a[a.size() - 1];
  d.n = b[b.size() - 1];
  if (b[b.size() - 2] != d.k)
    shape_error("MatMul inner dims differ: " + shape_string(a) + " x " + shape_string(b) + " (" +
                std::to_string(d.k) + " vs " + std::to_string(b[b.size() - 2]) + ")");
  const size_t ra = a.size() - 2, rb = b.size() - 2, r = std::max(ra, rb);
  d.batch.resize(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - ra ? 1 : a[i - (r - ra)];
    const int64_t db = i < r - rb ? 1 : b[i - (r - rb)];
    if (da != db && da != 1 && db != 1)
      shape_error("MatMul batch dims of " + shape_string(a) + " and " + shape_string(b) +
                  " do not broadcast");
    d.batch[i] = da == 1 ? db : da;
    d.batches *= d.batch[i];
  }
  return d;
}

// Element offset of batch index `index` (row-major over `batch`) in an
// operand of shape `s` whose matrices hold `matrix` elements each.
int64_t batch_offset(const Shape& s, const Shape& batch, int64_t index, int64_t matrix) {
  const size_t rs = s.size() - 2, r = batch.size();
  int64_t offset = 0, stride = matrix;
  for (size_t i = r; i-- > 0;) {
    const int64_t idx = index % batch[i];
    index /= batch[i];
    if (i >= r - rs) {
      const int64_t dim = s[i - (r - rs)];
      if (dim != 1) offset += idx * stride;
      stride *= dim;
    }
  }
  return offset;
}

class MatMulOp final : public Op {
 public:
  explicit MatMulOp(kernels::Isa isa) : gemm_(&kernels::gemm_kernel(isa)) {}

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const MatMulShapes s = promote_vectors(inputs[0], inputs[1]);
    const MatMulDims d = matmul_dims(s.a, s.b);
    Shape y = d.batch;
    if (!s.vec_a) y.push_back(d.m);
    if (!s.vec_b) y.push_back(d.n);
    return {y};
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    const MatMulShapes s = promote_vectors(inputs[0].shape, inputs[1].shape);
    const Shape& as = s.a;
    const Shape& bs = s.b;
    MatMulDims d = matmul_dims(as, bs);
    float* c = outputs[0].f32();
    if (d.batches * d.m * d.n == 0) return;
    if (d.k == 0) {
      std::memset(c, 0, sizeof(float) * d.batches * d.m * d.n);
      return;
    }
    // B shared by every batch and A's batch laid out like C's: fold the batch into M
    bool b_shared = true;
    for (size_t i = 0; i + 2 < bs.size(); ++i) b_shared &= bs[i] == 1;
    int64_t a_batches = 1;
    for (size_t i = 0; i + 2 < as.size(); ++i) a_batches *= as[i];
    int64_t m = d.m, batches = d.batches;
    const bool fold = b_shared && a_batches == d.batches;
    if (fold) {
      m = d.m * d.batches;
      batches = 1;
    }
    const int64_t work = batches * m * d.k * d.n;
    const int64_t want = partition_task_count(ctx.threads(), work, batches * m);
    const int64_t tasks_per_batch = std::max<int64_t>(1, (want + batches - 1) / batches);
    const std::vector<int64_t> bounds = partition_rows(m, tasks_per_batch, 16);
    const int64_t row_tasks = static_cast<int64_t>(bounds.size()) - 1;
    const float* a = inputs[0].f32();
    const float* b = inputs[1].f32();
    ctx.parallel_for(batches * row_tasks, [&](int64_t t) {
      const int64_t batch = t / row_tasks, part = t % row_tasks;
      const int64_t r0 = bounds[part], r1 = bounds[part + 1];
      if (r0 == r1) return;
      const float* ab = a + (fold ? 0 : batch_offset(as, d.batch, batch, d.m * d.k));
      const float* bb = b + (fold ? 0 : batch_offset(bs, d.batch, batch, d.k * d.n));
      float* cb = c + batch * m * d.n;
      kernels::PackedGemmWeights packed;
      gemm_->pack(ab + r0 * d.k, r1 - r0, d.k, d.k, &packed);
      gemm_->fn(packed, 0, r1 - r0, bb, d.n, d.n, nullptr, cb + r0 * d.n, d.n);
    });
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>&,
                NodeInfo* info) const override {
    const MatMulShapes s = promote_vectors(inputs[0], inputs[1]);
    const MatMulDims d = matmul_dims(s.a, s.b);
    info->kernel = gemm_->name;
    info->flops = 2 * d.batches * d.m * d.k * d.n;
    info->dense_flops = info->flops;
  }

 private:
  const kernels::GemmKernel* gemm_;
};

}  // namespace

std::unique_ptr<Op> create_matmul(const NodeContext& ctx) {
  ctx.check_input_count(2, 2);
  ctx.check_output_count(1);
  return std::make_unique<MatMulOp>(ctx.isa());
}

}  // namespace ops
}  // namespace sparsert
