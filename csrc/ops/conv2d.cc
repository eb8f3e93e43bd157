// Conv (1-D and 2-D): Y = act(conv(X, W) + B + R), NCHW (a 1-D conv runs as 2-D with H = 1),
// W dense, CSR or BSR (docs/spr-format.md, section 5).
//
// Paths, chosen at load from the weight and per input shape in plan():
// - pointwise (1x1, stride 1, no pad): per image and group, X is the Cg x HW
//   matrix the kernels want, so spmm (CSR) / packed gemm (dense) run on it directly.
// - depthwise (groups == C == Cout): the direct kernel of kernels/conv over each
//   (zero-padded) channel plane; CSR weights are densified at load (they are tiny).
// - sparse direct (CSR, stride 1, or 2 via a phase-split input): the group's
//   input is zero-padded once, then conv_sparse_direct (kernels/conv/conv.h)
//   accumulates each output channel over its nonzeros in registers, into a
//   per-task staging buffer that the epilogue compacts into Y.
// - depthwise ReLU / ReLU6 / Clip run inside the kernel (its output clamp).
// - Winograd F(4x4, 3x3) (dense 3x3, stride 1, dilation 1, one group; see
//   kernels/conv/conv.h): pad once to whole 4x4 tiles, then per block of tile
//   rows (V + M bounded by kWinogradBudgetFloats) the input transform, 36
//   packed GEMMs and the output transform with bias, residual and activation.
//   The transformed weights (36/9 = 4x the dense weight) are built on the first
//   plan that uses them and charged to the model's expand budget (over it, the
//   layer stays on im2col, noted in load_log).
// - im2col (everything else): the Cg*kH*kW x pixels matrix is built in scratch
//   (in pixel blocks bounded by kIm2colBudgetFloats), then spmm / packed gemm.
//
// Dense 3x3 stride 1, Winograd vs im2col + gemm (median of 3 x 30 runs, 1
// thread, batch 1, pads 1, ReLU; AMD EPYC Zen 3, AVX2; ms):
//      64 ->  64 56x56  (196 tiles):  im2col 4.99   Winograd 3.07  (1.63x)
//     128 -> 128 28x28  ( 49 tiles):  im2col 4.35   Winograd 2.74  (1.59x)
//     256 -> 256 14x14  ( 16 tiles):  im2col 4.12   Winograd 2.75  (1.50x)
//      32 ->  32 112x112 (784 tiles): im2col 5.35   Winograd 3.86  (1.39x)
//     512 -> 512 7x7    (  4 tiles):  im2col 4.10   Winograd 4.72  (0.87x)
//     256 -> 256 8x8    (  4 tiles):  im2col 1.04   Winograd 1.56  (0.67x)
//      64 ->  64 16x16  ( 16 tiles):  im2col 0.33   Winograd 0.47  (0.71x)
//      16 ->  16 112x112 (784 tiles): im2col 1.86   Winograd 2.30  (0.81x)
//       8 ->   8 64x64  (256 tiles):  im2col 0.21   Winograd 0.22  (0.97x)
// A second run (same machine, another hour; min of 5 x 30 runs):
//     128 ->  32 56x56  (196 tiles):  im2col 6.18   Winograd 2.75  (2.25x, DenseNet)
//     128 ->  32 28x28  ( 49 tiles):  im2col 1.10   Winograd 0.86  (1.27x)
//      32 -> 128 56x56  (196 tiles):  im2col 2.91   Winograd 2.37  (1.23x)
//      64 ->  64 28x28  ( 49 tiles):  im2col 0.82   Winograd 0.69  (1.18x)
//     128 -> 128 14x14  ( 16 tiles):  im2col 0.84   Winograd 0.73  (1.15x)
//      96 -> 208 14x14  ( 16 tiles):  im2col 0.96   Winograd 0.86  (1.11x)
//      48 ->  48 56x56  (196 tiles):  im2col 1.83   Winograd 1.33  (1.38x)
// Few tiles do not reuse the 4x larger weights (they stream from memory for
// a handful of columns); few channels leave the transforms (O(C) per tile
// against O(C^2) for the GEMMs) dominant. Rule: Winograd when tiles >= 16,
// min(Cin, Cout) >= 32 and tiles * min(Cin, Cout) >= 1536; tune = true times
// both per input shape instead. LoadOptions::conv_dense_path = winograd|im2col
// forces one.
//
// Sparse KxK, direct vs im2col + spmm. Measured as the node time of Model.profile
// (median of 100, 1 thread, AVX-512 machine shared with other jobs, unstructured
// sparsity 90% unless stated, batch 1, pads 1; n = the direct kernel's span
// (Hout-1)*Wp + Wout):
//      64 ->  64 3x3 56x56 (n 3246):  direct 0.37 ms   im2col+spmm 0.60 ms
//     128 -> 128 3x3 28x28 (n  838):  direct 0.37 ms   im2col+spmm 0.53 ms
//     256 -> 256 3x3 14x14 (n  222):  direct 0.39 ms   im2col+spmm 0.55 ms
//     512 -> 512 3x3  7x7  (n   61):  direct 0.50 ms   im2col+spmm 0.78 ms
//     512 -> 512 3x3  7x7, 70%:       direct 1.25 ms   im2col+spmm 1.67 ms
//     512 -> 512 3x3  4x4  (n   22):  direct 0.29 ms   im2col+spmm 0.32 ms
//     512 -> 512 3x3  2x2  (n    6):  direct 0.20 ms   im2col+spmm 0.25 ms
//      64 -> 128 3x3 stride 2, 56x56: direct 0.29 ms   im2col+spmm 0.36 ms
//     128 -> 256 3x3 stride 2, 28x28: direct 0.27 ms   im2col+spmm 0.31 ms
//     256 -> 512 3x3 stride 2, 14x14: direct 0.27 ms   im2col+spmm 0.40 ms
// Direct skips the 9x im2col copy and reads a 9x smaller input, which pays for
// its partial tiles and the (Wp - Wout) columns it drops even on tiny maps (an
// earlier version lost on small maps only because it divided per nonzero to
// build its offsets). Stride 2 runs the same kernel on a phase-split copy of
// the input (kernels/conv/conv.h). Rule: direct at stride 1, and at stride 2
// when every phase is read (see direct_wins); im2col otherwise.
// LoadOptions::conv_sparse_path = direct|im2col forces one (tests and benchmarks).
//
// Per-layer kernel choice (as linear.cc): whatever the file stores, a layer
// runs a sparse path (direct or im2col+spmm, pointwise spmm) only when its
// weight is sparse enough for that path to beat the dense packed GEMM on the
// same shape; a CSR weight that is mostly nonzero is densified, a dense weight
// that is mostly zero gets a CSR copy, and in between both are kept and the
// choice is made per input shape in make_plan(). Crossover densities (stored
// nonzeros / elements; sparse at or below), measured per layer of ResNet-18 and
// MobileNetV2 at 224x224 on the AVX-512 build machine, 1 thread, batch 1, with
// the sparse path forced against the dense one at 50/80/90% sparsity:
//   sparse direct (3x3 stride 1, big maps):  0.30  (sparse/dense time 0.50-0.72 at density
//                                            0.2, 1.2-1.7 at 0.5)
//   im2col + spmm (strided, small maps):     0.30  (0.44-0.63 at 0.2, 0.9-1.2 at 0.5)
//   pointwise spmm (1x1):                    0.30  (0.39-0.75 at 0.2, 0.75-1.46 at 0.5)
// Both representations are kept when the density lies in
// (kKeepDenseAbove, kKeepSparseBelow].
// With LoadOptions::tune both candidates are kept whatever the density and are
// timed (single thread, median of 3) the first time a plan is made for an input
// shape; the faster is cached per shape (under a mutex: plans are made
// concurrently by runs), so every later plan for that shape uses it. The input
// shape is not known at load, hence this lazy timing on the real shape.
// LoadOptions::layer_kernel = sparse|dense forces one (when the weight allows it).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include "kernels/conv/conv.h"
#include "kernels/kernels.h"
#include "ops/activation.h"
#include "ops/conv_common.h"
#include "ops/op.h"
#include "ops/broadcast.h"
#include "ops/layer_weights.h"
#include "ops/partition.h"
#include "ops/tune_cache.h"

