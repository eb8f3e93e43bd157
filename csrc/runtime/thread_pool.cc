#include "runtime/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SPARSERT_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define SPARSERT_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define SPARSERT_CPU_RELAX() ((void)0)
#endif

namespace sparsert {
namespace runtime {

int ThreadPool::hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  workers_.reserve(threads_ - 1);
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_tasks() {
  const auto& fn = *fn_;
  for (;;) {
    int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
    if (task >= tasks_) break;
    try {
      fn(task);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    finished_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop() {
  // Generation 0 is the pool's state at construction: a worker that starts
  // late must still see every job (and the stop) published after it.
  uint64_t seen = 0;
  for (;;) {
    // Spin a little for the next job, then sleep.
    auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (generation_.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() < spin_until) {
      for (int i = 0; i < 64; ++i) SPARSERT_CPU_RELAX();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      seen = generation_.load();
      if (stop_) return;
      // The job may already be retired by its caller (it ran every task itself).
      if (fn_ == nullptr) continue;
      active_workers_.fetch_add(1);
    }
    run_tasks();
    if (active_workers_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  bool expected = false;
  if (tasks == 1 || threads_ == 1 ||
      !busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag.store(false, std::memory_order_release); }
  } release{busy_};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    tasks_ = tasks;
    next_.store(0);
    finished_.store(0);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks();
  // Wait until every task finished, then retire the job under the lock once no
  // worker is inside it (workers only join a live job, under the same lock).
  for (int i = 0; finished_.load(std::memory_order_acquire) < tasks_; ++i) {
    if (i < 20000) {
      SPARSERT_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_workers_.load() == 0; });
    fn_ = nullptr;
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace runtime
}  // namespace sparsert
