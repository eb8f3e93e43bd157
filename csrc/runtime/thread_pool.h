// One process-wide fork-join thread pool shared by every Model (N models do
// not start N x cores threads). parallel_for() hands out task indices from an
// atomic counter to the caller and to up to `threads - 1` workers, so a core
// that is slow or busy takes fewer tasks instead of holding everyone up.
// Workers spin briefly after a job before sleeping, because an inference
// issues many short parallel regions back to back; the spin is cut short
// when the machine is busy (a worker that keeps arriving after the work is
// gone stops spinning for a while).
//
// A caller that waits for a stalled worker (descheduled while holding a task,
// because another process wants its core) longer than it worked itself runs
// the jobs of the next 50 ms alone, so a busy machine costs at most about the
// 1-thread speed instead of a scheduler time slice per job.
//
// Several threads may call parallel_for() at once (one Model run from many
// threads, or several Models): the first caller gets the workers, the others
// run their tasks inline on their own thread. Results never depend on which
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
  // The process-wide pool (workers are started on demand by reserve()).
  static ThreadPool& global();

  ThreadPool() = default;
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Makes sure `threads - 1` workers exist. Throws Error(kResource) when
  // threads exceeds kMaxThreads or the system refuses to start a thread (the
  // workers started so far keep running and are used).
  void reserve(int threads);
  int workers() const;

  // Calls fn(task) for every task in [0, tasks) on the caller and at most
  // max_threads - 1 workers, and returns when all are done. The first
  // exception thrown by a task is rethrown here (after all finish).
  void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn, int max_threads);

  // CPUs this process may use: its affinity mask, capped by a cgroup CPU
  // quota (cgroup v2 cpu.max or v1 cfs_quota_us), at least 1.
  static int available_cpus();

 private:
  void worker_loop(int index);
  void run_tasks();

  mutable std::mutex start_mutex_;  // guards workers_ growth
  std::vector<std::thread> workers_;
  std::atomic<int> n_workers_{0};

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
  int job_workers_ = 0;                // workers allowed to join this job
  std::atomic<int> joined_{0};         // workers that joined it
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> finished_{0};
  std::atomic<int> active_workers_{0};
  std::exception_ptr error_;
  std::mutex error_mutex_;

  // Stalled-worker backoff (thread_pool.cc): until this steady_clock tick,
  // parallel_for runs every task on the caller.
  std::atomic<int64_t> solo_until_{0};
  std::atomic<int64_t> stalls_{0};

 public:
  // Jobs after which the pool ran solo for a while because a worker stalled.
  int64_t stalls() const { return stalls_.load(std::memory_order_relaxed); }
};

}  // namespace runtime
}  // namespace sparsert
