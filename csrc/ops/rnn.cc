// LSTM and GRU with ONNX semantics (gate orders iofc and zrh; forward,
// reverse and bidirectional; sequence_lens; initial states; layout 0
// [seq, batch, feature] and 1 [batch, seq, feature]; clip; GRU's
// linear_before_reset). Default activations only (sigmoid / tanh).
//
// W and R are constants. Each direction's W (gates x input) and R (gates x
// hidden) runs on the same kernels as Linear — dense packed GEMM, or CSR spmm
// when the weight is sparse enough — so pruned recurrent weights pay too. The
// input projection W X is one product over every time step; the recurrence
// then multiplies R by the hidden state once per step. States are kept
// feature-major ([hidden, batch]), the kernels' layout.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/eltwise/eltwise.h"
#include "kernels/kernels.h"
#include "ops/layer_weights.h"
#include "ops/op.h"
#include "ops/partition.h"

namespace sparsert {
namespace ops {
namespace {

constexpr double kRnnSparseMaxDensity = 0.3;

// One weight matrix (rows x cols) with the kernel chosen for it.
struct RnnMatrix {
  int64_t rows = 0, cols = 0;
  bool sparse = false;
  OwnedCsr csr;
  kernels::PackedGemmWeights packed;
  const kernels::SpmmKernel* spmm = nullptr;
  const kernels::GemmKernel* gemm = nullptr;

  void build(const float* w, int64_t r, int64_t c, kernels::Isa isa) {
    rows = r;
    cols = c;
    int64_t nnz = 0;
    for (int64_t i = 0; i < r * c; ++i) nnz += w[i] != 0.0f;
    sparse = r * c > 0 && static_cast<double>(nnz) <= kRnnSparseMaxDensity * static_cast<double>(r * c);
    if (sparse) {
      build_owned_csr(w, r, c, &csr);
      spmm = &kernels::spmm_kernel(isa);
    } else {
      gemm = &kernels::gemm_kernel(isa);
      gemm->pack(w, r, c, c, &packed);
    }
  }
  // y[rows x n] (row stride ldy) = W x[cols x n] (+ bias)
  void apply(const float* x, int64_t ldx, int64_t n, const float* bias, float* y, int64_t ldy) const {
    if (rows == 0 || n == 0) return;
    if (cols == 0) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) y[r * ldy + j] = bias != nullptr ? bias[r] : 0.0f;
      return;
    }
    if (sparse)
      spmm->fn(csr.view, 0, rows, x, ldx, n, bias, y, ldy);
    else
      gemm->fn(packed, 0, rows, x, ldx, n, bias, y, ldy);
  }
};

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

class RnnOp final : public Op {
 public:
  RnnOp(const NodeContext& ctx, bool lstm) : lstm_(lstm) {
    gates_ = lstm ? 4 : 3;
    const format::TensorInfo& w = ctx.require_constant(1, "W");
    const format::TensorInfo& r = ctx.require_constant(2, "R");
    if (w.dims.size() != 3 || r.dims.size() != 3 || w.storage != format::Storage::kDense ||
        r.storage != format::Storage::kDense)
      ctx.fail("W and R must be dense 3-D constants [directions, gates x hidden, features]");
    const std::string direction = ctx.attr_choice("direction", "forward", {"forward", "reverse", "bidirectional"});
    directions_ = direction == "bidirectional" ? 2 : 1;
    reverse_only_ = direction == "reverse";
    hidden_ = ctx.attr_int("hidden_size", r.dims[2], 1, int64_t{1} << 20);
    input_ = w.dims[2];
    if (w.dims[0] != directions_ || r.dims[0] != directions_ || w.dims[1] != gates_ * hidden_ ||
        r.dims[1] != gates_ * hidden_ || r.dims[2] != hidden_)
      ctx.fail("W " + shape_string(w.dims) + " and R " + shape_string(r.dims) + " do not match hidden_size " +
               std::to_string(hidden_) + " and " + std::to_string(directions_) + " direction(s)");
    layout_ = ctx.attr_int("layout", 0, 0, 1);
    clip_ = ctx.attr_float("clip", 0.0, 0.0, 1e30);
    linear_before_reset_ = !lstm && ctx.attr_bool("linear_before_reset", false);
    if (lstm && ctx.attr_bool("input_forget", false)) ctx.fail("input_forget = 1 is not supported", ErrorCode::kUnsupported);
    const std::vector<std::string> defaults =
        lstm ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"} : std::vector<std::string>{"Sigmoid", "Tanh"};
    if (ctx.has_attr("activations")) {
      const format::Value* v = ctx.node().attr("activations");
      if (v->type != format::ValueType::kStrings) ctx.fail("attribute 'activations' must be STRINGS");
      for (size_t i = 0; i < v->strings.size(); ++i)
        if (v->strings[i] != defaults[i % defaults.size()])
          ctx.fail("activations other than " + defaults[0] + "/" + defaults[1] + " are not supported",
                   ErrorCode::kUnsupported);
    }
    const float* wd = static_cast<const float*>(w.data);
    const float* rd = static_cast<const float*>(r.data);
    const int64_t gh = gates_ * hidden_;
    w_.resize(directions_);
    r_.resize(directions_);
    bias_w_.assign(static_cast<size_t>(directions_ * gh), 0.0f);
    bias_r_.assign(static_cast<size_t>(directions_ * gh), 0.0f);
    for (int64_t d = 0; d < directions_; ++d) {
      w_[d].build(wd + d * gh * input_, gh, input_, ctx.isa());
      r_[d].build(rd + d * gh * hidden_, gh, hidden_, ctx.isa());
    }
    if (ctx.has_input(3)) {
      const format::TensorInfo& b = ctx.require_constant(3, "B");
      if (b.storage != format::Storage::kDense || b.elements != directions_ * 2 * gh)
        ctx.fail("B must be [directions, 2 x gates x hidden]");
      const float* bd = static_cast<const float*>(b.data);
      for (int64_t d = 0; d < directions_; ++d) {
        std::copy(bd + d * 2 * gh, bd + d * 2 * gh + gh, bias_w_.begin() + d * gh);
        std::copy(bd + d * 2 * gh + gh, bd + (d + 1) * 2 * gh, bias_r_.begin() + d * gh);
      }
    }
    if (ctx.has_input(4)) ctx.require_dtype(4, "sequence_lens", {DType::kInt32, DType::kInt64});
    for (size_t i = 5; i < ctx.input_count(); ++i)
      if (ctx.has_input(i)) ctx.require_dtype(i, "initial state", {DType::kFloat32});
    if (lstm && ctx.has_input(7)) {
      const format::TensorInfo* p = ctx.constant(7);
      if (p == nullptr) ctx.fail("P (peepholes) must be a constant");
      const float* pd = static_cast<const float*>(p->data);
      for (int64_t i = 0; i < p->elements; ++i)
        if (pd[i] != 0.0f) ctx.fail("peephole weights (P) are not supported", ErrorCode::kUnsupported);
    }
    outputs_ = ctx.node().outputs.size();
    std::vector<DType> outs(outputs_, DType::kFloat32);
    ctx.set_output_dtypes(outs);
  }

