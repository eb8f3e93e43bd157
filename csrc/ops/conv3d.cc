// Conv with a 3-D window: Y = act(conv3d(X, W) + B + R), X [N, C, D, H, W],
// W [Cout, C/group, kD, kH, kW] dense, CSR or BSR. Per image and group the
// input is unrolled (im2col over the three spatial dims, in blocks of output
// voxels) and multiplied by the weight with the Linear / Conv matrix kernels
// (packed GEMM, or spmm when the weight is sparse enough).
#include <algorithm>

#include "kernels/conv/conv.h"
#include "ops/activation.h"
#include "ops/broadcast.h"
#include "ops/conv_common.h"
#include "ops/layer_weights.h"
#include "ops/op.h"

namespace sparsert {
namespace ops {
namespace {

constexpr double kConv3dSparseMaxDensity = 0.3;
constexpr int64_t kColumnBudgetFloats = int64_t{1} << 21;  // 8 MiB of unrolled columns

class Conv3dOp final : public Op {
 public:
  Conv3dOp(const NodeContext& ctx, const format::TensorInfo& w, const float* bias, bool residual)
      : weights_(w, ctx.config()), bias_(bias), residual_(residual) {
    act_ = parse_fused_activation(ctx);
    cout_ = w.dims[0];
    cin_group_ = w.dims[1];
    for (int i = 0; i < 3; ++i) kernel_[i] = w.dims[2 + i];
    const std::vector<int64_t> one(3, 1);
    const std::vector<int64_t> s = ctx.attr_ints("strides", one, 3, 3, 1, kMaxSpatial);
    const std::vector<int64_t> d = ctx.attr_ints("dilations", one, 3, 3, 1, kMaxSpatial);
    const std::vector<int64_t> p = ctx.attr_ints("pads", std::vector<int64_t>(6, 0), 6, 6, 0, kMaxSpatial);
    groups_ = ctx.attr_int("group", 1, 1, cout_);
    if (cout_ % groups_ != 0) ctx.fail("output channels are not a multiple of group");
    for (int i = 0; i < 3; ++i) {
      stride_[i] = s[i];
      dilation_[i] = d[i];
      pad_begin_[i] = p[i];
      pad_end_[i] = p[3 + i];
    }
    k_ = cin_group_ * kernel_[0] * kernel_[1] * kernel_[2];
    if (weights_.density() <= kConv3dSparseMaxDensity || ctx.config().layer_kernel == LoadConfig::LayerKernel::kSparse)
      weights_.ensure_csr();
    else
      weights_.ensure_dense(groups_);
  }

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape y = conv_shape(inputs[0]);
    if (!residual_) return {y};
    Shape out;
    if (!broadcast_shapes({y, inputs[3]}, &out) || out != y)
      shape_error("residual R " + shape_string(inputs[3]) + " must broadcast to the output " + shape_string(y));
    return {out};
  }

  size_t scratch_bytes(const std::vector<Shape>& inputs, int) const override {
    const Shape y = conv_shape(inputs[0]);
    const int64_t voxels = y[2] * y[3] * y[4];
    return sizeof(float) * static_cast<size_t>(k_ * block(voxels) + 16);
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const Shape ys = conv_shape(xs);
    const int64_t voxels = ys[2] * ys[3] * ys[4], in_vox = xs[2] * xs[3] * xs[4];
    const int64_t cout_g = cout_ / groups_;
    float* y = outputs[0].f32();
    float* col = static_cast<float*>(ctx.scratch());
    const int64_t blk = block(voxels);
    const float* x = inputs[0].f32();
    for (int64_t n = 0; n < xs[0]; ++n) {
      for (int64_t g = 0; g < groups_; ++g) {
        const float* xg = x + (n * xs[1] + g * cin_group_) * in_vox;
        float* yg = y + (n * cout_ + g * cout_g) * voxels;
        for (int64_t v0 = 0; v0 < voxels; v0 += blk) {
          const int64_t nv = std::min(blk, voxels - v0);
          unroll(xs, ys, xg, v0, nv, col);
          const float* bias = bias_ != nullptr ? bias_ + g * cout_g : nullptr;
          if (weights_.has_csr())
            weights_.spmm().fn(weights_.csr(), g * cout_g, (g + 1) * cout_g, col, nv, nv, bias_,
                               y + n * cout_ * voxels + v0, voxels);
          else
            weights_.gemm().fn(weights_.packed(g), 0, cout_g, col, nv, nv, bias, yg + v0, voxels);
        }
      }
    }
    const float* r = residual_ ? inputs[3].f32() : nullptr;
    if (r != nullptr) {
      broadcast_add_activation(y, ys, r, inputs[3].shape, y, ys, act_);
    } else {
      apply_activation(act_, y, shape_elements(ys));
    }
  }