namespace sparsert {
namespace ops {
namespace {

// im2col columns per block: 1 MiB (half a Zen 3 L2 plus a bit), so the GEMM
// reads them back from L2 rather than memory, but at least kIm2colMinBlock
// pixels so a big weight is not streamed once per sliver of columns. 1 thread,
// median of 5 x 20 runs, ms, budget 8 MiB / floor 64 -> 1 MiB / floor 128:
// stem 3->64 7x7 s2 at 224: 5.75 -> 4.45; 128->32 3x3 at 56x56 (DenseNet):
// 6.62 -> 4.70; 64->128, 128->256, 256->512 3x3 s2 and 512->512 at 7x7
// unchanged within 5%.
constexpr int64_t kIm2colBudgetFloats = int64_t{1} << 18;
constexpr int64_t kIm2colMinBlock = 128;
constexpr int64_t kStageBudgetFloats = 16384;              // 64 KiB staging per task
constexpr double kDirectMaxDensity = 0.30;
// Re-measured against today's dense paths (Zen 3, 1 thread, min of 3 medians,
// unstructured weights with the sparse path forced vs dense; benchmarks/
// block_sparsity.py, 2026-12-03). Sparse/dense speed at 70% / 80% sparsity:
//   3x3 s1 where the dense path is Winograd: 64->64 56x56 0.67 / 1.16,
//     128->128 28x28 0.78 / 1.11, 256->256 14x14 1.02 / 1.39  -> sparse at <= 0.23
//   3x3 s1 without Winograd (512->512 7x7): 1.16 at 70%, 0.87 at 60%   -> 0.30 (kept)
//   3x3 s2 (128->256 28x28): 0.85 / 1.17                               -> 0.25
//   1x1 (128->512 28x28): 0.99 at 50%, 1.29 at 60%, 1.69 at 70%         -> 0.38
constexpr double kWinogradDenseMaxDensity = 0.23;
constexpr double kStridedMaxDensity = 0.25;
// The matrix path's epilogue chunks (run_matrix): output floats per chunk,
// and the largest weight slice (nonzeros or dense elements) re-read per chunk.
constexpr int64_t kEpilogueChunkFloats = 32768;
constexpr int64_t kEpilogueChunkMaxWeights = 65536;
constexpr int64_t kWinogradMinTiles = 16;
constexpr int64_t kWinogradMinChannels = 32;
constexpr int64_t kWinogradMinTilesTimesChannels = 1536;
constexpr int64_t kDirectMaxStride = 2;
constexpr double kIm2colMaxDensity = 0.30;
constexpr double kPointwiseMaxDensity = 0.38;
constexpr double kKeepSparseBelow = std::max({kDirectMaxDensity, kIm2colMaxDensity, kPointwiseMaxDensity,
                                               kWinogradDenseMaxDensity, kStridedMaxDensity});
constexpr double kKeepDenseAbove = std::min({kDirectMaxDensity, kIm2colMaxDensity, kPointwiseMaxDensity,
                                             kWinogradDenseMaxDensity, kStridedMaxDensity});

constexpr int64_t kWinogradBudgetFloats = int64_t{1} << 19;  // 2 MiB of V + M per tile-row block

enum class ConvPath { kPointwise, kDepthwise, kSparseDirect, kIm2col, kWinograd };

using SparseChoice = LoadConfig::ConvSparsePath;
using KernelChoice = LoadConfig::LayerKernel;
using DenseChoice = LoadConfig::ConvDensePath;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Everything run() needs to know about one input shape.
struct ConvPlan {
  int64_t batch = 0;
  kernels::ConvGeometry g;  // per group
  ConvPath path = ConvPath::kIm2col;
  bool sparse = false;         // CSR kernels (spmm / direct) rather than the packed gemm
  Shape conv_shape;            // [N, Cout, Hout, Wout]
  Shape out_shape;             // conv_shape broadcast with R
  bool residual_fast = false;  // R has conv_shape: added in the epilogue
  bool activate = true;        // false when R broadcasts: act comes after the broadcast add
  int64_t pixels = 0;          // Hout * Wout
  int64_t col_block = 0;       // im2col pixels per block
  int64_t span = 0;            // sparse direct: (Hout-1)*Wp + Wout
  int64_t stage_rows = 0;      // sparse direct: rows per staging pass
  int64_t tiles_h = 0, tiles_w = 0;  // Winograd: 4x4 output tiles
  int64_t tile_rows = 0;             // Winograd: tile rows per block
  int64_t max_tasks = 1;
  // scratch layout, in floats from the (64-byte aligned) base
  int64_t tmp_offset = -1;            // conv result when R broadcasts
  int64_t work_offset = 0;            // im2col columns / padded input / padded planes
  int64_t offsets_offset = 0;         // sparse direct: int32 offsets
  int64_t column_offsets_offset = 0;  // sparse direct: int32 offset per weight column
  int64_t stage_offset = 0;           // sparse direct: per-task staging
  int64_t v_offset = 0, m_offset = 0;  // Winograd: transformed input / GEMM result
  int64_t total_floats = 0;
};

class Conv2dOp final : public Op {
 public:
  Conv2dOp(const NodeContext& ctx, const format::TensorInfo& w, const float* bias,
           bool has_residual)
      : weights_(w, ctx.config()), bias_(bias), has_residual_(has_residual), config_(ctx.config()) {
    spatial_rank_ = static_cast<int>(w.dims.size()) - 2;
    attrs_ = parse_conv_attributes(ctx, spatial_rank_, w.dims[0]);
    act_ = parse_fused_activation(ctx);
    cout_ = w.dims[0];
    cin_group_ = w.dims[1];
    kernel_h_ = spatial_rank_ == 2 ? w.dims[2] : 1;
    kernel_w_ = w.dims[spatial_rank_ + 1];
    if (cout_ % attrs_.groups != 0)
      ctx.fail("weight '" + w.name + "' has " + std::to_string(cout_) +
               " output channels, not a multiple of group = " + std::to_string(attrs_.groups));
    cout_group_ = cout_ / attrs_.groups;
    conv_ = &kernels::conv_kernel(ctx.isa());
    sparse_choice_ = ctx.config().conv_sparse_path;
    dense_choice_ = ctx.config().conv_dense_path;
    kernel_choice_ = ctx.config().layer_kernel;
    tune_ = ctx.tune();
    stored_nnz_ = weights_.nnz();
    density_ = weights_.density();
    cost_density_ = density_;
    depthwise_ = attrs_.groups > 1 && cin_group_ == 1 && cout_group_ == 1;
    pointwise_ = kernel_h_ == 1 && kernel_w_ == 1 && attrs_.stride_h == 1 && attrs_.stride_w == 1 &&
                 attrs_.pad_top == 0 && attrs_.pad_left == 0 && attrs_.pad_bottom == 0 &&
                 attrs_.pad_right == 0;
    if (depthwise_) {
      dense_ = densify_weight(w, ctx.config());
      return;
    }
    winograd_able_ = attrs_.groups == 1 && kernel_h_ == 3 && kernel_w_ == 3 && attrs_.stride_h == 1 &&
                     attrs_.stride_w == 1 && attrs_.dilation_h == 1 && attrs_.dilation_w == 1;
    // tune keeps both, but never densifies more than kTuneMaxDenseElements
    const bool keep_both =
        kernel_choice_ != KernelChoice::kAuto || (tune_ && w.elements <= kTuneMaxDenseElements);
    // A weight with a 4x1 block view runs the sparse kernels at a lower cost
    // per nonzero (LayerWeights::sparse_cost_density), so a CSR copy is built
    // up to that crossover and dropped again if the weight has no blocks.
    bool want_sparse = keep_both || density_ <= kKeepSparseBelow / kBlockCostFactor;
    if (want_sparse) {
      weights_.ensure_csr();
      cost_density_ = weights_.sparse_cost_density();
      if (!keep_both && cost_density_ > kKeepSparseBelow) {
        weights_.drop_csr();
        want_sparse = false;
        cost_density_ = density_;
      }
    }
    bool want_dense = keep_both || cost_density_ > kKeepDenseAbove;
    if (tune_ && w.elements > kTuneMaxDenseElements && !want_dense)
      ctx.config().note("weight '" + w.name + "': not tuned (a dense copy of " + std::to_string(w.elements) +
                        " floats is over the tuning limit); the cost model picks its kernel");
    if (kernel_choice_ == KernelChoice::kDense && w.elements > kTuneMaxDenseElements && !want_dense)
      want_dense = true;  // asked for explicitly
    // a dense copy that only tuning asked for is skipped when over the expand budget
    const bool dense_optional = want_sparse && cost_density_ <= kKeepDenseAbove && kernel_choice_ == KernelChoice::kAuto;
    if (want_dense) weights_.ensure_dense(attrs_.groups, dense_optional);
    if (tune_ && ctx.config().tune_cache != nullptr) {
      tune_cache_ = ctx.config().tune_cache;
      std::ostringstream s;
      s << ctx.config().tune_machine << "|conv " << cout_ << "x" << cin_group_ << "x" << kernel_h_ << "x" << kernel_w_
        << " nnz " << stored_nnz_ << " pattern " << std::hex
        << (weights_.has_csr() ? TuneCache::pattern_hash(weights_.csr()) : 0) << std::dec << " blocks "
        << (weights_.has_csr() ? weights_.csr().block_count : 0) << " stride " << attrs_.stride_h << ","
        << attrs_.stride_w << " pads " << attrs_.pad_top << "," << attrs_.pad_left << "," << attrs_.pad_bottom << ","
        << attrs_.pad_right << " dilation " << attrs_.dilation_h << "," << attrs_.dilation_w << " groups "
        << attrs_.groups;
      tune_id_ = s.str();
    }
  }