  std::vector<Shape> infer_shapes(const std::vector<Shape>& inputs) const override {
    const Shape& x = inputs[0];
    if (x.size() != 3 || x[2] != input_)
      shape_error("X must be 3-D with " + std::to_string(input_) + " features, got " + shape_string(x));
    const int64_t seq = layout_ ? x[1] : x[0], batch = layout_ ? x[0] : x[1];
    if (inputs.size() > 4 && !inputs[4].empty() && inputs[4] != Shape{batch})
      shape_error("sequence_lens must be [batch]");
    for (size_t i = 5; i < inputs.size(); ++i) {
      const Shape want = layout_ ? Shape{batch, directions_, hidden_} : Shape{directions_, batch, hidden_};
      if (!inputs[i].empty() && i < 7 && inputs[i] != want)
        shape_error("initial states must be " + shape_string(want) + ", got " + shape_string(inputs[i]));
    }
    const Shape y = layout_ ? Shape{batch, seq, directions_, hidden_} : Shape{seq, directions_, batch, hidden_};
    const Shape state = layout_ ? Shape{batch, directions_, hidden_} : Shape{directions_, batch, hidden_};
    std::vector<Shape> out = {y, state};
    if (lstm_) out.push_back(state);
    out.resize(outputs_);  // the node may ask only for Y (or Y and Y_h)
    return out;
  }

  size_t scratch_bytes(const std::vector<Shape>& inputs, int) const override {
    const Shape& x = inputs[0];
    const int64_t steps = x[0] * x[1];  // seq * batch
    const int64_t batch = layout_ ? x[0] : x[1];
    const int64_t gh = gates_ * hidden_;
    // X^T, gate projections of all steps, recurrent gates, h and c (feature-major), GRU's r*h
    const int64_t floats = input_ * steps + gh * steps + gh * batch + 4 * hidden_ * batch + 64;
    return sizeof(float) * static_cast<size_t>(floats);
  }

