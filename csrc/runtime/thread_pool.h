// A small fork-join thread pool owned by each Model. parallel_for() hands out
// task indices from an atomic counter to the caller and `threads - 1`
// workers. Workers spin briefly after a job before sleeping, because an
// inference issues many short parallel regions back to back.
//
// Several threads may call parallel_for() on the same pool at once (one Model
// run from many threads): the first caller gets the workers, the others run
// their tasks inline on their own thread. Results never depend on which
// thread ran a task.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sparsert {
namespace runtime {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // Calls fn(task) for every task in [0, tasks) and returns when all are done.
  // The first exception thrown by a task is rethrown here (after all finish).
  void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn);

  static int hardware_threads();

 private:
  void worker_loop();
  void run_tasks();

  int threads_;
  std::vector<std::thread> workers_;
  // Set by the caller that owns the workers for a job. An atomic flag rather
  // than a mutex: a task may itself call parallel_for on the thread that
  // owns the job, and try_lock on a mutex one already holds is undefined.
  std::atomic<bool> busy_{false};

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};

  // the current job
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> finished_{0};
  std::atomic<int> active_workers_{0};
  std::exception_ptr error_;
  std::mutex error_mutex_;
};

}  // namespace runtime
}  // namespace sparsert