  // tune: the cached choice `what` for input shape `x` (0 / 1), or -1.
  int cached_lookup(const char* what, const Shape& x) const {
    return tune_cache_ == nullptr ? -1 : tune_cache_->lookup(tune_key(what, x));
  }
  // ... else measure(), recorded in the cache.
  template <class F>
  bool cached_choice(const char* what, const Shape& x, F&& measure) const {
    const int cached = cached_lookup(what, x);
    if (cached >= 0) return cached == 1;
    const bool choice = measure();
    if (tune_cache_ != nullptr) tune_cache_->record(tune_key(what, x), choice);
    return choice;
  }
  std::string tune_key(const char* what, const Shape& x) const {
    return tune_id_ + " input " + shape_string(x) + " " + what;
  }

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    return {make_plan(inputs, 1).out_shape};
  }

  size_t scratch_bytes(const std::vector<Shape>& inputs, int threads) const override {
    const ConvPlan plan = make_plan(inputs, threads);
    return plan.total_floats == 0 ? 0 : sizeof(float) * static_cast<size_t>(plan.total_floats) + 64;
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs,
           const std::vector<OutputRef>& outputs) const override {
    std::vector<Shape> shapes;
    for (const auto& in : inputs) shapes.push_back(in.shape);
    const ConvPlan plan = make_plan(shapes, ctx.threads());
    float* base = static_cast<float*>(ctx.scratch());
    const float* x = inputs[0].f32();
    const float* r = has_residual_ && plan.residual_fast ? inputs[3].f32() : nullptr;
    float* y = plan.tmp_offset >= 0 ? base + plan.tmp_offset : outputs[0].f32();
    if (shape_elements(plan.conv_shape) > 0 && shape_elements(shapes[0]) > 0) {
      const int64_t in_image = plan.g.channels * attrs_.groups * plan.g.in_h * plan.g.in_w;
      const int64_t out_image = cout_ * plan.pixels;
      for (int64_t n = 0; n < plan.batch; ++n) {
        const float* xn = x + n * in_image;
        float* yn = y + n * out_image;
        const float* rn = r != nullptr ? r + n * out_image : nullptr;
        run_image(ctx, plan, xn, yn, rn, base);
      }
    } else if (shape_elements(plan.conv_shape) > 0) {
      // no input channels: Y = act(B + R)
      for (int64_t n = 0; n < plan.batch; ++n)
        for (int64_t c = 0; c < cout_; ++c) {
          float* yc = y + (n * cout_ + c) * plan.pixels;
          std::fill(yc, yc + plan.pixels, bias_ != nullptr ? bias_[c] : 0.0f);
          epilogue(plan, yc, r != nullptr ? r + (n * cout_ + c) * plan.pixels : nullptr,
                   plan.pixels);
        }
    }
    if (plan.tmp_offset >= 0) {
      broadcast_add_activation(y, plan.conv_shape, inputs[3].f32(), inputs[3].shape, outputs[0].f32(),
                               plan.out_shape, act_);
    }
  }

  void describe(const std::vector<Shape>& inputs, const std::vector<Shape>& outputs,
                NodeInfo* info) const override {
    const ConvPlan plan = make_plan(inputs, 1);
    weights_.describe(plan.sparse, info);
    const int64_t elements = weights_.info().elements;
    const int64_t run_nnz = plan.sparse ? stored_nnz_ : elements;
    info->flops = 2 * run_nnz * plan.pixels * plan.batch;
    info->dense_flops = 2 * elements * plan.pixels * plan.batch;
    info->kernel = kernel_name(plan);
    if (!depthwise_) info->kernel += weights_.storage_note(plan.sparse);
  }

 private:
  bool accepts_sparse_constant(size_t input) const override { return input == 1; }

  // A 1-D input [N, C, W] as [N, C, 1, W]; 2-D inputs unchanged.
  Shape as_4d(const Shape& x) const {
    const size_t want = static_cast<size_t>(spatial_rank_) + 2;
    if (x.size() != want)
      shape_error("input X must be " + std::to_string(want) + "-D [N, C, " + (spatial_rank_ == 2 ? "H, W" : "W") +
                  "], got " + shape_string(x));
    return spatial_rank_ == 2 ? x : Shape{x[0], x[1], 1, x[2]};
  }

  void run_image(const RunContext& ctx, const ConvPlan& plan, const float* x, float* y,
                 const float* r, float* base) const {
    switch (plan.path) {
      case ConvPath::kDepthwise:
        run_depthwise(ctx, plan, x, y, r, base);
        break;
      case ConvPath::kSparseDirect:
        run_sparse_direct(ctx, plan, x, y, r, base);
        break;
      case ConvPath::kWinograd:
        run_winograd(ctx, plan, x, y, r, base);
        break;
      case ConvPath::kPointwise:
      case ConvPath::kIm2col:
        run_matrix(ctx, plan, x, y, r, base);
        break;
    }
  }

