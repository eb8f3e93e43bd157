// ConvTranspose2d: Y = act(conv_transpose(X, W) + B), NCHW, as
// torch.nn.functional.conv_transpose2d (docs/spr-format.md, section 5).
//
// W is [C, Cout/groups, kH, kW]; CSR weights are densified at load. Per image
// and group: cols = W_g^T X_g, a (Cout_g*kH*kW) x (H*W) gemm with the transposed
// weight packed once at load, then col2im scatters cols into the output planes
// (each task owns whole output channels, so no two tasks write one pixel),
// after the planes were set to the bias. The activation runs per channel.
#include <algorithm>

#include "kernels/conv/conv.h"
#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/conv_common.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {
namespace {

class ConvTranspose2dOp final : public Op {
 public:
  ConvTranspose2dOp(const NodeContext& ctx, const format::TensorInfo& w, const float* bias)
      : weight_(w), bias_(bias) {
    attrs_ = parse_conv_attributes(ctx, 2, w.dims[0]);
    act_ = parse_fused_activation(ctx);
    const std::vector<int64_t> op = ctx.attr_ints("output_padding", {0, 0}, 2, 2, 0, kMaxSpatial);
    if ((op[0] >= attrs_.stride_h && op[0] >= attrs_.dilation_h) ||
        (op[1] >= attrs_.stride_w && op[1] >= attrs_.dilation_w))
      ctx.fail("attribute 'output_padding' must be smaller than the stride or the dilation");
    output_padding_h_ = op[0];
    output_padding_w_ = op[1];
    cin_ = w.dims[0];
    cout_group_ = w.dims[1];
    kernel_h_ = w.dims[2];
    kernel_w_ = w.dims[3];
    if (cin_ % attrs_.groups != 0)
      ctx.fail("weight '" + w.name + "' has " + std::to_string(cin_) +
               " input channels, not a multiple of groups = " + std::to_string(attrs_.groups));
    cin_group_ = cin_ / attrs_.groups;
    cout_ = cout_group_ * attrs_.groups;
    // A_g[(o*kH + kh)*kW + kw, c] = W[g*Cg + c, o, kh, kw]
    const kernels::AlignedFloats dense = densify_weight(w, ctx.config());
    const int64_t rows = cout_group_ * kernel_h_ * kernel_w_;
    gemm_ = &kernels::gemm_kernel(ctx.isa());
    packed_.resize(static_cast<size_t>(attrs_.groups));
    std::vector<float> a(static_cast<size_t>(rows * cin_group_));
    for (int64_t g = 0; g < attrs_.groups; ++g) {
      for (int64_t c = 0; c < cin_group_; ++c)
        for (int64_t q = 0; q < rows; ++q)
          a[q * cin_group_ + c] = dense.data()[(g * cin_group_ + c) * rows + q];
      gemm_->pack(a.data(), rows, cin_group_, cin_group_, &packed_[g]);
    }
  }

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    kernels::ConvGeometry g;
    return {plan(inputs[0], &g)};
  }

