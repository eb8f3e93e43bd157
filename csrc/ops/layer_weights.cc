#include "ops/layer_weights.h"

#include <algorithm>

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
    return;
  }
  if (info_.storage == format::Storage::kDense) {
    build_owned_csr(static_cast<const float*>(info_.data), rows_, cols_, &owned_csr_);
  } else {
    bsr_to_csr();
  }
  csr_ = owned_csr_.view;
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
  if (sparse == stored_sparse()) return "";
  return sparse ? " (sparse copy of dense)" : " (densified)";
}

}  // namespace ops
}  // namespace sparsert