  // Sparse KxK: the direct kernel rather than im2col + spmm (see the table above).
  // Strided, it pays only when every phase plane it copies is read (dilation 1,
  // kernel >= stride): a strided 1x1 would copy 4x what it reads (0.08 ms vs
  // 0.04 ms for im2col on ResNet-18's 1x1 stride-2 downsamples at 90%).
  bool direct_wins(const kernels::ConvGeometry& g) const {
    if (sparse_choice_ == SparseChoice::kDirect) return true;
    if (g.stride_h == 1 && g.stride_w == 1) return true;
    return g.stride_h <= kDirectMaxStride && g.stride_w <= kDirectMaxStride && g.dilation_h == 1 &&
           g.dilation_w == 1 && g.kernel_h >= g.stride_h && g.kernel_w >= g.stride_w;
  }

  // The cost model: the densest weight the sparse path this shape would take still wins at.
  double sparse_max_density(const kernels::ConvGeometry& g) const {
    if (pointwise_) return kPointwiseMaxDensity;
    if (winograd_model(g)) return kWinogradDenseMaxDensity;
    if (g.stride_h > 1 || g.stride_w > 1) return kStridedMaxDensity;
    if (direct_wins(g)) return kDirectMaxDensity;
    return kIm2colMaxDensity;
  }

  // The cost model's half of winograd_wins (no timing): would the dense path be Winograd?
  bool winograd_model(const kernels::ConvGeometry& g) const {
    if (!winograd_able_ || dense_choice_ == DenseChoice::kIm2col) return false;
    if (dense_choice_ == DenseChoice::kWinograd) return true;
    const int64_t tiles = ((g.out_h + 3) / 4) * ((g.out_w + 3) / 4);
    const int64_t channels = std::min(cin_group_, cout_);
    return tiles >= kWinogradMinTiles && channels >= kWinogradMinChannels &&
           tiles * channels >= kWinogradMinTilesTimesChannels;
  }

  // LoadOptions::tune: times one image through the sparse and the dense plan for
  // this input shape (1 thread, best of 3 after a warm-up); true if sparse wins.
  bool sparse_wins(const std::vector<Shape>& inputs) const {
    Shape x_shape = inputs[0];
    x_shape[0] = 1;
    std::vector<Shape> shapes = {x_shape};
    // R is not added while timing (it costs both the same); [1] broadcasts with any output
    for (size_t i = 1; i < inputs.size(); ++i) shapes.push_back(i == 3 ? Shape{1} : inputs[i]);
    const ConvPlan sparse = make_plan(shapes, 1, KernelChoice::kSparse);
    const ConvPlan dense = make_plan(shapes, 1, KernelChoice::kDense);
    if (shape_elements(x_shape) == 0 || shape_elements(sparse.conv_shape) == 0)
      return cost_density_ <= sparse_max_density(sparse.g);
    return time_plan(sparse, x_shape) <= time_plan(dense, x_shape);
  }

  // Dense 3x3 stride 1: Winograd F(4x4, 3x3) rather than im2col + gemm when
  // the map has enough tiles to reuse the 4x larger transformed weights and
  // the channels amortise the transforms (the table at the top of this file).
  bool winograd_wins(const std::vector<Shape>& inputs, const kernels::ConvGeometry& g) const {
    if (!winograd_able_ || dense_choice_ == DenseChoice::kIm2col) return false;
    if (dense_choice_ == DenseChoice::kWinograd) return true;
    const bool model = winograd_model(g);
    if (!tune_ || !weights_.has_dense()) return model;
    Shape key = inputs[0];
    key[0] = 1;
    {
      std::lock_guard<std::mutex> lock(winograd_tuned_mutex_);
      auto it = winograd_tuned_.find(key);
      if (it != winograd_tuned_.end()) return it->second;
    }
    bool wins = false;
    const int cached = cached_lookup("winograd", key);
    if (cached >= 0) {
      // a cached "im2col" builds no transformed weights (4x the dense weight)
      wins = cached == 1 && ensure_winograd();
    } else if (ensure_winograd()) {
      wins = cached_choice("winograd", key, [&] {
        std::vector<Shape> shapes = {key};
        for (size_t i = 1; i < inputs.size(); ++i) shapes.push_back(i == 3 ? Shape{1} : inputs[i]);
        ConvPlan wino = make_plan(shapes, 1, KernelChoice::kDense, DenseChoice::kWinograd);
        ConvPlan im2col = make_plan(shapes, 1, KernelChoice::kDense, DenseChoice::kIm2col);
        return time_plan(wino, key) < time_plan(im2col, key);
      });
    }
    std::lock_guard<std::mutex> lock(winograd_tuned_mutex_);
    return winograd_tuned_.emplace(key, wins).first->second;
  }

  // The transformed, packed weights (4x the dense weight), charged to the
  // model's expand budget; false when the budget refuses them.
  bool ensure_winograd() const {
    const int state = winograd_state_.load(std::memory_order_acquire);
    if (state != 0) return state > 0;
    std::lock_guard<std::mutex> lock(winograd_mutex_);
    if (winograd_state_.load() != 0) return winograd_state_.load() > 0;
    const int64_t elements = 36 * cout_ * cin_group_;
    if (!config_.try_charge(elements * static_cast<int64_t>(sizeof(float)))) {
      config_.note("weight '" + weights_.info().name +
                   "': Winograd weights over the expand budget; this layer runs im2col + gemm");
      winograd_state_.store(-1, std::memory_order_release);
      return false;
    }
    const kernels::AlignedFloats w = densify_weight(weights_.info(), LoadConfig());
    kernels::AlignedFloats u(static_cast<size_t>(elements));
    kernels::conv_winograd_weights(w.data(), cout_, cin_group_, u.data());
    winograd_gemm_ = &kernels::gemm_kernel(config_.isa);
    winograd_u_.resize(36);
    for (int64_t xi = 0; xi < 36; ++xi)
      winograd_gemm_->pack(u.data() + xi * cout_ * cin_group_, cout_, cin_group_, cin_group_, &winograd_u_[xi]);
    winograd_state_.store(1, std::memory_order_release);
    return true;
  }

  // One image through `plan` on random data, 1 thread, best of 3 (for tune).
  double time_plan(const ConvPlan& plan, const Shape& x_shape) const {
    const int64_t in_elements = shape_elements(x_shape);
    const int64_t out_elements = shape_elements(plan.conv_shape);
    std::vector<float> x(static_cast<size_t>(std::max<int64_t>(in_elements, 1)));
    std::vector<float> y(static_cast<size_t>(std::max<int64_t>(out_elements, 1)));
    std::mt19937 gen(12345);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (float& v : x) v = dist(gen);
    kernels::AlignedFloats scratch(static_cast<size_t>(std::max<int64_t>(plan.total_floats, 16)));
    RunContext ctx(runtime::ThreadPool::global(), 1, scratch.data(), scratch.size() * sizeof(float));
    return best_time([&] { run_image(ctx, plan, x.data(), y.data(), nullptr, scratch.data()); }, 3);
  }

