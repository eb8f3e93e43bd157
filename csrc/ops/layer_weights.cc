#include "ops/layer_weights.h"

#include <algorithm>
#include <climits>
#include <cstdint>

namespace sparsert {
namespace ops {

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

kernels::AlignedFloats densify_weight(const format::TensorInfo& w, const LoadConfig& config) {
  if (w.storage != format::Storage::kDense)
    config.charge(w.elements * 4 - static_cast<int64_t>(w.stored_bytes()), "densifying weight '" + w.name + "'");
  kernels::AlignedFloats out(static_cast<size_t>(std::max<int64_t>(w.elements, 1)));
  float* dst = out.data();
  switch (w.storage) {
    case format::Storage::kDense: {
      const float* src = static_cast<const float*>(w.data);
      std::copy(src, src + w.elements, dst);
      break;
    }
    case format::Storage::kCsr:
      for (int64_t r = 0; r < w.rows; ++r) {
        for (uint32_t j = w.row_ptr[r]; j < w.row_ptr[r + 1]; ++j) {
          const int64_t c = w.col_idx16 != nullptr ? w.col_idx16[j] : w.col_idx32[j];
          dst[r * w.cols + c] = w.values[j];
        }
      }
      break;
    case format::Storage::kBsr: {
      const int64_t br = w.block_rows, bc = w.block_cols;
      for (int64_t rb = 0; rb < w.rows / br; ++rb) {
        for (uint32_t j = w.row_ptr[rb]; j < w.row_ptr[rb + 1]; ++j) {
          const int64_t cb = w.col_idx16 != nullptr ? w.col_idx16[j] : w.col_idx32[j];
          const float* block = w.values + static_cast<int64_t>(j) * br * bc;
          for (int64_t i = 0; i < br; ++i)
            for (int64_t k = 0; k < bc; ++k) dst[(rb * br + i) * w.cols + cb * bc + k] = block[i * bc + k];
        }
      }
      break;
    }
  }
  return out;
}

LayerWeights::LayerWeights(const format::TensorInfo& w, const LoadConfig& config)
    : info_(w), config_(config), isa_(config.isa) {
  rows_ = w.dims.empty() ? 0 : w.dims[0];
  cols_ = rows_ == 0 ? 0 : w.elements / rows_;
  if (w.storage == format::Storage::kDense) {
    const float* data = static_cast<const float*>(w.data);
    for (int64_t i = 0; i < w.elements; ++i) nnz_ += data[i] != 0.0f;
  } else if (w.storage == format::Storage::kCsr) {
    nnz_ = static_cast<int64_t>(w.nnz);
  } else {
    nnz_ = w.stored_values();
  }
  density_ = static_cast<double>(nnz_) / static_cast<double>(std::max<int64_t>(1, w.elements));
}

void LayerWeights::ensure_csr() {
  if (spmm_ != nullptr) return;
  spmm_ = &kernels::spmm_kernel(isa_);
  if (info_.storage == format::Storage::kCsr) {
    csr_.rows = info_.rows;
    csr_.cols = info_.cols;
    csr_.row_ptr = info_.row_ptr;
    csr_.col_idx16 = info_.col_idx16;
    csr_.col_idx32 = info_.col_idx32;
    csr_.values = info_.values;
  } else {
    if (info_.storage == format::Storage::kDense) {
      build_owned_csr(static_cast<const float*>(info_.data), rows_, cols_, &owned_csr_);
    } else {
      bsr_to_csr();
    }
    csr_ = owned_csr_.view;
  }
  build_block4();
}

std::vector<int64_t> LayerWeights::partition_sparse(int64_t r_begin, int64_t r_end, int64_t tasks) const {
  std::vector<int64_t> bounds = partition_csr_range(csr_.row_ptr, r_begin, r_end, tasks);
  if (csr_.block_ptr != nullptr) align_bounds(&bounds, 4);
  return bounds;
}

// The 4x1 block view. Each block row is the 4-way merge of its rows' sorted
// column lists; visit(b, c, head, end) sees every block (block row b, column
// c) in order, head[r] being row 4b + r's next nonzero, and must advance the
// heads at column c.
namespace {
template <class Visit>
void merge_blocks4(const kernels::CsrMatrix& m, Visit&& visit) {
  auto col = [&m](uint32_t j) -> uint32_t { return m.col_idx16 != nullptr ? m.col_idx16[j] : m.col_idx32[j]; };
  for (int64_t b = 0; b < m.rows / 4; ++b) {
    uint32_t head[4], end[4];
    for (int r = 0; r < 4; ++r) {
      head[r] = m.row_ptr[4 * b + r];
      end[r] = m.row_ptr[4 * b + r + 1];
    }
    for (;;) {
      uint32_t c = UINT32_MAX;
      for (int r = 0; r < 4; ++r)
        if (head[r] < end[r]) c = std::min(c, col(head[r]));
      if (c == UINT32_MAX) break;
      visit(b, c, head, end, col);
    }
  }
}
}  // namespace

int64_t count_blocks4(const kernels::CsrMatrix& m) {
  int64_t blocks = 0;
  merge_blocks4(m, [&](int64_t, uint32_t c, uint32_t* head, const uint32_t* end, auto& col) {
    ++blocks;
    for (int r = 0; r < 4; ++r)
      if (head[r] < end[r] && col(head[r]) == c) ++head[r];
  });
  return blocks;
}

void build_blocks4(const kernels::CsrMatrix& m, OwnedBlocks4* out) {
  const int64_t nbr = m.rows / 4;
  const int64_t blocks = count_blocks4(m);
  out->ptr.assign(static_cast<size_t>(nbr + 1), 0);
  out->col.clear();
  out->col.reserve(static_cast<size_t>(blocks));
  out->values.assign(static_cast<size_t>(blocks * 4), 0.0f);
  merge_blocks4(m, [&](int64_t b, uint32_t c, uint32_t* head, const uint32_t* end, auto& col) {
    const size_t j = out->col.size();
    out->col.push_back(c);
    for (int r = 0; r < 4; ++r) {
      if (head[r] < end[r] && col(head[r]) == c) {
        out->values[4 * j + r] = m.values[head[r]];
        ++head[r];
      }
    }
    out->ptr[b + 1] = static_cast<uint32_t>(out->col.size());
  });
  // block rows without a block still need their end pointer
  for (int64_t b = 0; b < nbr; ++b) out->ptr[b + 1] = std::max(out->ptr[b + 1], out->ptr[b]);
}

void attach_blocks4(const OwnedBlocks4& blocks, kernels::CsrMatrix* m) {
  m->block_ptr = blocks.ptr.data();
  m->block_col = blocks.col.data();
  m->block_values = blocks.values.data();
  m->block_count = static_cast<int64_t>(blocks.ptr.size()) - 1;
}

// A block slot costs about half a CSR nonzero in the SIMD kernels
// (kBlockCostFactor: one X load per four FMAs instead of one), so the view pays
// when the blocks hold well over half of their 4 slots: block-pruned weights
// (fill 1.0) and weights whose nonzeros cluster by output channel. An
// unstructured weight fills 0.29 of its blocks at 90% sparsity and 0.53 at
// 50%, and keeps CSR only.
namespace {
constexpr double kMinBlockFill = 0.6;
}  // namespace

void LayerWeights::build_block4() {
  const int64_t nbr = rows_ / 4;
  if (nbr == 0 || csr_.row_ptr == nullptr || isa_ == kernels::Isa::kScalar) return;
  const int64_t blocks = count_blocks4(csr_);
  const int64_t covered = static_cast<int64_t>(csr_.row_ptr[4 * nbr]);
  if (blocks == 0 || static_cast<double>(covered) < kMinBlockFill * 4.0 * static_cast<double>(blocks)) return;
  if (!config_.try_charge(blocks * 5 * 4 + (nbr + 1) * 4)) {
    config_.note("weight '" + info_.name + "': no 4x1 block view (it would exceed the load's expand budget)");
    return;
  }
  build_blocks4(csr_, &blocks_);
  attach_blocks4(blocks_, &csr_);
}

bool LayerWeights::ensure_dense(int64_t groups, bool optional) {
  if (gemm_ != nullptr) return true;
  kernels::AlignedFloats densified;
  const float* wd = static_cast<const float*>(info_.data);
  if (info_.storage != format::Storage::kDense) {
    if (optional) {
      // the packed copy costs the same whether the file stores it dense or not
      if (!config_.try_charge(info_.elements * 4 - static_cast<int64_t>(info_.stored_bytes()))) {
        config_.note("weight '" + info_.name + "': kept sparse only; a dense copy for tuning would exceed the "
                     "load's expand budget");
        return false;
      }
      densified = densify_weight(info_, LoadConfig());
    } else {
      densified = densify_weight(info_, config_);
    }
    wd = densified.data();
  }
  gemm_ = &kernels::gemm_kernel(isa_);
  const int64_t group_rows = rows_ / groups;
  packed_.resize(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g)
    gemm_->pack(wd + g * group_rows * cols_, group_rows, cols_, cols_, &packed_[g]);
  return true;
}

// The BSR weight's blocks as CSR (explicit zeros inside blocks dropped),
// without expanding the whole matrix.
void LayerWeights::bsr_to_csr() {
  const format::TensorInfo& w = info_;
  const int64_t br = w.block_rows, bc = w.block_cols;
  const bool narrow = cols_ <= 65536;
  OwnedCsr& out = owned_csr_;
  out.row_ptr.assign(static_cast<size_t>(rows_ + 1), 0);
  for (int64_t rb = 0; rb < rows_ / br; ++rb) {
    for (int64_t i = 0; i < br; ++i) {
      const int64_t r = rb * br + i;
      for (uint32_t j = w.row_ptr[rb]; j < w.row_ptr[rb + 1]; ++j) {
        const int64_t cb = w.col_idx16 != nullptr ? w.col_idx16[j] : w.col_idx32[j];
        const float* row = w.values + (static_cast<int64_t>(j) * br + i) * bc;
        for (int64_t k = 0; k < bc; ++k) {
          if (row[k] == 0.0f) continue;
          out.values.push_back(row[k]);
          if (narrow)
            out.col16.push_back(static_cast<uint16_t>(cb * bc + k));
          else
            out.col32.push_back(static_cast<uint32_t>(cb * bc + k));
        }
      }
      out.row_ptr[r + 1] = static_cast<uint32_t>(out.values.size());
    }
  }
  out.view = kernels::CsrMatrix();
  out.view.rows = rows_;
  out.view.cols = cols_;
  out.view.row_ptr = out.row_ptr.data();
  out.view.values = out.values.data();
  out.view.col_idx16 = narrow ? out.col16.data() : nullptr;
  out.view.col_idx32 = narrow ? nullptr : out.col32.data();
}

void LayerWeights::drop_csr() {
  owned_csr_ = OwnedCsr();
  blocks_ = OwnedBlocks4();
  csr_ = kernels::CsrMatrix();
  spmm_ = nullptr;
}

void LayerWeights::drop_dense() {
  packed_.clear();
  gemm_ = nullptr;
}

void LayerWeights::describe(bool sparse, NodeInfo* info) const {
  switch (info_.storage) {
    case format::Storage::kDense:
      info->weight_storage = "dense";
      break;
    case format::Storage::kCsr:
      info->weight_storage = "csr";
      break;
    case format::Storage::kBsr:
      info->weight_storage = "bsr";
      break;
  }
  info->weight_shape = info_.dims;
  info->weight_elements = info_.elements;
  info->weight_nnz = stored_sparse() ? nnz_ : info_.elements;
  info->weight_bytes = static_cast<int64_t>(info_.stored_bytes());
  (void)sparse;
}

std::string LayerWeights::storage_note(bool sparse) const {
  std::string note;
  if (sparse != stored_sparse()) note = sparse ? " (sparse copy of dense)" : " (densified)";
  if (sparse && block_count() > 0) note += " (4x1 blocks)";
  return note;
}

}  // namespace ops
}  // namespace sparsert