  size_t scratch_bytes(const std::vector<Shape>& inputs, int threads) const override {
    kernels::ConvGeometry g;
    plan(inputs[0], &g);
    return sizeof(float) *
               static_cast<size_t>(cout_group_ * kernel_h_ * kernel_w_ * g.in_h * g.in_w) +
           64;
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    kernels::ConvGeometry g;
    const Shape out = plan(inputs[0].shape, &g);
    const int64_t batch = out[0];
    const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
    const int64_t rows = cout_group_ * kernel_h_ * kernel_w_;
    float* cols = static_cast<float*>(ctx.scratch());
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t grp = 0; grp < attrs_.groups; ++grp) {
        const float* xg = inputs[0].f32() + (n * cin_ + grp * cin_group_) * in_plane;
        float* yg = outputs[0].f32() + (n * cout_ + grp * cout_group_) * out_plane;
        const kernels::PackedGemmWeights& w = packed_[grp];
        if (in_plane > 0) {
          const int64_t tasks =
              partition_task_count(ctx.threads(), rows * cin_group_ * in_plane, rows);
          const std::vector<int64_t> rb = partition_rows(rows, tasks, w.row_block);
          ctx.parallel_for(static_cast<int64_t>(rb.size()) - 1, [&](int64_t t) {
            if (rb[t] < rb[t + 1])
              gemm_->fn(w, rb[t], rb[t + 1], xg, in_plane, in_plane, nullptr, cols, in_plane);
          });
        }
        const int64_t tasks = partition_task_count(
            ctx.threads(), rows * in_plane + cout_group_ * out_plane, cout_group_);
        ctx.parallel_for(tasks, [&](int64_t t) {
          const int64_t o0 = cout_group_ * t / tasks, o1 = cout_group_ * (t + 1) / tasks;
          for (int64_t o = o0; o < o1; ++o) {
            const float b = bias_ != nullptr ? bias_[grp * cout_group_ + o] : 0.0f;
            std::fill(yg + o * out_plane, yg + (o + 1) * out_plane, b);
          }
          if (in_plane > 0) kernels::conv_col2im(g, cols, o0, o1, yg);
          apply_activation(act_, yg + o0 * out_plane, (o1 - o0) * out_plane);
        });
      }
    }
  }

  bool accepts_sparse_constant(size_t input) const override { return input == 1; }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>& outputs,
                NodeInfo* info) const override {
    kernels::ConvGeometry g;
    const Shape out = plan(inputs[0], &g);
    LayerWeights(weight_, LoadConfig()).describe(false, info);
    info->flops = 2 * weight_.elements * g.in_h * g.in_w * out[0];
    info->dense_flops = info->flops;
    info->kernel = std::string(gemm_->name) + "+col2im";
  }

 private:
  Shape plan(const Shape& xs, kernels::ConvGeometry* g) const {
    if (xs.size() != 4) shape_error("input X must be 4-D [N, C, H, W], got " + shape_string(xs));
    if (xs[1] != cin_)
      shape_error("input X " + shape_string(xs) + " has " + std::to_string(xs[1]) +
                  " channels; the weight " + shape_string(weight_.dims) + " needs " +
                  std::to_string(cin_));
    g->channels = cin_group_;
    g->in_h = xs[2];
    g->in_w = xs[3];
    g->kernel_h = kernel_h_;
    g->kernel_w = kernel_w_;
    g->stride_h = attrs_.stride_h;
    g->stride_w = attrs_.stride_w;
    g->pad_top = attrs_.pad_top;
    g->pad_left = attrs_.pad_left;
    g->pad_bottom = attrs_.pad_bottom;
    g->pad_right = attrs_.pad_right;
    g->dilation_h = attrs_.dilation_h;
    g->dilation_w = attrs_.dilation_w;
    // (in - 1) * stride + dilation * (kernel - 1) must stay far inside int64
    // (the attributes are < 2^24 each, the pads are subtracted afterwards)
    const int64_t kMaxSpan = int64_t{1} << 60;
    int64_t span_h = 0, span_w = 0, reach_h = 0, reach_w = 0;
    if (g->in_h < 1 || g->in_w < 1 || __builtin_mul_overflow(g->in_h - 1, g->stride_h, &span_h) ||
        __builtin_mul_overflow(g->in_w - 1, g->stride_w, &span_w) ||
        __builtin_mul_overflow(g->dilation_h, kernel_h_ - 1, &reach_h) ||
        __builtin_mul_overflow(g->dilation_w, kernel_w_ - 1, &reach_w) || span_h > kMaxSpan ||
        span_w > kMaxSpan || reach_h > kMaxSpan || reach_w > kMaxSpan)
      shape_error("input X " + shape_string(xs) + " gives an output too large to represent");
    g->out_h = span_h - g->pad_top - g->pad_bottom + reach_h + output_padding_h_ + 1;
    g->out_w = span_w - g->pad_left - g->pad_right + reach_w + output_padding_w_ + 1;
    if (g->in_h < 1 || g->in_w < 1 || g->out_h < 1 || g->out_w < 1)
      shape_error("input X " + shape_string(xs) + " gives an empty output (" +
                  std::to_string(g->out_h) + " x " + std::to_string(g->out_w) +
                  "): the padding is larger than the output");
    return {xs[0], cout_, g->out_h, g->out_w};
  }

  const format::TensorInfo& weight_;
  const float* bias_;
  ConvAttributes attrs_;
  Activation act_;
  int64_t output_padding_h_ = 0, output_padding_w_ = 0;
  int64_t cin_ = 0, cin_group_ = 0, cout_ = 0, cout_group_ = 0, kernel_h_ = 0, kernel_w_ = 0;
  const kernels::GemmKernel* gemm_ = nullptr;
  std::vector<kernels::PackedGemmWeights> packed_;  // one per group: W_g^T
};

}  // namespace

std::unique_ptr<Op> create_conv_transpose(const NodeContext& ctx) {
  ctx.check_input_count(2, 3);
  ctx.check_output_count(1);
  const format::TensorInfo& w = ctx.require_constant(1, "weight");
  if (w.dims.size() != 4)
    ctx.fail("weight '" + w.name + "' must be 4-D [C, Cout/groups, kH, kW], got " +
             shape_string(w.dims));
  for (int64_t d : w.dims)
    if (d < 1) ctx.fail("weight '" + w.name + "' has an empty dim: " + shape_string(w.dims));
  const float* bias = nullptr;
  if (ctx.has_input(2)) {
    const format::TensorInfo& b = ctx.require_constant(2, "bias");
    const int64_t groups = ctx.attr_int("group", 1, 1, w.dims[0]);
    if (b.storage != format::Storage::kDense || b.elements != w.dims[1] * groups)
      ctx.fail("bias '" + b.name + "' must be dense with Cout = " +
               std::to_string(w.dims[1] * groups) + " elements, got " + shape_string(b.dims));
    bias = static_cast<const float*>(b.data);
  }
  return std::make_unique<ConvTranspose2dOp>(ctx, w, bias);
}

}  // namespace ops
}  // namespace sparsert