  std::string kernel_name(const ConvPlan& plan) const {
    if (plan.path == ConvPath::kDepthwise) return conv_->depthwise_name;
    const std::string matrix = plan.sparse ? weights_.spmm().name : weights_.gemm().name;
    switch (plan.path) {
      case ConvPath::kPointwise:
        return matrix;
      case ConvPath::kIm2col:
        return "im2col+" + matrix;
      case ConvPath::kDepthwise:
        return conv_->depthwise_name;
      case ConvPath::kSparseDirect:
        return conv_->sparse_direct_name;
      case ConvPath::kWinograd:
        return std::string(conv_->winograd_name) + "+" + winograd_gemm_->name;
    }
    return "";
  }

  // force: kAuto = the cost model (or the tuned choice), else that kernel family.
  ConvPlan make_plan(const std::vector<Shape>& inputs, int threads,
                     KernelChoice force = KernelChoice::kAuto,
                     DenseChoice dense_force = DenseChoice::kAuto) const {
    ConvPlan p;
    const Shape xs = as_4d(inputs[0]);
    if (xs[1] != cin_group_ * attrs_.groups)
      shape_error("input X " + shape_string(inputs[0]) + " has " + std::to_string(xs[1]) +
                  " channels; the weight " + shape_string(weights_.info().dims) +
                  " with groups = " + std::to_string(attrs_.groups) + " needs " +
                  std::to_string(cin_group_ * attrs_.groups));
    kernels::ConvGeometry& g = p.g;
    g.channels = cin_group_;
    g.in_h = xs[2];
    g.in_w = xs[3];
    g.kernel_h = kernel_h_;
    g.kernel_w = kernel_w_;
    g.stride_h = attrs_.stride_h;
    g.stride_w = attrs_.stride_w;
    g.pad_top = attrs_.pad_top;
    g.pad_left = attrs_.pad_left;
    g.pad_bottom = attrs_.pad_bottom;
    g.pad_right = attrs_.pad_right;
    g.dilation_h = attrs_.dilation_h;
    g.dilation_w = attrs_.dilation_w;
    g.out_h = kernels::conv_output_size(g.in_h, kernel_h_, g.stride_h, g.pad_top, g.pad_bottom,
                                        g.dilation_h);
    g.out_w = kernels::conv_output_size(g.in_w, kernel_w_, g.stride_w, g.pad_left, g.pad_right,
                                        g.dilation_w);
    if (g.out_h < 1 || g.out_w < 1)
      shape_error("input X " + shape_string(xs) + " is smaller than the dilated " +
                  std::to_string(kernel_h_) + "x" + std::to_string(kernel_w_) +
                  " kernel even with padding");
    if (g.out_h > INT64_MAX / 16 / g.out_w)
      shape_error("output " + std::to_string(g.out_h) + "x" + std::to_string(g.out_w) +
                  " of input X " + shape_string(xs) + " is too large");
    p.batch = xs[0];
    p.pixels = g.out_h * g.out_w;
    p.conv_shape = spatial_rank_ == 2 ? Shape{xs[0], cout_, g.out_h, g.out_w} : Shape{xs[0], cout_, g.out_w};
    p.out_shape = p.conv_shape;
    if (has_residual_) {
      const Shape& rs = inputs[3];
      if (!broadcast_shapes({p.conv_shape, rs}, &p.out_shape))
        shape_error("residual input R " + shape_string(rs) +
                    " does not broadcast with the convolution output " +
                    shape_string(p.conv_shape));
      p.residual_fast = rs == p.conv_shape;
    }
    const int64_t k = cin_group_ * kernel_h_ * kernel_w_;
    if (depthwise_) {
      p.path = ConvPath::kDepthwise;
    } else {
      if (force == KernelChoice::kAuto) force = kernel_choice_;
      if (!weights_.has_csr() || !weights_.has_dense()) {
        p.sparse = weights_.has_csr();
      } else if (force != KernelChoice::kAuto) {
        p.sparse = force == KernelChoice::kSparse;
      } else {
        p.sparse = cost_density_ <= sparse_max_density(g);
        if (tune_) {
          std::lock_guard<std::mutex> lock(tuned_mutex_);
          Shape key = xs;  // timed at batch 1, so one entry serves every batch size
          key[0] = 1;
          auto it = tuned_.find(key);
          if (it == tuned_.end())
            it = tuned_.emplace(key, cached_choice("sparse", key, [&] { return sparse_wins(inputs); })).first;
          p.sparse = it->second;
        }
      }
      p.path = pointwise_ ? ConvPath::kPointwise : ConvPath::kIm2col;
      if (p.sparse && !pointwise_ && direct_wins(g) &&
          g.channels * g.stride_h * g.stride_w * g.phase_h() * g.phase_w() < (int64_t{1} << 31) &&
          sparse_choice_ != SparseChoice::kIm2col) {
        p.path = ConvPath::kSparseDirect;
        p.span = (g.out_h - 1) * g.phase_w() + g.out_w;
      }
      // (the dense path's choice only matters, and is only timed, when it runs)
      const bool winograd = !p.sparse && (dense_force == DenseChoice::kAuto
                                              ? winograd_wins(inputs, g)
                                              : winograd_able_ && dense_force == DenseChoice::kWinograd);
      if (!p.sparse && winograd && ensure_winograd()) p.path = ConvPath::kWinograd;
    }
    p.max_tasks = std::max(1, threads) * 4;  // partition_task_count never returns more
    int64_t floats = 0;
    auto reserve = [&floats](int64_t count) {
      const int64_t at = floats;
      floats += round_up(std::max<int64_t>(count, 0), 16);
      return at;
    };
    if (has_residual_ && !p.residual_fast) {
      p.tmp_offset = reserve(shape_elements(p.conv_shape));
      p.activate = false;
    }
    switch (p.path) {
      case ConvPath::kPointwise:
        break;
      case ConvPath::kIm2col:
        p.col_block = std::min(
            p.pixels, std::max<int64_t>(kIm2colMinBlock, kIm2colBudgetFloats / std::max<int64_t>(k, 1)));
        p.work_offset = reserve(k * p.col_block);
        break;
      case ConvPath::kDepthwise:
        if (g.padded_h() != g.in_h || g.padded_w() != g.in_w)
          p.work_offset = reserve(p.max_tasks * round_up(g.padded_h() * g.padded_w(), 16));
        break;
      case ConvPath::kWinograd: {
        p.tiles_h = (g.out_h + 3) / 4;
        p.tiles_w = (g.out_w + 3) / 4;
        const int64_t per_row = 36 * (cin_group_ + cout_) * p.tiles_w;
        p.tile_rows = std::max<int64_t>(1, std::min(p.tiles_h, kWinogradBudgetFloats / per_row));
        p.work_offset = reserve(cin_group_ * (4 * p.tiles_h + 2) * (4 * p.tiles_w + 2));
        p.v_offset = reserve(36 * cin_group_ * p.tile_rows * p.tiles_w);
        p.m_offset = reserve(36 * cout_ * p.tile_rows * p.tiles_w);
        break;
      }
      case ConvPath::kSparseDirect:
        p.work_offset = reserve(g.channels * g.stride_h * g.stride_w * g.phase_h() * g.phase_w());
        p.offsets_offset = reserve(stored_nnz_ + weights_.block_count());
        p.column_offsets_offset = reserve(k);
        p.stage_rows = std::max<int64_t>(1, std::min(cout_group_, kStageBudgetFloats / p.span));
        // whole 4x1 blocks per staging pass when the weight has a block view
        if (weights_.block_count() > 0 && p.stage_rows >= 4) p.stage_rows = p.stage_rows / 4 * 4;
        p.stage_offset = reserve(p.max_tasks * round_up(p.stage_rows * p.span, 16));
        break;
    }
    p.total_floats = floats;
    return p;
  }

