// Splitting a kernel's rows (output features / channels) into tasks for the
// thread pool: balanced by nonzeros for CSR weights.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace sparsert {
namespace ops {

// How many tasks to split `work` multiply-adds into: one when the work is too
// small to pay for waking threads, else a few per thread for balance.
inline int64_t partition_task_count(int threads, int64_t work, int64_t rows) {
  constexpr int64_t kMinWorkPerTask = 16384;
  if (threads <= 1 || work < 2 * kMinWorkPerTask) return 1;
  int64_t tasks = std::min<int64_t>(threads * 4, work / kMinWorkPerTask);
  return std::max<int64_t>(1, std::min(tasks, rows));
}

// How to split a product Y[rows x cols] = W[rows x K] * X[K x cols] into
// row_tasks x col_tasks tasks (about `tasks` in all). Each row task reads all
// of X's columns in its range and each column task all of W's rows in its
// range, so the traffic is about X * row_tasks + W * col_tasks: split the
// rows when W is the larger operand (ResNet's 3x3 layers at 7x7), the columns
// when X is (MobileNet's 1x1 projections: 24 x 144 weights against a 144 x
// 3136 input, where a row split made both threads stream all of X and ran
// 1.1x faster on 2 threads instead of 1.8x). Columns come in units of
// `col_unit`, rows in `row_units` units; w_bytes and x_bytes are the sizes of
// the whole operands.
struct Split2d {
  int64_t row_tasks = 1, col_tasks = 1;
};

inline Split2d partition_2d(int64_t tasks, int64_t row_units, int64_t cols, int64_t col_unit,
                            double w_bytes, double x_bytes) {
  Split2d best;
  const int64_t col_units = std::max<int64_t>(1, cols / std::max<int64_t>(1, col_unit));
  row_units = std::max<int64_t>(1, row_units);
  tasks = std::max<int64_t>(1, std::min(tasks, row_units * col_units));
  if (tasks == 1) return best;
  double best_cost = -1.0;
  for (int64_t rt = 1; rt <= std::min(tasks, row_units); ++rt) {
    const int64_t ct = std::max<int64_t>(1, std::min(tasks / rt, col_units));
    // Fewer than 3/4 of the wanted tasks balances worse; skip unless nothing else fits.
    if (rt * ct * 4 < tasks * 3) continue;
    const double cost = x_bytes * static_cast<double>(rt) + w_bytes * static_cast<double>(ct);
    if (best_cost < 0.0 || cost < best_cost) {
      best_cost = cost;
      best.row_tasks = rt;
      best.col_tasks = ct;
    }
  }
  if (best_cost < 0.0) best.row_tasks = std::min(tasks, row_units);
  return best;
}

// Boundaries (tasks + 1 entries) of rows in multiples of `block`.
inline std::vector<int64_t> partition_rows(int64_t rows, int64_t tasks, int64_t block) {
  const int64_t blocks = (rows + block - 1) / block;
  tasks = std::max<int64_t>(1, std::min(tasks, blocks));
  std::vector<int64_t> bounds(tasks + 1);
  for (int64_t t = 0; t <= tasks; ++t) bounds[t] = std::min(rows, (blocks * t / tasks) * block);
  return bounds;
}

// Row boundaries over [r_begin, r_end) with about equal nonzeros per task
// (plus one per row, so runs of empty rows still spread).
inline std::vector<int64_t> partition_csr_range(const uint32_t* row_ptr, int64_t r_begin, int64_t r_end,
                                                int64_t tasks) {
  const int64_t rows = r_end - r_begin;
  tasks = std::max<int64_t>(1, std::min(tasks, rows));
  std::vector<int64_t> bounds(tasks + 1, r_end);
  bounds[0] = r_begin;
  const double base = static_cast<double>(row_ptr[r_begin]) + static_cast<double>(r_begin);
  const double total = static_cast<double>(row_ptr[r_end]) + static_cast<double>(r_end) - base;
  int64_t r = r_begin;
  for (int64_t t = 1; t < tasks; ++t) {
    const double target = base + total * static_cast<double>(t) / static_cast<double>(tasks);
    while (r < r_end && static_cast<double>(row_ptr[r]) + static_cast<double>(r) < target) ++r;
    bounds[t] = r;
  }
  return bounds;
}

// Moves the inner boundaries to the nearest multiple of `block` (kept in
// order and inside the range), so no task splits a 4x1 weight block; a task
// may become empty.
inline void align_bounds(std::vector<int64_t>* bounds, int64_t block) {
  if (bounds->size() < 3) return;
  const int64_t lo = bounds->front(), hi = bounds->back();
  for (size_t t = 1; t + 1 < bounds->size(); ++t) {
    int64_t b = ((*bounds)[t] + block / 2) / block * block;
    b = std::max(b, (*bounds)[t - 1]);
    (*bounds)[t] = std::min(std::max(b, lo), hi);
  }
}

inline std::vector<int64_t> partition_csr_rows(const uint32_t* row_ptr, int64_t rows, int64_t tasks) {
  return partition_csr_range(row_ptr, 0, rows, tasks);
}

}  // namespace ops
}  // namespace sparsert