  bool accepts_sparse_constant(size_t input) const override { return input == 1; }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>& outputs, NodeInfo* info) const override {
    const bool sparse = weights_.has_csr();
    weights_.describe(sparse, info);
    const int64_t per = shape_elements(outputs[0]) / std::max<int64_t>(cout_, 1);
    info->flops = 2 * (sparse ? weights_.nnz() : weights_.info().elements) * per;
    info->dense_flops = 2 * weights_.info().elements * per;
    info->kernel = std::string("im2col3d+") + (sparse ? weights_.spmm().name : weights_.gemm().name);
  }

 private:
  int64_t block(int64_t voxels) const {
    return std::max<int64_t>(1, std::min(voxels, std::max<int64_t>(16, kColumnBudgetFloats / std::max<int64_t>(k_, 1))));
  }

  Shape conv_shape(const Shape& xs) const {
    if (xs.size() != 5) shape_error("input X must be 5-D [N, C, D, H, W], got " + shape_string(xs));
    if (xs[1] != cin_group_ * groups_)
      shape_error("input X has " + std::to_string(xs[1]) + " channels, the weight needs " +
                  std::to_string(cin_group_ * groups_));
    Shape y = {xs[0], cout_, 0, 0, 0};
    for (int i = 0; i < 3; ++i) {
      const int64_t o = kernels::conv_output_size(xs[2 + i], kernel_[i], stride_[i], pad_begin_[i], pad_end_[i], dilation_[i]);
      if (o < 1) shape_error("input X " + shape_string(xs) + " is smaller than the dilated kernel");
      y[2 + i] = o;
    }
    return y;
  }

  // col[k, j] for output voxels [v0, v0 + nv): k = ((c * kD + a) * kH + b) * kW + e.
  void unroll(const Shape& xs, const Shape& ys, const float* x, int64_t v0, int64_t nv, float* col) const {
    const int64_t id = xs[2], ih = xs[3], iw = xs[4], oh = ys[3], ow = ys[4];
    for (int64_t c = 0; c < cin_group_; ++c) {
      for (int64_t a = 0; a < kernel_[0]; ++a)
        for (int64_t b = 0; b < kernel_[1]; ++b)
          for (int64_t e = 0; e < kernel_[2]; ++e) {
            const int64_t k = ((c * kernel_[0] + a) * kernel_[1] + b) * kernel_[2] + e;
            float* row = col + k * nv;
            for (int64_t j = 0; j < nv; ++j) {
              const int64_t v = v0 + j;
              const int64_t od = v / (oh * ow), rem = v % (oh * ow), o1 = rem / ow, o2 = rem % ow;
              const int64_t zd = od * stride_[0] - pad_begin_[0] + a * dilation_[0];
              const int64_t zh = o1 * stride_[1] - pad_begin_[1] + b * dilation_[1];
              const int64_t zw = o2 * stride_[2] - pad_begin_[2] + e * dilation_[2];
              row[j] = (zd < 0 || zd >= id || zh < 0 || zh >= ih || zw < 0 || zw >= iw)
                           ? 0.0f
                           : x[((c * id + zd) * ih + zh) * iw + zw];
            }
          }
    }
  }

  LayerWeights weights_;
  const float* bias_;
  bool residual_;
  Activation act_;
  int64_t cout_ = 0, cin_group_ = 0, groups_ = 1, k_ = 0;
  int64_t kernel_[3] = {1, 1, 1}, stride_[3] = {1, 1, 1}, dilation_[3] = {1, 1, 1};
  int64_t pad_begin_[3] = {0, 0, 0}, pad_end_[3] = {0, 0, 0};
};

}  // namespace

std::unique_ptr<Op> create_conv3d(const NodeContext& ctx, const format::TensorInfo& w, const float* bias) {
  return std::make_unique<Conv3dOp>(ctx, w, bias, ctx.has_input(3));
}

}  // namespace ops
}  // namespace sparsert