  // Y += R (when fused), then the activation, on `count` contiguous outputs.
  void epilogue(const ConvPlan& p, float* y, const float* r, int64_t count) const {
    if (r != nullptr) add_inplace(y, r, count);
    if (p.activate) apply_activation(act_, y, count);
  }

  void run_depthwise(const RunContext& ctx, const ConvPlan& p, const float* x, float* y,
                     const float* r, float* base) const {
    kernels::ConvGeometry g1 = p.g;
    g1.channels = 1;
    const bool pad = g1.padded_h() != g1.in_h || g1.padded_w() != g1.in_w;
    const int64_t plane_in = g1.in_h * g1.in_w;
    const int64_t plane_pad = round_up(g1.padded_h() * g1.padded_w(), 16);
    const int64_t khw = kernel_h_ * kernel_w_;
    const int64_t work = cout_ * p.pixels * khw;
    const int64_t tasks = std::min(p.max_tasks, partition_task_count(ctx.threads(), work, cout_));
    // ReLU / ReLU6 / Clip (or none) run inside the kernel as its output clamp,
    // unless a residual must be added before the activation.
    float out_min, out_max;
    bool fused = r == nullptr && p.activate && act_.as_clamp(&out_min, &out_max);
    if (!fused) {
      out_min = -std::numeric_limits<float>::infinity();
      out_max = std::numeric_limits<float>::infinity();
    }
    ctx.parallel_for(tasks, [&](int64_t t) {
      const int64_t c0 = cout_ * t / tasks, c1 = cout_ * (t + 1) / tasks;
      float* xp = base + p.work_offset + t * plane_pad;
      for (int64_t c = c0; c < c1; ++c) {
        const float* xc = x + c * plane_in;
        if (pad) {
          kernels::conv_pad_input(g1, xc, 0, 1, xp);
          xc = xp;
        }
        float* yc = y + c * p.pixels;
        conv_->depthwise(g1, xc, dense_.data() + c * khw, bias_ != nullptr ? bias_[c] : 0.0f,
                         out_min, out_max, yc);
        if (!fused) epilogue(p, yc, r != nullptr ? r + c * p.pixels : nullptr, p.pixels);
      }
    });
  }

  void run_sparse_direct(const RunContext& ctx, const ConvPlan& p, const float* x, float* y,
                         const float* r, float* base) const {
    const kernels::ConvGeometry& g = p.g;
    const int64_t sh = g.stride_h, sw = g.stride_w;
    const int64_t hq = g.phase_h(), wq = g.phase_w();  // hp, wp at stride 1
    float* xp = base + p.work_offset;
    int32_t* offsets = reinterpret_cast<int32_t*>(base + p.offsets_offset);
    int32_t* column_offsets = reinterpret_cast<int32_t*>(base + p.column_offsets_offset);
    // offsets[j] for every nonzero (the same for every group and image): a
    // table over the Cg*kH*kW weight columns, then one lookup per nonzero
    // (dividing per nonzero cost more than the convolution on 7x7 maps)
    const int64_t khw = kernel_h_ * kernel_w_;
    for (int64_t kh = 0, col = 0; kh < kernel_h_; ++kh) {  // channel 0: the taps
      for (int64_t kw = 0; kw < kernel_w_; ++kw, ++col) {
        const int64_t dy = kh * g.dilation_h, dx = kw * g.dilation_w;
        const int64_t phase = (dy % sh) * sw + dx % sw;
        column_offsets[col] = static_cast<int32_t>(phase * hq * wq + dy / sh * wq + dx / sw);
      }
    }
    for (int64_t c = 1; c < g.channels; ++c) {
      const int32_t channel = static_cast<int32_t>(c * sh * sw * hq * wq);
      for (int64_t t = 0; t < khw; ++t) column_offsets[c * khw + t] = channel + column_offsets[t];
    }
    const kernels::CsrMatrix& csr = weights_.csr();
    const int64_t csr_nnz = csr.row_ptr[csr.rows];  // <= stored_nnz_ (a BSR file's explicit zeros are dropped)
    if (csr.col_idx16 != nullptr) {
      for (int64_t j = 0; j < csr_nnz; ++j) offsets[j] = column_offsets[csr.col_idx16[j]];
    } else {
      for (int64_t j = 0; j < csr_nnz; ++j) offsets[j] = column_offsets[csr.col_idx32[j]];
    }
    // The 4x1 block view (if any): one offset per block, after the nonzeros'.
    kernels::ConvBlocks4 blocks;
    if (csr.block_ptr != nullptr) {
      int32_t* block_offsets = offsets + csr_nnz;
      const int64_t nblocks = csr.block_ptr[csr.block_count];
      for (int64_t j = 0; j < nblocks; ++j) block_offsets[j] = column_offsets[csr.block_col[j]];
      blocks.block_ptr = csr.block_ptr;
      blocks.block_offsets = block_offsets;
      blocks.block_values = csr.block_values;
      blocks.block_count = csr.block_count;
    }
    const kernels::ConvBlocks4* blocks_arg = csr.block_ptr != nullptr ? &blocks : nullptr;
    const int64_t plane_in = g.in_h * g.in_w;
    for (int64_t grp = 0; grp < attrs_.groups; ++grp) {
      const float* xg = x + grp * g.channels * plane_in;
      const int64_t pad_tasks =
          std::min(p.max_tasks,
                   partition_task_count(ctx.threads(), g.channels * sh * sw * hq * wq, g.channels));
      ctx.parallel_for(pad_tasks, [&](int64_t t) {
        kernels::conv_pad_input_phases(g, xg, g.channels * t / pad_tasks,
                                       g.channels * (t + 1) / pad_tasks, xp);
      });
      const int64_t r_begin = grp * cout_group_, r_end = r_begin + cout_group_;
      const int64_t work =
          static_cast<int64_t>(weights_.csr().row_ptr[r_end] - weights_.csr().row_ptr[r_begin]) * p.span;
      const int64_t tasks =
          std::min(p.max_tasks, partition_task_count(ctx.threads(), work, cout_group_));
      const std::vector<int64_t> bounds = weights_.partition_sparse(r_begin, r_end, tasks);
      ctx.parallel_for(static_cast<int64_t>(bounds.size()) - 1, [&](int64_t t) {
        float* stage = base + p.stage_offset + t * round_up(p.stage_rows * p.span, 16);
        for (int64_t a = bounds[t]; a < bounds[t + 1]; a += p.stage_rows) {
          const int64_t b = std::min(bounds[t + 1], a + p.stage_rows);
          conv_->sparse_direct(csr.values, offsets, csr.row_ptr, blocks_arg, a, b, xp, p.span, bias_, stage,
                               p.span);
          for (int64_t row = a; row < b; ++row) {
            const float* s = stage + (row - a) * p.span;
            float* yr = y + row * p.pixels;
            for (int64_t oh = 0; oh < g.out_h; ++oh)
              std::memcpy(yr + oh * g.out_w, s + oh * wq, sizeof(float) * g.out_w);
            epilogue(p, yr, r != nullptr ? r + row * p.pixels : nullptr, p.pixels);
          }
        }
      });
    }
  }