  void run(const RunContext& ctx, const std::vector<InputRef>& inputs, const std::vector<OutputRef>& outputs) const override {
    const Shape& xs = inputs[0].shape;
    const int64_t seq = layout_ ? xs[1] : xs[0], batch = layout_ ? xs[0] : xs[1];
    const int64_t steps = seq * batch, gh = gates_ * hidden_, hb = hidden_ * batch;
    float* scratch = static_cast<float*>(ctx.scratch());
    float* xt = scratch;                      // [input, seq*batch], column t*batch + b
    float* gx = xt + input_ * steps;          // [gh, seq*batch]
    float* gr = gx + gh * steps;              // [gh, batch]
    float* h = gr + gh * batch;               // [hidden, batch]
    float* c = h + hb;
    float* rh = c + hb;                       // GRU: r * h
    float* hn = rh + hb;                      // GRU: the new-gate recurrent part
    const float* x = inputs[0].f32();
    for (int64_t t = 0; t < seq; ++t)
      for (int64_t b = 0; b < batch; ++b) {
        const float* src = x + (layout_ ? (b * seq + t) : (t * batch + b)) * input_;
        for (int64_t k = 0; k < input_; ++k) xt[k * steps + t * batch + b] = src[k];
      }
    std::vector<int64_t> lens(static_cast<size_t>(batch), seq);
    if (inputs.size() > 4 && inputs[4].raw != nullptr) {
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t v = inputs[4].dtype == DType::kInt32 ? inputs[4].as<int32_t>()[b] : inputs[4].as<int64_t>()[b];
        if (v < 0 || v > seq)
          throw Error(ErrorCode::kInvalidArgument, "sequence_lens[" + std::to_string(b) + "] = " + std::to_string(v) +
                                                       " is outside [0, " + std::to_string(seq) + "]");
        lens[b] = v;
      }
    }
    float* y = outputs[0].f32();
    const int64_t ysize = shape_elements(outputs[0].shape);
    std::fill(y, y + ysize, 0.0f);
    auto y_at = [&](int64_t t, int64_t d, int64_t b) {
      return y + (layout_ ? ((b * seq + t) * directions_ + d) : ((t * directions_ + d) * batch + b)) * hidden_;
    };
    auto state_at = [&](float* base, int64_t d, int64_t b) {
      return base + (layout_ ? (b * directions_ + d) : (d * batch + b)) * hidden_;
    };
    for (int64_t d = 0; d < directions_; ++d) {
      const bool backward = reverse_only_ || d == 1;
      w_[d].apply(xt, steps, steps, bias_w_.data() + d * gh, gx, steps);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t k = 0; k < hidden_; ++k) {
          h[k * batch + b] = initial(inputs, 5, d, b, k, batch);
          c[k * batch + b] = lstm_ ? initial(inputs, 6, d, b, k, batch) : 0.0f;
        }
      for (int64_t s = 0; s < seq; ++s) {
        const int64_t t = backward ? seq - 1 - s : s;
        if (lstm_) {
          r_[d].apply(h, batch, batch, bias_r_.data() + d * gh, gr, batch);
        } else {
          // GRU: z and r gates from R h; the new gate's recurrent part depends on linear_before_reset
          r_[d].apply(h, batch, batch, bias_r_.data() + d * gh, gr, batch);
        }
        for (int64_t b = 0; b < batch; ++b) {
          // a step beyond this sequence's length leaves the state unchanged and Y zero
          const bool active = backward ? (t < lens[b]) : (s < lens[b]);
          if (!active) continue;
          const int64_t col = t * batch + b;
          if (lstm_) {
            for (int64_t k = 0; k < hidden_; ++k) {
              float g[4];
              for (int q = 0; q < 4; ++q) {
                g[q] = gx[(q * hidden_ + k) * steps + col] + gr[(q * hidden_ + k) * batch + b];
                if (clip_ > 0) g[q] = std::max(static_cast<float>(-clip_), std::min(static_cast<float>(clip_), g[q]));
              }
              const float i = sigmoid(g[0]), o = sigmoid(g[1]), f = sigmoid(g[2]), cc = std::tanh(g[3]);
              const float cn = f * c[k * batch + b] + i * cc;
              c[k * batch + b] = cn;
              h[k * batch + b] = o * std::tanh(cn);
            }
          } else {
            for (int64_t k = 0; k < hidden_; ++k) {
              auto clip = [&](float v) {
                return clip_ > 0 ? std::max(static_cast<float>(-clip_), std::min(static_cast<float>(clip_), v)) : v;
              };
              const float z = sigmoid(clip(gx[(0 * hidden_ + k) * steps + col] + gr[(0 * hidden_ + k) * batch + b]));
              const float r = sigmoid(clip(gx[(1 * hidden_ + k) * steps + col] + gr[(1 * hidden_ + k) * batch + b]));
              rh[k * batch + b] = r;
              hn[k * batch + b] = z;
            }
          }
        }
        if (!lstm_) gru_new_gate(d, t, steps, batch, lens, backward, s, gx, gr, h, rh, hn);
        for (int64_t b = 0; b < batch; ++b) {
          const bool active = backward ? (t < lens[b]) : (s < lens[b]);
          if (!active) continue;
          float* yo = y_at(t, d, b);
          for (int64_t k = 0; k < hidden_; ++k) yo[k] = h[k * batch + b];
        }
      }
      for (int64_t b = 0; b < batch && outputs.size() > 1; ++b) {
        float* yh = state_at(outputs[1].f32(), d, b);
        for (int64_t k = 0; k < hidden_; ++k) yh[k] = h[k * batch + b];
        if (lstm_ && outputs.size() > 2) {
          float* yc = state_at(outputs[2].f32(), d, b);
          for (int64_t k = 0; k < hidden_; ++k) yc[k] = c[k * batch + b];
        }
      }
    }
  }

  void describe(const std::vector<Shape>&, const std::vector<Shape>&, NodeInfo* info) const override {
    const bool sparse = !w_.empty() && w_[0].sparse;
    info->kernel = std::string(lstm_ ? "lstm" : "gru") + (sparse ? "+spmm" : "+gemm");
  }

 private:
  size_t outputs_ = 1;  // outputs the node declares (1..3): Y, Y_h, Y_c
  float initial(const std::vector<InputRef>& inputs, size_t i, int64_t d, int64_t b, int64_t k, int64_t batch) const {
    if (inputs.size() <= i || inputs[i].raw == nullptr) return 0.0f;
    const int64_t at = (layout_ ? (b * directions_ + d) : (d * batch + b)) * hidden_ + k;
    return inputs[i].f32()[at];
  }

  // GRU: n = tanh(Wn x + bWn + r * (Rn h + bRn)) (linear_before_reset) or
  // tanh(Wn x + bWn + Rn (r * h) + bRn); h = (1 - z) * n + z * h.
  void gru_new_gate(int64_t d, int64_t t, int64_t steps, int64_t batch, const std::vector<int64_t>& lens, bool backward,
                    int64_t s, const float* gx, const float* gr, float* h, const float* r, const float* z) const {
    const int64_t hb = hidden_ * batch;
    std::vector<float> rn(static_cast<size_t>(hb));
    if (linear_before_reset_) {
      for (int64_t i = 0; i < hb; ++i) rn[i] = gr[2 * hb + i];
      for (int64_t i = 0; i < hb; ++i) rn[i] *= r[i];
    } else {
      std::vector<float> rh(static_cast<size_t>(hb));
      for (int64_t i = 0; i < hb; ++i) rh[i] = r[i] * h[i];
      // only the n rows of R: rows [2h, 3h)
      std::vector<float> full(static_cast<size_t>(3 * hb));
      r_[d].apply(rh.data(), batch, batch, bias_r_.data() + d * 3 * hidden_, full.data(), batch);
      for (int64_t i = 0; i < hb; ++i) rn[i] = full[2 * hb + i];
    }
    for (int64_t b = 0; b < batch; ++b) {
      const bool active = backward ? (t < lens[b]) : (s < lens[b]);
      if (!active) continue;
      for (int64_t k = 0; k < hidden_; ++k) {
        float v = gx[(2 * hidden_ + k) * steps + t * batch + b] + rn[k * batch + b];
        if (clip_ > 0) v = std::max(static_cast<float>(-clip_), std::min(static_cast<float>(clip_), v));
        const float n = std::tanh(v);
        const float zz = z[k * batch + b];
        h[k * batch + b] = (1.0f - zz) * n + zz * h[k * batch + b];
      }
    }
  }

  bool lstm_;
  int64_t gates_ = 4, directions_ = 1, hidden_ = 0, input_ = 0, layout_ = 0;
  bool reverse_only_ = false, linear_before_reset_ = false;
  double clip_ = 0.0;
  std::vector<RnnMatrix> w_, r_;
  std::vector<float> bias_w_, bias_r_;
};

}  // namespace

std::unique_ptr<Op> create_lstm(const NodeContext& ctx) {
  ctx.check_input_count(3, 8);
  ctx.check_output_count(1, 3);
  ctx.require_dtype(0, "X", {DType::kFloat32});
  return std::make_unique<RnnOp>(ctx, true);
}

std::unique_ptr<Op> create_gru(const NodeContext& ctx) {
  ctx.check_input_count(3, 6);
  ctx.check_output_count(1, 2);
  ctx.require_dtype(0, "X", {DType::kFloat32});
  return std::make_unique<RnnOp>(ctx, false);
}

}  // namespace ops
}  // namespace sparsert
