#include "ops/conv_common.h"

#include <algorithm>

namespace sparsert {
namespace ops {

ConvAttributes parse_conv_attributes(const NodeContext& ctx) {
  ConvAttributes a;
  const std::vector<int64_t> strides = ctx.attr_ints("strides", {1, 1});
  const std::vector<int64_t> pads = ctx.attr_ints("pads", {0, 0, 0, 0});
  const std::vector<int64_t> dilations = ctx.attr_ints("dilations", {1, 1});
  if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1)
    ctx.fail("attribute 'strides' must be 2 ints >= 1 [sh, sw]");
  if (pads.size() != 4 || *std::min_element(pads.begin(), pads.end()) < 0)
    ctx.fail("attribute 'pads' must be 4 ints >= 0 [top, left, bottom, right]");
  if (dilations.size() != 2 || dilations[0] < 1 || dilations[1] < 1)
    ctx.fail("attribute 'dilations' must be 2 ints >= 1 [dh, dw]");
  a.groups = ctx.attr_int("groups", 1);
  if (a.groups < 1) ctx.fail("attribute 'groups' must be >= 1, got " + std::to_string(a.groups));
  const int64_t kLimit = int64_t{1} << 24;  // keeps every product below in int64
  for (int64_t v : strides)
    if (v > kLimit) ctx.fail("attribute 'strides' is too large");
  for (int64_t v : pads)
    if (v > kLimit) ctx.fail("attribute 'pads' is too large");
  for (int64_t v : dilations)
    if (v > kLimit) ctx.fail("attribute 'dilations' is too large");
  a.stride_h = strides[0];
  a.stride_w = strides[1];
  a.pad_top = pads[0];
  a.pad_left = pads[1];
  a.pad_bottom = pads[2];
  a.pad_right = pads[3];
  a.dilation_h = dilations[0];
  a.dilation_w = dilations[1];
  return a;
}

kernels::AlignedFloats densify_weight(const format::TensorInfo& w) {
  kernels::AlignedFloats out(static_cast<size_t>(std::max<int64_t>(w.elements, 1)));
  if (w.storage == format::Storage::kDense) {
    const float* src = static_cast<const float*>(w.data);
    std::copy(src, src + w.elements, out.data());
    return out;
  }
  for (int64_t r = 0; r < w.rows; ++r) {
    for (uint32_t j = w.row_ptr[r]; j < w.row_ptr[r + 1]; ++j) {
      const int64_t c = w.col_idx16 != nullptr ? w.col_idx16[j] : w.col_idx32[j];
      out.data()[r * w.cols + c] = w.values[j];
    }
  }
  return out;
}

void build_owned_csr(const float* data, int64_t rows, int64_t cols, OwnedCsr* out) {
  int64_t nnz = 0;
  for (int64_t i = 0; i < rows * cols; ++i) nnz += data[i] != 0.0f;
  const bool narrow = cols <= 65536;
  out->row_ptr.assign(static_cast<size_t>(rows + 1), 0);
  out->values.clear();
  out->col16.clear();
  out->col32.clear();
  out->values.reserve(static_cast<size_t>(nnz));
  if (narrow)
    out->col16.reserve(static_cast<size_t>(nnz));
  else
    out->col32.reserve(static_cast<size_t>(nnz));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = data[r * cols + c];
      if (v == 0.0f) continue;
      out->values.push_back(v);
      if (narrow)
        out->col16.push_back(static_cast<uint16_t>(c));
      else
        out->col32.push_back(static_cast<uint32_t>(c));
    }
    out->row_ptr[r + 1] = static_cast<uint32_t>(out->values.size());
  }
  out->view = kernels::CsrMatrix();
  out->view.rows = rows;
  out->view.cols = cols;
  out->view.row_ptr = out->row_ptr.data();
  out->view.values = out->values.data();
  out->view.col_idx16 = narrow ? out->col16.data() : nullptr;
  out->view.col_idx32 = narrow ? nullptr : out->col32.data();
}

bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out) {
  const size_t rank = std::max(a.size(), b.size());
  Shape s(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    s[i] = da == 1 ? db : da;
  }
  *out = s;
  return true;
}

void broadcast_add_activation(const float* a, const Shape& a_shape, const float* r,
                              const Shape& r_shape, float* y, const Shape& y_shape,
                              const Activation& act) {
  const size_t rank = y_shape.size();
  // element strides of a and r in y's index space (0 along broadcast dims)
  auto strides_of = [&](const Shape& s) {
    std::vector<int64_t> st(rank, 0);
    int64_t step = 1;
    for (size_t i = s.size(); i-- > 0;) {
      const size_t yi = i + (rank - s.size());
      st[yi] = s[i] == 1 ? 0 : step;
      step *= s[i];
    }
    return st;
  };
  const std::vector<int64_t> sa = strides_of(a_shape), sr = strides_of(r_shape);
  const int64_t total = shape_elements(y_shape);
  std::vector<int64_t> index(rank, 0);
  int64_t ia = 0, ir = 0;
  for (int64_t i = 0; i < total; ++i) {
    y[i] = a[ia] + r[ir];
    for (size_t d = rank; d-- > 0;) {
      ia += sa[d];
      ir += sr[d];
      if (++index[d] < y_shape[d]) break;
      ia -= sa[d] * y_shape[d];
      ir -= sr[d] * y_shape[d];
      index[d] = 0;
    }
  }
  apply_activation(act, y, total);
}

}  // namespace ops
}  // namespace sparsert