  // Winograd F(4x4, 3x3) (kernels/conv/conv.h): pad the image once to whole
  // tiles, then per block of tile rows the input transform (tasks over input
  // channels), 36 GEMMs M[xi] = U[xi] V[xi] (tasks over xi and row ranges), and
  // the output transform with bias, residual and activation (tasks over output
  // channels).
  void run_winograd(const RunContext& ctx, const ConvPlan& p, const float* x, float* y,
                    const float* r, float* base) const {
    const kernels::ConvGeometry& g = p.g;
    const int64_t cin = cin_group_, cout = cout_;
    kernels::ConvGeometry gp = g;  // padded to whole tiles (the extra rows/columns are zero)
    const int64_t hp = 4 * p.tiles_h + 2, wp = 4 * p.tiles_w + 2, plane = hp * wp;
    gp.pad_bottom = hp - g.in_h - g.pad_top;
    gp.pad_right = wp - g.in_w - g.pad_left;
    float* xp = base + p.work_offset;
    float* v = base + p.v_offset;
    float* m = base + p.m_offset;
    const int threads = ctx.threads();
    const int64_t pad_tasks = std::min(p.max_tasks, partition_task_count(threads, cin * plane, cin));
    ctx.parallel_for(pad_tasks, [&](int64_t t) {
      kernels::conv_pad_input(gp, x, cin * t / pad_tasks, cin * (t + 1) / pad_tasks, xp);
    });
    const kernels::GemmKernel& gemm = *winograd_gemm_;
    for (int64_t ty0 = 0; ty0 < p.tiles_h; ty0 += p.tile_rows) {
      const int64_t ty1 = std::min(p.tiles_h, ty0 + p.tile_rows);
      const int64_t nt = (ty1 - ty0) * p.tiles_w;
      const int64_t tile_tasks = std::min<int64_t>(ty1 - ty0, std::min<int64_t>(p.max_tasks, threads));
      if (threads > 1 && tile_tasks >= 2 && tile_tasks * cin * cout < (cin + cout) * nt) {
        // Many tiles, few channels (ResNet's 64 -> 64 at 56x56, DenseNet's
        // 128 -> 32): each task takes whole tile rows through the input
        // transform, the 36 GEMMs and the output transform, so V and M never
        // cross cores; the channel / row splits below made every phase read
        // what the other core wrote (64 -> 64 at 56x56 ran 1.1x faster on 2
        // threads). Each task reads all of U (one task per thread, so U is
        // read once per thread), which is why layers whose U, times the tasks,
        // outweighs V + M keep the split below.
        const int64_t rows_blk = ty1 - ty0;
        ctx.parallel_for(tile_tasks, [&](int64_t t) {
          const int64_t a = ty0 + rows_blk * t / tile_tasks, b = ty0 + rows_blk * (t + 1) / tile_tasks;
          if (a == b) return;
          const int64_t before = (a - ty0) * p.tiles_w, nt_t = (b - a) * p.tiles_w;
          float* vt = v + 36 * cin * before;
          float* mt = m + 36 * cout * before;
          conv_->winograd_input(xp, wp, plane, 0, cin, a, b, p.tiles_w, vt, cin * nt_t, nt_t);
          for (int64_t xi = 0; xi < 36; ++xi)
            gemm.fn(winograd_u_[xi], 0, cout, vt + xi * cin * nt_t, nt_t, nt_t, nullptr, mt + xi * cout * nt_t, nt_t);
          const int64_t row0 = 4 * a, row1 = std::min(g.out_h, 4 * b);
          for (int64_t k = 0; k < cout; ++k) {
            float* yk = y + k * p.pixels;
            conv_->winograd_output(mt + k * nt_t, cout * nt_t, a, b, p.tiles_w, bias_ != nullptr ? bias_[k] : 0.0f,
                                   yk, g.out_h, g.out_w);
            epilogue(p, yk + row0 * g.out_w, r != nullptr ? r + k * p.pixels + row0 * g.out_w : nullptr,
                     (row1 - row0) * g.out_w);
          }
        });
        continue;
      }
      // ~ 8 operations per element of V (the 36 x 2 six-point transforms)
      const int64_t in_tasks = std::min(p.max_tasks, partition_task_count(threads, 36 * 8 * cin * nt, cin));
      ctx.parallel_for(in_tasks, [&](int64_t t) {
        conv_->winograd_input(xp, wp, plane, cin * t / in_tasks, cin * (t + 1) / in_tasks, ty0, ty1, p.tiles_w, v,
                              cin * nt, nt);
      });
      // the GEMMs: 36 x (row ranges), in multiples of the packed row block
      const int64_t tasks = partition_task_count(threads, 36 * cout * cin * nt, 36 * cout);
      const int64_t row_block = winograd_u_[0].row_block;
      const int64_t row_parts = std::max<int64_t>(1, std::min((tasks + 35) / 36, (cout + row_block - 1) / row_block));
      const std::vector<int64_t> rb = partition_rows(cout, row_parts, row_block);
      const int64_t parts = static_cast<int64_t>(rb.size()) - 1;
      const int64_t gemm_tasks = tasks <= 1 ? 1 : 36 * parts;
      ctx.parallel_for(gemm_tasks, [&](int64_t t) {
        const int64_t xi0 = gemm_tasks == 1 ? 0 : t / parts, xi1 = gemm_tasks == 1 ? 36 : xi0 + 1;
        const int64_t r0 = gemm_tasks == 1 ? 0 : rb[t % parts], r1 = gemm_tasks == 1 ? cout : rb[t % parts + 1];
        for (int64_t xi = xi0; xi < xi1; ++xi)
          gemm.fn(winograd_u_[xi], r0, r1, v + xi * cin * nt, nt, nt, nullptr, m + xi * cout * nt, nt);
      });
      const int64_t out_tasks = std::min(p.max_tasks, partition_task_count(threads, 36 * 4 * cout * nt, cout));
      const int64_t row0 = 4 * ty0, row1 = std::min(g.out_h, 4 * ty1);
      ctx.parallel_for(out_tasks, [&](int64_t t) {
        for (int64_t k = cout * t / out_tasks; k < cout * (t + 1) / out_tasks; ++k) {
          float* yk = y + k * p.pixels;
          conv_->winograd_output(m + k * nt, cout * nt, ty0, ty1, p.tiles_w, bias_ != nullptr ? bias_[k] : 0.0f, yk,
                                 g.out_h, g.out_w);
          epilogue(p, yk + row0 * g.out_w, r != nullptr ? r + k * p.pixels + row0 * g.out_w : nullptr,
                   (row1 - row0) * g.out_w);
        }
      });
    }
  }

  // Pointwise and im2col: Y_g = W_g * M_g, M_g = X_g (pointwise) or its im2col blocks.
  void run_matrix(const RunContext& ctx, const ConvPlan& p, const float* x, float* y,
                  const float* r, float* base) const {
    const kernels::ConvGeometry& g = p.g;
    const int64_t k = cin_group_ * kernel_h_ * kernel_w_;
    const int64_t plane_in = g.in_h * g.in_w;
    const int64_t block = p.path == ConvPath::kPointwise ? p.pixels : p.col_block;
    float* col = base + p.work_offset;
    for (int64_t grp = 0; grp < attrs_.groups; ++grp) {
      const float* xg = x + grp * g.channels * plane_in;
      const int64_t r_begin = grp * cout_group_, r_end = r_begin + cout_group_;
      const int64_t group_nnz =
          p.sparse ? static_cast<int64_t>(weights_.csr().row_ptr[r_end] - weights_.csr().row_ptr[r_begin])
                   : cout_group_ * k;
      for (int64_t p0 = 0; p0 < p.pixels; p0 += block) {
        const int64_t p1 = std::min(p.pixels, p0 + block);
        const int64_t np = p1 - p0;
        const float* m = xg + p0;
        int64_t ldm = p.pixels;
        if (p.path == ConvPath::kIm2col) {
          const int64_t im_tasks =
              std::min(p.max_tasks, partition_task_count(ctx.threads(), k * np, k));
          ctx.parallel_for(im_tasks, [&](int64_t t) {
            const int64_t k0 = k * t / im_tasks, k1 = k * (t + 1) / im_tasks;
            kernels::conv_im2col(g, xg, k0, k1, p0, p1, col + k0 * np, np);
          });
          m = col;
          ldm = np;
        }
        // Tasks: row ranges, and column ranges too when there are few rows.
        const int64_t tasks = partition_task_count(ctx.threads(), group_nnz * np, cout_group_ * np);
        const int64_t row_block = p.sparse ? 1 : weights_.packed(grp).row_block;
        const int64_t row_units = (cout_group_ + row_block - 1) / row_block;
        const double w_bytes = static_cast<double>(group_nnz) * (p.sparse ? 8.0 : 4.0);
        const Split2d split = partition_2d(tasks, row_units, np, 16, w_bytes,
                                           4.0 * static_cast<double>(k) * static_cast<double>(np));
        const int64_t row_tasks = split.row_tasks, col_tasks = split.col_tasks;
        const std::vector<int64_t> rb =
            p.sparse ? weights_.partition_sparse(r_begin, r_end, row_tasks)
                     : partition_rows(cout_group_, row_tasks, row_block);
        const int64_t n_row_tasks = static_cast<int64_t>(rb.size()) - 1;
        ctx.parallel_for(n_row_tasks * col_tasks, [&](int64_t t) {
          const int64_t rt = t / col_tasks, ct = t % col_tasks;
          const int64_t c0 = std::min(np, round_up(np * ct / col_tasks, 16));
          const int64_t c1 =
              ct + 1 == col_tasks ? np : std::min(np, round_up(np * (ct + 1) / col_tasks, 16));
          if (c1 <= c0 || rb[rt] == rb[rt + 1]) return;
          const int64_t g0 = p.sparse ? rb[rt] : r_begin + rb[rt];  // global output channel rows
          const int64_t g1 = p.sparse ? rb[rt + 1] : r_begin + rb[rt + 1];
          // With an epilogue (residual, activation) the product is made in column
          // chunks of about 128 KiB of output, each finished while it is still in
          // cache, when the task's weight rows are small enough to re-read per
          // chunk from L2 (a task's whole output, 600 KB for MobileNetV2's
          // 16 -> 96 1x1 at 112x112, went to L2/L3 and came back for the epilogue).
          const bool has_epilogue = r != nullptr || p.activate;
          const int64_t w_task = p.sparse ? static_cast<int64_t>(weights_.csr().row_ptr[g1] - weights_.csr().row_ptr[g0])
                                          : (g1 - g0) * k;
          int64_t chunk = c1 - c0;
          if (has_epilogue && w_task <= kEpilogueChunkMaxWeights)
            chunk = std::max<int64_t>(64, kEpilogueChunkFloats / (g1 - g0) / 64 * 64);
          for (int64_t a0 = c0; a0 < c1; a0 += chunk) {
            const int64_t a1 = std::min(c1, a0 + chunk);
            if (p.sparse) {
              weights_.spmm().fn(weights_.csr(), g0, g1, m + a0, ldm, a1 - a0, bias_, y + p0 + a0, p.pixels);
            } else {
              weights_.gemm().fn(weights_.packed(grp), rb[rt], rb[rt + 1], m + a0, ldm, a1 - a0,
                                 bias_ != nullptr ? bias_ + r_begin : nullptr, y + r_begin * p.pixels + p0 + a0,
                                 p.pixels);
            }
            if (!has_epilogue) continue;
            for (int64_t row = g0; row < g1; ++row) {
              const int64_t at = row * p.pixels + p0 + a0;
              epilogue(p, y + at, r != nullptr ? r + at : nullptr, a1 - a0);
            }
          }
        });
      }
    }
  }

  LayerWeights weights_;
  const float* bias_;
  bool has_residual_;
  int spatial_rank_ = 2;
  ConvAttributes attrs_;
  Activation act_;
  int64_t cout_ = 0, cin_group_ = 0, kernel_h_ = 0, kernel_w_ = 0, cout_group_ = 0;
  int64_t stored_nnz_ = 0;  // nonzero weights (stored in the file, or counted when dense)
  double density_ = 1.0;    // stored_nnz_ / elements
  double cost_density_ = 1.0;  // density_ scaled by the sparse kernels' relative cost (4x1 blocks)
  bool depthwise_ = false, pointwise_ = false;
  bool tune_ = false;
  SparseChoice sparse_choice_ = SparseChoice::kAuto;
  KernelChoice kernel_choice_ = KernelChoice::kAuto;
  DenseChoice dense_choice_ = DenseChoice::kAuto;
  LoadConfig config_;  // the model's expand budget and notes (Winograd weights)
  // Winograd: built on the first plan that uses it (state 1), or refused when
  // over the expand budget (-1); guarded by winograd_mutex_.
  bool winograd_able_ = false;
  mutable std::mutex winograd_mutex_;
  mutable std::atomic<int> winograd_state_{0};
  mutable std::vector<kernels::PackedGemmWeights> winograd_u_;  // 36 packed Cout x Cin
  mutable const kernels::GemmKernel* winograd_gemm_ = nullptr;
  // input shape -> Winograd wins (tune only). Its own mutex: the sparse-vs-dense
  // timing holds tuned_mutex_ while it plans the dense side, which tunes this.
  mutable std::mutex winograd_tuned_mutex_;
  mutable std::map<Shape, bool> winograd_tuned_;
  mutable std::mutex tuned_mutex_;
  mutable std::map<Shape, bool> tuned_;  // input shape -> sparse wins (tune only)
  // tune's on-disk cache (null: none) and this layer's part of its keys.
  std::shared_ptr<TuneCache> tune_cache_;
  std::string tune_id_;
  const kernels::ConvKernel* conv_ = nullptr;
  kernels::AlignedFloats dense_;  // depthwise filters
};

}  // namespace

std::unique_ptr<Op> create_conv3d(const NodeContext& ctx, const format::TensorInfo& w, const float* bias);

std::unique_ptr<Op> create_conv(const NodeContext& ctx) {
  ctx.check_input_count(2, 4);
  ctx.check_output_count(1);
  const format::TensorInfo& w = ctx.require_constant(1, "weight");
  if (w.dims.size() < 3 || w.dims.size() > 5)
    ctx.fail("weight '" + w.name + "' must be [Cout, C/group, k...] with 1 to 3 spatial dims, got " +
                 shape_string(w.dims),
             ErrorCode::kUnsupported);
  for (int64_t d : w.dims)
    if (d < 1) ctx.fail("weight '" + w.name + "' has an empty dim: " + shape_string(w.dims));
  for (size_t i = 2; i < w.dims.size(); ++i)
    if (w.dims[i] > kMaxSpatial) ctx.fail("weight '" + w.name + "' has a kernel larger than 2^24");
  const float* bias = nullptr;
  if (ctx.has_input(2)) {
    const format::TensorInfo& b = ctx.require_constant(2, "bias");
    if (b.storage != format::Storage::kDense || b.elements != w.dims[0])
      ctx.fail("bias '" + b.name + "' must be dense with " + std::to_string(w.dims[0]) +
               " elements, got " + shape_string(b.dims));
    bias = static_cast<const float*>(b.data);
  }
  if (w.dims.size() == 5) return create_conv3d(ctx, w, bias);
  const bool residual = ctx.has_input(3);
  return std::make_unique<Conv2dOp>(ctx, w, bias, residual);
}

}  // namespace ops
}  // namespace sparsert
